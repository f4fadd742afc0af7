// Live capture (see capture.h). Facts this relies on (how libpcap and the kernel behave):
// - SOCK_DGRAM packet sockets present every link type at the network header, so one filter layout
//   and one parse path serve Ethernet (tags stripped into metadata), lo, tun and `any`;
// - a packet socket bound with a protocol receives from bind() on, so a reject-all filter is attached
//   first and the real one only once the socket sits in its fanout group: no unfiltered packet and
//   no packet routed before the group has all its members is ever read;
// - on NETDEV_DOWN/UP the kernel unhooks and re-hooks a bound socket by itself; only an interface
//   that disappears (new ifindex when it returns) needs new sockets;
// - PACKET_STATISTICS resets on every read, so it is accumulated here.
#include "capture.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace knockd {
namespace {

constexpr uint32_t kFrameSizeHint = 2048;  // TPACKET_V3 packs frames; this only sizes tp_frame_nr
#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
constexpr uint32_t PACKET_FANOUT_FLAG_IGNORE_OUTGOING = 0x4000;  // Linux 4.20; older uapi headers lack it
#endif

int64_t realtime_us() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

int64_t monotonic_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

bool is_vlan(uint16_t type) { return type == 0x8100 || type == 0x88A8 || type == 0x9100; }

std::string describe(const std::string& what, const std::string& interface, int err) {
  return what + (interface.empty() ? "" : " on interface \"" + interface + "\"") + ": " + std::strerror(err);
}

void set_filter(int fd, const std::vector<sock_filter>& code, const std::string& interface) {
  sock_fprog prog{uint16_t(code.size()), const_cast<sock_filter*>(code.data())};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0) {
    int err = errno;
    throw CaptureError(err, "setsockopt", interface, describe("cannot attach the kernel filter (SO_ATTACH_FILTER)", interface, err));
  }
}

}  // namespace

NetworkFrame locate_network_frame(uint16_t protocol, bool vlan_tag_present, const uint8_t* data, size_t len) {
  size_t tags = vlan_tag_present ? 1 : 0;
  while (is_vlan(protocol)) {
    if (++tags > 2 || len < 4) return {data, len, 0};
    protocol = uint16_t(data[2] << 8 | data[3]);
    data += 4;
    len -= 4;
  }
  uint16_t link = protocol == 0x0800 ? kLinkIpv4 : protocol == 0x86DD ? kLinkIpv6 : 0;
  return {data, len, link};
}

struct Capture::Socket {
  int fd = -1;
  uint8_t* ring = nullptr;
  size_t ring_bytes = 0;
  uint32_t block_bytes = 0, block_count = 0, next_block = 0;
  ~Socket() {
    if (ring) munmap(ring, ring_bytes);
    if (fd >= 0) ::close(fd);
  }
};

struct Capture::Interface {
  std::string name;
  uint16_t position = 0;  // index in options.interfaces (the `door` field of its error records)
  int ifindex = 0;        // 0 = any
  bool up = true;
};

struct Capture::Shard {
  uint16_t id = 0;
  int wake_fd = -1;
  std::thread thread;
  Matcher matcher;
  std::vector<std::unique_ptr<Socket>> sockets;  // per interface; swapped only under mutex_
  // Handed over under mutex_, picked up after a wake-up.
  std::vector<std::unique_ptr<Socket>> pending_sockets;
  std::shared_ptr<const Program> pending_program;
  std::atomic<bool> has_pending{false};
  std::atomic<uint64_t> stats[kShardStats] = {};
  std::unique_ptr<CaptureBatch> batch;
  int64_t batch_started_us = 0;  // monotonic time of the batch's first record
  // The capture thread's own (run() and its steps).
  std::vector<pollfd> fds;         // the wake-up eventfd, then one per interface
  std::vector<FrameView> frames;   // the current block's frames for the matcher
  int64_t next_tick = 0, next_check = 0;  // monotonic
  // Completions the matcher had made when the batch was last handed over (flush_if_due).
  uint64_t completed_handed = 0;

