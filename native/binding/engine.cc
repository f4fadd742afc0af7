// Engine: see engine.h. JS shapes are declared in src/native.ts (EngineHandle, EngineOptions).
#include "engine.h"

#include "arguments.h"
#include "errno_error.h"

#include <cstring>
#include <string>

namespace knockd {
namespace {

constexpr size_t kTsfnQueue = 1024;  // batches waiting for the JS thread before a flush counts a drop

uint32_t uint_option(const Napi::Object& options, const char* name, uint32_t fallback) {
  Napi::Value v = options.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(options.Env(), std::string("option ") + name + " must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

Napi::Uint8Array filter_bytes(Napi::Env env, const std::vector<sock_filter>& code) {
  Napi::Uint8Array out = Napi::Uint8Array::New(env, code.size() * 8);
  for (size_t i = 0; i < code.size(); i++) {  // little-endian {u16 code, u8 jt, u8 jf, u32 k}, as in memory
    std::memcpy(out.Data() + 8 * i, &code[i].code, 2);
    out[8 * i + 2] = code[i].jt;
    out[8 * i + 3] = code[i].jf;
    std::memcpy(out.Data() + 8 * i + 4, &code[i].k, 4);
  }
  return out;
}

template <typename ArrayT, typename T>
ArrayT copy_array(Napi::Env env, const std::vector<T>& v) {
  ArrayT out = ArrayT::New(env, v.size());
  if (!v.empty()) std::memcpy(out.Data(), v.data(), v.size() * sizeof(T));
  return out;
}

}  // namespace

void CallJsWithBatch(Napi::Env env, Napi::Function callback, std::nullptr_t*, CaptureBatch* raw) {
  std::unique_ptr<CaptureBatch> batch(raw);
  if (env == nullptr || callback.IsEmpty()) return;  // teardown: the batch is only freed
  Napi::Value events = env.Null(), frames = env.Null();
  if (!batch->events.empty()) {
    Napi::Uint8Array bytes = Napi::Uint8Array::New(env, batch->events.size() * sizeof(EventRecord));
    std::memcpy(bytes.Data(), batch->events.data(), bytes.ByteLength());
    events = bytes;
  }
  if (!batch->frame_ts_us.empty()) {
    Napi::Object f = Napi::Object::New(env);
    f.Set("data", copy_array<Napi::Uint8Array>(env, batch->frame_bytes));
    f.Set("offsets", copy_array<Napi::Uint32Array>(env, batch->frame_offsets));
    f.Set("timestampsUs", copy_array<Napi::Float64Array>(env, batch->frame_ts_us));
    f.Set("linkTypes", copy_array<Napi::Uint16Array>(env, batch->frame_links));
    frames = f;
  }
  try {
    callback.Call({Napi::Number::New(env, batch->shard), events, frames});
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();  // reported as an uncaught exception by Node
  }
}

Napi::Function Engine::Define(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {
                         InstanceMethod<&Engine::JsLoad>("load"),
                         InstanceMethod<&Engine::JsStats>("stats"),
                         InstanceMethod<&Engine::JsClose>("close"),
                         StaticMethod<&Engine::JsCompileFilter>("compileFilter"),
                         StaticMethod<&Engine::JsFanoutFilter>("fanoutFilter"),
                     });
}

// new Engine(options, program, onBatch(shard, events | null, frames | null))
Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "new Engine(options, program, onBatch) expects an object, a Uint32Array and a function");
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  CaptureOptions options;
  Napi::Value ifs = opts.Get("interfaces");
  if (!ifs.IsArray()) throw Napi::TypeError::New(env, "options.interfaces must be an array of interface names");
  Napi::Array list = ifs.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value name = list.Get(i);
    if (!name.IsString()) throw Napi::TypeError::New(env, "options.interfaces must be an array of interface names");
    options.interfaces.push_back(name.As<Napi::String>().Utf8Value());
  }
  options.threads = uint_option(opts, "threads", 1);
  options.block_bytes = uint_option(opts, "blockBytes", options.block_bytes);
  options.block_count = uint_option(opts, "blockCount", options.block_count);
  options.retire_ms = uint_option(opts, "retireMs", options.retire_ms);
  options.flush_records = uint_option(opts, "flushRecords", options.flush_records);
  options.flush_us = uint_option(opts, "flushUs", options.flush_us);
  options.tick_ms = uint_option(opts, "tickMs", options.tick_ms);
  options.interface_check_ms = uint_option(opts, "interfaceCheckMs", options.interface_check_ms);
  options.forward_frames = opts.Get("forwardFrames").ToBoolean();
  auto program = program_arg(info[1]);

  tsfn_ = Tsfn::New(env, info[2].As<Napi::Function>(), "knockd-fast capture", kTsfnQueue, 1);
  tsfn_.Unref(env);
  try {
    capture_ = std::make_unique<Capture>(options, std::move(program), this);
  } catch (const CaptureError& e) {
    tsfn_.Release();
    throw ErrnoError(env, e.err(), e.what(), e.syscall(), e.interface());
  } catch (const std::exception& e) {
    tsfn_.Release();
    throw Napi::Error::New(env, e.what());
  }
  napi_add_env_cleanup_hook(env, CleanupHook, this);
  hooked_ = true;
}

