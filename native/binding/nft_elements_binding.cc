// NftElements: see nft_elements_binding.h.
#include "nft_elements_binding.h"

#include <cmath>
#include <vector>

#include "errno_error.h"

namespace knockd {

namespace {

// nft's family names, as src/config/parse.ts accepts them for NftSet
uint8_t nf_family(const std::string& name) {
  if (name == "inet") return 1;
  if (name == "ip") return 2;
  if (name == "arp") return 3;
  if (name == "netdev") return 5;
  if (name == "bridge") return 7;
  if (name == "ip6") return 10;
  return 0;
}

std::string string_field(const Napi::Object& o, const char* name) {
  Napi::Value v = o.Get(name);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("refresh(sets): ") + name + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// One element of `sets`: { family, table, set, addresses: Uint8Array (4 or 16 bytes each), timeoutsMs: Float64Array }
NftSetElements set_elements(Napi::Env env, const Napi::Value& value) {
  if (!value.IsObject()) throw Napi::TypeError::New(env, "refresh(sets): each set must be an object");
  const Napi::Object o = value.As<Napi::Object>();
  NftSetElements s;
  const std::string family = string_field(o, "family");
  s.nf_family = nf_family(family);
  if (s.nf_family == 0) throw Napi::TypeError::New(env, "refresh(sets): unknown nft family " + family);
  s.table = string_field(o, "table");
  s.set = string_field(o, "set");
  const Napi::Value addresses = o.Get("addresses");
  const Napi::Value timeouts = o.Get("timeoutsMs");
  if (!addresses.IsTypedArray() || addresses.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
      !timeouts.IsTypedArray() || timeouts.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw Napi::TypeError::New(env, "refresh(sets): addresses must be a Uint8Array and timeoutsMs a Float64Array");
  }
  const auto bytes = addresses.As<Napi::Uint8Array>();
  const auto ms = timeouts.As<Napi::Float64Array>();
  const size_t n = ms.ElementLength();
  if (n == 0 || (bytes.ByteLength() != n * 4 && bytes.ByteLength() != n * 16)) {
    throw Napi::RangeError::New(env, "refresh(sets): addresses must hold 4 or 16 bytes for each of the timeouts");
  }
  s.addr_len = uint8_t(bytes.ByteLength() / n);
  s.addresses.assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
  s.timeouts_ms.reserve(n);
  for (size_t i = 0; i < n; i++) {
    const double t = ms[i];
    if (!(t >= 1 && t <= 9.007199254740991e15) || std::floor(t) != t) {
      throw Napi::RangeError::New(env, "refresh(sets): timeouts must be whole milliseconds >= 1");
    }
    s.timeouts_ms.push_back(uint64_t(t));
  }
  return s;
}

}  // namespace

Napi::Function NftElements::Define(Napi::Env env) {
  return DefineClass(env, "NftElements",
                     {InstanceMethod<&NftElements::JsRefresh>("refresh"), InstanceMethod<&NftElements::JsClose>("close")});
}

NftElements::NftElements(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftElements>(info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) throw Napi::TypeError::New(env, "new NftElements(netnsPath): netnsPath must be a string");
    netns_path_ = info[0].As<Napi::String>().Utf8Value();
  }
  const NftResult opened = writer_.open(netns_path_);
  if (opened.error != 0) throw ErrnoError(env, opened.error, opened.message);
}

Napi::Value NftElements::JsRefresh(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "refresh(sets): sets must be an array");
  if (closed_) throw Napi::Error::New(env, "refresh(sets): the netlink writer is closed");
  const Napi::Array array = info[0].As<Napi::Array>();
  std::vector<NftSetElements> sets;
  sets.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); i++) sets.push_back(set_elements(env, array.Get(i)));
  // a socket closed by a failed transaction is opened again for the next one
  NftResult result;
  if (!writer_.is_open()) result = writer_.open(netns_path_);
  if (result.error == 0) result = writer_.refresh(sets);
  if (result.error != 0) throw ErrnoError(env, result.error, result.message);
  return env.Undefined();
}

Napi::Value NftElements::JsClose(const Napi::CallbackInfo& info) {
  closed_ = true;
  writer_.close();
  return info.Env().Undefined();
}

}  // namespace knockd
