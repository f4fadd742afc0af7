#include "derive.h"

#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace knockd {

namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }
inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void compress_portable(uint32_t h[8], const uint8_t block[64]) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++) w[i] = load_be32(block + 4 * i);
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    hh = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
  h[5] += f;
  h[6] += g;
  h[7] += hh;
}

#if defined(__x86_64__)
// The same block function with the x86 SHA extensions (Intel since Goldmont/Ice Lake, AMD since Zen):
// about 4x the portable code, which is what lets one capture thread check over a million forged SPA
// packets a second (docs/SPA.md §7). State layout as the instructions want it: ABEF and CDGH.
__attribute__((target("sha,sse4.1,ssse3"))) void compress_sha_ni(uint32_t h[8], const uint8_t block[64]) {
  const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)), 0xB1);      // CDAB
  __m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4)), 0x1B);  // EFGH
  __m128i state0 = _mm_alignr_epi8(tmp, state1, 8);                                                   // ABEF
  state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                                        // CDGH
  const __m128i abef = state0, cdgh = state1;
  __m128i w[4];
  for (int i = 0; i < 4; i++) w[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16 * i)), byte_swap);
  // 16 groups of 4 rounds; w[g % 4] holds the schedule words of group g
#pragma GCC unroll 16
  for (int g = 0; g < 16; g++) {
    __m128i msg = _mm_add_epi32(w[g & 3], _mm_loadu_si128(reinterpret_cast<const __m128i*>(kK + 4 * g)));
    state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
    if (g >= 3 && g < 15) {  // the words of group g + 1
      w[(g + 1) & 3] = _mm_add_epi32(w[(g + 1) & 3], _mm_alignr_epi8(w[g & 3], w[(g - 1) & 3], 4));
      w[(g + 1) & 3] = _mm_sha256msg2_epu32(w[(g + 1) & 3], w[g & 3]);
    }
    state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(msg, 0x0E));
    if (g >= 1 && g < 13) w[(g - 1) & 3] = _mm_sha256msg1_epu32(w[(g - 1) & 3], w[g & 3]);
  }
  state0 = _mm_add_epi32(state0, abef);
  state1 = _mm_add_epi32(state1, cdgh);
  tmp = _mm_shuffle_epi32(state0, 0x1B);                                                              // FEBA
  state1 = _mm_shuffle_epi32(state1, 0xB1);                                                           // DCHG
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), _mm_blend_epi16(tmp, state1, 0xF0));               // DCBA
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h + 4), _mm_alignr_epi8(state1, tmp, 8));              // HGFE
}

bool cpu_has_sha_ni() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) return false;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_SHA);
}
const bool kHaveShaNi = cpu_has_sha_ni();
#else
constexpr bool kHaveShaNi = false;
#endif

bool use_hardware = kHaveShaNi;

inline void compress(uint32_t h[8], const uint8_t block[64]) {
#if defined(__x86_64__)
  if (use_hardware) return compress_sha_ni(h, block);
#endif
  compress_portable(h, block);
}

}  // namespace

bool sha256_hardware() { return use_hardware; }

bool sha256_set_hardware(bool on) {
  use_hardware = on && kHaveShaNi;
  return use_hardware;
}

Sha256::Sha256()
    : h{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}, buf{} {}

void Sha256::update(const uint8_t* data, size_t len) {
  total += len;
  while (len > 0) {
    size_t take = 64 - used < len ? 64 - used : len;
    std::memcpy(buf + used, data, take);
    used += take;
    data += take;
    len -= take;
    if (used == 64) {
      compress(h, buf);
      used = 0;
    }
  }
}

void Sha256::finish(uint8_t out[32]) {
  uint64_t bits = total * 8;
  uint8_t pad = 0x80;
  update(&pad, 1);
  uint8_t zero = 0;
  while (used != 56) update(&zero, 1);
  uint8_t len_be[8];
  for (int i = 0; i < 8; i++) len_be[i] = uint8_t(bits >> (56 - 8 * i));
  update(len_be, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = uint8_t(h[i] >> 24);
    out[4 * i + 1] = uint8_t(h[i] >> 16);
    out[4 * i + 2] = uint8_t(h[i] >> 8);
    out[4 * i + 3] = uint8_t(h[i]);
  }
}

