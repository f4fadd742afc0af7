// Matcher::feed_batch (which parses ahead and prefetches) against feeding the same frames one by one, and
// the tagged index when it is dense (75% full: long probe runs, saturated distances, backward shifts).
#include "matcher.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "test_util.h"

using namespace knockd;
using namespace test;

namespace {

const Addr kLocal = v4(192, 0, 2, 2);
constexpr int64_t kT0 = 1700000000LL * 1000000;

Addr source(uint32_t id) { return v4(10, uint8_t(id >> 16), uint8_t(id >> 8), uint8_t(id)); }

struct Frame {
  std::vector<uint8_t> bytes;
  int64_t ts_us;
};

// Knocks from few sources at many ports (steps, neighbours of steps, noise), truncated frames, time
// that mostly creeps, sometimes steps back and sometimes jumps past timeouts and the wheel's span.
std::vector<Frame> random_trace(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  const uint16_t ports[] = {1, 2, 3, 4, 5, 6, 7, 80};
  std::vector<Frame> out;
  int64_t t = kT0;
  for (size_t i = 0; i < n; i++) {
    const uint32_t r = rng() % 1000;
    t += r < 5 ? int64_t(rng() % 90) * 1000000 : r < 20 ? -int64_t(rng() % 3000) : int64_t(rng() % 20000);
    const Addr src = source(rng() % 300);
    const uint16_t port = ports[rng() % 8];
    const bool udp_step = rng() % 4 == 0;
    Frame f{knock(src, kLocal, udp_step ? udp(port) : tcp(port), rng() % 6 == 0 ? kAck : kSyn), t};
    if (rng() % 50 == 0) f.bytes.resize(rng() % f.bytes.size());  // malformed or cut short
    out.push_back(std::move(f));
  }
  return out;
}

ProgramSpec trace_program(uint32_t max_tracked) {
  ProgramSpec s;
  s.locals = {kLocal};
  s.max_tracked = max_tracked;
  s.budget = 40;
  s.doors = {{{tcp(1), tcp(2), tcp(3)}, 5},
             {{tcp(1), udp(4)}, 2},
             {{tcp(1), tcp(2), tcp(2), tcp(5)}, 9, 0, kSyn, kAck, kOptAllowDuplicates},
             {{tcp(6), tcp(7)}, 1}};
  return s;
}

void batch_equals_single() {
  for (uint32_t seed = 1; seed <= 20; seed++) {
    const std::vector<Frame> trace = random_trace(seed, 6000);
    Matcher one, batched;
    std::vector<EventRecord> one_events, batch_events;
    std::mt19937 rng(seed * 7919);
    const ProgramSpec programs[] = {trace_program(32), trace_program(12), trace_program(100)};
    size_t next_program = 0;
    std::vector<FrameView> views;
    for (size_t i = 0; i < trace.size();) {
      if (i % 2000 == 0) {  // load (and reload, which keeps pool order) at the same frame on both
        one.load(make_program(programs[next_program]));
        batched.load(make_program(programs[next_program]));
        next_program++;
      }
      const size_t end = std::min({trace.size(), i + 1 + rng() % 300, (i / 2000 + 1) * 2000});
      views.clear();
      for (size_t k = i; k < end; k++) {
        const Frame& f = trace[k];
        views.push_back(FrameView{f.bytes.data(), f.bytes.size(), kLinkEthernet, f.ts_us});
        one.feed(f.bytes.data(), f.bytes.size(), kLinkEthernet, f.ts_us, one_events);
      }
      batched.feed_batch(views.data(), views.size(), batch_events);
      i = end;
    }
    CHECK(one.stats() == batched.stats());
    CHECK(one_events.size() == batch_events.size());
    CHECK(one_events.size() > 100);
    CHECK(std::memcmp(one_events.data(), batch_events.data(), std::min(one_events.size(), batch_events.size()) * sizeof(EventRecord)) == 0);
    // the trace reaches the paths that matter: evictions, timeouts, completions, the budget
    CHECK(one.stats()[kStatEvicted] > 0 && one.stats()[kStatFailedTimeout] > 0 && one.stats()[kStatCompleted] > 0 &&
          one.stats()[kStatSuppressed] > 0);
  }
}

// maxTracked 98304 gives an index of exactly 4/3 of it (131072 slots), so a full table is 75% dense.
void dense_index() {
  constexpr uint32_t kMax = 98304;
  ProgramSpec spec;
  spec.locals = {kLocal};
  spec.max_tracked = kMax;
  spec.flags = 0;
  spec.doors = {{{tcp(1), tcp(2), tcp(3)}, 3600}};
  Matcher m;
  m.load(make_program(spec));
  std::vector<EventRecord> events;
  std::mt19937 rng(99);
  std::vector<uint32_t> ids(kMax);
  std::iota(ids.begin(), ids.end(), 1);
  int64_t t = kT0;
  auto knock_all = [&](const std::vector<uint32_t>& who, uint32_t step) {
    std::vector<std::vector<uint8_t>> frames;
    std::vector<FrameView> views;
    for (uint32_t id : who) frames.push_back(knock(source(id), kLocal, step, kSyn));
    for (const auto& f : frames) views.push_back(FrameView{f.data(), f.size(), kLinkEthernet, ++t});
    m.feed_batch(views.data(), views.size(), events);
  };
  knock_all(ids, tcp(1));
  CHECK(m.stats()[kStatTracked] == kMax);
  CHECK(m.stats()[kStatEvicted] == 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  knock_all(ids, tcp(2));  // every record is found, none starts afresh
  CHECK(m.stats()[kStatTracked] == kMax);
  const std::vector<uint32_t> first(ids.begin(), ids.begin() + kMax / 2), rest(ids.begin() + kMax / 2, ids.end());
  knock_all(first, tcp(3));  // half complete: their entries leave by backward shift
  CHECK(m.stats()[kStatCompleted] == kMax / 2);
  CHECK(m.stats()[kStatTracked] == kMax / 2);
  std::vector<uint32_t> newcomers(kMax / 2);
  std::iota(newcomers.begin(), newcomers.end(), kMax + 1);
  knock_all(newcomers, tcp(1));  // refill the holes
  CHECK(m.stats()[kStatTracked] == kMax);
  std::shuffle(newcomers.begin(), newcomers.end(), rng);
  knock_all(rest, tcp(3));  // the survivors are still found after all that shifting
  knock_all(newcomers, tcp(2));
  knock_all(newcomers, tcp(3));
  CHECK(m.stats()[kStatCompleted] == kMax + kMax / 2);
  CHECK(m.stats()[kStatFailedWrongPort] == 0);
  CHECK(m.stats()[kStatTracked] == 0);
  CHECK(events.size() == kMax + kMax / 2);  // COMPLETED only (no stage events)
}

}  // namespace

int main() {
  batch_equals_single();
  dense_index();
  if (failures) std::fprintf(stderr, "matcher_batch_test: %d failures\n", failures);
  else std::printf("matcher_batch_test: ok\n");
  return failures ? 1 : 0;
}
