// Step: native match (derived doors). The expected knock for a source and time window, from a shared
// secret: HMAC-SHA256 as specified in docs/MATCHER.md §10. Self-contained (no OpenSSL) so the addon has
// no system library dependency.
#pragma once
#include <cstddef>
#include <cstdint>

namespace knockd {

struct Sha256 {
  uint32_t h[8];
  uint8_t buf[64];
  uint64_t total = 0;
  size_t used = 0;
  Sha256();
  void update(const uint8_t* data, size_t len);
  void finish(uint8_t out[32]);
};

// The SHA-256 block function: the x86 SHA extensions where the CPU has them (chosen at load), else
// portable C++. sha256_set_hardware(false) selects the portable one (the core test runs both); it returns
// whether the extensions are now in use.
bool sha256_hardware();
bool sha256_set_hardware(bool on);

void hmac_sha256(const uint8_t* key, size_t key_len, const uint8_t* msg, size_t msg_len, uint8_t out[32]);

// HMAC-SHA256 keyed once: the key's pad blocks are compressed at construction, so a MAC costs the
// compressions of the message alone (the matcher derives a step per knock on a derived door).
class HmacSha256Key {
 public:
  HmacSha256Key() = default;
  HmacSha256Key(const uint8_t* key, size_t key_len);
  void mac(const uint8_t* msg, size_t msg_len, uint8_t out[32]) const;
  // The MAC of the concatenation a ‖ b (SPA: a fixed prefix, then the packet), without copying.
  void mac2(const uint8_t* a, size_t a_len, const uint8_t* b, size_t b_len, uint8_t out[32]) const;

 private:
  uint32_t inner_[8] = {}, outer_[8] = {};
};

constexpr size_t kDerivationMessageBytes = 30;
// The message of derivation block k: "KFD1" ‖ u64be(window) ‖ u8(family) ‖ src16 ‖ u8(k), with family
// and source zero when the door is not bound to the source (docs/MATCHER.md §10).
void derivation_message(uint64_t window, uint8_t family, const uint8_t src[16], bool bind_source, uint8_t k,
                        uint8_t out[kDerivationMessageBytes]);

struct DerivedParams {
  const uint8_t* key;
  size_t key_len;
  const uint32_t* ranges;  // lo | hi << 16, sorted, disjoint
  size_t n_ranges;
  uint32_t range_size;     // number of ports in all ranges
  uint8_t protocols[2];    // 6 / 17 in list order
  uint8_t n_protocols;
  bool bind_source;
};

// Block k of the derivation for (window, family, src): 32 bytes.
void derivation_block(const DerivedParams& p, uint64_t window, uint8_t family, const uint8_t src[16], uint8_t k,
                      uint8_t out[32]);
// Step i as a program step word (port | proto << 16), given block (i >> 2).
uint32_t derived_step_from_block(const DerivedParams& p, const uint8_t block[32], unsigned i);
// Convenience: step i computed from scratch.
uint32_t derived_step(const DerivedParams& p, uint64_t window, uint8_t family, const uint8_t src[16], unsigned i);

}  // namespace knockd
