// The one JS Error for a failed system call, shaped like Node's ErrnoException: `code` (the errno's name),
// `errno` (negative, as Node and libuv report it; `err` is the positive C errno), and `syscall` and
// `interface` when known.
#pragma once
#include <napi.h>

#include <cstring>
#include <string>

namespace knockd {

inline Napi::Error ErrnoError(Napi::Env env, int err, const std::string& message, const std::string& syscall = {},
                              const std::string& interface = {}) {
  Napi::Error e = Napi::Error::New(env, message);
  const char* name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, -err));
  if (!syscall.empty()) e.Set("syscall", Napi::String::New(env, syscall));
  if (!interface.empty()) e.Set("interface", Napi::String::New(env, interface));
  return e;
}

}  // namespace knockd
