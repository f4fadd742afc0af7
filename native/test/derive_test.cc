// SHA-256 / HMAC-SHA256 against published vectors, and the derivation against vectors computed by
// src/match/derive.ts (node:crypto), so both implementations of docs/MATCHER.md §10 agree.
#include "derive.h"

#include <cstdio>
#include <cstring>

using namespace knockd;

static int failures = 0;
#define CHECK(cond)                                               \
  do {                                                            \
    if (!(cond)) {                                                \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      failures++;                                                 \
    }                                                             \
  } while (0)

static void hex(const uint8_t* b, size_t n, char* out) {
  for (size_t i = 0; i < n; i++) std::snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static void vectors() {
  uint8_t out[32];
  char text[65];
  Sha256 s;
  s.update(reinterpret_cast<const uint8_t*>("abc"), 3);
  s.finish(out);
  hex(out, 32, text);
  CHECK(std::strcmp(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);

  // RFC 4231 test case 2
  const char* key = "Jefe";
  const char* msg = "what do ya want for nothing?";
  hmac_sha256(reinterpret_cast<const uint8_t*>(key), 4, reinterpret_cast<const uint8_t*>(msg), std::strlen(msg), out);
  hex(out, 32, text);
  CHECK(std::strcmp(text, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") == 0);

  // RFC 4231 test case 6: a key longer than the block size is hashed first
  uint8_t long_key[131];
  std::memset(long_key, 0xaa, sizeof long_key);
  const char* msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  hmac_sha256(long_key, sizeof long_key, reinterpret_cast<const uint8_t*>(msg6), std::strlen(msg6), out);
  hex(out, 32, text);
  CHECK(std::strcmp(text, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54") == 0);

  // The keyed form (pad blocks precomputed) gives the same MACs, for short and long keys and messages.
  HmacSha256Key jefe(reinterpret_cast<const uint8_t*>(key), 4);
  jefe.mac(reinterpret_cast<const uint8_t*>(msg), std::strlen(msg), out);
  hex(out, 32, text);
  CHECK(std::strcmp(text, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") == 0);
  HmacSha256Key long_keyed(long_key, sizeof long_key);
  long_keyed.mac(reinterpret_cast<const uint8_t*>(msg6), std::strlen(msg6), out);
  hex(out, 32, text);
  CHECK(std::strcmp(text, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54") == 0);

  uint8_t k[32];
  for (int i = 0; i < 32; i++) k[i] = uint8_t(i * 7 + 1);
  const uint32_t ranges[] = {1000u | (1009u << 16), 40000u | (49999u << 16)};
  DerivedParams p{k, 32, ranges, 2, 10 + 10000, {6, 17}, 2, true};
  uint8_t src[16] = {198, 51, 100, 1};
  const uint32_t bound[] = {441665, 1157599, 435078, 1155365, 1160739, 1157452};
  for (unsigned i = 0; i < 6; i++) CHECK(derived_step(p, 58000000, 4, src, i) == bound[i]);
  p.bind_source = false;
  const uint32_t unbound[] = {1155157, 1155874, 435789, 1161422, 1154258, 1163502};
  for (unsigned i = 0; i < 6; i++) CHECK(derived_step(p, 1, 6, src, i) == unbound[i]);
}

// Messages of every length 0..300 (every padding case, several blocks) hash alike with either block function.
static void both_block_functions_agree() {
  uint8_t msg[300];
  for (size_t i = 0; i < sizeof msg; i++) msg[i] = uint8_t(i * 131 + 17);
  for (size_t n = 0; n <= sizeof msg; n++) {
    uint8_t a[32], b[32];
    sha256_set_hardware(true);
    hmac_sha256(msg, n % 80, msg, n, a);
    sha256_set_hardware(false);
    hmac_sha256(msg, n % 80, msg, n, b);
    CHECK(std::memcmp(a, b, 32) == 0);
  }
}

int main() {
  const bool hardware = sha256_set_hardware(true);
  vectors();
  if (hardware) {
    std::printf("derive_test: the SHA extensions are in use; the vectors again with the portable code\n");
    sha256_set_hardware(false);
    vectors();
    both_block_functions_agree();
    sha256_set_hardware(true);
  }
  if (failures) std::fprintf(stderr, "derive_test: %d failure(s)\n", failures);
  else std::printf("derive_test: ok\n");
  return failures ? 1 : 0;
}
