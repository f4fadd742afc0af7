// Per-source sequence matching, exactly as docs/MATCHER.md describes (section numbers below refer to it).
// All state lives in fixed arrays allocated at load: a pool of 40-byte records, an index of pool slots
// (at most 75% full; linear probing, backward-shift deletion), a timer wheel and the two age lists
// (stage-1 and progressed, §4.1), all intrusive doubly linked lists through the records. Nothing here allocates per packet except the
// caller's event vector, which the caller reserves.
#include "matcher.h"
#include "spa.h"

#include <algorithm>
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <unordered_map>

namespace knockd {
namespace {

constexpr uint32_t kNone = 0xffffffffu;
constexpr int64_t kBucketUs = 16384;  // G
constexpr uint32_t kWheelSize = 4096;  // W
constexpr int64_t kSecondUs = 1000000;
// A wheel list's ends name their bucket: the head's wheel_prev and the tail's wheel_next hold
// kBucketMarker + bucket, so a record needs no bucket field to leave its list. Links below
// kBucketMarker are slots.
constexpr uint32_t kBucketMarker = 0xffffe000u;
bool is_slot(uint32_t link) { return link < kBucketMarker; }

// Compact records (MATCHER.md §9) hold links in 24 bits (the values from kBucketMarker up, kNone
// included, are stored as their low 24 bits and sign-extended back) and t_first as its low 32 bits,
// recovered from the matcher's time: every live record is younger than its longest timeout plus one
// bucket. Programs beyond either bound get a side array with the high bits (WideRecord).
constexpr uint32_t kLinkBits = 24, kLinkMask = (1u << kLinkBits) - 1, kLinkTop = kBucketMarker & kLinkMask;
constexpr uint32_t kCompactMaxTracked = kLinkTop;  // slots 0 .. kLinkTop − 1
constexpr int64_t kCompactMaxTimeoutUs = (int64_t(1) << 32) - 4 * kBucketUs;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// The fields live in three 64-bit words, each read and written whole (a narrow store followed by a
// wide load of the same bytes would wait for the store to reach the cache). Links and t_first go
// through Matcher::State, which knows the matcher's time and the side array.
struct Record {
  uint8_t src[16];
  uint64_t a;  // t_first's low 32 bits | age_next << 32 | flags << 56
  uint64_t b;  // age_prev | wheel_next << 24 | cohort << 48
  uint64_t c;  // wheel_prev | stage of member j (5 bits: live stages are 1..31, 0 = dead) << (24 + 5j)

  static constexpr uint64_t kFamily6 = 1, kInStage1 = 2, kDetached = 4;  // flags; then window_offset << 3
  void set_flag(uint64_t flag, bool on) { a = on ? a | flag << 56 : a & ~(flag << 56); }
  uint8_t family() const { return a >> 56 & kFamily6 ? 6 : 4; }
  bool in_stage1() const { return a >> 56 & kInStage1; }
  // Not linked in a wheel bucket (while its bucket is being processed, or before its first link).
  bool detached() const { return a >> 56 & kDetached; }
  // Derived door: its window − the window of t_first + 1 (MATCHER.md §10).
  uint8_t window_offset() const { return uint8_t(a >> 59 & 3); }
  uint16_t cohort() const { return uint16_t(b >> 48); }
  void set_cohort(uint16_t cohort) { b = (b & ~(uint64_t(0xffff) << 48)) | uint64_t(cohort) << 48; }
  uint8_t stage(unsigned j) const { return uint8_t(c >> (24 + 5 * j) & 31); }
  void set_stage(unsigned j, uint8_t s) { c = (c & ~(uint64_t(31) << (24 + 5 * j))) | uint64_t(s) << (24 + 5 * j); }
  void set_stages(uint64_t stages) { c = (c & kLinkMask) | stages << 24; }
};
static_assert(sizeof(Record) == 40, "a tracked source costs 40 bytes of record (MATCHER.md §9)");
static_assert(kMaxCohort * 5 + 24 <= 64 && kMaxSteps <= 32, "live stages fit in 5 bits");

// The high bits of a record whose program needs them: MaxTracked above kCompactMaxTracked, or a
// seq_timeout too long for a 32-bit t_first.
struct WideRecord {
  uint32_t t_high;
  uint8_t link_high[4];
};

enum Link { kAgeNext, kAgePrev, kWheelNext, kWheelPrev };

template <Link k>
uint64_t& link_word(Record& r) {
  if constexpr (k == kAgeNext) return r.a;
  else if constexpr (k == kWheelPrev) return r.c;
  else return r.b;
}
template <Link k>
const uint64_t& link_word(const Record& r) {
  return link_word<k>(const_cast<Record&>(r));
}
template <Link k>
constexpr unsigned kLinkShift = k == kAgeNext ? 32 : k == kWheelNext ? 24 : 0;

uint64_t key_hash(uint8_t family, const uint8_t* src, uint8_t group) {
  uint64_t a, b;
  std::memcpy(&a, src, 8);
  std::memcpy(&b, src + 8, 8);
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + (uint64_t(family) << 8 | group)) * 0xC2B2AE3D27D4EB4Full;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

// ceil(4/3 × maxTracked) slots (at most 75% full), rounded up to whole cache lines: not a power of two,
// which would cost up to twice that (8.4 bytes per source at maxTracked 1,000,000 instead of 5.3).
size_t index_capacity(uint32_t max_tracked) {
  const uint64_t need = (uint64_t(max_tracked) * 4 + 2) / 3;
  return size_t((need + 15) / 16 * 16);
}

// A zero-filled array from anonymous mmap: the kernel commits its pages on first touch, so a large
// MaxTracked costs memory only as sources arrive, while the allocation itself happens once, at load.
// Transparent huge pages are requested because the index and the pool are read at random: with 4 KiB
// pages nearly every lookup would also miss the TLB. MADV_DONTFORK: a door's command is a fork + exec
// of the daemon, whose child never reads this state; without it fork copies the page tables of a full
// table and every page the capture thread then writes is copied once more (copy-on-write faults and
// TLB shootdowns on the capture thread, seen in perf under a flood).
template <typename T>
class ZeroedArray {
 public:
  ZeroedArray() = default;
  ZeroedArray(const ZeroedArray&) = delete;
  ZeroedArray& operator=(const ZeroedArray&) = delete;
  ~ZeroedArray() { release(); }

  void reset(size_t n) {
    release();
    if (n == 0) return;
    bytes_ = n * sizeof(T);
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    if (bytes_ >= kHugePage) madvise(p, bytes_, MADV_HUGEPAGE);  // hints: failure only costs speed
    madvise(p, bytes_, MADV_DONTFORK);
    data_ = static_cast<T*>(p);
    size_ = n;
  }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  size_t size() const { return size_; }
  void zero() { std::memset(data_, 0, bytes_); }

