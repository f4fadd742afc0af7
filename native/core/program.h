// The compiled door program (layout: docs/MATCHER.md §6), decoded once per load into an immutable
// structure shared by the matcher shards and the kernel filter builder. Native checks lengths and
// indices only: the TS compiler (src/config/program.ts) validated the meaning.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "derive.h"
#include "packet.h"

namespace knockd {

constexpr uint32_t kProgramMagic = 0x3150464b;
constexpr uint32_t kProgramVersion = 1;
constexpr uint32_t kFlagStageEvents = 1, kFlagAllLocal = 2, kFlagIgnoreIpv6 = 4;
constexpr uint32_t kOptAllowDuplicates = 1, kOptDerived = 2, kOptSpa = 4;
constexpr size_t kSpaWords = 2;  // port | proto << 16, HMAC key bytes; then the key (docs/SPA.md §4)
constexpr size_t kMaxSteps = 32, kMaxCohort = 8;
constexpr size_t kHeaderWords = 16, kAddressWords = 5, kDoorHeaderWords = 7;
// What each header word holds (src/config/program.ts Header); the rest of the 16 are reserved.
enum HeaderWord : size_t {
  kHeaderMagic,
  kHeaderVersion,
  kHeaderGeneration,
  kHeaderFlags,
  kHeaderMaxTracked,
  kHeaderEventBudget,
  kHeaderLocals,
  kHeaderTargets,
  kHeaderDoors,
  kHeaderTotalWords,
};
constexpr size_t kDerivedWords = 4;  // timeStep, protocols, bindSource, keyBytes (MATCHER.md §10)
// Limits of the fixed-size event record and matcher record (door is a u16, group a u8).
constexpr size_t kMaxDoors = 65535, kMaxTargets = 255;
constexpr uint8_t kProtoTcp = 6, kProtoUdp = 17;  // and kProtoIcmp (packet.h): an echo request, port = payload bytes

// A step as the program stores it: port | proto << 16.
constexpr uint32_t step_word(uint8_t proto, uint16_t port) { return uint32_t(port) | uint32_t(proto) << 16; }
// The plane of Program::step_bits that a step protocol uses.
constexpr size_t step_plane(uint8_t proto) { return proto == kProtoTcp ? 0 : proto == kProtoUdp ? 1 : 2; }
constexpr size_t kStepPlanes = 3;

struct Address {
  uint8_t family;  // 4 or 6
  uint8_t bytes[16];
};

struct Door {
  uint32_t group;  // 0 = local addresses, k = targets[k-1]
  uint32_t fingerprint;
  int32_t seq_timeout;  // seconds
  uint8_t must_set, must_clear;
  uint32_t options;
  std::vector<uint32_t> steps;  // port | proto << 16 (empty for a derived door)
  // Derived at decode time.
  uint32_t length;     // steps of a knock: steps.size(), or a derived door's Sequence_Length
  int64_t timeout_us;  // seq_timeout * 1e6
  uint32_t cohort;     // index into Program::cohorts
  uint8_t member;      // position within that cohort

  // A derived door (options & kOptDerived, MATCHER.md §10): its steps are computed per source and window.
  struct Derived {
    int64_t time_step_us;
    uint8_t proto_mask;  // 1 tcp, 2 udp
    bool bind_source;
    HmacSha256Key key;
    std::vector<uint32_t> ranges;        // lo | hi << 16, sorted, disjoint
    std::vector<uint32_t> ports_before;  // ports in the ranges before range i
    uint32_t range_size;                 // R: ports in all ranges
  } derived{};

  // An SPA door (options & kOptSpa): no steps; the SPA step checks packets to its UDP port.
  struct Spa {
    uint16_t port;
    HmacSha256Key key;
  } spa{};

  bool is_derived() const { return options & kOptDerived; }
  bool is_spa() const { return options & kOptSpa; }
  bool flags_ok(uint8_t proto, uint8_t tcp_flags) const {
    return proto != kProtoTcp || ((tcp_flags & must_set) == must_set && (tcp_flags & must_clear) == 0);
  }
  // Derived door: (proto, port) is in its protocols × ranges and the flags pass.
  bool derived_sees(uint8_t proto, uint16_t port, uint8_t tcp_flags) const;
  // Derived door: step i (port | proto << 16) of `src` in `window`.
  uint32_t derived_step(int64_t window, uint8_t family, const uint8_t src[16], unsigned i) const;
};

// The doors (config order) of one group whose first step is the same (MATCHER.md §4).
struct Cohort {
  uint32_t group;
  uint32_t first_step;
  uint8_t size;
  uint16_t doors[kMaxCohort];
};

// (group, step) -> a door of that group with the step somewhere in its sequence; sorted by key.
struct StepUse {
  uint64_t key;  // group << 32 | step
  uint16_t door;
};

struct Program {
  uint32_t generation = 0;
  uint32_t flags = 0;
  uint32_t max_tracked = 1;
  uint32_t event_budget = 0;
  std::vector<Address> locals;
  std::vector<Address> targets;
  std::vector<Door> doors;
  std::vector<Cohort> cohorts;
  std::vector<uint64_t> cohort_keys;  // sorted group << 32 | first_step, parallel to cohort_by_key
  std::vector<uint32_t> cohort_by_key;
  std::vector<StepUse> step_uses;
  std::vector<uint64_t> step_bits;  // bit step_plane(proto) << 16 | port: some door uses that step
  std::vector<std::vector<uint16_t>> derived_by_group;  // group -> its derived doors in program order
  bool has_derived = false;
  std::vector<uint16_t> spa_doors;  // program order

  static uint64_t group_step_key(uint32_t group, uint32_t step) { return uint64_t(group) << 32 | step; }

  // The cohort of `group` whose first step is `step`, or nullptr (derived doors have no first step).
  const Cohort* find_cohort(uint32_t group, uint32_t step) const;
  // Whether some door of `group` has `step` in its sequence and accepts these TCP flags.
  bool group_sees(uint32_t group, uint32_t step, uint8_t proto, uint8_t tcp_flags) const;
  bool any_door_uses(uint8_t proto, uint16_t port) const {
    size_t bit = step_plane(proto) << 16 | port;
    return (step_bits[bit >> 6] >> (bit & 63)) & 1;
  }

  // Returns nullptr and sets *error when the words are not a well-formed program.
  static std::shared_ptr<const Program> decode(const uint32_t* words, size_t n, std::string* error);
};

}  // namespace knockd
