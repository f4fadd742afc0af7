// Classic BPF builders (see bpf.h). The visibility filter mirrors packet.cc's parse rules check for
// check, so "admitted by the kernel" and "counted visible by the matcher" are the same set of frames
// (test/bpf.test.ts runs this code in a cBPF interpreter against the matcher to prove it).
#include "bpf.h"
#include "spa.h"

#include <linux/if_packet.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <utility>

#include "packet.h"

namespace knockd {
namespace {

// Scratch memory slots (BPF_MEMWORDS = 16).
enum Mem : uint32_t {
  kMemNet = 0,    // offset of the IP header
  kMemProto = 1,  // next header while walking IPv6; then the step protocol: 6, 17 or kProtoIcmp
  kMemEnd = 2,    // offset one past the IP packet (min of its length and the captured length)
  kMemL4 = 3,     // offset of the TCP/UDP header
  kMemPort = 4,   // destination port; an ICMP echo's payload length
  kMemFlags = 5,  // TCP flags & 0x3f
  kMemAvail = 6,  // bytes available (captured IP bytes, or bytes left before kMemEnd)
  kMemLen = 7,    // length of the IPv6 extension header being skipped
  kMemDst = 8,    // destination address words 8..11
};

constexpr uint32_t kEtherIpv4 = 0x0800, kEtherIpv6 = 0x86DD;
constexpr uint32_t kIpProtoIcmp = 1, kIpProtoIcmpv6 = 58;  // IP protocol numbers (kProtoIcmp is the step's)
constexpr uint32_t kVlanTypes[] = {0x8100, 0x88A8, 0x9100};
constexpr int kMaxVlanTags = 2, kMaxExtensionHeaders = 8;

// Straight-line cBPF with forward labels. Conditional jumps reach only 255 instructions, so
// assemble() widens every conditional jump that would overflow into `jcc 0,1; ja T; ja F`.
class Assembler {
 public:
  int label() {
    labels_.push_back(-1);
    return int(labels_.size()) - 1;
  }
  void bind(int l) { labels_[l] = int(insns_.size()); }
  void op(uint16_t code, uint32_t k = 0) { insns_.push_back({code, k, -1, -1}); }
  void jump(uint16_t code, uint32_t k, int on_true, int on_false) { insns_.push_back({code, k, on_true, on_false}); }
  void jump_to(int l) { insns_.push_back({BPF_JMP | BPF_JA, 0, l, -1}); }

  std::vector<sock_filter> assemble() const {
    const size_t n = insns_.size();
    std::vector<bool> wide(n, false);
    std::vector<uint32_t> pos(n + 1);
    auto is_cond = [&](size_t i) { return BPF_CLASS(insns_[i].code) == BPF_JMP && BPF_OP(insns_[i].code) != BPF_JA && insns_[i].jt >= 0; };
    auto target = [&](int l) {
      if (labels_[l] < 0) throw std::logic_error("cBPF label used but never bound");
      return pos[labels_[l]];
    };
    for (bool changed = true; changed;) {
      changed = false;
      pos[0] = 0;
      for (size_t i = 0; i < n; i++) pos[i + 1] = pos[i] + (wide[i] ? 3 : 1);
      for (size_t i = 0; i < n; i++) {
        if (!is_cond(i) || wide[i]) continue;
        uint32_t next = pos[i] + 1;
        if (target(insns_[i].jt) - next > 255 || target(insns_[i].jf) - next > 255) {
          wide[i] = true;
          changed = true;
        }
      }
    }
    std::vector<sock_filter> out;
    out.reserve(pos[n]);
    for (size_t i = 0; i < n; i++) {
      const Insn& in = insns_[i];
      auto offset_from = [&](int l, uint32_t next) {
        if (target(l) < next) throw std::logic_error("cBPF jumps only forward");
        return target(l) - next;
      };
      if (BPF_CLASS(in.code) == BPF_JMP && BPF_OP(in.code) == BPF_JA && in.jt >= 0) {
        out.push_back({in.code, 0, 0, offset_from(in.jt, pos[i] + 1)});
      } else if (is_cond(i) && wide[i]) {
        out.push_back({in.code, 0, 1, in.k});
        out.push_back({BPF_JMP | BPF_JA, 0, 0, offset_from(in.jt, pos[i] + 2)});
        out.push_back({BPF_JMP | BPF_JA, 0, 0, offset_from(in.jf, pos[i] + 3)});
      } else if (is_cond(i)) {
        out.push_back({in.code, uint8_t(offset_from(in.jt, pos[i] + 1)), uint8_t(offset_from(in.jf, pos[i] + 1)), in.k});
      } else {
        out.push_back({in.code, 0, 0, in.k});
      }
    }
    return out;
  }