 private:
  static constexpr size_t kHugePage = size_t(2) << 20;
  void release() {
    if (data_) munmap(data_, bytes_);
    data_ = nullptr;
    size_ = bytes_ = 0;
  }
  T* data_ = nullptr;
  size_t size_ = 0, bytes_ = 0;
};

constexpr uint32_t kUsedWindows = 65536;

// The used-table of MATCHER.md §10: (door fingerprint, family, source, window) of derived sequences that
// opened their door. A ring in insertion order plus a linear-probing index; adding first drops expired
// entries from the head, then the oldest entry when the ring is full (FIFO), exactly as src/match/matcher.ts
// does. An expired entry counts as absent even while it is still in the ring.
class UsedWindows {
 public:
  bool has(uint32_t fingerprint, uint8_t family, const uint8_t* src, int64_t window, int64_t now) const {
    if (count_ == 0) return false;
    for (size_t i = home(fingerprint, family, src, window);; i = (i + 1) & kMask) {
      const uint32_t e = index_[i];
      if (e == 0) return false;
      if (ring_[e - 1].is(fingerprint, family, src, window) && now < ring_[e - 1].expiry) return true;
    }
  }

  void add(uint32_t fingerprint, uint8_t family, const uint8_t* src, int64_t window, int64_t expiry, int64_t now) {
    while (count_ > 0 && ring_[head_].expiry <= now) remove_head();
    if (count_ == kUsedWindows) remove_head();
    const uint32_t at = (head_ + count_) % kUsedWindows;
    count_++;
    Entry& e = ring_[at];
    std::memcpy(e.src, src, 16);
    e.window = window;
    e.expiry = expiry;
    e.fingerprint = fingerprint;
    e.family = family;
    size_t i = home(fingerprint, family, src, window);
    while (index_[i] != 0) i = (i + 1) & kMask;
    index_[i] = at + 1;
  }

 private:
  static constexpr size_t kMask = kUsedWindows * 2 - 1;
  struct Entry {
    uint8_t src[16];
    int64_t window, expiry;
    uint32_t fingerprint;
    uint8_t family;
    bool is(uint32_t fp, uint8_t fam, const uint8_t* s, int64_t w) const {
      return fingerprint == fp && family == fam && window == w && std::memcmp(src, s, 16) == 0;
    }
  };

  static size_t home(uint32_t fingerprint, uint8_t family, const uint8_t* src, int64_t window) {
    return (key_hash(family, src, uint8_t(fingerprint)) ^ (uint64_t(fingerprint) * 0x9E3779B97F4A7C15ull) ^
            (uint64_t(window) * 0xC2B2AE3D27D4EB4Full >> 7)) &
           kMask;
  }

  void remove_head() {
    const Entry& gone = ring_[head_];
    size_t i = home(gone.fingerprint, gone.family, gone.src, gone.window);
    while (index_[i] != head_ + 1) i = (i + 1) & kMask;
    // Backward shift, as in the record index.
    for (size_t j = (i + 1) & kMask; index_[j] != 0; j = (j + 1) & kMask) {
      const Entry& m = ring_[index_[j] - 1];
      size_t h = home(m.fingerprint, m.family, m.src, m.window);
      bool stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
      if (!stays) {
        index_[i] = index_[j];
        i = j;
      }
    }
    index_[i] = 0;
    head_ = (head_ + 1) % kUsedWindows;
    count_--;
  }

  std::vector<Entry> ring_ = std::vector<Entry>(kUsedWindows);
  std::vector<uint32_t> index_ = std::vector<uint32_t>(kUsedWindows * 2, 0);
  uint32_t head_ = 0, count_ = 0;
};

}  // namespace

struct Matcher::State {
  ZeroedArray<Record> pool;
  // Allocated only when the program does not fit compact records (see kCompactMaxTracked).
  ZeroedArray<WideRecord> wide_part;
  bool wide = false;
  // Index entries, 0 = empty: the pool slot + 1 in the low slot_bits, and in the bits maxTracked leaves
  // spare a tag — the entry's distance from its home position (saturating at disp_max) and above it a
  // few more bits of its key's hash — so probing and backward-shift deletion skip or place entries
  // without reading their records (a cache miss each); only a full tag match reads the record.
  ZeroedArray<uint32_t> index;
  size_t capacity = 0;
  unsigned slot_bits = 32, fp_shift = 32;
  uint32_t slot_mask = ~0u, disp_max = 0, fp_mask = 0;
  // Recycled slots, a LIFO stack kept in the free records themselves (slots from high_water on were never
  // used). The top node is a free record whose first words hold the next node and up to kFreeChunk free
  // slots stacked above the node itself; a start reads one new record per chunk, named a chunk in
  // advance, rather than chasing one link per slot (a dependent cache miss each).
  uint32_t free_top = kNone;
  uint32_t high_water = 0;
  uint32_t count = 0;
  std::vector<uint32_t> wheel_head, wheel_tail;
  // The age lists of §4.1: every tracked record is on one of them, oldest first.
  struct AgeList {
    uint32_t head = kNone, tail = kNone, size = 0;
  };
  AgeList stage1, progressed;
  // The group of each cohort of the program the records are keyed for (a record's group is its cohort's).
  std::vector<uint8_t> cohort_group;

  // Time and budget (§2): kept across loads.
  bool time_set = false;
  int64_t now = 0;
  // What compact records' t_first is recovered from: no earlier than any record's t_first, and less than
  // 2^32 µs after every live one's. `now` once the wheel has caught up with it; while the wheel advances,
  // the time before (records due are still in the wheel, older than their timeout).
  int64_t time_ref = 0;
  int64_t wheel_pos = 0;
  int64_t window = 0;
  uint32_t used = 0, suppressed = 0;
  // Derived doors' used windows (§10), kept across loads; allocated at the first derived completion.
  std::unique_ptr<UsedWindows> used_windows;

  // Whether the program's records need the side array: a slot or a t_first that compact records cannot hold.
  static bool needs_wide(const Program& program) {
    if (program.max_tracked > kCompactMaxTracked) return true;
    for (const Door& d : program.doors) {
      if (d.timeout_us > kCompactMaxTimeoutUs) return true;
    }
    return false;
  }

  void allocate(const Program& program) {
    const uint32_t max_tracked = program.max_tracked;
    pool.reset(max_tracked);
    wide = needs_wide(program);
    wide_part.reset(wide ? max_tracked : 0);
    index.reset(index_capacity(max_tracked));
    capacity = index.size();
    slot_bits = 0;
    while (slot_bits < 32 && (uint64_t(1) << slot_bits) <= max_tracked) slot_bits++;  // holds slot + 1
    const unsigned spare = 32 - slot_bits;
    const unsigned disp_bits = std::min(spare, 6u);
    slot_mask = uint32_t((uint64_t(1) << slot_bits) - 1);
    disp_max = (1u << disp_bits) - 1;
    fp_shift = slot_bits + disp_bits;
    fp_mask = uint32_t((uint64_t(1) << (spare - disp_bits)) - 1);
    wheel_head.assign(kWheelSize, kNone);
    wheel_tail.assign(kWheelSize, kNone);
    free_top = kNone;
    high_water = 0;
    count = 0;
    stage1 = progressed = AgeList{};
    cohort_group.resize(program.cohorts.size());
    for (size_t i = 0; i < program.cohorts.size(); i++) cohort_group[i] = uint8_t(program.cohorts[i].group);
  }

