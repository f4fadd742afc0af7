// Frame parsing (docs/MATCHER.md §3): every link type, VLAN stacks, IPv4/IPv6 header checks, extension
// header walks, and malformed or truncated frames (each truncation of a valid frame must be rejected
// without reading past its end, which ASan verifies).
#include "packet.h"
#include "test_util.h"

using namespace knockd;
using namespace test;

namespace {

const Addr kSrc4 = v4(198, 51, 100, 1), kDst4 = v4(192, 0, 2, 2);
const Addr kSrc6 = v6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5});
const Addr kDst6 = v6({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2});

ParseResult parse(const std::vector<uint8_t>& f, uint16_t link, Packet* out = nullptr) {
  Packet p{};
  // Copy into an exactly sized heap block so ASan sees any read past the end.
  std::unique_ptr<uint8_t[]> exact(new uint8_t[f.size() ? f.size() : 1]);
  if (!f.empty()) std::memcpy(exact.get(), f.data(), f.size());
  ParseResult r = parse_frame(exact.get(), f.size(), link, p);
  if (out) *out = p;
  return r;
}

// Ethernet with the given tag TPIDs (outermost first) in front of an IPv4 TCP knock.
std::vector<uint8_t> tagged(std::initializer_list<uint16_t> tpids) {
  std::vector<uint8_t> ip = ipv4(kSrc4, kDst4, kProtoTcp, l4(kProtoTcp, 7000, kSyn));
  std::vector<uint16_t> t(tpids);
  std::vector<uint8_t> body = ip;
  uint16_t inner = 0x0800;
  for (size_t i = t.size(); i-- > 0;) {
    std::vector<uint8_t> tag{0, 1, uint8_t(inner >> 8), uint8_t(inner)};  // TCI then inner type
    tag.insert(tag.end(), body.begin(), body.end());
    body = tag;
    inner = t[i];
  }
  std::vector<uint8_t> f(14, 0);
  put16(f, 12, inner);
  f.insert(f.end(), body.begin(), body.end());
  return f;
}

std::vector<uint8_t> ext(uint8_t next, uint8_t len_field, size_t bytes) {
  std::vector<uint8_t> h(bytes, 0);
  h[0] = next;
  h[1] = len_field;
  return h;
}

std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void ipv4_basics() {
  Packet p;
  auto f = knock(kSrc4, kDst4, tcp(7000), kSyn | kAck);
  CHECK(parse(f, kLinkEthernet, &p) == ParseResult::kKnock);
  CHECK(p.family == 4 && p.proto == kProtoTcp && p.dport == 7000 && p.tcp_flags == (kSyn | kAck));
  CHECK(std::memcmp(p.src, kSrc4.bytes, 16) == 0 && std::memcmp(p.dst, kDst4.bytes, 16) == 0);
  auto u = knock(kSrc4, kDst4, udp(9000));
  CHECK(parse(u, kLinkEthernet, &p) == ParseResult::kKnock);
  CHECK(p.proto == kProtoUdp && p.dport == 9000 && p.tcp_flags == 0);
  // Flags beyond the low six bits are dropped.
  f[14 + 20 + 13] = 0xC2;
  CHECK(parse(f, kLinkEthernet, &p) == ParseResult::kKnock && p.tcp_flags == kSyn);
}