 private:
  struct Insn {
    uint16_t code;
    uint32_t k;
    int jt, jf;  // labels (jt alone for BPF_JA)
  };
  std::vector<Insn> insns_;
  std::vector<int> labels_;
};

constexpr uint16_t kLdW = BPF_LD | BPF_W | BPF_ABS, kLdH = BPF_LD | BPF_H | BPF_ABS, kLdB = BPF_LD | BPF_B | BPF_ABS;
constexpr uint16_t kLdWInd = BPF_LD | BPF_W | BPF_IND, kLdHInd = BPF_LD | BPF_H | BPF_IND, kLdBInd = BPF_LD | BPF_B | BPF_IND;
constexpr uint16_t kLdLen = BPF_LD | BPF_W | BPF_LEN, kLdImm = BPF_LD | BPF_IMM, kLdMem = BPF_LD | BPF_MEM;
constexpr uint16_t kLdxImm = BPF_LDX | BPF_IMM, kLdxMem = BPF_LDX | BPF_MEM;
constexpr uint16_t kSt = BPF_ST, kStx = BPF_STX, kTax = BPF_MISC | BPF_TAX, kTxa = BPF_MISC | BPF_TXA;
constexpr uint16_t kJeq = BPF_JMP | BPF_JEQ | BPF_K, kJge = BPF_JMP | BPF_JGE | BPF_K, kJset = BPF_JMP | BPF_JSET | BPF_K;
constexpr uint16_t kJgeX = BPF_JMP | BPF_JGE | BPF_X, kJgtX = BPF_JMP | BPF_JGT | BPF_X, kJgt = BPF_JMP | BPF_JGT | BPF_K;
constexpr uint16_t kAddK = BPF_ALU | BPF_ADD | BPF_K, kAddX = BPF_ALU | BPF_ADD | BPF_X, kSubX = BPF_ALU | BPF_SUB | BPF_X;
constexpr uint16_t kSubK = BPF_ALU | BPF_SUB | BPF_K;
constexpr uint16_t kAndK = BPF_ALU | BPF_AND | BPF_K, kRshK = BPF_ALU | BPF_RSH | BPF_K, kLshK = BPF_ALU | BPF_LSH | BPF_K;
constexpr uint16_t kXorX = BPF_ALU | BPF_XOR | BPF_X, kMulK = BPF_ALU | BPF_MUL | BPF_K;
constexpr uint16_t kRetK = BPF_RET | BPF_K, kRetA = BPF_RET | BPF_A;
constexpr uint32_t kAncProtocol = uint32_t(SKF_AD_OFF + SKF_AD_PROTOCOL);
constexpr uint32_t kAncPktType = uint32_t(SKF_AD_OFF + SKF_AD_PKTTYPE);
constexpr uint32_t kAncVlanPresent = uint32_t(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT);

// Jumps to on_true when A is one of `values` (sorted, unique), else to on_false: a binary search
// tree of comparisons, so a long port list costs log2(n) tests per packet, not n.
void emit_member(Assembler& a, const std::vector<uint32_t>& values, size_t lo, size_t hi, int on_true, int on_false) {
  if (hi - lo <= 3) {
    for (size_t i = lo; i < hi; i++) {
      int next = a.label();
      a.jump(kJeq, values[i], on_true, i + 1 == hi ? on_false : next);
      a.bind(next);
    }
    if (lo == hi) a.jump_to(on_false);
    return;
  }
  size_t mid = lo + (hi - lo) / 2;
  int upper = a.label(), lower = a.label();
  a.jump(kJge, values[mid], upper, lower);
  a.bind(lower);
  emit_member(a, values, lo, mid, on_true, on_false);
  a.bind(upper);
  emit_member(a, values, mid, hi, on_true, on_false);
}

// The ports a filter rule admits: single ports (searched as a tree) and ranges of derived doors.
struct PortSet {
  std::vector<uint32_t> ports;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive, ranges of two or more ports

