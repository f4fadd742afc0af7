// sendEchoRequest(family, destination, source | null, payloadBytes): one ICMP echo request for the knock
// client (native/core/echo_request.h). JS shape: src/native.ts Binding.sendEchoRequest.
#pragma once
#include <napi.h>

namespace knockd {

Napi::Value SendEchoRequest(const Napi::CallbackInfo& info);

}  // namespace knockd
