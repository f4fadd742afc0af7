// NativeMatcher: see native_matcher.h. Every argument is checked before any frame is matched, so a bad
// call throws (TypeError / RangeError) and leaves the matcher untouched.
#include "native_matcher.h"

#include "arguments.h"

#include <cmath>
#include <cstring>
#include <new>
#include <string>

namespace knockd {
namespace {

constexpr size_t kInitialEventCapacity = 4096;

// Integer microseconds held exactly in a double.
bool is_micros(double t) { return std::isfinite(t) && t == std::floor(t) && std::fabs(t) <= 9007199254740991.0; }

int64_t micros_arg(Napi::Env env, double t, const std::string& what) {
  if (!is_micros(t)) {
    throw Napi::RangeError::New(env, what + " must be a whole number of microseconds (got " + std::to_string(t) + ")");
  }
  return int64_t(t);
}

}  // namespace

Napi::Function NativeMatcher::Define(Napi::Env env) {
  return DefineClass(env, "NativeMatcher",
                     {
                         InstanceMethod<&NativeMatcher::JsLoad>("load"),
                         InstanceMethod<&NativeMatcher::JsFeed>("feed"),
                         InstanceMethod<&NativeMatcher::JsTick>("tick"),
                         InstanceMethod<&NativeMatcher::JsStats>("stats"),
                         InstanceMethod<&NativeMatcher::JsClose>("close"),
                     });
}

NativeMatcher::NativeMatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMatcher>(info), env_(info.Env()) {
  uint32_t shard = 0;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "new NativeMatcher(shard): shard must be a number");
    double s = info[0].As<Napi::Number>().DoubleValue();
    if (!(s >= 0 && s <= 65535 && s == std::floor(s))) {
      throw Napi::RangeError::New(info.Env(), "new NativeMatcher(shard): shard must be a whole number from 0 to 65535");
    }
    shard = uint32_t(s);
  }
  matcher_ = std::make_unique<Matcher>(uint16_t(shard));
  events_.reserve(kInitialEventCapacity);
}

NativeMatcher::~NativeMatcher() { Release(); }

void NativeMatcher::Release() {
  matcher_.reset();
  events_ = {};
  frames_ = {};
  ReportMemory(0);
}

// V8 sees only the small wrapper; the tracking state (up to tens of MB at a large MaxTracked) is ours, so
// it is reported to the GC as external memory, and given back on close() or collection.
void NativeMatcher::ReportMemory(size_t bytes) {
  if (bytes == reported_bytes_) return;
  Napi::MemoryManagement::AdjustExternalMemory(env_, int64_t(bytes) - int64_t(reported_bytes_));
  reported_bytes_ = bytes;
}

void NativeMatcher::RequireOpen(Napi::Env env) const {
  if (!matcher_) throw Napi::Error::New(env, "NativeMatcher: closed");
}

void NativeMatcher::RequireProgram(Napi::Env env) const {
  RequireOpen(env);
  if (!matcher_->program()) throw Napi::Error::New(env, "NativeMatcher: call load(program) before feed() or tick()");
}

Napi::Value NativeMatcher::JsClose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value NativeMatcher::TakeEvents(Napi::Env env) {
  const size_t bytes = events_.size() * sizeof(EventRecord);
  Napi::Uint8Array out = Napi::Uint8Array::New(env, bytes);
  if (bytes) std::memcpy(out.Data(), events_.data(), bytes);
  events_.clear();
  return out;
}

Napi::Value NativeMatcher::JsLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto program = program_arg(info[0]);
  RequireOpen(env);
  try {
    matcher_->load(program);
  } catch (const std::bad_alloc&) {
    throw Napi::RangeError::New(env, "load: could not allocate tracking state for MaxTracked " +
                                         std::to_string(program->max_tracked) + "; lower MaxTracked");
  }
  ReportMemory(matcher_->state_bytes());
  return env.Undefined();
}

Napi::Value NativeMatcher::JsFeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto data = typed_arg<Napi::Uint8Array>(info, 0, napi_uint8_array, "feed: data must be a Uint8Array");
  auto offsets = typed_arg<Napi::Uint32Array>(info, 1, napi_uint32_array, "feed: offsets must be a Uint32Array");
  auto times = typed_arg<Napi::Float64Array>(info, 2, napi_float64_array, "feed: timestampsUs must be a Float64Array");
  auto links = typed_arg<Napi::Uint16Array>(info, 3, napi_uint16_array, "feed: linkTypes must be a Uint16Array");
  RequireProgram(env);
  const size_t n = links.ElementLength();
  if (times.ElementLength() != n) {
    throw Napi::RangeError::New(env, "feed: timestampsUs has " + std::to_string(times.ElementLength()) +
                                         " entries but linkTypes has " + std::to_string(n) + "; give one per frame");
  }
  if (offsets.ElementLength() != n + 1) {
    throw Napi::RangeError::New(env, "feed: offsets must have one more entry than there are frames (" +
                                         std::to_string(n + 1) + "), got " + std::to_string(offsets.ElementLength()));
  }
  const uint32_t* off = offsets.Data();
  const double* ts = times.Data();
  const uint8_t* bytes = data.Data();
  const uint16_t* link = links.Data();
  const size_t data_len = data.ByteLength();
  for (size_t i = 0; i < n; i++) {
    if (off[i] > off[i + 1]) {
      throw Napi::RangeError::New(env, "feed: offsets must not decrease (offsets[" + std::to_string(i) + "] = " +
                                           std::to_string(off[i]) + " > offsets[" + std::to_string(i + 1) + "] = " +
                                           std::to_string(off[i + 1]) + ")");
    }
    if (!is_micros(ts[i])) micros_arg(env, ts[i], "feed: timestampsUs[" + std::to_string(i) + "]");  // throws
  }
  if (off[n] > data_len) {
    throw Napi::RangeError::New(env, "feed: offsets[" + std::to_string(n) + "] = " + std::to_string(off[n]) +
                                         " is beyond the end of data (" + std::to_string(data_len) + " bytes)");
  }
  frames_.resize(n);
  for (size_t i = 0; i < n; i++) frames_[i] = FrameView{bytes + off[i], off[i + 1] - off[i], link[i], int64_t(ts[i])};
  matcher_->feed_batch(frames_.data(), n, events_);
  return TakeEvents(env);
}

Napi::Value NativeMatcher::JsTick(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "tick(nowUs): nowUs must be a number");
  int64_t now = micros_arg(env, info[0].As<Napi::Number>().DoubleValue(), "tick: nowUs");
  RequireProgram(env);
  matcher_->tick(now, events_);
  return TakeEvents(env);
}

Napi::Value NativeMatcher::JsStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = typed_arg<Napi::Float64Array>(info, 0, napi_float64_array, "stats(out): out must be a Float64Array");
  RequireOpen(env);
  const Stats& stats = matcher_->stats();
  if (out.ElementLength() < stats.size()) {
    throw Napi::RangeError::New(env, "stats(out): out needs " + std::to_string(stats.size()) + " entries, got " +
                                         std::to_string(out.ElementLength()));
  }
  for (size_t i = 0; i < stats.size(); i++) out[i] = double(stats[i]);
  return env.Undefined();
}

}  // namespace knockd