  explicit Shard(uint16_t shard) : id(shard), matcher(shard) {}
  ~Shard() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
  void wake() const {
    uint64_t one = 1;
    ssize_t r = write(wake_fd, &one, sizeof one);
    (void)r;  // the counter can only overflow after 2^64 writes; a pending wake-up is enough
  }
};

Capture::Capture(const CaptureOptions& options, std::shared_ptr<const Program> program, BatchSink* sink)
    : options_(options), sink_(sink), program_(std::move(program)) {
  if (options_.threads < 1 || options_.threads > 1024) throw std::invalid_argument("threads must be 1..1024");
  if (options_.interfaces.empty()) throw std::invalid_argument("no capture interface");
  FilterBuild filter = build_visibility_filter(*program_, FilterLayout::kNetwork);
  filter_ = std::move(filter.code);
  coarse_ = filter.coarse;
  control_fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

  for (size_t i = 0; i < options_.interfaces.size(); i++) {
    auto iface = std::make_unique<Interface>();
    iface->name = options_.interfaces[i];
    iface->position = uint16_t(i);
    if (iface->name != "any") {
      iface->ifindex = int(if_nametoindex(iface->name.c_str()));
      if (iface->ifindex == 0) {
        throw CaptureError(ENODEV, "if_nametoindex", iface->name, "interface \"" + iface->name + "\" does not exist");
      }
    }
    interfaces_.push_back(std::move(iface));
  }
  for (unsigned s = 0; s < options_.threads; s++) {
    auto shard = std::make_unique<Shard>(uint16_t(s));
    shard->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (shard->wake_fd < 0) {
      int err = errno;
      throw CaptureError(err, "eventfd", "", describe("cannot create an eventfd", "", err));
    }
    if (!options_.forward_frames) shard->matcher.load(program_);
    shard->sockets.resize(interfaces_.size());
    shard->pending_sockets.resize(interfaces_.size());
    shard->stats[kStatCount + kCapFilterCoarse] = coarse_;
    shards_.push_back(std::move(shard));
  }
  for (auto& iface : interfaces_) {
    std::vector<std::unique_ptr<Socket>> sockets;
    open_interface(*iface, sockets);
    for (unsigned s = 0; s < shards_.size(); s++) shards_[s]->sockets[iface->position] = std::move(sockets[s]);
  }
  for (auto& shard : shards_) {
    Shard* sh = shard.get();
    sh->thread = std::thread([this, sh] {
      // Named so top -H, perf and /proc/<pid>/task tell the capture threads apart from Node's own.
      std::string name = "kf-capture-" + std::to_string(sh->id);
      pthread_setname_np(pthread_self(), name.c_str());
      run(*sh);
    });
  }
}

Capture::~Capture() {
  close();
  if (control_fd_ >= 0) ::close(control_fd_);
}

