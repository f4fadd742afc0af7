// NftElements: the JS face of native/core/nft_elements.h. `refresh(sets)` runs one netlink transaction
// synchronously: the kernel answers within the send, in ~0.1 ms for tens of elements, so a worker thread
// would only add two thread hops (and, on a loaded host, two scheduler waits) to every grant.
// JS shape: src/native.ts NftElementsHandle.
#pragma once
#include <napi.h>

#include <string>

#include "nft_elements.h"

namespace knockd {

class NftElements : public Napi::ObjectWrap<NftElements> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NftElements(const Napi::CallbackInfo& info);

 private:
  Napi::Value JsRefresh(const Napi::CallbackInfo& info);
  Napi::Value JsClose(const Napi::CallbackInfo& info);

  std::string netns_path_;
  NftElementWriter writer_;
  bool closed_ = false;
};

}  // namespace knockd
