// Node-facing synchronous matcher: ObjectWrap over knockd::Matcher with no socket and no thread, for
// tests, benchmarks and replay. JS shapes are declared in src/native.ts (NativeMatcherHandle).
#pragma once
#include <napi.h>

#include <memory>
#include <vector>

#include "matcher.h"

namespace knockd {

class NativeMatcher : public Napi::ObjectWrap<NativeMatcher> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NativeMatcher(const Napi::CallbackInfo& info);
  ~NativeMatcher() override;

 private:
  Napi::Value JsLoad(const Napi::CallbackInfo& info);
  Napi::Value JsFeed(const Napi::CallbackInfo& info);
  Napi::Value JsTick(const Napi::CallbackInfo& info);
  Napi::Value JsStats(const Napi::CallbackInfo& info);
  // close(): frees the tracking state at once instead of at garbage collection; idempotent
  Napi::Value JsClose(const Napi::CallbackInfo& info);
  void Release();
  void ReportMemory(size_t bytes);
  void RequireOpen(Napi::Env env) const;
  void RequireProgram(Napi::Env env) const;
  Napi::Value TakeEvents(Napi::Env env);

  Napi::Env env_;
  size_t reported_bytes_ = 0;        // external memory reported to V8 (the matcher's state_bytes())
  std::unique_ptr<Matcher> matcher_;  // null after close()
  std::vector<EventRecord> events_;  // reused across calls; copied out once per call
  std::vector<FrameView> frames_;    // reused across calls: one batch per feed()
};

}  // namespace knockd