  template <Link k>
  uint32_t link(uint32_t slot) const {
    const uint32_t low = uint32_t(link_word<k>(pool[slot]) >> kLinkShift<k>) & kLinkMask;
    if (wide) return low | uint32_t(wide_part[slot].link_high[k]) << kLinkBits;
    return low >= kLinkTop ? low | ~kLinkMask : low;
  }
  template <Link k>
  void set_link(uint32_t slot, uint32_t value) {
    uint64_t& word = link_word<k>(pool[slot]);
    word = (word & ~(uint64_t(kLinkMask) << kLinkShift<k>)) | uint64_t(value & kLinkMask) << kLinkShift<k>;
    if (wide) wide_part[slot].link_high[k] = uint8_t(value >> kLinkBits);
  }

  int64_t t_first(uint32_t slot) const {
    const uint32_t low = uint32_t(pool[slot].a);
    if (wide) return int64_t(uint64_t(wide_part[slot].t_high) << 32 | low);
    return time_ref - int64_t(uint32_t(uint32_t(time_ref) - low));
  }
  void set_t_first(uint32_t slot, int64_t t) {
    Record& r = pool[slot];
    r.a = (r.a & ~uint64_t(0xffffffff)) | uint32_t(uint64_t(t));
    if (wide) wide_part[slot].t_high = uint32_t(uint64_t(t) >> 32);
  }

  uint8_t group_of(const Record& r) const { return cohort_group[r.cohort()]; }

  // The links of one list (age or wheel) in a record about to be written: its middle word holds one link
  // of each, the others are its neighbours. always_inline: see MatchCall::prefetch_record.
  [[gnu::always_inline]] void prefetch_links(uint32_t slot) const {
    if (is_slot(slot)) __builtin_prefetch(&pool[slot].b, 1);
  }

  // §4.1: the record a start evicts from a full table. The stage-1 list gives its oldest while it holds
  // at least half the table (or nothing has progressed), else the progressed list gives its oldest.
  uint32_t victim() const {
    return progressed.head == kNone || uint64_t(stage1.size) * 2 >= pool.size() ? stage1.head : progressed.head;
  }

  size_t bytes() const {
    return pool.size() * sizeof(Record) + wide_part.size() * sizeof(WideRecord) + index.size() * sizeof(uint32_t) +
           (wheel_head.capacity() + wheel_tail.capacity()) * sizeof(uint32_t);
  }

  bool same_key(const Record& r, uint8_t family, const uint8_t* src, uint8_t group) const {
    return r.family() == family && group_of(r) == group && std::memcmp(r.src, src, 16) == 0;
  }

  uint32_t entry_slot(uint32_t entry) const { return (entry & slot_mask) - 1; }
  // Shifts in 64 bits: with maxTracked ≥ 2^31 the slot takes all 32 bits and the tag is empty.
  uint32_t entry_disp(uint32_t entry) const { return uint32_t(uint64_t(entry) >> slot_bits) & disp_max; }
  uint32_t entry_fingerprint(uint32_t entry) const { return uint32_t(uint64_t(entry) >> fp_shift); }
  uint32_t fingerprint(uint64_t hash) const { return uint32_t(hash) & fp_mask; }
  uint32_t with_disp(uint32_t entry, size_t disp) const {
    const uint64_t field = uint64_t(disp_max) << slot_bits;
    return uint32_t((entry & ~field) | uint64_t(std::min<size_t>(disp, disp_max)) << slot_bits);
  }
  uint32_t make_entry(uint32_t slot, size_t disp, uint64_t hash) const {
    return with_disp(uint32_t((slot + 1) | uint64_t(fingerprint(hash)) << fp_shift), disp);
  }
  uint64_t record_hash(const Record& r) const { return key_hash(r.family(), r.src, group_of(r)); }
  // Position from the hash's high bits (multiply-shift onto [0, capacity)); the tag uses its low bits.
  size_t home_of(uint64_t hash) const { return size_t((unsigned __int128)hash * capacity >> 64); }
  size_t next(size_t i) const { return i + 1 == capacity ? 0 : i + 1; }
  size_t distance(size_t from, size_t to) const { return to >= from ? to - from : to + capacity - from; }

  // `hash` is key_hash of the key (computed once per packet by the caller).
  uint32_t find(uint8_t family, const uint8_t* src, uint8_t group, uint64_t hash) const {
    const uint32_t fp = fingerprint(hash);
    size_t disp = 0;
    for (size_t i = home_of(hash);; i = next(i), disp++) {
      const uint32_t entry = index[i];
      if (entry == 0) return kNone;
      if (entry_fingerprint(entry) != fp) continue;
      const uint32_t d = entry_disp(entry);
      if (d != disp && !(d == disp_max && disp >= disp_max)) continue;  // another home
      if (same_key(pool[entry_slot(entry)], family, src, group)) return entry_slot(entry);
    }
  }

  void index_insert(uint32_t slot, uint64_t hash) {
    size_t i = home_of(hash), disp = 0;
    for (; index[i] != 0; i = next(i)) disp++;
    index[i] = make_entry(slot, disp, hash);
  }

  void index_erase(uint32_t slot, uint64_t hash) {
    size_t i = home_of(hash);
    while (entry_slot(index[i]) != slot) i = next(i);
    // Backward shift: pull later entries of the probe run into the hole unless their home lies
    // cyclically in (hole, j]; a moved entry is nearer its home, so its distance is re-encoded.
    for (size_t j = next(i); index[j] != 0; j = next(j)) {
      const uint32_t entry = index[j];
      const uint32_t d = entry_disp(entry);
      // A saturated distance does not tell the home: ask the record.
      const size_t home = d < disp_max ? (j >= d ? j - d : j + capacity - d) : home_of(record_hash(pool[entry_slot(entry)]));
      const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      // Without a branch (whether an entry stays is a coin toss in the long runs of a nearly full index, so
      // a branch would be mispredicted about every other entry): the hole takes every entry tentatively,
      // and a staying one is overwritten later, by the next entry that moves or by the final zero (the scan
      // never comes back to the hole: the index always has an empty slot). The hole moves by a mask, as
      // the compiler turns ?: back into a branch.
      index[i] = with_disp(entry, distance(home, i));
      i = j + ((i - j) & (size_t(0) - size_t(stays)));
    }
    index[i] = 0;
  }

  // Append a record at the tail of a bucket's list.
  void wheel_link(uint32_t slot, uint32_t bucket) {
    pool[slot].set_flag(Record::kDetached, false);
    const uint32_t tail = wheel_tail[bucket];
    set_link<kWheelNext>(slot, kBucketMarker + bucket);
    set_link<kWheelPrev>(slot, tail == kNone ? kBucketMarker + bucket : tail);
    if (tail == kNone) wheel_head[bucket] = slot;
    else set_link<kWheelNext>(tail, slot);
    wheel_tail[bucket] = slot;
  }

  void wheel_unlink(uint32_t slot) {
    if (pool[slot].detached()) return;
    const uint32_t prev = link<kWheelPrev>(slot), next = link<kWheelNext>(slot);
    if (is_slot(prev)) set_link<kWheelNext>(prev, next);
    else wheel_head[prev - kBucketMarker] = is_slot(next) ? next : kNone;
    if (is_slot(next)) set_link<kWheelPrev>(next, prev);
    else wheel_tail[next - kBucketMarker] = is_slot(prev) ? prev : kNone;
    pool[slot].set_flag(Record::kDetached, true);
  }