  bool empty() const { return ports.empty() && ranges.empty(); }
  void add_derived(const Door& d) {
    for (uint32_t r : d.derived.ranges) {
      if ((r & 0xffff) == r >> 16) ports.push_back(r & 0xffff);
      else ranges.emplace_back(r & 0xffff, r >> 16);
    }
  }
};

// Jumps to on_true when A (a port) is in `set`, else to on_false.
void emit_port_set(Assembler& a, PortSet& set, int on_true, int on_false) {
  std::sort(set.ports.begin(), set.ports.end());
  set.ports.erase(std::unique(set.ports.begin(), set.ports.end()), set.ports.end());
  int next = set.ranges.empty() ? on_false : a.label();
  emit_member(a, set.ports, 0, set.ports.size(), on_true, next);
  for (size_t i = 0; i < set.ranges.size(); i++) {
    a.bind(next);
    next = i + 1 == set.ranges.size() ? on_false : a.label();
    int at_least = a.label();
    a.jump(kJge, set.ranges[i].first, at_least, next);
    a.bind(at_least);
    a.jump(kJgt, set.ranges[i].second, next, on_true);
  }
}

uint32_t address_word(const Address& addr, int i) {
  const uint8_t* b = addr.bytes + 4 * i;
  return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3];
}

enum class Precision { kExact, kAnyDestination, kAnyPort };

class FilterBuilder {
 public:
  FilterBuilder(const Program& program, Precision precision) : p_(program), precision_(precision) {}

  std::vector<sock_filter> build(FilterLayout layout) {
    accept_ = a_.label();
    reject_ = a_.label();
    v4_ = a_.label();
    v6_ = a_.label();
    emit_link(layout);
    a_.bind(v4_);
    emit_ipv4();
    a_.bind(v6_);
    emit_ipv6();
    a_.bind(accept_);
    a_.op(kRetK, kFilterAcceptBytes);
    a_.bind(reject_);
    a_.op(kRetK, 0);
    return a_.assemble();
  }

 private:
  // Ethertype in A, IP header at `net`: go to the IP code, down into a VLAN tag, or reject.
  void emit_dispatch(uint32_t net, int vlan) {
    int is_v4 = a_.label(), not_v4 = a_.label(), is_v6 = a_.label(), not_v6 = a_.label();
    a_.jump(kJeq, kEtherIpv4, is_v4, not_v4);
    a_.bind(not_v4);
    a_.jump(kJeq, kEtherIpv6, is_v6, not_v6);
    a_.bind(not_v6);
    if (vlan >= 0) {
      for (uint32_t type : kVlanTypes) {
        int next = a_.label();
        a_.jump(kJeq, type, vlan, next);
        a_.bind(next);
      }
    }
    a_.jump_to(reject_);
    a_.bind(is_v4);
    a_.op(kLdxImm, net);
    a_.jump_to(v4_);
    a_.bind(is_v6);
    a_.op(kLdxImm, net);
    a_.jump_to(v6_);
  }

  // Link header with the ethertype at `type_at` and the network header at `net`, then up to
  // kMaxVlanTags in-band tags (4 bytes each: TCI, next ethertype), as packet.cc's parse_ethertype.
  void emit_ethertype_link(uint32_t type_at, uint32_t net, int tags_allowed) {
    a_.op(kLdH, type_at);
    for (int tag = 0;; tag++) {
      int vlan = tag < tags_allowed ? a_.label() : -1;
      emit_dispatch(net + 4 * tag, vlan);
      if (vlan < 0) break;
      a_.bind(vlan);
      a_.op(kLdH, net + 4 * tag + 2);
    }
  }

