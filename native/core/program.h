// The compiled door program (layout: docs/MATCHER.md §6), decoded once per load into an immutable
// structure shared by the matcher shards and the kernel filter builder. Native checks lengths and
// indices only: the TS compiler (src/program.ts) validated the meaning.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace knockd {

constexpr uint32_t kProgramMagic = 0x3150464b;
constexpr uint32_t kProgramVersion = 1;
constexpr uint32_t kFlagStageEvents = 1, kFlagAllLocal = 2, kFlagIgnoreIpv6 = 4;
constexpr uint32_t kOptAllowDuplicates = 1, kOptDerived = 2;
constexpr size_t kMaxSteps = 32, kMaxCohort = 8;

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
  std::vector<uint32_t> steps;  // port | proto << 16
};

struct Program {
  uint32_t generation = 0;
  uint32_t flags = 0;
  uint32_t max_tracked = 1;
  uint32_t event_budget = 0;
  std::vector<Address> locals;
  std::vector<Address> targets;
  std::vector<Door> doors;

  // Returns nullptr and sets *error when the words are not a well-formed program.
  static std::shared_ptr<const Program> decode(const uint32_t* words, size_t n, std::string* error);
};

}  // namespace knockd