void ipv4_malformed_and_not_knocks() {
  const auto ip = ipv4(kSrc4, kDst4, kProtoTcp, l4(kProtoTcp, 7000, kSyn));
  auto bad = ip;
  bad[0] = 0x44;  // IHL 4
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kMalformed);
  bad = ip;
  bad[0] = 0x4f;  // IHL 15 = 60 bytes > 40 captured
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kMalformed);
  bad = ip;
  bad[0] = 0x55;  // version 5 on an IPv4-only link
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kMalformed);
  bad = ip;
  put16(bad, 2, 19);  // total length below the header
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kMalformed);
  bad = ip;
  put16(bad, 2, 30);  // total length cuts the TCP header: end = min(total, captured)
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kMalformed);
  bad = ip;
  put16(bad, 2, 1000);  // longer than captured: the captured length bounds it
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kKnock);
  bad = ip;
  bad[6] = 0x20;  // MF
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kNotKnock);
  bad = ip;
  bad[7] = 0x01;  // fragment offset
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kNotKnock);
  bad = ip;
  bad[6] = 0x40;  // DF alone is fine
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kKnock);
  bad = ip;
  bad[9] = 1;  // ICMP of type 156 (the TCP header's first byte): not an echo request
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kNotKnock);
  bad = ip;
  bad[20 + 12] = 4 << 4;  // TCP data offset 4
  CHECK(parse(bad, kLinkIpv4) == ParseResult::kMalformed);
  auto udp_short = ipv4(kSrc4, kDst4, kProtoUdp, std::vector<uint8_t>(7, 0));
  CHECK(parse(udp_short, kLinkIpv4) == ParseResult::kMalformed);
  // Options: IHL 6 moves the transport header.
  auto opt = ip;
  opt[0] = 0x46;
  opt.insert(opt.begin() + 20, {1, 1, 1, 1});
  put16(opt, 2, uint16_t(opt.size()));
  Packet p;
  CHECK(parse(opt, kLinkIpv4, &p) == ParseResult::kKnock && p.dport == 7000);
}

void ipv6_walks() {
  Packet p;
  const auto tcp6 = l4(kProtoTcp, 7000, kSyn);
  CHECK(parse(ipv6(kSrc6, kDst6, kProtoTcp, tcp6), kLinkIpv6, &p) == ParseResult::kKnock);
  CHECK(p.family == 6 && p.dport == 7000 && std::memcmp(p.src, kSrc6.bytes, 16) == 0);
  // hop-by-hop (8) -> routing (16) -> destination options (8) -> AH ((2+2)*4 = 16) -> TCP
  auto chain = cat({ext(43, 0, 8), ext(60, 1, 16), ext(51, 0, 8), ext(kProtoTcp, 2, 16), tcp6});
  CHECK(parse(ipv6(kSrc6, kDst6, 0, chain), kLinkIpv6, &p) == ParseResult::kKnock && p.dport == 7000);
  // Atomic fragment (offset 0, M clear) is walked through; a real fragment is not a knock.
  auto frag = ext(kProtoTcp, 0, 8);
  CHECK(parse(ipv6(kSrc6, kDst6, 44, cat({frag, tcp6})), kLinkIpv6) == ParseResult::kKnock);
  frag[3] = 1;  // M
  CHECK(parse(ipv6(kSrc6, kDst6, 44, cat({frag, tcp6})), kLinkIpv6) == ParseResult::kNotKnock);
  frag[3] = 8;  // offset 1
  CHECK(parse(ipv6(kSrc6, kDst6, 44, cat({frag, tcp6})), kLinkIpv6) == ParseResult::kNotKnock);
  // Eight extension headers are fine, a ninth is malformed.
  std::vector<uint8_t> eight, nine;
  for (int i = 0; i < 7; i++) eight = cat({eight, ext(60, 0, 8)});
  eight = cat({eight, ext(kProtoTcp, 0, 8), tcp6});
  CHECK(parse(ipv6(kSrc6, kDst6, 0, eight), kLinkIpv6) == ParseResult::kKnock);
  for (int i = 0; i < 8; i++) nine = cat({nine, ext(60, 0, 8)});
  nine = cat({nine, ext(kProtoTcp, 0, 8), tcp6});
  CHECK(parse(ipv6(kSrc6, kDst6, 0, nine), kLinkIpv6) == ParseResult::kMalformed);
  // An extension header longer than the packet.
  CHECK(parse(ipv6(kSrc6, kDst6, 0, cat({ext(kProtoTcp, 200, 8), tcp6})), kLinkIpv6) == ParseResult::kMalformed);
  // The payload length bounds the walk even when more bytes were captured.
  auto shortened = ipv6(kSrc6, kDst6, kProtoTcp, tcp6);
  put16(shortened, 4, 10);
  CHECK(parse(shortened, kLinkIpv6) == ParseResult::kMalformed);
  put16(shortened, 4, 0);  // 0 = up to the captured length
  CHECK(parse(shortened, kLinkIpv6) == ParseResult::kKnock);
  // Other next headers (ICMPv6 other than an echo request, no next header) are not knocks.
  CHECK(parse(ipv6(kSrc6, kDst6, 58, tcp6), kLinkIpv6) == ParseResult::kNotKnock);
  CHECK(parse(ipv6(kSrc6, kDst6, 59, tcp6), kLinkIpv6) == ParseResult::kNotKnock);
  auto v4_on_v6 = ipv4(kSrc4, kDst4, kProtoTcp, tcp6);
  v4_on_v6.resize(60, 0);
  CHECK(parse(v4_on_v6, kLinkIpv6) == ParseResult::kMalformed);
}