  void emit_link(FilterLayout layout) {
    switch (layout) {
      case FilterLayout::kEthernet:
        emit_ethertype_link(12, 14, kMaxVlanTags);
        break;
      case FilterLayout::kLinuxSll:
        emit_ethertype_link(14, 16, kMaxVlanTags);
        break;
      case FilterLayout::kLinuxSll2:
        emit_ethertype_link(0, 20, 0);
        break;
      case FilterLayout::kRaw: {
        int is_v4 = a_.label(), not_v4 = a_.label(), is_v6 = a_.label();
        a_.op(kLdB, 0);
        a_.op(kRshK, 4);
        a_.op(kLdxImm, 0);
        a_.jump(kJeq, 4, is_v4, not_v4);
        a_.bind(not_v4);
        a_.jump(kJeq, 6, is_v6, reject_);
        a_.bind(is_v4);
        a_.jump_to(v4_);
        a_.bind(is_v6);
        a_.jump_to(v6_);
        break;
      }
      case FilterLayout::kIpv4:
        a_.op(kLdxImm, 0);
        a_.jump_to(v4_);
        break;
      case FilterLayout::kIpv6:
        a_.op(kLdxImm, 0);
        a_.jump_to(v6_);
        break;
      case FilterLayout::kNetwork: {
        // Outgoing copies (seen on lo and on every interface we send from) are not knocks.
        int incoming = a_.label();
        a_.op(kLdW, kAncPktType);
        a_.jump(kJeq, PACKET_OUTGOING, reject_, incoming);
        a_.bind(incoming);
        // The kernel strips the first VLAN tag into metadata; tags left in band count toward the
        // same limit of two as in an Ethernet frame.
        a_.op(kLdW, kAncProtocol);
        int tag1 = a_.label(), tag2 = a_.label(), second_allowed = a_.label();
        emit_dispatch(0, tag1);
        a_.bind(tag1);
        a_.op(kLdH, 2);
        emit_dispatch(4, tag2);
        a_.bind(tag2);
        a_.op(kLdW, kAncVlanPresent);
        a_.jump(kJeq, 0, second_allowed, reject_);
        a_.bind(second_allowed);
        a_.op(kLdH, 6);
        emit_dispatch(8, -1);
        break;
      }
    }
  }

  // A = a - b for two memory slots (clobbers X).
  void emit_mem_diff(uint32_t a, uint32_t b) {
    a_.op(kLdMem, a);
    a_.op(kLdxMem, b);
    a_.op(kSubX);
  }

  void require_ge(uint32_t k) {
    int ok = a_.label();
    a_.jump(kJge, k, ok, reject_);
    a_.bind(ok);
  }

  // X = IP header offset.
  void emit_ipv4() {
    a_.op(kStx, kMemNet);
    a_.op(kLdLen);
    a_.op(kSubX);
    a_.op(kSt, kMemAvail);
    require_ge(20);
    a_.op(kLdBInd, 0);
    a_.op(kRshK, 4);
    int v4 = a_.label();
    a_.jump(kJeq, 4, v4, reject_);
    a_.bind(v4);
    a_.op(kLdBInd, 0);
    a_.op(kAndK, 0x0f);
    a_.op(kLshK, 2);
    a_.op(kSt, kMemL4);  // header length for now
    require_ge(20);
    int fits = a_.label(), total_ok = a_.label(), use_cap = a_.label(), have_end = a_.label();
    a_.op(kLdxMem, kMemAvail);
    a_.jump(kJgtX, 0, reject_, fits);
    a_.bind(fits);
    a_.op(kLdxMem, kMemNet);
    a_.op(kLdHInd, 2);  // total length
    a_.op(kLdxMem, kMemL4);
    a_.jump(kJgeX, 0, total_ok, reject_);
    a_.bind(total_ok);
    a_.op(kLdxMem, kMemAvail);
    a_.jump(kJgeX, 0, use_cap, have_end);
    a_.bind(use_cap);
    a_.op(kTxa);
    a_.bind(have_end);
    a_.op(kLdxMem, kMemNet);
    a_.op(kAddX);
    a_.op(kSt, kMemEnd);
    int whole = a_.label();
    a_.op(kLdHInd, 6);
    a_.jump(kJset, 0x3fff, reject_, whole);  // MF or a fragment offset: not a knock
    a_.bind(whole);
    a_.op(kLdMem, kMemL4);
    a_.op(kAddX);
    a_.op(kSt, kMemL4);
    a_.op(kLdBInd, 9);
    a_.op(kSt, kMemProto);
    a_.op(kLdWInd, 16);
    a_.op(kSt, kMemDst);
    emit_l4(4);
    emit_visibility(4);
  }

