// SendEchoRequest: see echo_request_binding.h. Validates the arguments (TS passes parsed addresses) and
// turns a failed call into an Error with code, errno and syscall.
#include "echo_request_binding.h"

#include <cstring>
#include <string>

#include "echo_request.h"
#include "errno_error.h"

namespace knockd {
namespace {

const uint8_t* address_bytes(const Napi::Value& v) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || v.As<Napi::Uint8Array>().ByteLength() != 16) {
    return nullptr;
  }
  return v.As<Napi::Uint8Array>().Data();
}

}  // namespace

Napi::Value SendEchoRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "sendEchoRequest(family 4|6, destination: 16-byte Uint8Array, source: 16-byte Uint8Array | null, payloadBytes 0..65535)";
  if (info.Length() < 4 || !info[0].IsNumber() || !info[3].IsNumber()) throw Napi::TypeError::New(env, usage);
  const uint32_t family = info[0].As<Napi::Number>().Uint32Value();
  const double payload = info[3].As<Napi::Number>().DoubleValue();
  const uint8_t* dst = address_bytes(info[1]);
  const uint8_t* src = info[2].IsNull() ? nullptr : address_bytes(info[2]);
  if ((family != 4 && family != 6) || !dst || (!info[2].IsNull() && !src) || !(payload >= 0 && payload <= 65535) || payload != double(uint32_t(payload))) {
    throw Napi::TypeError::New(env, usage);
  }
  const EchoRequestResult r = send_echo_request(uint8_t(family), dst, src, uint16_t(payload));
  if (r.error != 0) {
    Napi::Error e = ErrnoError(env, r.error, std::string(r.syscall) + ": " + std::strerror(r.error));
    e.Set("syscall", Napi::String::New(env, r.syscall));
    throw e;
  }
  return env.Undefined();
}

}  // namespace knockd