// N sockets, one per shard, in one new fanout group on the interface. Throws CaptureError.
void Capture::open_interface(Interface& iface, std::vector<std::unique_ptr<Socket>>& out) {
  const std::string& name = iface.name;
  if (iface.ifindex != 0 && control_fd_ >= 0) {
    ifreq req{};
    std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(control_fd_, SIOCGIFFLAGS, &req) == 0 && !(req.ifr_flags & IFF_UP)) {
      throw CaptureError(ENETDOWN, "bind", name, "interface \"" + name + "\" is down (bring it up: ip link set " + name + " up)");
    }
  }
  const std::vector<sock_filter> reject = build_reject_filter();
  const std::vector<sock_filter> fanout = build_fanout_filter();
  uint32_t fanout_arg = 0;
  for (unsigned s = 0; s < shards_.size(); s++) {
    auto sock = std::make_unique<Socket>();
    sock->fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);  // protocol 0: receives nothing yet
    if (sock->fd < 0) {
      int err = errno;
      throw CaptureError(err, "socket", name, describe("cannot open a packet socket (AF_PACKET)", name, err));
    }
    int version = TPACKET_V3;
    if (setsockopt(sock->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) {
      int err = errno;
      throw CaptureError(err, "setsockopt", name, describe("TPACKET_V3 rings are not supported", name, err));
    }
    tpacket_req3 req{};
    req.tp_block_size = options_.block_bytes;
    req.tp_block_nr = options_.block_count;
    req.tp_frame_size = kFrameSizeHint;
    req.tp_frame_nr = options_.block_bytes / kFrameSizeHint * options_.block_count;
    req.tp_retire_blk_tov = options_.retire_ms;
    if (setsockopt(sock->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
      int err = errno;
      throw CaptureError(err, "setsockopt", name, describe("cannot create the capture ring (PACKET_RX_RING)", name, err));
    }
    sock->block_bytes = options_.block_bytes;
    sock->block_count = options_.block_count;
    sock->ring_bytes = size_t(options_.block_bytes) * options_.block_count;
    void* ring = mmap(nullptr, sock->ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, sock->fd, 0);
    if (ring == MAP_FAILED) {
      int err = errno;
      throw CaptureError(err, "mmap", name, describe("cannot map the capture ring", name, err));
    }
    sock->ring = static_cast<uint8_t*>(ring);
    madvise(ring, sock->ring_bytes, MADV_DONTFORK);  // a hint, as for the matcher's state (matcher.cc)
    set_filter(sock->fd, reject, name);
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = iface.ifindex;
    if (bind(sock->fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      throw CaptureError(err, "bind", name, describe("cannot bind the packet socket", name, err));
    }
    if (s == 0) {
      // The kernel picks an unused group id; the other shards join it by that id.
      uint32_t flags = PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
      uint32_t arg = uint32_t(PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID | flags) << 16;
      if (setsockopt(sock->fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) != 0 && errno == EINVAL) {
        flags = 0;  // kernels before 4.20: the filter still rejects outgoing copies
        arg = uint32_t(PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID) << 16;
        if (setsockopt(sock->fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) != 0) arg = ~0u;
      }
      uint32_t joined = 0;
      socklen_t len = sizeof joined;
      if (arg == ~0u || getsockopt(sock->fd, SOL_PACKET, PACKET_FANOUT, &joined, &len) != 0) {
        int err = errno;
        throw CaptureError(err, "setsockopt", name, describe("cannot create the fanout group (PACKET_FANOUT)", name, err));
      }
      fanout_arg = (joined & 0xffff) | uint32_t(PACKET_FANOUT_CBPF | flags) << 16;
      sock_fprog prog{uint16_t(fanout.size()), const_cast<sock_filter*>(fanout.data())};
      if (setsockopt(sock->fd, SOL_PACKET, PACKET_FANOUT_DATA, &prog, sizeof prog) != 0) {
        int err = errno;
        throw CaptureError(err, "setsockopt", name, describe("cannot set the fanout program (PACKET_FANOUT_DATA)", name, err));
      }
    } else if (setsockopt(sock->fd, SOL_PACKET, PACKET_FANOUT, &fanout_arg, sizeof fanout_arg) != 0) {
      int err = errno;
      throw CaptureError(err, "setsockopt", name, describe("cannot join the fanout group (PACKET_FANOUT)", name, err));
    }
    out.push_back(std::move(sock));
  }
  for (auto& sock : out) set_filter(sock->fd, filter_, name);
}

void Capture::attach_filters_locked() {
  for (auto& shard : shards_) {
    for (auto* list : {&shard->sockets, &shard->pending_sockets}) {
      for (size_t i = 0; i < list->size(); i++) {
        if ((*list)[i]) set_filter((*list)[i]->fd, filter_, interfaces_[i]->name);
      }
    }
  }
}

void Capture::load(std::shared_ptr<const Program> program) {
  FilterBuild filter = build_visibility_filter(*program, FilterLayout::kNetwork);
  std::lock_guard<std::mutex> lock(mutex_);
  program_ = program;
  filter_ = std::move(filter.code);
  coarse_ = filter.coarse;
  attach_filters_locked();
  for (auto& shard : shards_) {
    shard->stats[kStatCount + kCapFilterCoarse].store(coarse_, std::memory_order_relaxed);
    if (options_.forward_frames) continue;
    shard->pending_program = program;
    shard->has_pending.store(true, std::memory_order_release);
    shard->wake();
  }
}

void Capture::close() {
  if (closed_) return;
  closed_ = true;
  stop_.store(true, std::memory_order_release);
  for (auto& shard : shards_) shard->wake();
  for (auto& shard : shards_) {
    if (shard->thread.joinable()) shard->thread.join();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& shard : shards_) {
    shard->sockets.clear();
    shard->pending_sockets.clear();
  }
}

void Capture::read_stats(uint64_t* out, size_t n) const {
  for (size_t s = 0; s < shards_.size(); s++) {
    for (size_t i = 0; i < kShardStats && s * kShardStats + i < n; i++) {
      out[s * kShardStats + i] = shards_[s]->stats[i].load(std::memory_order_relaxed);
    }
  }
}

void Capture::flush(Shard& shard) {
  if (!shard.batch || shard.batch->records() == 0) return;
  shard.batch->shard = shard.id;
  size_t frames = shard.batch->frame_ts_us.size();
  bool accepted = sink_->deliver(std::move(shard.batch));
  shard.batch = std::make_unique<CaptureBatch>();
  shard.stats[kStatCount + (accepted ? kCapBatches : kCapBatchesDropped)].fetch_add(1, std::memory_order_relaxed);
  if (accepted) shard.stats[kStatCount + kCapFramesForwarded].fetch_add(frames, std::memory_order_relaxed);
}

void Capture::emit_error(Shard& shard, EngineErrorCode code, uint16_t interface, int err, int64_t now_us) {
  EventRecord rec{};
  rec.kind = kEventError;
  rec.reason = code;
  rec.door = interface;
  rec.shard = shard.id;
  rec.count = uint32_t(err);
  rec.time_us = now_us;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    rec.generation = program_->generation;
  }
  if (!shard.batch) shard.batch = std::make_unique<CaptureBatch>();
  if (shard.batch->records() == 0) shard.batch_started_us = monotonic_us();
  shard.batch->events.push_back(rec);
}

