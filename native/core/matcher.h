// Step: native parse/match. Per-source sequence matching exactly as docs/MATCHER.md describes.
// Time is a parameter; nothing here reads a clock, allocates per packet or blocks.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "event.h"
#include "packet.h"
#include "program.h"

namespace knockd {

enum Stat : size_t {
  kStatFrames,
  kStatMalformed,
  kStatNotKnock,
  kStatInvisible,
  kStatVisible,
  kStatStages,
  kStatCompleted,
  kStatFailedTimeout,
  kStatFailedWrongPort,
  kStatEvicted,
  kStatSuppressed,
  kStatEvictedProgressed,
  kStatTracked,
  kStatSpaAccepted,
  kStatSpaRejected,
  kStatCount
};
using Stats = std::array<uint64_t, kStatCount>;

// One captured frame of a batch: its bytes, link type (pcap LINKTYPE) and capture time.
struct FrameView {
  const uint8_t* data;
  size_t len;
  uint16_t link_type;
  int64_t ts_us;
};

class Matcher {
 public:
  explicit Matcher(uint16_t shard = 0);
  ~Matcher();
  Matcher(const Matcher&) = delete;
  Matcher& operator=(const Matcher&) = delete;

  // Replace the program; attempts of doors whose fingerprint survives are kept (MATCHER.md §5).
  void load(std::shared_ptr<const Program> program);
  // Frames in capture order. Appends the events they cause to `out`, exactly as feeding them one by one
  // would; while matching one frame it prefetches the tracking state of the frames that follow.
  void feed_batch(const FrameView* frames, size_t n, std::vector<EventRecord>& out);
  // One captured frame (a batch of one).
  void feed(const uint8_t* frame, size_t len, uint16_t link_type, int64_t ts_us, std::vector<EventRecord>& out);
  // An already parsed packet (the capture path parses once, then matches).
  void feed_packet(const Packet& packet, int64_t ts_us, std::vector<EventRecord>& out);
  // Advance time without a packet.
  void tick(int64_t now_us, std::vector<EventRecord>& out);

  const Stats& stats() const { return stats_; }
  // Bytes of tracking state allocated at load (record pool, index, wheel), for the memory benchmark.
  size_t state_bytes() const;
  const Program* program() const { return program_.get(); }

  // Tracking storage; defined in matcher.cc.
  struct State;

 private:
  std::unique_ptr<State> state_;
  std::shared_ptr<const Program> program_;
  Stats stats_{};
  uint16_t shard_;
};

}  // namespace knockd