  void emit_ipv6() {
    if (p_.flags & kFlagIgnoreIpv6) {
      a_.jump_to(reject_);
      return;
    }
    a_.op(kStx, kMemNet);
    a_.op(kLdLen);
    a_.op(kSubX);
    a_.op(kSt, kMemAvail);
    require_ge(40);
    a_.op(kLdBInd, 0);
    a_.op(kRshK, 4);
    int v6 = a_.label();
    a_.jump(kJeq, 6, v6, reject_);
    a_.bind(v6);
    int nonzero = a_.label(), use_cap = a_.label(), use_payload = a_.label();
    a_.op(kLdHInd, 4);  // payload length; 0 (jumbogram) means "to the end of the capture"
    a_.jump(kJeq, 0, use_cap, nonzero);
    a_.bind(nonzero);
    a_.op(kAddK, 40);
    a_.op(kLdxMem, kMemAvail);
    a_.jump(kJgtX, 0, use_cap, use_payload);
    a_.bind(use_cap);
    a_.op(kLdMem, kMemAvail);
    a_.bind(use_payload);
    a_.op(kLdxMem, kMemNet);
    a_.op(kAddX);
    a_.op(kSt, kMemEnd);
    for (int i = 0; i < 4; i++) {
      a_.op(kLdWInd, 24 + 4 * i);
      a_.op(kSt, kMemDst + i);
    }
    a_.op(kLdBInd, 6);
    a_.op(kSt, kMemProto);
    a_.op(kLdMem, kMemNet);
    a_.op(kAddK, 40);
    a_.op(kSt, kMemL4);
    // Extension headers, unrolled: at most kMaxExtensionHeaders, as packet.cc walks them.
    int done = a_.label();
    for (int header = 0;; header++) {
      int not_tcp = a_.label(), not_udp = a_.label(), not_icmp = a_.label();
      a_.op(kLdMem, kMemProto);
      a_.jump(kJeq, kProtoTcp, done, not_tcp);
      a_.bind(not_tcp);
      a_.jump(kJeq, kProtoUdp, done, not_udp);
      a_.bind(not_udp);
      a_.jump(kJeq, kIpProtoIcmpv6, done, not_icmp);
      a_.bind(not_icmp);
      if (header == kMaxExtensionHeaders) {
        a_.jump_to(reject_);
        break;
      }
      int options = a_.label(), ah = a_.label(), fragment = a_.label(), have_len = a_.label();
      for (uint32_t type : {0u, 43u, 60u}) {
        int next = a_.label();
        a_.jump(kJeq, type, options, next);
        a_.bind(next);
      }
      int not_ah = a_.label();
      a_.jump(kJeq, 51, ah, not_ah);
      a_.bind(not_ah);
      a_.jump(kJeq, 44, fragment, reject_);
      // (h[1] + 1) * 8
      a_.bind(options);
      emit_mem_diff(kMemEnd, kMemL4);
      a_.op(kSt, kMemAvail);
      require_ge(2);
      a_.op(kLdBInd, 1);
      a_.op(kAddK, 1);
      a_.op(kLshK, 3);
      a_.jump_to(have_len);
      // (h[1] + 2) * 4
      a_.bind(ah);
      emit_mem_diff(kMemEnd, kMemL4);
      a_.op(kSt, kMemAvail);
      require_ge(2);
      a_.op(kLdBInd, 1);
      a_.op(kAddK, 2);
      a_.op(kLshK, 2);
      a_.jump_to(have_len);
      // 8 bytes; a non-first fragment or one with more to come is not a knock
      a_.bind(fragment);
      int first_and_last = a_.label();
      emit_mem_diff(kMemEnd, kMemL4);
      a_.op(kSt, kMemAvail);
      require_ge(8);
      a_.op(kLdHInd, 2);
      a_.jump(kJset, 0xfff9, reject_, first_and_last);
      a_.bind(first_and_last);
      a_.op(kLdImm, 8);
      a_.bind(have_len);
      int fits = a_.label();
      a_.op(kLdxMem, kMemAvail);
      a_.jump(kJgtX, 0, reject_, fits);
      a_.bind(fits);
      a_.op(kSt, kMemLen);
      a_.op(kLdxMem, kMemL4);
      a_.op(kLdBInd, 0);
      a_.op(kSt, kMemProto);
      a_.op(kLdMem, kMemLen);
      a_.op(kAddX);
      a_.op(kSt, kMemL4);
    }
    a_.bind(done);
    emit_l4(6);
    emit_visibility(6);
  }