// Shard 0 watches the interfaces by name. Down/up needs nothing (the kernel re-hooks the sockets);
// an interface that came back with a new ifindex gets a new fanout group of sockets for every shard.
void Capture::check_interfaces(Shard& shard) {
  int64_t now = realtime_us();
  for (auto& iface : interfaces_) {
    if (iface->ifindex == 0 && iface->name == "any") continue;
    int index = int(if_nametoindex(iface->name.c_str()));
    bool up = false;
    if (index != 0 && control_fd_ >= 0) {
      ifreq req{};
      std::strncpy(req.ifr_name, iface->name.c_str(), IFNAMSIZ - 1);
      up = ioctl(control_fd_, SIOCGIFFLAGS, &req) == 0 && (req.ifr_flags & IFF_UP);
    }
    if (iface->up && (!up || index != iface->ifindex)) {
      iface->up = false;
      emit_error(shard, kErrInterfaceDown, iface->position, index == 0 ? ENODEV : ENETDOWN, now);
    } else if (!iface->up && up) {
      if (index == iface->ifindex) {
        iface->up = true;
        emit_error(shard, kErrInterfaceUp, iface->position, 0, now);
        continue;
      }
      Interface fresh = *iface;
      fresh.ifindex = index;
      int failed = 0;
      try {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<std::unique_ptr<Socket>> sockets;
        open_interface(fresh, sockets);
        for (size_t s = 0; s < shards_.size(); s++) {
          shards_[s]->pending_sockets[iface->position] = std::move(sockets[s]);
          shards_[s]->has_pending.store(true, std::memory_order_release);
          shards_[s]->wake();
        }
      } catch (const CaptureError& e) {
        failed = e.err();
      }
      if (failed) {
        emit_error(shard, kErrInterfaceReopen, iface->position, failed, now);
        continue;
      }
      iface->ifindex = index;
      iface->up = true;
      emit_error(shard, kErrInterfaceUp, iface->position, index, now);
    }
  }
}

