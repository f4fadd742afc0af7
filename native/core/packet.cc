// Frame parsing (docs/MATCHER.md §3). Every read is preceded by a check that it fits in the frame.
#include "packet.h"

#include <algorithm>
#include <cstring>

namespace knockd {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800, kEtherIpv6 = 0x86DD;
constexpr size_t kMaxVlanTags = 2, kMaxExtensionHeaders = 8;

inline uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

// An IPv4 address in a 16-byte field, zero-padded, written as two 8-byte words: the matcher reads the
// field as two 8-byte words right away, and a read that spans several narrower stores still in flight
// cannot be forwarded from them (it waits for them to reach the cache).
inline void set_ipv4(uint8_t field[16], const uint8_t* addr) {
  uint64_t lo = 0;
  const uint64_t hi = 0;
  std::memcpy(&lo, addr, 4);
  std::memcpy(field, &lo, 8);
  std::memcpy(field + 8, &hi, 8);
}

inline bool is_vlan(uint16_t ethertype) { return ethertype == 0x8100 || ethertype == 0x88A8 || ethertype == 0x9100; }

// avail: bytes from l4 to the end of the IP packet that were captured; declared: the same distance by the
// IP header's length fields (more than avail when the capture was cut short). An ICMP echo's length is
// the declared one: it is what the sender chose, whatever the capture kept.
ParseResult parse_l4(const uint8_t* l4, size_t avail, size_t declared, uint8_t proto, uint8_t family, Packet& out) {
  if (proto == 6) {
    if (avail < 20) return ParseResult::kMalformed;
    if ((l4[12] >> 4) < 5) return ParseResult::kMalformed;
    out.tcp_flags = l4[13] & 0x3f;
    const size_t header = std::min(avail, size_t(l4[12] >> 4) * 4);
    out.payload = l4 + header;
    out.payload_len = uint32_t(avail - header);
  } else if (proto == 17) {
    if (avail < 8) return ParseResult::kMalformed;
    out.tcp_flags = 0;
    out.payload = l4 + 8;
    out.payload_len = uint32_t(avail - 8);
  } else if ((proto == 1 && family == 4) || (proto == 58 && family == 6)) {
    if (avail < 8) return ParseResult::kMalformed;
    if (l4[0] != (family == 4 ? 8 : 128)) return ParseResult::kNotKnock;  // only echo requests knock
    if (declared - 8 > 0xffff) return ParseResult::kNotKnock;           // an IPv6 jumbogram's
    out.tcp_flags = 0;
    out.proto = kProtoIcmp;
    out.dport = uint16_t(declared - 8);
    return ParseResult::kKnock;
  } else {
    return ParseResult::kNotKnock;
  }
  out.proto = proto;
  out.dport = be16(l4 + 2);
  return ParseResult::kKnock;
}

ParseResult parse_ipv4(const uint8_t* ip, size_t cap, Packet& out) {
  if (cap < 20 || (ip[0] >> 4) != 4) return ParseResult::kMalformed;
  size_t ihl = size_t(ip[0] & 0x0f) * 4;
  size_t total = be16(ip + 2);
  if (ihl < 20 || ihl > cap || total < ihl) return ParseResult::kMalformed;
  size_t end = total < cap ? total : cap;
  if (be16(ip + 6) & 0x3fff) return ParseResult::kNotKnock;  // MF or a fragment offset
  out.family = 4;
  set_ipv4(out.src, ip + 12);
  set_ipv4(out.dst, ip + 16);
  return parse_l4(ip + ihl, end - ihl, total - ihl, ip[9], 4, out);
}

ParseResult parse_ipv6(const uint8_t* ip, size_t cap, Packet& out) {
  if (cap < 40 || (ip[0] >> 4) != 6) return ParseResult::kMalformed;
  size_t payload = be16(ip + 4);
  size_t end = payload == 0 || 40 + payload > cap ? cap : 40 + payload;
  size_t declared_end = payload == 0 ? cap : 40 + payload;  // a jumbogram's length is not in this header
  uint8_t next = ip[6];
  size_t off = 40;
  for (size_t headers = 0; next != 6 && next != 17 && next != 58; headers++) {
    size_t len;
    switch (next) {
      case 0:
      case 43:
      case 60:
      case 51:
        if (headers == kMaxExtensionHeaders) return ParseResult::kMalformed;
        if (end - off < 2) return ParseResult::kMalformed;
        len = next == 51 ? (size_t(ip[off + 1]) + 2) * 4 : (size_t(ip[off + 1]) + 1) * 8;
        break;
      case 44:
        if (headers == kMaxExtensionHeaders) return ParseResult::kMalformed;
        if (end - off < 8) return ParseResult::kMalformed;
        if (be16(ip + off + 2) & 0xfff9) return ParseResult::kNotKnock;  // offset != 0 or M set
        len = 8;
        break;
      default:
        return ParseResult::kNotKnock;
    }
    if (end - off < len) return ParseResult::kMalformed;
    next = ip[off];
    off += len;
  }
  out.family = 6;
  std::memcpy(out.src, ip + 8, 16);
  std::memcpy(out.dst, ip + 24, 16);
  return parse_l4(ip + off, end - off, declared_end - off, next, 6, out);
}

// After the link header: up to two VLAN tags, then the ethertype picks the IP parser.
ParseResult parse_ethertype(const uint8_t* frame, size_t len, size_t off, uint16_t ethertype, bool vlan_tags, Packet& out) {
  for (size_t tags = 0; vlan_tags && is_vlan(ethertype); tags++) {
    if (tags == kMaxVlanTags) return ParseResult::kNotKnock;
    if (len - off < 4) return ParseResult::kMalformed;
    ethertype = be16(frame + off + 2);
    off += 4;
  }
  if (ethertype == kEtherIpv4) return parse_ipv4(frame + off, len - off, out);
  if (ethertype == kEtherIpv6) return parse_ipv6(frame + off, len - off, out);
  return ParseResult::kNotKnock;
}

}  // namespace

ParseResult parse_frame(const uint8_t* frame, size_t len, uint16_t link_type, Packet& out) {
  switch (link_type) {
    case kLinkEthernet:
      if (len < 14) return ParseResult::kMalformed;
      return parse_ethertype(frame, len, 14, be16(frame + 12), true, out);
    case kLinkLinuxSll:
      if (len < 16) return ParseResult::kMalformed;
      return parse_ethertype(frame, len, 16, be16(frame + 14), true, out);
    case kLinkLinuxSll2:
      if (len < 20) return ParseResult::kMalformed;
      return parse_ethertype(frame, len, 20, be16(frame), false, out);
    case kLinkRaw:
    case kLinkRawBsd12:
    case kLinkRawBsd14:
      if (len < 1) return ParseResult::kMalformed;
      if ((frame[0] >> 4) == 4) return parse_ipv4(frame, len, out);
      if ((frame[0] >> 4) == 6) return parse_ipv6(frame, len, out);
      return ParseResult::kNotKnock;
    case kLinkIpv4:
      return parse_ipv4(frame, len, out);
    case kLinkIpv6:
      return parse_ipv6(frame, len, out);
    default:
      return ParseResult::kNotKnock;
  }
}

}  // namespace knockd