  // kMemProto, kMemEnd, kMemL4 set: check the TCP/UDP/ICMP header fits and read port and flags (an
  // ICMP echo request: kMemProto = kProtoIcmp, kMemPort = its payload length by the IP header).
  void emit_l4(int family) {
    int tcp = a_.label(), not_tcp = a_.label(), udp = a_.label(), not_udp = a_.label(), icmp = a_.label(), parsed = a_.label();
    a_.op(kLdMem, kMemProto);
    a_.jump(kJeq, kProtoTcp, tcp, not_tcp);
    a_.bind(not_tcp);
    a_.jump(kJeq, kProtoUdp, udp, not_udp);
    a_.bind(not_udp);
    a_.jump(kJeq, family == 4 ? kIpProtoIcmp : kIpProtoIcmpv6, icmp, reject_);
    a_.bind(tcp);
    emit_mem_diff(kMemEnd, kMemL4);
    require_ge(20);
    a_.op(kLdBInd, 12);
    a_.op(kRshK, 4);
    require_ge(5);
    a_.op(kLdBInd, 13);
    a_.op(kAndK, 0x3f);
    a_.op(kSt, kMemFlags);
    a_.op(kLdHInd, 2);
    a_.op(kSt, kMemPort);
    a_.jump_to(parsed);
    a_.bind(udp);
    emit_mem_diff(kMemEnd, kMemL4);
    require_ge(8);
    a_.op(kLdHInd, 2);
    a_.op(kSt, kMemPort);
    a_.op(kLdImm, 0);  // the kernel's checker wants every scratch word written on every path
    a_.op(kSt, kMemFlags);
    a_.jump_to(parsed);
    a_.bind(icmp);
    emit_mem_diff(kMemEnd, kMemL4);
    require_ge(8);
    int echo = a_.label(), declared = a_.label(), whole = a_.label();
    a_.op(kLdBInd, 0);  // X = kMemL4: the ICMP type
    a_.jump(kJeq, family == 4 ? 8 : 128, echo, reject_);
    a_.bind(echo);
    // the length the IP header declares, from the ICMP header on, less the 8-byte echo header
    a_.op(kLdxMem, kMemNet);
    if (family == 4) {
      a_.op(kLdHInd, 2);  // total length
    } else {
      int jumbo = a_.label(), sized = a_.label();
      a_.op(kLdHInd, 4);  // payload length; 0: to the end of the capture (kMemEnd)
      a_.jump(kJeq, 0, jumbo, sized);
      a_.bind(sized);
      a_.op(kAddK, 40);
      a_.jump_to(declared);
      a_.bind(jumbo);
      a_.op(kLdMem, kMemEnd);
      a_.op(kLdxImm, 0);
    }
    a_.bind(declared);
    a_.op(kAddX);
    a_.op(kLdxMem, kMemL4);
    a_.op(kSubX);
    a_.op(kSubK, 8);
    a_.jump(kJgt, 0xffff, reject_, whole);  // an IPv6 jumbogram's
    a_.bind(whole);
    a_.op(kSt, kMemPort);
    a_.op(kLdImm, kProtoIcmp);
    a_.op(kSt, kMemProto);
    a_.op(kLdImm, 0);
    a_.op(kSt, kMemFlags);
    a_.bind(parsed);
  }