  // Append a record that is on no age list to the tail of one.
  void age_append(uint32_t slot, bool to_stage1) {
    AgeList& list = to_stage1 ? stage1 : progressed;
    pool[slot].set_flag(Record::kInStage1, to_stage1);
    set_link<kAgeNext>(slot, kNone);
    set_link<kAgePrev>(slot, list.tail);
    if (list.tail == kNone) list.head = slot;
    else set_link<kAgeNext>(list.tail, slot);
    list.tail = slot;
    list.size++;
  }

  // Take a tracked record off its age list.
  void age_unlink(uint32_t slot) {
    AgeList& list = pool[slot].in_stage1() ? stage1 : progressed;
    const uint32_t prev = link<kAgePrev>(slot), next = link<kAgeNext>(slot);
    if (prev == kNone) list.head = next;
    else set_link<kAgeNext>(prev, next);
    if (next == kNone) list.tail = prev;
    else set_link<kAgePrev>(next, prev);
    list.size--;
  }

  // A member advanced (§4 step 5): the record goes to the tail of the progressed list.
  void age_progress(uint32_t slot) {
    age_unlink(slot);
    age_append(slot, false);
  }

  // A free record's node view: word 0 the next node, word 1 how many slots it holds, words 2.. the slots
  // (the whole record: nothing of a free record is read; load() finds the free slots on this stack).
  static constexpr uint32_t kFreeChunk = 8;
  static constexpr size_t kNodeNext = 0, kNodeCount = 1, kNodeSlots = 2;
  static_assert((kNodeSlots + kFreeChunk) * 4 <= sizeof(Record), "the node view fits in a record");

  uint32_t node_word(uint32_t slot, size_t k) const {
    uint32_t v;
    std::memcpy(&v, reinterpret_cast<const unsigned char*>(&pool[slot]) + 4 * k, sizeof v);
    return v;
  }
  void set_node_word(uint32_t slot, size_t k, uint32_t v) {
    std::memcpy(reinterpret_cast<unsigned char*>(&pool[slot]) + 4 * k, &v, sizeof v);
  }
  // A slot the next starts will overwrite: both cache lines of its record.
  [[gnu::always_inline]] void prefetch_record_for_write(uint32_t slot) const {
    const char* r = reinterpret_cast<const char*>(&pool[slot]);
    __builtin_prefetch(r, 1);
    __builtin_prefetch(r + sizeof(Record) - 1, 1);
  }

  // How many takes ahead the record about to be overwritten is asked for: a flood or a burst of first
  // knocks takes a slot per packet, and one take ahead is too short a time for a miss to memory.
  static constexpr uint32_t kTakeAhead = 6;

  // The slot the stack yields `ahead` takes from now (kNone if it holds fewer), without changing it. Nodes
  // pop their held slots first (last pushed first), then themselves. Nodes usually hold kFreeChunk slots,
  // so this reads the top node and at most the next, which was asked for when the top became the top.
  uint32_t free_slot_ahead(uint32_t node, uint32_t ahead) const {
    while (node != kNone) {
      const uint32_t held = node_word(node, kNodeCount);
      if (ahead < held) return node_word(node, kNodeSlots + held - 1 - ahead);
      if (ahead == held) return node;
      ahead -= held + 1;
      node = node_word(node, kNodeNext);
    }
    return kNone;
  }

  uint32_t take_slot() {
    count++;
    if (free_top == kNone) return high_water++;
    const uint32_t node = free_top;
    const uint32_t held = node_word(node, kNodeCount);
    uint32_t slot;
    if (held == 0) {
      free_top = node_word(node, kNodeNext);
      if (free_top != kNone) __builtin_prefetch(&pool[free_top]);
      slot = node;
    } else {
      set_node_word(node, kNodeCount, held - 1);
      const uint32_t next_node = node_word(node, kNodeNext);
      if (next_node != kNone) __builtin_prefetch(&pool[next_node]);
      slot = node_word(node, kNodeSlots + held - 1);
    }
    const uint32_t ahead = free_slot_ahead(free_top, kTakeAhead - 1);
    if (ahead != kNone) prefetch_record_for_write(ahead);
    return slot;
  }

  void push_free(uint32_t slot) {
    if (free_top != kNone) {
      const uint32_t held = node_word(free_top, kNodeCount);
      if (held < kFreeChunk) {
        set_node_word(free_top, kNodeSlots + held, slot);
        set_node_word(free_top, kNodeCount, held + 1);
        return;
      }
    }
    set_node_word(slot, kNodeNext, free_top);
    set_node_word(slot, kNodeCount, 0);
    free_top = slot;
  }

  // Marks the slots below high_water that are on the free stack.
  void mark_free(std::vector<uint8_t>& is_free) const {
    for (uint32_t node = free_top; node != kNone; node = node_word(node, kNodeNext)) {
      is_free[node] = 1;
      for (uint32_t k = 0; k < node_word(node, kNodeCount); k++) is_free[node_word(node, kNodeSlots + k)] = 1;
    }
  }

  // `hash`: record_hash of the record.
  void free_record(uint32_t slot, uint64_t hash) {
    wheel_unlink(slot);
    age_unlink(slot);
    index_erase(slot, hash);
    push_free(slot);
    count--;
  }
};

namespace {

// Emission and the per-record rules, bound to one matcher's state, program and output for one call.
class MatchCall {
 public:
  MatchCall(Matcher::State& st, const Program& prog, Stats& stats, uint16_t shard, std::vector<EventRecord>& out)
      : st_(st), prog_(prog), stats_(stats), shard_(shard), out_(out) {}

  void set_time(int64_t t) {
    if (!st_.time_set) {
      st_.time_set = true;
      st_.now = st_.time_ref = t;
      st_.window = floor_div(t, kSecondUs);
      st_.wheel_pos = floor_div(t, kBucketUs);
      return;
    }
    // `now` unchanged: the budget window and the wheel were brought up to it by the call that set it.
    if (t <= st_.now) return;
    st_.now = t;
    int64_t window = floor_div(st_.now, kSecondUs);
    if (window != st_.window) {
      if (st_.suppressed > 0) {
        EventRecord& e = push(kEventSuppressed, 0, 0, 0, 0, nullptr, (st_.window + 1) * kSecondUs);
        e.count = st_.suppressed;
      }
      st_.window = window;
      st_.used = 0;
      st_.suppressed = 0;
    }
    advance_wheel();
    st_.time_ref = st_.now;
  }

  // What matching a parsed packet needs before it reads any state, worked out once per packet (feed_batch:
  // a few frames ahead): its accepting groups (§4; none if the packet can be neither visible nor tracked)
  // and the hash of its key in the first of them.
  struct Target {
    size_t n_groups;
    uint8_t groups[kMaxTargets + 1];
    uint64_t first_hash;
  };

  void target(const Packet& p, Target& t) const {
    t.n_groups = 0;
    if (p.family == 6 && (prog_.flags & kFlagIgnoreIpv6)) return;
    if (!prog_.has_derived && !prog_.any_door_uses(p.proto, p.dport)) return;
    t.n_groups = accepting(p, t.groups);
    if (t.n_groups > 0) t.first_hash = key_hash(p.family, p.src, t.groups[0]);
  }

  // Prefetch hints for a packet matched a few frames from now (nothing here changes any state): the index
  // slot its record (family, source, first accepting group) would start probing at, then the record that
  // slot names once it has arrived. Returns the slot, or kNoHome when the packet cannot need a record.
  size_t prefetch_index(const Target& t) const {
    if (t.n_groups == 0) return kNoHome;
    const size_t home = st_.home_of(t.first_hash);
    __builtin_prefetch(&st_.index[home]);
    return home;
  }