Engine::~Engine() { Close(); }

void Engine::CleanupHook(void* engine) {
  auto* self = static_cast<Engine*>(engine);
  self->hooked_ = false;  // being run: nothing to remove
  self->Close();
}

void Engine::Close() {
  if (closed_) return;
  closed_ = true;
  if (capture_) capture_->close();  // joins: the threads never block, so this cannot wait on JS
  tsfn_.Release();
  if (hooked_) {
    napi_remove_env_cleanup_hook(env_, CleanupHook, this);
    hooked_ = false;
  }
}

bool Engine::deliver(std::unique_ptr<CaptureBatch> batch) {
  if (tsfn_.NonBlockingCall(batch.get()) != napi_ok) return false;
  batch.release();  // now owned by CallJsWithBatch
  return true;
}

Napi::Value Engine::JsLoad(const Napi::CallbackInfo& info) {
  if (closed_) throw Napi::Error::New(info.Env(), "the capture engine is closed");
  auto program = program_arg(info[0]);
  try {
    capture_->load(std::move(program));
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return info.Env().Undefined();
}

Napi::Value Engine::JsStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = typed_arg<Napi::Float64Array>(info, 0, napi_float64_array, "stats(out) expects a Float64Array of threads × (matcherStats + captureStats) counters");
  std::vector<uint64_t> values(size_t(capture_->threads()) * kShardStats);
  if (out.ElementLength() < values.size()) throw Napi::RangeError::New(env, "stats(out): out is shorter than threads × (matcherStats + captureStats) counters");
  capture_->read_stats(values.data(), values.size());
  for (size_t i = 0; i < values.size(); i++) out[i] = double(values[i]);
  return env.Undefined();
}

Napi::Value Engine::JsClose(const Napi::CallbackInfo& info) {
  Close();
  return info.Env().Undefined();
}

// compileFilter(program, linkType): the visibility filter as 8-byte sock_filter records.
// linkType 0 = the live socket layout (network header, metadata), else a pcap link type.
Napi::Value Engine::JsCompileFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto program = program_arg(info[0]);
  uint32_t link = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  FilterLayout layout = FilterLayout::kNetwork;
  if (link != 0 && !filter_layout_for_link(uint16_t(link), &layout)) {
    throw Napi::RangeError::New(env, "compileFilter: link type " + std::to_string(link) + " never carries a knock");
  }
  FilterBuild build = build_visibility_filter(*program, layout);
  Napi::Object out = Napi::Object::New(env);
  out.Set("code", filter_bytes(env, build.code));
  out.Set("coarse", Napi::Boolean::New(env, build.coarse));
  return out;
}

Napi::Value Engine::JsFanoutFilter(const Napi::CallbackInfo& info) { return filter_bytes(info.Env(), build_fanout_filter()); }

}  // namespace knockd
