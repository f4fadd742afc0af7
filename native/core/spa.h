// Step: native match (SPA). The capture threads' check of fwknop SPA packets (docs/SPA.md §4; TS twin:
// src/match/spa-check.ts): only a payload whose appended HMAC verifies under an SPA door's key crosses to
// JS. One HMAC-SHA256 per candidate packet and door, with the key's pads precomputed (derive.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "derive.h"
#include "program.h"

namespace knockd {

// fwknopd's limits on the payload (MIN_SPA_DATA_SIZE, MAX_SPA_PACKET_LEN); the kernel filter admits the same.
constexpr uint32_t kSpaMinPayload = 140, kSpaMaxPayload = 1500;
// The digest as fwknop appends it: base64 of HMAC-SHA256 (32 bytes) with the '=' stripped.
constexpr size_t kSpaHmacB64Len = 43;

inline bool spa_candidate_length(uint32_t n) { return n >= kSpaMinPayload && n <= kSpaMaxPayload; }

// The payload (a candidate length) is not prefixed with the salt's base64 and its last 43 bytes are the
// base64 HMAC, under `key`, of "U2FsdGVkX1" ‖ the rest. Constant-time compare.
bool spa_authentic(const HmacSha256Key& key, const uint8_t* payload, size_t n);

constexpr int32_t kNoSpaDoor = INT32_MIN;
// The first SPA door (program order) on `port` in one of the accepting groups whose key authenticates the
// payload; -1 - (the first such door) when none does; kNoSpaDoor when no SPA door is on the port there.
int32_t spa_authentic_door(const Program& prog, const uint8_t* groups, size_t n_groups, uint16_t port,
                           const uint8_t* payload, size_t n);

}  // namespace knockd
