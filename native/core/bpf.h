// Step: kernel filter. Classic BPF programs built from the decoded door program:
// - the visibility filter admits exactly the frames the matcher would count `visible`
//   (docs/MATCHER.md §3-4), so the kernel drops everything else before the ring;
// - the fanout program returns a hash of the source address only, so one source's knocks always
//   reach the same capture thread (PACKET_FANOUT_CBPF; the kernel takes the result modulo the group size).
#pragma once
#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

#include "program.h"

namespace knockd {

// Where the frame the filter runs on starts and how its network protocol is found.
enum class FilterLayout {
  kEthernet,  // 14-byte header, up to 2 in-band VLAN tags (pcap LINKTYPE_ETHERNET)
  kLinuxSll,  // 16-byte cooked header, protocol at 14, VLAN tags as for Ethernet
  kLinuxSll2, // 20-byte cooked v2 header, protocol at 0
  kRaw,       // IP header at 0, the version nibble decides (LINKTYPE_RAW, 12, 14)
  kIpv4,      // IPv4 header at 0 (LINKTYPE_IPV4)
  kIpv6,      // IPv6 header at 0 (LINKTYPE_IPV6)
  // An AF_PACKET SOCK_DGRAM socket: data starts at the network header, the protocol comes from
  // skb metadata, the first VLAN tag was usually stripped into metadata by the kernel (so only
  // 2 - vlan_tag_present tags may still be in band), and outgoing copies are rejected.
  kNetwork,
};

// The layout of a pcap link type; false if the matcher never sees a knock on that link type.
bool filter_layout_for_link(uint16_t link_type, FilterLayout* out);

constexpr uint32_t kFilterAcceptBytes = 262144;  // what an accepting filter returns (whole frame)
constexpr size_t kFilterMaxInstructions = 4096;  // BPF_MAXINSNS

struct FilterBuild {
  std::vector<sock_filter> code;
  // true when the exact filter would exceed the kernel's instruction limit and the built one
  // admits any destination address instead (still by port, protocol and flags); the matcher then
  // makes the address decision in userspace.
  bool coarse = false;
};

FilterBuild build_visibility_filter(const Program& program, FilterLayout layout);

// The fanout program for sockets whose frames start at the network header (all AF_PACKET receive
// paths present the skb at the network header to the fanout demux).
std::vector<sock_filter> build_fanout_filter();

// A filter that admits nothing: attached while a socket joins its fanout group, before the real one.
std::vector<sock_filter> build_reject_filter();

}  // namespace knockd
