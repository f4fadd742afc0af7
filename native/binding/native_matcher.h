// Node-facing synchronous matcher: ObjectWrap over knockd::Matcher with no socket and no thread, for
// tests, benchmarks and replay. JS shapes are declared in src/native.ts (NativeMatcherHandle).
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "matcher.h"

namespace knockd {

// A Uint32Array argument decoded as a door program; TypeError naming what is wrong otherwise.
std::shared_ptr<const Program> program_arg(const Napi::Value& value);

class NativeMatcher : public Napi::ObjectWrap<NativeMatcher> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NativeMatcher(const Napi::CallbackInfo& info);

 private:
  Napi::Value JsLoad(const Napi::CallbackInfo& info);
  Napi::Value JsFeed(const Napi::CallbackInfo& info);
  Napi::Value JsTick(const Napi::CallbackInfo& info);
  Napi::Value JsStats(const Napi::CallbackInfo& info);
  void RequireProgram(Napi::Env env) const;
  Napi::Value TakeEvents(Napi::Env env);

  std::unique_ptr<Matcher> matcher_;
  std::vector<EventRecord> events_;  // reused across calls; copied out once per call
  std::vector<FrameView> frames_;    // reused across calls: one batch per feed()
};

}  // namespace knockd