void link_types() {
  const auto ip4 = ipv4(kSrc4, kDst4, kProtoTcp, l4(kProtoTcp, 7000, kSyn));
  const auto ip6 = ipv6(kSrc6, kDst6, kProtoUdp, l4(kProtoUdp, 8000, 0));
  Packet p;
  for (uint16_t raw : {kLinkRaw, kLinkRawBsd12, kLinkRawBsd14}) {
    CHECK(parse(ip4, raw, &p) == ParseResult::kKnock && p.family == 4);
    CHECK(parse(ip6, raw, &p) == ParseResult::kKnock && p.family == 6 && p.dport == 8000);
    auto other = ip4;
    other[0] = 0x55;
    CHECK(parse(other, raw) == ParseResult::kNotKnock);
    CHECK(parse({}, raw) == ParseResult::kMalformed);
  }
  std::vector<uint8_t> sll(16, 0);
  put16(sll, 14, 0x86DD);
  CHECK(parse(cat({sll, ip6}), kLinkLinuxSll, &p) == ParseResult::kKnock && p.family == 6);
  put16(sll, 14, 0x8100);  // SLL carries VLAN tags as Ethernet does
  CHECK(parse(cat({sll, {0, 1, 0x08, 0x00}, ip4}), kLinkLinuxSll, &p) == ParseResult::kKnock && p.family == 4);
  std::vector<uint8_t> sll2(20, 0);
  put16(sll2, 0, 0x0800);
  CHECK(parse(cat({sll2, ip4}), kLinkLinuxSll2, &p) == ParseResult::kKnock && p.dport == 7000);
  put16(sll2, 0, 0x0806);  // ARP
  CHECK(parse(cat({sll2, ip4}), kLinkLinuxSll2) == ParseResult::kNotKnock);
  CHECK(parse(ethernet(0x0806, ip4), kLinkEthernet) == ParseResult::kNotKnock);
  CHECK(parse(ethernet(0x0800, ip4), 147) == ParseResult::kNotKnock);  // an unsupported link type
  CHECK(parse(ip6, kLinkIpv4) == ParseResult::kMalformed);
}

void vlan_stacks() {
  Packet p;
  CHECK(parse(tagged({0x8100}), kLinkEthernet, &p) == ParseResult::kKnock && p.dport == 7000);
  CHECK(parse(tagged({0x88A8, 0x8100}), kLinkEthernet, &p) == ParseResult::kKnock);
  CHECK(parse(tagged({0x9100, 0x9100}), kLinkEthernet, &p) == ParseResult::kKnock);
  CHECK(parse(tagged({0x88A8, 0x8100, 0x8100}), kLinkEthernet) == ParseResult::kNotKnock);
  std::vector<uint8_t> cut(16, 0);  // a tag announced but only two bytes of it captured
  put16(cut, 12, 0x8100);
  CHECK(parse(cut, kLinkEthernet) == ParseResult::kMalformed);
}

// An ICMP echo header (type, code 0, checksum, identifier 1, sequence 1) and `payload` bytes.
std::vector<uint8_t> echo(uint8_t type, size_t payload) {
  std::vector<uint8_t> h(8 + payload, 0xa5);
  h[0] = type;
  h[1] = 0;
  h[2] = h[3] = h[4] = h[6] = 0;
  h[5] = h[7] = 1;
  return h;
}