  // always_inline on the prefetch-only helpers: GCC's pure-const analysis deems a function that only
  // prefetches side-effect free and deletes calls to it (seen in the disassembly), so they must inline.
  [[gnu::always_inline]] void prefetch_record(size_t home) const {
    if (home == kNoHome) return;
    const uint32_t entry = st_.index[home];
    if (entry == 0) return;
    // 40-byte records may straddle cache lines: ask for both ends.
    const char* r = reinterpret_cast<const char*>(&st_.pool[st_.entry_slot(entry)]);
    __builtin_prefetch(r);
    __builtin_prefetch(r + sizeof(Record) - 1);
  }

  // Third hint, once the record has arrived: the neighbours that unlinking it will write — in its age list
  // (advancing moves it to the progressed tail, dying takes it out), in its wheel bucket unless every live member
  // simply advances to a later, non-final stage (then its deadline and bucket stay).
  [[gnu::always_inline]] void prefetch_neighbours(size_t home, uint32_t step) const {
    if (home == kNoHome) return;
    const uint32_t entry = st_.index[home];
    if (entry == 0) return;
    const uint32_t slot = st_.entry_slot(entry);
    const Record& r = st_.pool[slot];
    st_.prefetch_links(st_.link<kAgePrev>(slot));
    st_.prefetch_links(st_.link<kAgeNext>(slot));
    if (r.cohort() >= prog_.cohorts.size()) return;
    const Cohort& c = prog_.cohorts[r.cohort()];
    bool stays = true;
    for (uint8_t j = 0; j < c.size && stays; j++) {
      const Door& d = prog_.doors[c.doors[j]];
      const uint8_t s = r.stage(j);
      stays = s == 0 || (!d.is_derived() && s + 1u < d.length && d.steps[s] == step);
    }
    if (!stays) {
      st_.prefetch_links(st_.link<kWheelPrev>(slot));
      st_.prefetch_links(st_.link<kWheelNext>(slot));
    }
  }

  static constexpr size_t kNoHome = SIZE_MAX;

  // The SPA step (spa.h): true when the packet was an SPA candidate and is dealt with (an SPA event with
  // its payload, or a budgeted FAILED/SPA_AUTH); false sends it on to knock matching.
  bool spa(const Packet& p) {
    if (p.proto != kProtoUdp || !spa_candidate_length(p.payload_len)) return false;
    if (p.family == 6 && (prog_.flags & kFlagIgnoreIpv6)) return false;
    uint8_t groups[kMaxTargets + 1];
    const size_t n_groups = accepting(p, groups);
    const int32_t door = spa_authentic_door(prog_, groups, n_groups, p.dport, p.payload, p.payload_len);
    if (door == kNoSpaDoor) return false;
    if (door >= 0) {
      stats_[kStatSpaAccepted]++;
      push(kEventSpa, 0, p.family, 0, uint16_t(door), p.src, st_.now).count = p.payload_len;
      const size_t records = (p.payload_len + sizeof(EventRecord) - 1) / sizeof(EventRecord);
      const size_t at = out_.size();
      out_.resize(at + records);
      uint8_t* bytes = reinterpret_cast<uint8_t*>(out_.data() + at);
      std::memcpy(bytes, p.payload, p.payload_len);
      std::memset(bytes + p.payload_len, 0, records * sizeof(EventRecord) - p.payload_len);
      return true;
    }
    stats_[kStatSpaRejected]++;
    if (prog_.event_budget != 0 && st_.used >= prog_.event_budget) {
      st_.suppressed++;
      stats_[kStatSuppressed]++;
    } else {
      st_.used++;
      push(kEventFailed, kFailSpaAuth, p.family, 0, uint16_t(-1 - door), p.src, st_.now);
    }
    return true;
  }

  // §4 steps 3-6 for one parsed packet and its target().
  void match(const Packet& p, const Target& t) {
    const size_t n_groups = t.n_groups;
    const uint8_t* groups = t.groups;
    const uint32_t step = step_word(p.proto, p.dport);
    bool visible = false;
    if (n_groups > 0 && prog_.any_door_uses(p.proto, p.dport)) {
      for (size_t i = 0; i < n_groups && !visible; i++) visible = prog_.group_sees(groups[i], step, p.proto, p.tcp_flags);
    }
    if (!visible && prog_.has_derived) visible = derived_visible(groups, n_groups, p);
    if (!visible) {
      stats_[kStatInvisible]++;
      return;
    }
    stats_[kStatVisible]++;

    uint64_t hashes[kMaxTargets + 1];  // of the packet's key in each accepting group
    struct {
      uint32_t slot;
      uint64_t hash;
    } candidates[kMaxTargets + 1];
    size_t n_candidates = 0;
    for (size_t i = 0; i < n_groups; i++) {
      hashes[i] = i == 0 ? t.first_hash : key_hash(p.family, p.src, groups[i]);
      const uint32_t slot = st_.find(p.family, p.src, groups[i], hashes[i]);
      if (slot != kNone && expire(slot, hashes[i])) candidates[n_candidates++] = {slot, hashes[i]};
    }
    if (n_candidates > 0) {
      for (size_t i = 0; i < n_candidates; i++) advance(candidates[i].slot, candidates[i].hash, p, step);
      return;
    }
    for (size_t i = 0; i < n_groups; i++) {
      const bool tracked = start(groups[i], hashes[i], p, step);
      if (prog_.has_derived) start_derived(groups[i], hashes[i], p, step, tracked);
    }
  }

 private:
  EventRecord& push(uint8_t kind, uint8_t reason, uint8_t family, uint8_t stage, uint16_t door, const uint8_t* src,
                    int64_t time) {
    EventRecord& e = out_.emplace_back();
    e.kind = kind;
    e.reason = reason;
    e.family = family;
    e.stage = stage;
    e.door = door;
    e.shard = shard_;
    e.generation = prog_.generation;
    e.count = 0;
    e.time_us = time;
    if (src) std::memcpy(e.addr, src, 16);
    else std::memset(e.addr, 0, 16);
    return e;
  }

  // STAGE and FAILED events go through the per-second budget (§2.2).
  void budgeted(uint8_t kind, uint8_t reason, const Record& r, uint8_t stage, uint16_t door, int64_t time) {
    if (prog_.event_budget != 0 && st_.used >= prog_.event_budget) {
      st_.suppressed++;
      stats_[kStatSuppressed]++;
      return;
    }
    st_.used++;
    push(kind, reason, r.family(), stage, door, r.src, time);
  }

  void stage_event(const Record& r, uint8_t stage, uint16_t door) {
    if (!(prog_.flags & kFlagStageEvents)) return;
    stats_[kStatStages]++;
    budgeted(kEventStage, 0, r, stage, door, st_.now);
  }

  // `window`: a derived door's used window (its low 32 bits go in count, §7: the fleet decides it once); 0 otherwise.
  void completed_event(const Record& r, uint8_t stage, uint16_t door, int64_t window) {
    stats_[kStatCompleted]++;
    push(kEventCompleted, 0, r.family(), stage, door, r.src, st_.now).count = uint32_t(uint64_t(window));
  }