void hmac_sha256(const uint8_t* key, size_t key_len, const uint8_t* msg, size_t msg_len, uint8_t out[32]) {
  uint8_t k[64] = {};
  if (key_len > 64) {
    Sha256 kh;
    kh.update(key, key_len);
    kh.finish(k);
  } else {
    std::memcpy(k, key, key_len);
  }
  uint8_t ipad[64], opad[64];
  for (int i = 0; i < 64; i++) {
    ipad[i] = k[i] ^ 0x36;
    opad[i] = k[i] ^ 0x5c;
  }
  uint8_t inner[32];
  Sha256 ih;
  ih.update(ipad, 64);
  ih.update(msg, msg_len);
  ih.finish(inner);
  Sha256 oh;
  oh.update(opad, 64);
  oh.update(inner, 32);
  oh.finish(out);
}

HmacSha256Key::HmacSha256Key(const uint8_t* key, size_t key_len) {
  uint8_t k[64] = {};
  if (key_len > 64) {
    Sha256 kh;
    kh.update(key, key_len);
    kh.finish(k);
  } else {
    std::memcpy(k, key, key_len);
  }
  uint8_t pad[64];
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  Sha256 inner;
  inner.update(pad, 64);
  std::memcpy(inner_, inner.h, sizeof inner_);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  Sha256 outer;
  outer.update(pad, 64);
  std::memcpy(outer_, outer.h, sizeof outer_);
}

void HmacSha256Key::mac(const uint8_t* msg, size_t msg_len, uint8_t out[32]) const { mac2(msg, msg_len, nullptr, 0, out); }

void HmacSha256Key::mac2(const uint8_t* a, size_t a_len, const uint8_t* b, size_t b_len, uint8_t out[32]) const {
  uint8_t inner_digest[32];
  Sha256 inner;
  std::memcpy(inner.h, inner_, sizeof inner_);
  inner.total = 64;
  inner.update(a, a_len);
  if (b_len > 0) inner.update(b, b_len);
  inner.finish(inner_digest);
  Sha256 outer;
  std::memcpy(outer.h, outer_, sizeof outer_);
  outer.total = 64;
  outer.update(inner_digest, 32);
  outer.finish(out);
}

void derivation_message(uint64_t window, uint8_t family, const uint8_t src[16], bool bind_source, uint8_t k,
                        uint8_t out[kDerivationMessageBytes]) {
  std::memset(out, 0, kDerivationMessageBytes);
  std::memcpy(out, "KFD1", 4);
  for (int i = 0; i < 8; i++) out[4 + i] = uint8_t(window >> (56 - 8 * i));
  if (bind_source) {
    out[12] = family;
    std::memcpy(out + 13, src, 16);
  }
  out[29] = k;
}

void derivation_block(const DerivedParams& p, uint64_t window, uint8_t family, const uint8_t src[16], uint8_t k,
                      uint8_t out[32]) {
  uint8_t msg[kDerivationMessageBytes];
  derivation_message(window, family, src, p.bind_source, k, msg);
  hmac_sha256(p.key, p.key_len, msg, sizeof msg, out);
}

uint32_t derived_step_from_block(const DerivedParams& p, const uint8_t block[32], unsigned i) {
  const unsigned j = (i & 3) * 8;
  uint32_t index = load_be32(block + j) % p.range_size;
  const uint8_t proto = p.protocols[load_be32(block + j + 4) % p.n_protocols];
  for (size_t r = 0; r < p.n_ranges; r++) {
    const uint32_t lo = p.ranges[r] & 0xffff, hi = p.ranges[r] >> 16;
    if (index <= hi - lo) return (lo + index) | (uint32_t(proto) << 16);
    index -= hi - lo + 1;
  }
  return 0;  // unreachable when range_size matches the ranges (the program decoder checks it)
}

uint32_t derived_step(const DerivedParams& p, uint64_t window, uint8_t family, const uint8_t src[16], unsigned i) {
  uint8_t block[32];
  derivation_block(p, window, family, src, uint8_t(i >> 2), block);
  return derived_step_from_block(p, block, i);
}

}  // namespace knockd
