// Node-facing live capture: ObjectWrap over knockd::Capture. Batches cross to JS through a
// TypedThreadSafeFunction with NonBlockingCall (a full queue counts a drop; capture never waits on JS);
// the TSFN is Unref'd so the daemon, not the addon, decides when the process ends. close() is
// explicit and idempotent; an env cleanup hook and the destructor are only backstops.
#pragma once
#include <napi.h>

#include <memory>

#include "capture.h"

namespace knockd {

void CallJsWithBatch(Napi::Env env, Napi::Function callback, std::nullptr_t* context, CaptureBatch* batch);

class Engine : public Napi::ObjectWrap<Engine>, public BatchSink {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;

  bool deliver(std::unique_ptr<CaptureBatch> batch) override;

 private:
  using Tsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, CaptureBatch, CallJsWithBatch>;

  Napi::Value JsLoad(const Napi::CallbackInfo& info);
  Napi::Value JsStats(const Napi::CallbackInfo& info);
  Napi::Value JsClose(const Napi::CallbackInfo& info);
  static Napi::Value JsCompileFilter(const Napi::CallbackInfo& info);
  static Napi::Value JsFanoutFilter(const Napi::CallbackInfo& info);
  static void CleanupHook(void* engine);
  void Close();

  napi_env env_ = nullptr;
  Tsfn tsfn_;
  std::unique_ptr<Capture> capture_;
  bool hooked_ = false;
  bool closed_ = false;
};

}  // namespace knockd
