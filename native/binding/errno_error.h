// A JS Error for a failed system call, shaped like Node's ErrnoException: `code` (the errno's name) and
// `errno` (negative, as libuv reports it) beside the message.
#pragma once
#include <napi.h>

#include <cstring>
#include <string>

namespace knockd {

inline Napi::Error ErrnoError(Napi::Env env, int err, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  const char* name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, -err));
  return e;
}

}  // namespace knockd