// ICMP echo requests (docs/MATCHER.md §3): proto kProtoIcmp in both families, the payload length by the
// IP header in dport, even when the capture kept less; other types, and each family's ICMP in the other
// family, are not knocks.
void icmp_echo() {
  Packet p;
  CHECK(parse(ipv4(kSrc4, kDst4, 1, echo(8, 1200)), kLinkIpv4, &p) == ParseResult::kKnock);
  CHECK(p.family == 4 && p.proto == kProtoIcmp && p.dport == 1200 && p.tcp_flags == 0);
  CHECK(parse(ipv6(kSrc6, kDst6, 58, echo(128, 56)), kLinkIpv6, &p) == ParseResult::kKnock);
  CHECK(p.family == 6 && p.proto == kProtoIcmp && p.dport == 56);
  CHECK(parse(ipv6(kSrc6, kDst6, 0, cat({ext(60, 0, 8), ext(58, 0, 8), echo(128, 0)})), kLinkIpv6, &p) == ParseResult::kKnock && p.dport == 0);
  auto cut = ipv4(kSrc4, kDst4, 1, echo(8, 1200));
  cut.resize(20 + 8);  // the capture kept the headers only
  CHECK(parse(cut, kLinkIpv4, &p) == ParseResult::kKnock && p.dport == 1200);
  cut.resize(20 + 7);
  CHECK(parse(cut, kLinkIpv4) == ParseResult::kMalformed);
  auto jumbo = ipv6(kSrc6, kDst6, 58, echo(128, 300));
  put16(jumbo, 4, 0);  // payload length 0: the captured length counts
  CHECK(parse(jumbo, kLinkIpv6, &p) == ParseResult::kKnock && p.dport == 300);
  CHECK(parse(ipv4(kSrc4, kDst4, 1, echo(0, 56)), kLinkIpv4) == ParseResult::kNotKnock);     // echo reply
  CHECK(parse(ipv4(kSrc4, kDst4, 1, echo(128, 56)), kLinkIpv4) == ParseResult::kNotKnock);   // ICMPv6's type in ICMP
  CHECK(parse(ipv6(kSrc6, kDst6, 58, echo(8, 56)), kLinkIpv6) == ParseResult::kNotKnock);    // and the other way round
  CHECK(parse(ipv4(kSrc4, kDst4, 58, echo(128, 56)), kLinkIpv4) == ParseResult::kNotKnock);  // ICMPv6 over IPv4
  CHECK(parse(ipv6(kSrc6, kDst6, 1, echo(8, 56)), kLinkIpv6) == ParseResult::kNotKnock);     // ICMP over IPv6
  CHECK(parse(ipv6(kSrc6, kDst6, 58, echo(135, 24)), kLinkIpv6) == ParseResult::kNotKnock);  // neighbour solicitation
}

// Every prefix of a valid frame is either malformed or (for a prefix that still holds the whole
// packet) a knock; never out of bounds.
void truncations() {
  std::vector<std::pair<std::vector<uint8_t>, uint16_t>> frames = {
      {tagged({0x88A8, 0x8100}), kLinkEthernet},
      {knock(kSrc6, kDst6, tcp(7000)), kLinkEthernet},
      {ipv6(kSrc6, kDst6, 0, cat({ext(44, 0, 8), ext(kProtoUdp, 0, 8), l4(kProtoUdp, 1, 0)})), kLinkRaw},
  };
  for (const auto& [frame, link] : frames) {
    CHECK(parse(frame, link) == ParseResult::kKnock);
    for (size_t n = 0; n < frame.size(); n++) {
      std::vector<uint8_t> prefix(frame.begin(), frame.begin() + long(n));
      CHECK(parse(prefix, link) == ParseResult::kMalformed);
    }
  }
}

}  // namespace

int main() {
  ipv4_basics();
  ipv4_malformed_and_not_knocks();
  ipv6_walks();
  link_types();
  vlan_stacks();
  truncations();
  icmp_echo();
  if (failures) std::fprintf(stderr, "packet_test: %d failures\n", failures);
  else std::printf("packet_test: ok\n");
  return failures ? 1 : 0;
}
