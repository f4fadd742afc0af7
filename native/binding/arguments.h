// Argument readers shared by the Node-facing classes: a typed array of one element type, and a door
// program (src/config/program.ts) decoded and validated. Both throw TypeError naming what is wrong.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "program.h"

namespace knockd {

template <typename Array>
Array typed_arg(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type type, const char* what) {
  Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(info.Env(), what);
  }
  return v.As<Array>();
}

inline std::shared_ptr<const Program> program_arg(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    throw Napi::TypeError::New(env, "program must be a Uint32Array (src/config/program.ts compileProgram().words)");
  }
  Napi::Uint32Array words = value.As<Napi::Uint32Array>();
  std::string error;
  auto program = Program::decode(words.Data(), words.ElementLength(), &error);
  if (!program) throw Napi::TypeError::New(env, "invalid door program: " + error);
  return program;
}

}  // namespace knockd
