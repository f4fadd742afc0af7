// The numbers and names both sides of the boundary must agree on, as one object (src/native.ts
// BindingContract): src/native.ts compares it with the TypeScript side's at load and refuses an addon
// built from other sources. Every value here is read from native/core, never written twice.
#pragma once
#include <napi.h>

namespace knockd {

Napi::Object BindingContract(Napi::Env env);

}  // namespace knockd
