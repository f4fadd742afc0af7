#include "spa.h"

#include <cstring>

namespace knockd {

namespace {

constexpr char kSaltedB64[] = "U2FsdGVkX1";  // "Salted__", which fwknop strips from the wire
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 32 bytes -> 43 base64 characters (no '=' padding).
void base64_digest(const uint8_t in[32], uint8_t out[kSpaHmacB64Len]) {
  size_t o = 0;
  for (size_t i = 0; i < 30; i += 3) {
    const uint32_t v = uint32_t(in[i]) << 16 | uint32_t(in[i + 1]) << 8 | in[i + 2];
    out[o++] = kB64[v >> 18];
    out[o++] = kB64[(v >> 12) & 63];
    out[o++] = kB64[(v >> 6) & 63];
    out[o++] = kB64[v & 63];
  }
  const uint32_t v = uint32_t(in[30]) << 16 | uint32_t(in[31]) << 8;
  out[o++] = kB64[v >> 18];
  out[o++] = kB64[(v >> 12) & 63];
  out[o++] = kB64[(v >> 6) & 63];
}

}  // namespace

bool spa_authentic(const HmacSha256Key& key, const uint8_t* payload, size_t n) {
  if (n < kSpaMinPayload || n > kSpaMaxPayload) return false;
  constexpr size_t kSaltLen = sizeof kSaltedB64 - 1;
  if (std::memcmp(payload, kSaltedB64, kSaltLen) == 0) return false;  // fwknopd: a replay with the prefix added
  uint8_t mac[32], expected[kSpaHmacB64Len];
  key.mac2(reinterpret_cast<const uint8_t*>(kSaltedB64), kSaltLen, payload, n - kSpaHmacB64Len, mac);
  base64_digest(mac, expected);
  uint8_t diff = 0;
  const uint8_t* given = payload + n - kSpaHmacB64Len;
  for (size_t i = 0; i < kSpaHmacB64Len; i++) diff |= uint8_t(expected[i] ^ given[i]);
  return diff == 0;
}

int32_t spa_authentic_door(const Program& prog, const uint8_t* groups, size_t n_groups, uint16_t port,
                           const uint8_t* payload, size_t n) {
  int32_t first = kNoSpaDoor;
  for (uint16_t door : prog.spa_doors) {
    const Door& d = prog.doors[door];
    if (d.spa.port != port) continue;
    bool visible = false;
    for (size_t i = 0; i < n_groups && !visible; i++) visible = groups[i] == d.group;
    if (!visible) continue;
    if (first == kNoSpaDoor) first = -1 - int32_t(door);
    if (spa_authentic(d.spa.key, payload, n)) return door;
  }
  return first;
}

}  // namespace knockd
