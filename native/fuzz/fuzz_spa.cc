// libFuzzer target for the capture threads' SPA check (spa.h): spa_authentic must agree with a plain
// reference (one-shot HMAC-SHA256 over "U2FsdGVkX1" + body, base64 without '=', byte compare) on any input,
// and must accept an input made authentic by appending its MAC. Input: [u8 mode][payload].
#include <cstdlib>
#include <cstring>
#include <string>

#include "derive.h"
#include "spa.h"

using namespace knockd;

namespace {

const uint8_t kKey[64] = {0x9f, 0x0d, 0x81, 0x72, 0x1f, 0x35, 0xbb, 0xdc, 0xab, 0x3f, 0x7f, 0x20, 0x02, 0x4c, 0x23, 0xc7,
                          0x6b, 0xc3, 0x5b, 0x27, 0x76, 0xcc, 0x94, 0x9b, 0x77, 0x93, 0x14, 0xcc, 0x36, 0x57, 0x3e, 0xb6,
                          0x87, 0xe5, 0x2c, 0xc7, 0x7e, 0x79, 0x1a, 0x49, 0xa7, 0xe0, 0xe6, 0x3a, 0x9a, 0x24, 0x37, 0x4d,
                          0xa0, 0x9d, 0xdf, 0x80, 0xa8, 0x32, 0x62, 0xe1, 0xce, 0xf5, 0x26, 0x50, 0x6a, 0x84, 0x11, 0x42};

std::string reference_mac_b64(const uint8_t* body, size_t n) {
  std::string msg = "U2FsdGVkX1";
  msg.append(reinterpret_cast<const char*>(body), n);
  uint8_t mac[32];
  hmac_sha256(kKey, sizeof kKey, reinterpret_cast<const uint8_t*>(msg.data()), msg.size(), mac);
  static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < 32; i += 3) {
    uint32_t v = uint32_t(mac[i]) << 16 | (i + 1 < 32 ? uint32_t(mac[i + 1]) << 8 : 0) | (i + 2 < 32 ? mac[i + 2] : 0);
    out += b64[v >> 18];
    out += b64[(v >> 12) & 63];
    if (i + 1 < 32) out += b64[(v >> 6) & 63];
    if (i + 2 < 32) out += b64[v & 63];
  }
  return out;  // 43 characters
}

bool reference(const uint8_t* p, size_t n) {
  if (n < kSpaMinPayload || n > kSpaMaxPayload) return false;
  if (std::memcmp(p, "U2FsdGVkX1", 10) == 0) return false;
  return reference_mac_b64(p, n - kSpaHmacB64Len) == std::string(reinterpret_cast<const char*>(p + n - kSpaHmacB64Len), kSpaHmacB64Len);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const HmacSha256Key key(kKey, sizeof kKey);
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  std::string payload(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode & 1) payload += reference_mac_b64(reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  const bool fast = spa_authentic(key, p, payload.size());
  if (fast != reference(p, payload.size())) std::abort();
  return 0;
}