// One capture thread: a loop of the named steps below, each a member taking the shard's state.
void Capture::run(Shard& shard) {
  const int64_t start = monotonic_us();
  shard.next_tick = start + int64_t(options_.tick_ms) * 1000;
  shard.next_check = start + int64_t(options_.interface_check_ms) * 1000;
  shard.batch = std::make_unique<CaptureBatch>();
  while (!stop_.load(std::memory_order_acquire)) {
    take_pending(shard);
    if (!wait_for_blocks(shard)) break;
    for (auto& sock : shard.sockets) {
      if (sock) walk_ring(shard, *sock);
    }
    const int64_t now = monotonic_us();
    if (now >= shard.next_tick) tick(shard, now);
    if (shard.id == 0 && now >= shard.next_check) {
      check_interfaces(shard);
      shard.next_check = now + int64_t(options_.interface_check_ms) * 1000;
    }
    publish_matcher_stats(shard);
    flush_if_due(shard, now);
  }
  // Stop: take what the rings already hold, then hand over the last batch.
  for (auto& sock : shard.sockets) {
    if (sock) walk_ring(shard, *sock);
  }
  read_ring_stats(shard);
  publish_matcher_stats(shard);
  flush(shard);
}

// A program or sockets handed over by load() or check_interfaces().
void Capture::take_pending(Shard& shard) {
  if (!shard.has_pending.exchange(false, std::memory_order_acquire)) return;
  std::shared_ptr<const Program> program;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < shard.sockets.size(); i++) {
      if (!shard.pending_sockets[i]) continue;
      if (shard.sockets[i]) add_ring_stats(shard, *shard.sockets[i]);  // what the old ring counted, before it goes
      shard.sockets[i] = std::move(shard.pending_sockets[i]);
    }
    program = std::move(shard.pending_program);
  }
  if (program) shard.matcher.load(std::move(program));
}

// Sleeps until a ring has a block, a wake-up comes, the next tick is due or the batch is old enough to
// flush. false: poll failed (reported as an error record).
bool Capture::wait_for_blocks(Shard& shard) {
  const size_t n_if = shard.sockets.size();
  shard.fds.resize(1 + n_if);
  shard.fds[0] = {shard.wake_fd, POLLIN, 0};
  for (size_t i = 0; i < n_if; i++) shard.fds[1 + i] = {shard.sockets[i] ? shard.sockets[i]->fd : -1, POLLIN, 0};
  const int64_t now = monotonic_us();
  int64_t deadline = shard.next_tick;
  if (shard.batch->records() > 0) deadline = std::min(deadline, shard.batch_started_us + int64_t(options_.flush_us));
  const int timeout_ms = deadline <= now ? 0 : int((deadline - now + 999) / 1000);
  const int ready = poll(shard.fds.data(), shard.fds.size(), timeout_ms);
  if (ready < 0 && errno != EINTR) {
    emit_error(shard, kErrCaptureFailed, 0, errno, realtime_us());
    return false;
  }
  if (ready <= 0) return true;
  if (shard.fds[0].revents & POLLIN) {
    uint64_t counter;
    ssize_t r = read(shard.wake_fd, &counter, sizeof counter);
    (void)r;  // EAGAIN only: another wake-up was already consumed
  }
  for (size_t i = 0; i < n_if; i++) {
    if (!shard.sockets[i] || !(shard.fds[1 + i].revents & POLLERR)) continue;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(shard.sockets[i]->fd, SOL_SOCKET, SO_ERROR, &err, &len);  // clears ENETDOWN; shard 0 reports interface state
  }
  return true;
}

