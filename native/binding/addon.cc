// Node-facing module init: exports the classes, sendEchoRequest and the contract src/native.ts checks.
#include <napi.h>

#include "contract.h"
#include "echo_request_binding.h"
#include "engine.h"
#include "native_matcher.h"
#include "nft_elements_binding.h"
#include "unix_datagram.h"

namespace knockd {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("CONTRACT", BindingContract(env));
  exports.Set("sendEchoRequest", Napi::Function::New<SendEchoRequest>(env, "sendEchoRequest"));
  exports.Set("Engine", Engine::Define(env));
  exports.Set("NativeMatcher", NativeMatcher::Define(env));
  exports.Set("NftElements", NftElements::Define(env));
  exports.Set("UnixDatagram", UnixDatagram::Define(env));
  return exports;
}

}  // namespace knockd

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return knockd::Init(env, exports); }

NODE_API_MODULE(knockd_fast, InitModule)