  // Jumps to on_true when the destination (kMemDst..) equals one of `addrs`, else on_false.
  void emit_destination(int family, const std::vector<const Address*>& addrs, int on_true, int on_false) {
    if (family == 4) {
      std::vector<uint32_t> words;
      for (const Address* addr : addrs) words.push_back(address_word(*addr, 0));
      std::sort(words.begin(), words.end());
      words.erase(std::unique(words.begin(), words.end()), words.end());
      a_.op(kLdMem, kMemDst);
      emit_member(a_, words, 0, words.size(), on_true, on_false);
      return;
    }
    for (size_t i = 0; i < addrs.size(); i++) {
      int next = i + 1 == addrs.size() ? on_false : a_.label();
      for (int w = 0; w < 4; w++) {
        int same = w == 3 ? on_true : a_.label();
        a_.op(kLdMem, kMemDst + w);
        a_.jump(kJeq, address_word(*addrs[i], w), same, next);
        if (w < 3) a_.bind(same);
      }
      if (next != on_false) a_.bind(next);
    }
    if (addrs.empty()) a_.jump_to(on_false);
  }

  // Jumps to accept_ when some door of `doors` has (proto, port) as a step, or a derived door has it in
  // its protocols × ranges, and the door accepts the flags.
  void emit_steps(const std::vector<const Door*>& doors, int on_false) {
    PortSet udp, icmp;
    std::map<std::pair<uint8_t, uint8_t>, PortSet> tcp;  // (must_set, must_clear) -> ports
    for (const Door* d : doors) {
      if (d->is_derived()) {
        if (d->derived.proto_mask & 2) udp.add_derived(*d);
        if (d->derived.proto_mask & 1) tcp[{d->must_set, d->must_clear}].add_derived(*d);
      }
      for (uint32_t step : d->steps) {
        uint32_t port = step & 0xffff;
        if ((step >> 16) == kProtoUdp) udp.ports.push_back(port);
        else if ((step >> 16) == kProtoIcmp) icmp.ports.push_back(port);
        else tcp[{d->must_set, d->must_clear}].ports.push_back(port);
      }
    }
    int is_tcp = a_.label(), not_tcp = a_.label(), is_udp = a_.label(), is_icmp = a_.label();
    a_.op(kLdMem, kMemProto);
    a_.jump(kJeq, kProtoTcp, is_tcp, not_tcp);
    a_.bind(not_tcp);
    a_.jump(kJeq, kProtoUdp, is_udp, is_icmp);
    for (auto [label, set] : {std::pair{is_udp, &udp}, std::pair{is_icmp, &icmp}}) {
      a_.bind(label);
      if (label == is_udp) emit_spa(doors);
      if (precision_ == Precision::kAnyPort) {
        if (set->empty()) a_.jump_to(on_false);
        else a_.jump_to(accept_);
      } else {
        a_.op(kLdMem, kMemPort);
        emit_port_set(a_, *set, accept_, on_false);
      }
    }
    a_.bind(is_tcp);
    for (auto& [rule, ports] : tcp) {
      int next_rule = a_.label();
      auto [must_set, must_clear] = rule;
      if (must_set) {
        int set_ok = a_.label();
        a_.op(kLdMem, kMemFlags);
        a_.op(kAndK, must_set);
        a_.jump(kJeq, must_set, set_ok, next_rule);
        a_.bind(set_ok);
      }
      if (must_clear) {
        int clear_ok = a_.label();
        a_.op(kLdMem, kMemFlags);
        a_.jump(kJset, must_clear, next_rule, clear_ok);
        a_.bind(clear_ok);
      }
      if (precision_ == Precision::kAnyPort) {
        a_.jump_to(accept_);
      } else {
        a_.op(kLdMem, kMemPort);
        emit_port_set(a_, ports, accept_, next_rule);
      }
      a_.bind(next_rule);
    }
    a_.jump_to(on_false);
  }

  // UDP to an SPA door's port with a payload length fwknop produces (spa.h): accept; else fall through.
  void emit_spa(const std::vector<const Door*>& doors) {
    std::vector<uint32_t> ports;
    for (const Door* d : doors)
      if (d->is_spa()) ports.push_back(d->spa.port);
    std::sort(ports.begin(), ports.end());
    ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
    if (ports.empty()) return;
    int port_ok = a_.label(), not_spa = a_.label(), long_enough = a_.label();
    a_.op(kLdMem, kMemPort);
    emit_member(a_, ports, 0, ports.size(), port_ok, not_spa);
    a_.bind(port_ok);
    emit_mem_diff(kMemEnd, kMemL4);  // UDP header + payload
    a_.jump(kJge, 8 + kSpaMinPayload, long_enough, not_spa);
    a_.bind(long_enough);
    a_.jump(kJgt, 8 + kSpaMaxPayload, not_spa, accept_);
    a_.bind(not_spa);
  }