  void failed_event(FailReason reason, const Record& r, uint8_t stage, uint16_t door, int64_t time) {
    stats_[reason == kFailTimeout ? kStatFailedTimeout : reason == kFailWrongPort ? kStatFailedWrongPort : kStatEvicted]++;
    budgeted(kEventFailed, reason, r, stage, door, time);
  }

  size_t accepting(const Packet& p, uint8_t* groups) const {
    size_t n = 0;
    bool local = prog_.flags & kFlagAllLocal;
    for (size_t i = 0; i < prog_.locals.size() && !local; i++) {
      const Address& a = prog_.locals[i];
      local = a.family == p.family && std::memcmp(a.bytes, p.dst, 16) == 0;
    }
    if (local) groups[n++] = 0;
    for (size_t i = 0; i < prog_.targets.size(); i++) {
      const Address& a = prog_.targets[i];
      if (a.family == p.family && std::memcmp(a.bytes, p.dst, 16) == 0) groups[n++] = uint8_t(i + 1);
    }
    return n;
  }

  int64_t deadline(uint32_t slot) const {
    const Record& r = st_.pool[slot];
    const Cohort& c = prog_.cohorts[r.cohort()];
    int64_t min_timeout = INT64_MAX;
    for (uint8_t j = 0; j < c.size; j++) {
      if (r.stage(j)) min_timeout = std::min(min_timeout, prog_.doors[c.doors[j]].timeout_us);
    }
    return st_.t_first(slot) + min_timeout;
  }

  uint32_t bucket_for(int64_t deadline_us) const {
    int64_t b = std::max(floor_div(deadline_us, kBucketUs), st_.wheel_pos);
    return uint32_t(b & (kWheelSize - 1));
  }

  // Re-file a record whose deadline changed at the tail of its new bucket.
  void move(uint32_t slot) {
    st_.wheel_unlink(slot);
    st_.wheel_link(slot, bucket_for(deadline(slot)));
  }

  // §2.1 expire(r); `hash`: its record_hash. Returns whether the record still exists.
  bool expire(uint32_t slot, uint64_t hash) {
    Record& r = st_.pool[slot];
    const int64_t before = deadline(slot);
    if (before > st_.now) return true;
    const int64_t t_first = st_.t_first(slot);
    const Cohort& c = prog_.cohorts[r.cohort()];
    bool live = false;
    for (uint8_t j = 0; j < c.size; j++) {
      const Door& d = prog_.doors[c.doors[j]];
      const uint8_t s = r.stage(j);
      if (!s) continue;
      if (t_first + d.timeout_us <= st_.now) {
        failed_event(kFailTimeout, r, s, c.doors[j], t_first + d.timeout_us);
        r.set_stage(j, 0);
      } else {
        live = true;
      }
    }
    if (!live) {
      st_.free_record(slot, hash);
      return false;
    }
    move(slot);  // a member died, so the deadline moved later
    return true;
  }

  void process_bucket(uint32_t b) {
    uint32_t slot = st_.wheel_head[b];
    st_.wheel_head[b] = st_.wheel_tail[b] = kNone;
    while (is_slot(slot)) {  // the tail's next link is the bucket's marker
      Record& r = st_.pool[slot];
      const uint32_t next = st_.link<kWheelNext>(slot);
      r.set_flag(Record::kDetached, true);
      const int64_t d = deadline(slot);
      if (d <= st_.now) expire(slot, st_.record_hash(r));
      else st_.wheel_link(slot, bucket_for(d));
      slot = next;
    }
  }

  void advance_wheel() {
    const int64_t target = floor_div(st_.now, kBucketUs);
    if (target - st_.wheel_pos > int64_t(kWheelSize)) {
      for (int64_t k = 0; k < int64_t(kWheelSize); k++) process_bucket(uint32_t((st_.wheel_pos + k) & (kWheelSize - 1)));
      st_.wheel_pos = target;
      return;
    }
    while (st_.wheel_pos < target) {
      process_bucket(uint32_t(st_.wheel_pos & (kWheelSize - 1)));
      st_.wheel_pos++;
    }
  }

  // §4 step 5 for one candidate record.
  void advance(uint32_t slot, uint64_t hash, const Packet& p, uint32_t step) {
    Record& r = st_.pool[slot];
    const int64_t before = deadline(slot);
    const Cohort& c = prog_.cohorts[r.cohort()];
    // Liveness is tracked here rather than read back from the stages just written.
    bool advanced = false, live = false;
    for (uint8_t j = 0; j < c.size; j++) {
      const uint8_t s = r.stage(j);
      if (!s) continue;
      const uint16_t door = c.doors[j];
      const Door& d = prog_.doors[door];
      const bool derived = d.is_derived();
      if (p.proto == kProtoTcp && !d.flags_ok(p.proto, p.tcp_flags)) {
        live = true;
      } else if ((derived ? record_step(slot, d, s) : d.steps[s]) == step) {
        const uint8_t next = uint8_t(s + 1);
        stage_event(r, next, door);
        if (next == d.length) {
          const int64_t window = derived ? record_window(slot, d) : 0;
          completed_event(r, next, door, window);
          if (derived) mark_used(d, window, r.family(), r.src);
          r.set_stage(j, 0);
        } else {
          r.set_stage(j, next);
          live = true;
        }
        advanced = true;
      } else if ((d.options & kOptAllowDuplicates) && (derived ? record_step(slot, d, s - 1) : d.steps[s - 1]) == step) {
        live = true;
      } else {
        failed_event(kFailWrongPort, r, s, door, st_.now);
        r.set_stage(j, 0);
      }
    }
    if (!live) {
      st_.free_record(slot, hash);
      return;
    }
    if (advanced) st_.age_progress(slot);
    if (deadline(slot) != before) move(slot);
  }

  // §4.1: make room for one record in a full table.
  void evict() {
    const uint32_t slot = st_.victim();
    Record& r = st_.pool[slot];
    const bool progressed = !r.in_stage1();
    const Cohort& c = prog_.cohorts[r.cohort()];
    for (uint8_t j = 0; j < c.size; j++) {
      const uint8_t s = r.stage(j);
      if (!s) continue;
      stats_[kStatEvictedProgressed] += progressed;
      failed_event(kFailEvicted, r, s, c.doors[j], st_.now);
    }
    st_.free_record(slot, st_.record_hash(r));
    prefetch_next_victim();
  }

  // A flood evicts an age list's head packet after packet: ask now for the next victim's index slot (its
  // record was asked for by the previous eviction) and for the record of the one after it.
  [[gnu::always_inline]] void prefetch_next_victim() const {
    const uint32_t victim = st_.victim();
    if (victim == kNone) return;
    __builtin_prefetch(&st_.index[st_.home_of(st_.record_hash(st_.pool[victim]))]);
    const uint32_t after = st_.link<kAgeNext>(victim);
    if (after != kNone) __builtin_prefetch(&st_.pool[after]);
  }

