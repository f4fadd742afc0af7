// Shared helpers for the core tests: a CHECK that counts failures, program words built like
// src/config/program.ts does, and frame builders for Ethernet / IPv4 / IPv6 / TCP / UDP.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "matcher.h"
#include "program.h"

namespace test {

inline int failures = 0;
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      test::failures++;                                                    \
    }                                                                      \
  } while (0)

struct DoorSpec {
  std::vector<uint32_t> steps;  // knockd::step_word(proto, port)
  int32_t seq_timeout = 5;
  uint32_t group = 0;
  uint8_t must_set = 0, must_clear = 0;
  uint32_t options = 0;
  uint32_t fingerprint = 0;  // 0: derived from the door index
};

inline uint32_t tcp(uint16_t port) { return knockd::step_word(knockd::kProtoTcp, port); }
inline uint32_t udp(uint16_t port) { return knockd::step_word(knockd::kProtoUdp, port); }

struct Addr {
  uint8_t family;
  uint8_t bytes[16];
};

inline Addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) { return Addr{4, {a, b, c, d}}; }
inline Addr v6(std::initializer_list<uint8_t> bytes) {
  Addr out{6, {}};
  size_t i = 0;
  for (uint8_t b : bytes) out.bytes[i++] = b;
  return out;
}

struct ProgramSpec {
  uint32_t flags = knockd::kFlagStageEvents;
  uint32_t max_tracked = 1024;
  uint32_t budget = 0;
  uint32_t generation = 1;
  std::vector<Addr> locals;
  std::vector<Addr> targets;
  std::vector<DoorSpec> doors;
};

inline void push_address(std::vector<uint32_t>& w, const Addr& a) {
  w.push_back(a.family);
  for (int i = 0; i < 4; i++) {
    const uint8_t* b = a.bytes + 4 * i;
    w.push_back(uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]);
  }
}

inline std::vector<uint32_t> program_words(const ProgramSpec& s) {
  std::vector<uint32_t> w(knockd::kHeaderWords, 0);
  w[0] = knockd::kProgramMagic;
  w[1] = knockd::kProgramVersion;
  w[2] = s.generation;
  w[3] = s.flags;
  w[4] = s.max_tracked;
  w[5] = s.budget;
  w[6] = uint32_t(s.locals.size());
  w[7] = uint32_t(s.targets.size());
  w[8] = uint32_t(s.doors.size());
  for (const Addr& a : s.locals) push_address(w, a);
  for (const Addr& a : s.targets) push_address(w, a);
  for (size_t i = 0; i < s.doors.size(); i++) {
    const DoorSpec& d = s.doors[i];
    w.push_back(uint32_t(7 + d.steps.size()));
    w.push_back(d.group);
    w.push_back(d.fingerprint ? d.fingerprint : uint32_t(0x1000 + i));
    w.push_back(uint32_t(d.seq_timeout));
    w.push_back(uint32_t(d.must_set) | uint32_t(d.must_clear) << 8);
    w.push_back(d.options);
    w.push_back(uint32_t(d.steps.size()));
    for (uint32_t st : d.steps) w.push_back(st);
  }
  w[9] = uint32_t(w.size());
  return w;
}

inline std::shared_ptr<const knockd::Program> make_program(const ProgramSpec& s) {
  std::vector<uint32_t> w = program_words(s);
  std::string error;
  auto p = knockd::Program::decode(w.data(), w.size(), &error);
  if (!p) std::fprintf(stderr, "program rejected: %s\n", error.c_str());
  return p;
}

// --- frames ---

constexpr uint8_t kSyn = 2, kAck = 16;

inline void put16(std::vector<uint8_t>& f, size_t at, uint16_t v) {
  f[at] = uint8_t(v >> 8);
  f[at + 1] = uint8_t(v);
}

// L4 header: TCP (20 bytes) or UDP (8 bytes) to `dport`.
inline std::vector<uint8_t> l4(uint8_t proto, uint16_t dport, uint8_t tcp_flags) {
  std::vector<uint8_t> h(proto == knockd::kProtoTcp ? 20 : 8, 0);
  put16(h, 0, 40000);
  put16(h, 2, dport);
  if (proto == knockd::kProtoTcp) {
    h[12] = 5 << 4;
    h[13] = tcp_flags;
  } else {
    put16(h, 4, 8);
  }
  return h;
}

inline std::vector<uint8_t> ipv4(const Addr& src, const Addr& dst, uint8_t proto, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f(20, 0);
  f[0] = 0x45;
  put16(f, 2, uint16_t(20 + payload.size()));
  f[8] = 64;
  f[9] = proto;
  std::memcpy(&f[12], src.bytes, 4);
  std::memcpy(&f[16], dst.bytes, 4);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

// IPv6 with `ext` (already encoded extension headers) between the fixed header and the payload.
inline std::vector<uint8_t> ipv6(const Addr& src, const Addr& dst, uint8_t next, const std::vector<uint8_t>& ext_and_payload) {
  std::vector<uint8_t> f(40, 0);
  f[0] = 0x60;
  put16(f, 4, uint16_t(ext_and_payload.size()));
  f[6] = next;
  f[7] = 64;
  std::memcpy(&f[8], src.bytes, 16);
  std::memcpy(&f[24], dst.bytes, 16);
  f.insert(f.end(), ext_and_payload.begin(), ext_and_payload.end());
  return f;
}

inline std::vector<uint8_t> ethernet(uint16_t ethertype, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f(14, 0);
  f[0] = 2;
  f[6] = 2;
  put16(f, 12, ethertype);
  f.insert(f.end(), payload.begin(), payload.end());
  return f;
}

// An Ethernet frame carrying a knock from src to dst.
inline std::vector<uint8_t> knock(const Addr& src, const Addr& dst, uint32_t step, uint8_t tcp_flags = kSyn) {
  uint8_t proto = uint8_t(step >> 16);
  auto payload = l4(proto, uint16_t(step), tcp_flags);
  if (src.family == 4) return ethernet(0x0800, ipv4(src, dst, proto, payload));
  return ethernet(0x86DD, ipv6(src, dst, proto, payload));
}

}  // namespace test