  // The packet is parsed: accept if some accepting group of its destination has a door that sees it.
  void emit_visibility(int family) {
    std::vector<std::vector<const Door*>> by_group(p_.targets.size() + 1);
    for (const Door& d : p_.doors) by_group[d.group].push_back(&d);
    if (precision_ != Precision::kExact) {
      std::vector<const Door*> all;
      for (const Door& d : p_.doors) all.push_back(&d);
      emit_steps(all, reject_);
      return;
    }
    for (size_t g = 0; g < by_group.size(); g++) {
      if (by_group[g].empty()) continue;
      std::vector<const Address*> addrs;
      bool any_destination = false;
      if (g == 0) {
        any_destination = (p_.flags & kFlagAllLocal) != 0;
        for (const Address& a : p_.locals)
          if (a.family == family) addrs.push_back(&a);
      } else if (p_.targets[g - 1].family == family) {
        addrs.push_back(&p_.targets[g - 1]);
      }
      if (!any_destination && addrs.empty()) continue;
      int next_group = a_.label();
      if (!any_destination) {
        int here = a_.label();
        emit_destination(family, addrs, here, next_group);
        a_.bind(here);
      }
      emit_steps(by_group[g], next_group);
      a_.bind(next_group);
    }
    a_.jump_to(reject_);
  }

  const Program& p_;
  Precision precision_;
  Assembler a_;
  int accept_ = -1, reject_ = -1, v4_ = -1, v6_ = -1;
};

}  // namespace

bool filter_layout_for_link(uint16_t link_type, FilterLayout* out) {
  switch (link_type) {
    case kLinkEthernet: *out = FilterLayout::kEthernet; return true;
    case kLinkLinuxSll: *out = FilterLayout::kLinuxSll; return true;
    case kLinkLinuxSll2: *out = FilterLayout::kLinuxSll2; return true;
    case kLinkRaw:
    case kLinkRawBsd12:
    case kLinkRawBsd14: *out = FilterLayout::kRaw; return true;
    case kLinkIpv4: *out = FilterLayout::kIpv4; return true;
    case kLinkIpv6: *out = FilterLayout::kIpv6; return true;
    default: return false;
  }
}

FilterBuild build_visibility_filter(const Program& program, FilterLayout layout) {
  FilterBuild out;
  for (Precision precision : {Precision::kExact, Precision::kAnyDestination, Precision::kAnyPort}) {
    out.code = FilterBuilder(program, precision).build(layout);
    out.coarse = precision != Precision::kExact;
    if (out.code.size() <= kFilterMaxInstructions) return out;
  }
  throw std::length_error("the kernel filter exceeds the cBPF instruction limit even without addresses and ports");
}

std::vector<sock_filter> build_fanout_filter() {
  // skb data starts at the network header; skb->protocol is in metadata. Hash the source address
  // (IPv6: the XOR of its four words), multiply by the golden ratio and fold, return it.
  Assembler a;
  int v4 = a.label(), not_v4 = a.label(), v6 = a.label(), mix = a.label(), other = a.label();
  a.op(kLdW, kAncProtocol);
  a.jump(kJeq, kEtherIpv4, v4, not_v4);
  a.bind(not_v4);
  a.jump(kJeq, kEtherIpv6, v6, other);
  a.bind(v4);
  a.op(kLdW, 12);
  a.jump_to(mix);
  a.bind(v6);
  a.op(kLdW, 8);
  for (uint32_t off : {12u, 16u, 20u}) {
    a.op(kTax);
    a.op(kLdW, off);
    a.op(kXorX);
  }
  a.bind(mix);
  a.op(kMulK, 0x9E3779B1u);
  a.op(kTax);
  a.op(kRshK, 16);
  a.op(kXorX);
  a.op(kRetA);
  a.bind(other);  // not IP (or VLAN-in-VLAN): never a knock, any socket will do
  a.op(kRetK, 0);
  return a.assemble();
}

std::vector<sock_filter> build_reject_filter() { return {sock_filter{kRetK, 0, 0, 0}}; }

}  // namespace knockd
