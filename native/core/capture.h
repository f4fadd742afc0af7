// Step: live capture. AF_PACKET TPACKET_V3 rings on N threads (one fanout group per interface whose
// CBPF program hashes the source address, so shard s owns a fixed set of sources on every interface),
// the visibility filter from bpf.h, one matcher shard per thread, and batches of event records (or,
// with forward_frames, of the filtered frames themselves) handed to a BatchSink that never blocks.
// No napi here: native/binding/engine.cc adapts this to Node.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bpf.h"
#include "event.h"
#include "matcher.h"
#include "program.h"

struct tpacket_block_desc;  // linux/if_packet.h

namespace knockd {

struct CaptureOptions {
  std::vector<std::string> interfaces;  // names; "any" captures on every interface
  unsigned threads = 1;
  // TPACKET_V3 block size (power of two, multiple of the page size) and count. Many small blocks: at a
  // low rate each block retires after retire_ms holding a few frames, so the ring absorbs a stall of
  // block_count × retire_ms (512 × 1 ms ≈ 0.5 s; 16 blocks of 1 MiB absorbed 32 ms and dropped knocks of a
  // daemon held to 5 % of a core at 1,000 pps, whose stalls last 95 ms or more), and at a high rate the
  // same 16 MiB. Per socket, i.e. per thread: src/capture/engine.ts splits the 32 KiB over the threads.
  uint32_t block_bytes = 1u << 15;
  uint32_t block_count = 512;
  // A partly filled block is handed over after this long: the largest part of knock latency below the
  // rate that fills a block sooner (2 ms made last knock -> completed p50 1.76 ms, 1 ms 0.91 ms).
  uint32_t retire_ms = 1;
  bool forward_frames = false;  // --matcher ts: batches carry the filtered frames, no native matching
  uint32_t flush_records = 256;  // a batch is flushed at this many records (events or frames) ...
  // ... or once its first record is this old (a batch holding a new completion goes at once). Engine
  // default (src/capture/engine.ts): 100 ms of stages, failures and timeouts on the native matcher, so a
  // flood at a few hundred pps is a few hand-overs a second rather than one per frame; 2 ms of frames for
  // the TS matcher, whose completions are in them.
  uint32_t flush_us = 2000;
  uint32_t tick_ms = 100;        // idle tick: matcher timeouts, ring statistics, interface checks
  uint32_t interface_check_ms = 1000;
};

// Engine error codes carried in ERROR event records (reason); count = errno, door = interface index.
enum EngineErrorCode : uint8_t {
  kErrInterfaceDown = 1,    // the interface went down or disappeared; capture resumes when it returns
  kErrInterfaceUp = 2,      // it is back (count = 0: same interface resumed; else its new ifindex)
  kErrInterfaceReopen = 3,  // reopening it failed (count = errno); retried every interface_check_ms
  kErrCaptureFailed = 4,    // a capture thread failed (count = errno) and stopped
};

// Per-shard capture counters, after the matcher's kStatCount counters in a shard's stats block.
enum CaptureStat : size_t {
  kCapRingPackets,    // PACKET_STATISTICS tp_packets: admitted by the filter (drops included)
  kCapRingDrops,      // tp_drops: admitted but the ring was full
  kCapRingFreezes,    // tp_freeze_q_cnt: the kernel found no free block
  kCapBatches,        // batches handed to the sink
  kCapBatchesDropped, // batches the sink refused (queue full)
  kCapFramesForwarded,
  kCapFilterCoarse,   // 1 when the filter had to leave the address test to the matcher
  kCapCount
};
constexpr size_t kShardStats = kStatCount + kCapCount;

struct CaptureBatch {
  uint16_t shard = 0;
  std::vector<EventRecord> events;
  // forward_frames: frame i is frame_bytes[frame_offsets[i] .. frame_offsets[i+1])
  std::vector<uint8_t> frame_bytes;
  std::vector<uint32_t> frame_offsets;
  std::vector<double> frame_ts_us;
  std::vector<uint16_t> frame_links;
  size_t records() const { return events.size() + frame_ts_us.size(); }
};

class BatchSink {
 public:
  virtual ~BatchSink() = default;
  // Called on a capture thread; must not block. false = not accepted (the batch is dropped).
  virtual bool deliver(std::unique_ptr<CaptureBatch> batch) = 0;
};

// A refused syscall while opening: errno, the call, the interface, a sentence saying what failed.
class CaptureError : public std::runtime_error {
 public:
  CaptureError(int err, std::string syscall, std::string interface, const std::string& message)
      : std::runtime_error(message), err_(err), syscall_(std::move(syscall)), interface_(std::move(interface)) {}
  int err() const { return err_; }
  const std::string& syscall() const { return syscall_; }
  const std::string& interface() const { return interface_; }

 private:
  int err_;
  std::string syscall_, interface_;
};

// The network-layer frame inside a SOCK_DGRAM ring slot: VLAN tags the kernel left in band are
// skipped under the same two-tag limit as an Ethernet frame; link is the pcap link type to parse it
// with (228 IPv4, 229 IPv6, 0 = not IP).
struct NetworkFrame {
  const uint8_t* data;
  size_t len;
  uint16_t link;
};
NetworkFrame locate_network_frame(uint16_t protocol, bool vlan_tag_present, const uint8_t* data, size_t len);

class Capture {
 public:
  // Opens every socket (throws CaptureError) and starts the threads. The sink must outlive close().
  Capture(const CaptureOptions& options, std::shared_ptr<const Program> program, BatchSink* sink);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // Swap the program: kernel filters at once, matcher shards at their next wake-up.
  void load(std::shared_ptr<const Program> program);
  // Stops and joins the threads (each flushes what it holds) and closes the sockets. Idempotent.
  void close();
  // threads × kShardStats counters, shard-major.
  void read_stats(uint64_t* out, size_t n) const;
  unsigned threads() const { return unsigned(shards_.size()); }

  struct Socket;
  struct Shard;
  struct Interface;

 private:
  // The capture thread and its steps (capture.cc, in the order run() takes them).
  void run(Shard& shard);
  void take_pending(Shard& shard);
  bool wait_for_blocks(Shard& shard);
  void walk_ring(Shard& shard, Socket& sock);
  void walk_block(Shard& shard, const tpacket_block_desc& block);
  void forward_frame(Shard& shard, const NetworkFrame& frame, int64_t ts_us);
  void match_frames(Shard& shard);
  void tick(Shard& shard, int64_t now_us);
  void add_ring_stats(Shard& shard, const Socket& sock);
  void read_ring_stats(Shard& shard);
  void publish_matcher_stats(Shard& shard);
  void flush_if_due(Shard& shard, int64_t now_us);
  void open_interface(Interface& iface, std::vector<std::unique_ptr<Socket>>& out);
  void check_interfaces(Shard& shard);
  void attach_filters_locked();
  void emit_error(Shard& shard, EngineErrorCode code, uint16_t interface, int err, int64_t now_us);
  // Hands a non-empty batch to the sink and starts a fresh one.
  void flush(Shard& shard);

  CaptureOptions options_;
  BatchSink* sink_;
  std::mutex mutex_;  // program_, filter_, interfaces' sockets and pending swaps
  std::shared_ptr<const Program> program_;
  std::vector<sock_filter> filter_;
  bool coarse_ = false;
  std::vector<std::unique_ptr<Interface>> interfaces_;
  std::vector<std::unique_ptr<Shard>> shards_;
  int control_fd_ = -1;  // for SIOCGIFFLAGS
  std::atomic<bool> stop_{false};
  bool closed_ = false;
};

}  // namespace knockd
