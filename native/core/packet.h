// Step: native parse. Frame bytes -> the few fields a knock needs (docs/MATCHER.md §3).
// Every length is checked; nothing is read outside [frame, frame + len).
#pragma once
#include <cstddef>
#include <cstdint>

namespace knockd {

enum LinkType : uint16_t {
  kLinkEthernet = 1,
  kLinkRawBsd12 = 12,
  kLinkRawBsd14 = 14,
  kLinkRaw = 101,
  kLinkLinuxSll = 113,
  kLinkIpv4 = 228,
  kLinkIpv6 = 229,
  kLinkLinuxSll2 = 276,
};

enum class ParseResult { kKnock, kMalformed, kNotKnock };

// Packet::proto of an ICMP echo request (ICMPv4 type 8 or ICMPv6 type 128): the step protocol "icmp"
// of both families, whose "port" is the echo payload length (docs/MATCHER.md §3).
constexpr uint8_t kProtoIcmp = 1;

struct Packet {
  uint8_t family;  // 4 or 6
  uint8_t proto;   // 6 TCP, 17 UDP, kProtoIcmp
  uint8_t tcp_flags;
  uint16_t dport;  // TCP/UDP destination port; ICMP: bytes of echo payload
  uint8_t src[16];  // IPv4 in bytes 0-3, rest zero
  uint8_t dst[16];
  // the transport payload, inside the frame parsed (valid while the frame is); the SPA step reads it
  const uint8_t* payload;
  uint32_t payload_len;
};

ParseResult parse_frame(const uint8_t* frame, size_t len, uint16_t link_type, Packet& out);

}  // namespace knockd