  // §4 step 6 for the fixed doors of one accepting group; returns whether a record now exists for the key.
  bool start(uint32_t group, uint64_t hash, const Packet& p, uint32_t step) {
    const Cohort* c = prog_.find_cohort(group, step);
    if (!c) return false;
    uint8_t starters = 0;
    bool needs_record = false;
    for (uint8_t j = 0; j < c->size; j++) {
      const Door& d = prog_.doors[c->doors[j]];
      if (!d.flags_ok(p.proto, p.tcp_flags)) continue;
      starters |= uint8_t(1u << j);
      needs_record |= d.length >= 2;
    }
    if (!starters) return false;
    if (needs_record && st_.count == st_.pool.size()) evict();
    // The event records carry the source from a record: the new one, or a scratch one if none is kept.
    Record scratch;
    const uint32_t slot = needs_record ? st_.take_slot() : kNone;
    Record& r = needs_record ? st_.pool[slot] : scratch;
    init_record(r, p, uint16_t(c - prog_.cohorts.data()), 0);
    for (uint8_t j = 0; j < c->size; j++) {
      if (!(starters >> j & 1)) continue;
      const uint16_t door = c->doors[j];
      if (prog_.doors[door].length == 1) {
        stage_event(r, 1, door);
        completed_event(r, 1, door, 0);
      } else if (needs_record) {
        stage_event(r, 1, door);
        r.set_stage(j, 1);
      }
    }
    if (!needs_record) return false;
    commit(slot, hash);
    return true;
  }

  // Every field of a record about to be written except t_first (commit sets it): members dead, detached,
  // list links unset. In place, word by word.
  static void init_record(Record& r, const Packet& p, uint16_t cohort, uint8_t window_offset) {
    std::memcpy(r.src, p.src, 16);
    r.a = (Record::kDetached | (p.family == 6 ? Record::kFamily6 : 0) | uint64_t(window_offset) << 3) << 56;
    r.b = uint64_t(cohort) << 48;
    r.c = 0;
  }

  // A new record (taken slot, initialised, with live members) enters the index, the stage-1 list and the
  // wheel, started now.
  void commit(uint32_t slot, uint64_t hash) {
    st_.set_t_first(slot, st_.now);
    st_.index_insert(slot, hash);
    st_.age_append(slot, true);
    st_.wheel_link(slot, bucket_for(deadline(slot)));
  }

  // ---- derived doors (§10) ----

  bool derived_visible(const uint8_t* groups, size_t n_groups, const Packet& p) const {
    for (size_t i = 0; i < n_groups; i++) {
      for (uint16_t door : prog_.derived_by_group[groups[i]]) {
        if (prog_.doors[door].derived_sees(p.proto, p.dport, p.tcp_flags)) return true;
      }
    }
    return false;
  }

  // Start for the derived doors of one group, in program order: the first of windows w−1, w, w+1 not used
  // by (door, source) whose step 0 is this packet. A length-1 door completes at once; a longer one needs
  // the record of (family, source, group) unless the fixed doors or an earlier derived door took it.
  void start_derived(uint32_t group, uint64_t hash, const Packet& p, uint32_t step, bool tracked) {
    for (uint16_t door : prog_.derived_by_group[group]) {
      const Door& d = prog_.doors[door];
      if (!d.derived_sees(p.proto, p.dport, p.tcp_flags)) continue;
      const int64_t w = floor_div(st_.now, d.derived.time_step_us);
      uint8_t offset = 0;
      for (; offset < 3; offset++) {
        const int64_t window = w + offset - 1;
        if (st_.used_windows && st_.used_windows->has(d.fingerprint, p.family, p.src, window, st_.now)) continue;
        if (d.derived_step(window, p.family, p.src, 0) == step) break;
      }
      if (offset == 3) continue;
      if (d.length == 1) {
        Record scratch;
        init_record(scratch, p, uint16_t(d.cohort), offset);
        stage_event(scratch, 1, door);
        completed_event(scratch, 1, door, w + offset - 1);
        mark_used(d, w + offset - 1, p.family, p.src);
        continue;
      }
      if (tracked) continue;
      if (st_.count == st_.pool.size()) evict();
      const uint32_t slot = st_.take_slot();
      Record& r = st_.pool[slot];
      init_record(r, p, uint16_t(d.cohort), offset);
      stage_event(r, 1, door);
      r.set_stage(0, 1);
      commit(slot, hash);
      tracked = true;
    }
  }

  int64_t record_window(uint32_t slot, const Door& d) const {
    return floor_div(st_.t_first(slot), d.derived.time_step_us) + st_.pool[slot].window_offset() - 1;
  }

  uint32_t record_step(uint32_t slot, const Door& d, unsigned i) const {
    const Record& r = st_.pool[slot];
    return d.derived_step(record_window(slot, d), r.family(), r.src, i);
  }

  void mark_used(const Door& d, int64_t window, uint8_t family, const uint8_t* src) {
    if (!st_.used_windows) st_.used_windows = std::make_unique<UsedWindows>();
    st_.used_windows->add(d.fingerprint, family, src, window, (window + 2) * d.derived.time_step_us, st_.now);
  }

