// Node-facing module init: exports the classes and the constants src/native.ts declares.
#include <napi.h>

#include "echo_request_binding.h"
#include "engine.h"
#include "event.h"
#include "packet.h"
#include "native_matcher.h"
#include "nft_elements_binding.h"
#include "spa.h"
#include "unix_datagram.h"

namespace knockd {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("EVENT_RECORD_SIZE", Napi::Number::New(env, sizeof(EventRecord)));
  exports.Set("PROTO_ICMP", Napi::Number::New(env, kProtoIcmp));
  exports.Set("sendEchoRequest", Napi::Function::New<SendEchoRequest>(env, "sendEchoRequest"));
  exports.Set("EVENT_KIND_SPA", Napi::Number::New(env, kEventSpa));
  exports.Set("FAIL_REASON_SPA_AUTH", Napi::Number::New(env, kFailSpaAuth));
  exports.Set("SPA_MIN_PAYLOAD", Napi::Number::New(env, kSpaMinPayload));
  exports.Set("SPA_MAX_PAYLOAD", Napi::Number::New(env, kSpaMaxPayload));
  exports.Set("STAT_COUNT", Napi::Number::New(env, kStatCount));
  exports.Set("Engine", Engine::Define(env));
  exports.Set("NativeMatcher", NativeMatcher::Define(env));
  exports.Set("NftElements", NftElements::Define(env));
  exports.Set("UnixDatagram", UnixDatagram::Define(env));
  return exports;
}

}  // namespace knockd

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return knockd::Init(env, exports); }

NODE_API_MODULE(knockd_fast, InitModule)