// Every block the kernel has handed to user space, in ring order: its frames taken, then the block returned.
void Capture::walk_ring(Shard& shard, Socket& sock) {
  for (;;) {
    auto* block = reinterpret_cast<tpacket_block_desc*>(sock.ring + size_t(sock.next_block) * sock.block_bytes);
    if (!(__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return;
    walk_block(shard, *block);
    __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    sock.next_block = (sock.next_block + 1) % sock.block_count;
  }
}

void Capture::walk_block(Shard& shard, const tpacket_block_desc& block) {
  const uint8_t* p = reinterpret_cast<const uint8_t*>(&block) + block.hdr.bh1.offset_to_first_pkt;
  for (uint32_t i = 0; i < block.hdr.bh1.num_pkts; i++) {
    auto* h = reinterpret_cast<const tpacket3_hdr*>(p);
    auto* ll = reinterpret_cast<const sockaddr_ll*>(p + TPACKET_ALIGN(sizeof(tpacket3_hdr)));
    if (ll->sll_pkttype != PACKET_OUTGOING) {
      const NetworkFrame f = locate_network_frame(ntohs(ll->sll_protocol), h->tp_status & TP_STATUS_VLAN_VALID, p + h->tp_mac, h->tp_snaplen);
      const int64_t ts = int64_t(h->tp_sec) * 1000000 + h->tp_nsec / 1000;
      if (options_.forward_frames) forward_frame(shard, f, ts);
      else shard.frames.push_back(FrameView{f.data, f.len, f.link, ts});
    }
    p += h->tp_next_offset;
  }
  match_frames(shard);
}

// --matcher ts: the frame goes into the batch as it is.
void Capture::forward_frame(Shard& shard, const NetworkFrame& f, int64_t ts_us) {
  CaptureBatch& b = *shard.batch;
  if (b.records() == 0) shard.batch_started_us = monotonic_us();
  if (b.frame_offsets.empty()) b.frame_offsets.push_back(0);
  b.frame_bytes.insert(b.frame_bytes.end(), f.data, f.data + f.len);
  b.frame_offsets.push_back(uint32_t(b.frame_bytes.size()));
  b.frame_ts_us.push_back(double(ts_us));
  b.frame_links.push_back(f.link);
  if (b.records() >= options_.flush_records) flush(shard);
}

// The block's frames for the matcher, matched as batches (it prefetches ahead within a batch) before
// the block goes back to the kernel; a batch is at most flush_records frames, so the event batch
// overshoots its flush threshold by about that much at most.
void Capture::match_frames(Shard& shard) {
  std::vector<FrameView>& frames = shard.frames;
  for (size_t i = 0; i < frames.size(); i += options_.flush_records) {
    if (shard.batch->records() == 0) shard.batch_started_us = monotonic_us();
    shard.matcher.feed_batch(frames.data() + i, std::min<size_t>(options_.flush_records, frames.size() - i), shard.batch->events);
    if (shard.batch->records() >= options_.flush_records) flush(shard);
  }
  frames.clear();
}

// Idle work every tick_ms: matcher timeouts and the ring statistics.
void Capture::tick(Shard& shard, int64_t now) {
  const bool was_empty = shard.batch->records() == 0;
  if (!options_.forward_frames) shard.matcher.tick(realtime_us(), shard.batch->events);
  if (was_empty) shard.batch_started_us = now;
  read_ring_stats(shard);
  shard.next_tick = now + int64_t(options_.tick_ms) * 1000;
}

// PACKET_STATISTICS resets on every read, so each read is added to the shard's totals here, and only here.
void Capture::add_ring_stats(Shard& shard, const Socket& sock) {
  tpacket_stats_v3 st{};
  socklen_t len = sizeof st;
  if (getsockopt(sock.fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) != 0) return;
  const uint64_t read[3] = {st.tp_packets, st.tp_drops, st.tp_freeze_q_cnt};
  for (size_t i = 0; i < 3; i++) shard.stats[kStatCount + kCapRingPackets + i].fetch_add(read[i], std::memory_order_relaxed);
}

void Capture::read_ring_stats(Shard& shard) {
  for (auto& sock : shard.sockets) {
    if (sock) add_ring_stats(shard, *sock);
  }
}

// (All zero with forward_frames: that matcher never sees a frame.)
void Capture::publish_matcher_stats(Shard& shard) {
  const Stats& st = shard.matcher.stats();
  for (size_t i = 0; i < kStatCount; i++) shard.stats[i].store(st[i], std::memory_order_relaxed);
}

// The batch goes to JS when it is full, when its first record is flush_us old, or at once when it holds a
// completion the matcher made since the last hand-over (a knocker is waiting for that door; failures and
// stages keep the batching).
void Capture::flush_if_due(Shard& shard, int64_t now) {
  const uint64_t completed = shard.matcher.stats()[kStatCompleted];
  const size_t records = shard.batch->records();
  if (records > 0 && (records >= options_.flush_records || now - shard.batch_started_us >= int64_t(options_.flush_us) ||
                      completed != shard.completed_handed)) {
    flush(shard);
  }
  shard.completed_handed = completed;  // an empty batch means every completion so far was handed over
}

}  // namespace knockd
