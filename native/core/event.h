// Step: native parse/match -> event batches. The fixed-size record every producer writes and
// src/match/events.ts decodes (layout: docs/MATCHER.md §7).
#pragma once
#include <cstddef>
#include <cstdint>

namespace knockd {

// kEventSpa: an authenticated SPA packet; count = its payload bytes, which follow in the next
// ceil(count / 40) records (raw bytes, zero-padded; docs/SPA.md §4). kEventCompleted of a derived door:
// count = the low 32 bits of the window it used (docs/MATCHER.md §7, §10), else 0.
enum EventKind : uint8_t { kEventStage = 1, kEventCompleted = 2, kEventFailed = 3, kEventSuppressed = 4, kEventError = 5, kEventSpa = 6 };
enum FailReason : uint8_t { kFailTimeout = 1, kFailWrongPort = 2, kFailEvicted = 3, kFailSpaAuth = 4 };

struct EventRecord {
  uint8_t kind;
  uint8_t reason;
  uint8_t family;
  uint8_t stage;
  uint16_t door;
  uint16_t shard;
  uint32_t generation;
  uint32_t count;
  int64_t time_us;
  uint8_t addr[16];
};

static_assert(sizeof(EventRecord) == 40, "event record is 40 bytes");
static_assert(offsetof(EventRecord, door) == 4, "door at 4");
static_assert(offsetof(EventRecord, generation) == 8, "generation at 8");
static_assert(offsetof(EventRecord, count) == 12, "count at 12");
static_assert(offsetof(EventRecord, time_us) == 16, "time at 16");
static_assert(offsetof(EventRecord, addr) == 24, "address at 24");

}  // namespace knockd