  Matcher::State& st_;
  const Program& prog_;
  Stats& stats_;
  uint16_t shard_;
  std::vector<EventRecord>& out_;
};

}  // namespace

Matcher::Matcher(uint16_t shard) : state_(std::make_unique<State>()), shard_(shard) {}
Matcher::~Matcher() = default;

size_t Matcher::state_bytes() const { return state_->bytes(); }

// Frames are matched strictly in order, each after its own set_time, exactly as one by one. What runs
// ahead is parsing and the packet's target (which read only the frame and the program) and prefetching:
// the index slot of frame i + kIndexAhead, the record named by the (by then loaded) slot of frame
// i + kRecordAhead and the list neighbours of frame i + kLinksAhead. With a few hundred nanoseconds of
// misses per lookup otherwise, this overlaps them with the matching of earlier frames.
void Matcher::feed_batch(const FrameView* frames, size_t n, std::vector<EventRecord>& out) {
  // Distances for bench/matcher.bench.ts (a), whose ~11 MB of index and records stay in L3 (a miss there
  // costs ~16 ns on the development VM, one to DRAM ~150 ns; a frame takes ~40 ns): any set from 12/8/3
  // to 40/20/6 runs the same within noise; these leave room for misses to DRAM.
  constexpr size_t kIndexAhead = 20, kRecordAhead = 12, kLinksAhead = 4, kRing = 32;  // kRing > kIndexAhead, a power of two
  struct Parsed {
    Packet packet;
    ParseResult result;
    MatchCall::Target target;
    size_t home;
  };
  MatchCall call(*state_, *program_, stats_, shard_, out);
  Parsed ahead[kRing];
  auto parse_ahead = [&](size_t k) {
    Parsed& a = ahead[k & (kRing - 1)];
    a.result = parse_frame(frames[k].data, frames[k].len, frames[k].link_type, a.packet);
    if (a.result != ParseResult::kKnock) {
      a.home = MatchCall::kNoHome;
      return;
    }
    call.target(a.packet, a.target);
    a.home = call.prefetch_index(a.target);
  };
  for (size_t k = 0; k < std::min(n, kIndexAhead); k++) parse_ahead(k);
  for (size_t i = 0; i < n; i++) {
    if (i + kIndexAhead < n) parse_ahead(i + kIndexAhead);
    if (i + kRecordAhead < n) call.prefetch_record(ahead[(i + kRecordAhead) & (kRing - 1)].home);
    if (i + kLinksAhead < n) {
      const Parsed& a = ahead[(i + kLinksAhead) & (kRing - 1)];
      call.prefetch_neighbours(a.home, step_word(a.packet.proto, a.packet.dport));
    }
    const Parsed& a = ahead[i & (kRing - 1)];
    call.set_time(frames[i].ts_us);
    stats_[kStatFrames]++;
    switch (a.result) {
      case ParseResult::kMalformed:
        stats_[kStatMalformed]++;
        break;
      case ParseResult::kNotKnock:
        stats_[kStatNotKnock]++;
        break;
      case ParseResult::kKnock:
        if (program_->spa_doors.empty() || !call.spa(a.packet)) call.match(a.packet, a.target);
        break;
    }
  }
  stats_[kStatTracked] = state_->count;  // the wheel may have freed records even for a non-knock
}

void Matcher::feed(const uint8_t* frame, size_t len, uint16_t link_type, int64_t ts_us, std::vector<EventRecord>& out) {
  const FrameView one{frame, len, link_type, ts_us};
  feed_batch(&one, 1, out);
}

void Matcher::feed_packet(const Packet& packet, int64_t ts_us, std::vector<EventRecord>& out) {
  MatchCall step(*state_, *program_, stats_, shard_, out);
  step.set_time(ts_us);
  stats_[kStatFrames]++;
  if (!program_->spa_doors.empty() && step.spa(packet)) {
    stats_[kStatTracked] = state_->count;
    return;
  }
  MatchCall::Target target;
  step.target(packet, target);
  step.match(packet, target);
  stats_[kStatTracked] = state_->count;
}

void Matcher::tick(int64_t now_us, std::vector<EventRecord>& out) {
  MatchCall step(*state_, *program_, stats_, shard_, out);
  step.set_time(now_us);
  stats_[kStatTracked] = state_->count;
}

// §5: remap surviving attempts to the new program, then move them into storage sized for it.
void Matcher::load(std::shared_ptr<const Program> program) {
  const Program& next = *program;
  auto fresh = std::make_unique<State>();
  fresh->allocate(next);
  if (!program_) {
    state_ = std::move(fresh);
    program_ = std::move(program);
    return;
  }
  State& old = *state_;
  const Program& prev = *program_;
  // Each old door's door in the new program: the one with its fingerprint; identical doors (one
  // fingerprint) map by rank, the k-th old one to the k-th new one (§5).
  std::unordered_map<uint32_t, std::vector<uint16_t>> doors_of_fingerprint;
  for (size_t i = 0; i < next.doors.size(); i++) doors_of_fingerprint[next.doors[i].fingerprint].push_back(uint16_t(i));
  std::vector<uint32_t> mapped(prev.doors.size(), kNone);
  std::unordered_map<uint32_t, size_t> rank;
  for (size_t i = 0; i < prev.doors.size(); i++) {
    const size_t k = rank[prev.doors[i].fingerprint]++;
    const auto it = doors_of_fingerprint.find(prev.doors[i].fingerprint);
    if (it != doors_of_fingerprint.end() && k < it->second.size()) mapped[i] = it->second[k];
  }

  // Pass 1, pool order: rewrite each record in place for the new program and re-index it under its new
  // key; the first record to claim a key keeps it.
  std::vector<uint8_t> survives(old.high_water, 0), is_free(old.high_water, 0);
  old.mark_free(is_free);
  size_t n_survivors = 0;
  old.index.zero();
  old.cohort_group = fresh->cohort_group;  // records are re-keyed for the new program
  for (uint32_t slot = 0; slot < old.high_water; slot++) {
    if (is_free[slot]) continue;
    Record& r = old.pool[slot];
    const Cohort& c = prev.cohorts[r.cohort()];
    uint64_t stages = 0;
    uint32_t cohort = kNone;
    bool one_cohort = true;
    for (uint8_t j = 0; j < c.size; j++) {
      const uint8_t s = r.stage(j);
      if (!s) continue;
      if (mapped[c.doors[j]] == kNone) continue;
      const Door& d = next.doors[mapped[c.doors[j]]];
      one_cohort &= cohort == kNone || cohort == d.cohort;
      cohort = d.cohort;
      stages |= uint64_t(s) << (5 * d.member);
    }
    if (cohort == kNone || !one_cohort) continue;
    r.set_cohort(uint16_t(cohort));
    r.set_stages(stages);
    const uint64_t hash = old.record_hash(r);
    if (old.find(r.family(), r.src, old.group_of(r), hash) != kNone) continue;
    old.index_insert(slot, hash);
    survives[slot] = 1;
    n_survivors++;
  }

  // Shrinking: the oldest stage-1 records go first, then the oldest (by first knock) of any kind; equal
  // first knocks are ordered by key (family, source, group), which does not depend on allocation history.
  for (uint32_t slot = old.stage1.head; slot != kNone && n_survivors > next.max_tracked; slot = old.link<kAgeNext>(slot)) {
    if (survives[slot]) survives[slot] = 0, n_survivors--;
  }
  if (n_survivors > next.max_tracked) {
    std::vector<uint32_t> by_age;
    for (uint32_t slot = 0; slot < old.high_water; slot++) {
      if (survives[slot]) by_age.push_back(slot);
    }
    std::sort(by_age.begin(), by_age.end(), [&](uint32_t a, uint32_t b) {
      const Record &x = old.pool[a], &y = old.pool[b];
      if (old.t_first(a) != old.t_first(b)) return old.t_first(a) < old.t_first(b);
      if (x.family() != y.family()) return x.family() < y.family();
      if (int c = std::memcmp(x.src, y.src, 16)) return c < 0;
      return old.group_of(x) < old.group_of(y);
    });
    for (size_t i = 0; n_survivors > next.max_tracked; i++) survives[by_age[i]] = 0, n_survivors--;
  }

  // Pass 2: copy survivors (pool order) and rebuild the wheel and the age lists in their old order.
  std::vector<uint32_t> moved_to(old.high_water, kNone);
  for (uint32_t slot = 0; slot < old.high_water; slot++) {
    if (!survives[slot]) continue;
    uint32_t to = fresh->take_slot();
    moved_to[slot] = to;
    fresh->pool[to] = old.pool[slot];  // its links are set below
    fresh->set_t_first(to, old.t_first(slot));
    fresh->index_insert(to, fresh->record_hash(fresh->pool[to]));
  }
  for (uint32_t b = 0; b < kWheelSize; b++) {
    for (uint32_t slot = old.wheel_head[b]; is_slot(slot); slot = old.link<kWheelNext>(slot)) {
      if (moved_to[slot] != kNone) fresh->wheel_link(moved_to[slot], b);
    }
  }
  for (const bool stage1 : {true, false}) {
    for (uint32_t slot = (stage1 ? old.stage1 : old.progressed).head; slot != kNone; slot = old.link<kAgeNext>(slot)) {
      if (moved_to[slot] != kNone) fresh->age_append(moved_to[slot], stage1);
    }
  }
  fresh->time_set = old.time_set;
  fresh->now = old.now;
  fresh->time_ref = old.time_ref;
  fresh->wheel_pos = old.wheel_pos;
  fresh->window = old.window;
  fresh->used = old.used;
  fresh->suppressed = old.suppressed;
  fresh->used_windows = std::move(old.used_windows);
  state_ = std::move(fresh);
  program_ = std::move(program);
  stats_[kStatTracked] = state_->count;
}

}  // namespace knockd
