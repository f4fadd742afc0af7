// Decoding of the compiled door program (docs/MATCHER.md §6). Every word index is checked against the
// array length before it is read; a program that does not fit is rejected with the word that broke it.
#include "program.h"

#include <algorithm>
#include <unordered_map>

namespace knockd {
namespace {

std::shared_ptr<const Program> fail(std::string* error, std::string message) {
  if (error) *error = "invalid program: " + std::move(message);
  return nullptr;
}

std::string at(size_t word) { return " (word " + std::to_string(word) + ")"; }

bool decode_address(const uint32_t* w, Address& out) {
  if (w[0] != 4 && w[0] != 6) return false;
  out.family = uint8_t(w[0]);
  for (int i = 0; i < 4; i++) {
    out.bytes[i * 4] = uint8_t(w[1 + i] >> 24);
    out.bytes[i * 4 + 1] = uint8_t(w[1 + i] >> 16);
    out.bytes[i * 4 + 2] = uint8_t(w[1 + i] >> 8);
    out.bytes[i * 4 + 3] = uint8_t(w[1 + i]);
  }
  return true;
}

uint32_t load_be32(const uint8_t* b) { return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]; }

// The words of a derived door after its header (MATCHER.md §10), door header at w = words + o, already
// known to fit the array. Returns an empty string, or what is wrong.
std::string decode_derived(const uint32_t* w, size_t o, Door& d) {
  const size_t words = w[0];
  if (words < kDoorHeaderWords + kDerivedWords + 1) return " is too short for a derived door" + at(o);
  size_t k = kDoorHeaderWords;
  const uint32_t time_step = w[k], protocols = w[k + 1], bind = w[k + 2], key_bytes = w[k + 3];
  if (time_step < 1) return " has a time step of 0 seconds" + at(o + k);
  if (protocols < 1 || protocols > 3) return " has protocol set " + std::to_string(protocols) + ", not 1..3" + at(o + k + 1);
  if (bind > 1) return " has bindSource " + std::to_string(bind) + ", not 0 or 1" + at(o + k + 2);
  if (key_bytes < 16 || key_bytes > 64) return " has a " + std::to_string(key_bytes) + "-byte key, not 16..64" + at(o + k + 3);
  k += kDerivedWords;
  const size_t key_words = (key_bytes + 3) / 4;
  if (key_words + 1 > words - k) return " key runs past the door" + at(o + k);
  uint8_t key[64];
  for (uint32_t i = 0; i < key_bytes; i++) key[i] = uint8_t(w[k + i / 4] >> (24 - 8 * (i % 4)));
  k += key_words;
  const uint32_t n_ranges = w[k++];
  if (n_ranges < 1 || n_ranges != words - k) {
    return " has " + std::to_string(n_ranges) + " port ranges but " + std::to_string(words - k) + " words for them" + at(o + k - 1);
  }
  Door::Derived& x = d.derived;
  x.time_step_us = int64_t(time_step) * 1000000;
  x.proto_mask = uint8_t(protocols);
  x.bind_source = bind == 1;
  x.key = HmacSha256Key(key, key_bytes);
  uint32_t total = 0;
  int64_t previous_hi = -1;
  for (uint32_t i = 0; i < n_ranges; i++, k++) {
    const uint32_t lo = w[k] & 0xffff, hi = w[k] >> 16;
    if (lo > hi || int64_t(lo) <= previous_hi) return " port range " + std::to_string(i) + " is backwards, unsorted or overlapping" + at(o + k);
    x.ranges.push_back(w[k]);
    x.ports_before.push_back(total);
    total += hi - lo + 1;
    previous_hi = hi;
  }
  x.range_size = total;
  return "";
}

// An SPA door's words after its header: port | UDP << 16, key bytes (1..128), key words big-endian.
std::string decode_spa(const uint32_t* w, size_t avail, size_t o, Door& d) {
  if (w[0] < kDoorHeaderWords + kSpaWords || w[0] > avail) return " (SPA) has a bad word count" + at(o);
  const uint32_t port_word = w[kDoorHeaderWords], key_bytes = w[kDoorHeaderWords + 1];
  if ((port_word >> 16) != kProtoUdp || (port_word & 0xffff) == 0) return " (SPA) has a bad port word" + at(o + kDoorHeaderWords);
  if (key_bytes < 1 || key_bytes > 128 || w[0] != kDoorHeaderWords + kSpaWords + (key_bytes + 3) / 4) {
    return " (SPA) has a bad key length" + at(o + kDoorHeaderWords + 1);
  }
  uint8_t key[128];
  for (uint32_t i = 0; i < key_bytes; i++) key[i] = uint8_t(w[kDoorHeaderWords + kSpaWords + i / 4] >> (24 - 8 * (i % 4)));
  d.group = w[1];
  d.fingerprint = w[2];
  d.options = w[5];
  d.length = 0;
  d.spa.port = uint16_t(port_word & 0xffff);
  d.spa.key = HmacSha256Key(key, key_bytes);
  return "";
}

}  // namespace

bool Door::derived_sees(uint8_t proto, uint16_t port, uint8_t tcp_flags) const {
  const uint8_t bit = proto == kProtoTcp ? 1 : proto == kProtoUdp ? 2 : 0;  // derived doors knock with tcp and udp only
  if (!(derived.proto_mask & bit) || !flags_ok(proto, tcp_flags)) return false;
  auto after = std::upper_bound(derived.ranges.begin(), derived.ranges.end(), port,
                                [](uint16_t p, uint32_t range) { return p < (range & 0xffff); });
  return after != derived.ranges.begin() && port <= (after[-1] >> 16);
}

uint32_t Door::derived_step(int64_t window, uint8_t family, const uint8_t src[16], unsigned i) const {
  uint8_t msg[kDerivationMessageBytes], block[32];
  derivation_message(uint64_t(window), family, src, derived.bind_source, uint8_t(i >> 2), msg);
  derived.key.mac(msg, sizeof msg, block);
  const unsigned j = (i & 3) * 8;
  const uint32_t index = load_be32(block + j) % derived.range_size;
  // the protocol list is tcp then udp (MATCHER.md §10)
  const uint8_t proto = derived.proto_mask == 3 ? (load_be32(block + j + 4) % 2 == 0 ? kProtoTcp : kProtoUdp)
                        : derived.proto_mask == 1 ? kProtoTcp
                                                   : kProtoUdp;
  const size_t r = size_t(std::upper_bound(derived.ports_before.begin(), derived.ports_before.end(), index) -
                          derived.ports_before.begin()) - 1;
  return step_word(proto, uint16_t((derived.ranges[r] & 0xffff) + index - derived.ports_before[r]));
}

const Cohort* Program::find_cohort(uint32_t group, uint32_t step) const {
  uint64_t key = group_step_key(group, step);
  auto it = std::lower_bound(cohort_keys.begin(), cohort_keys.end(), key);
  if (it == cohort_keys.end() || *it != key) return nullptr;
  return &cohorts[cohort_by_key[size_t(it - cohort_keys.begin())]];
}

bool Program::group_sees(uint32_t group, uint32_t step, uint8_t proto, uint8_t tcp_flags) const {
  uint64_t key = group_step_key(group, step);
  auto it = std::lower_bound(step_uses.begin(), step_uses.end(), key,
                             [](const StepUse& u, uint64_t k) { return u.key < k; });
  for (; it != step_uses.end() && it->key == key; ++it) {
    if (doors[it->door].flags_ok(proto, tcp_flags)) return true;
  }
  return false;
}

std::shared_ptr<const Program> Program::decode(const uint32_t* words, size_t n, std::string* error) {
  if (n < kHeaderWords) {
    return fail(error, "it has " + std::to_string(n) + " words, fewer than the " + std::to_string(kHeaderWords) +
                           "-word header; compile it with src/config/program.ts");
  }
  if (words[kHeaderMagic] != kProgramMagic) return fail(error, "bad magic, not a KFP1 program" + at(kHeaderMagic));
  if (words[kHeaderVersion] != kProgramVersion) {
    return fail(error, "version " + std::to_string(words[kHeaderVersion]) + " is not the supported version " +
                           std::to_string(kProgramVersion) + at(kHeaderVersion));
  }
  if (words[kHeaderTotalWords] != n) {
    return fail(error, "header says " + std::to_string(words[kHeaderTotalWords]) + " words but the array has " +
                           std::to_string(n) + at(kHeaderTotalWords));
  }
  auto p = std::make_shared<Program>();
  p->generation = words[kHeaderGeneration];
  p->flags = words[kHeaderFlags];
  p->max_tracked = words[kHeaderMaxTracked];
  p->event_budget = words[kHeaderEventBudget];
  // The index needs 4/3 slots per record within uint32_t, and slot ~0u means empty.
  if (p->max_tracked < 1 || p->max_tracked > 0x7fffffffu) {
    return fail(error, "maxTracked " + std::to_string(p->max_tracked) + " is outside 1..2147483647" + at(kHeaderMaxTracked));
  }
  const uint64_t n_local = words[kHeaderLocals], n_targets = words[kHeaderTargets], n_doors = words[kHeaderDoors];
  if (n_targets > kMaxTargets) return fail(error, std::to_string(n_targets) + " targets, at most 255" + at(kHeaderTargets));
  if (n_doors > kMaxDoors) return fail(error, std::to_string(n_doors) + " doors, at most 65535" + at(kHeaderDoors));
  size_t o = kHeaderWords;
  if ((n_local + n_targets) * kAddressWords > n - o) {
    return fail(error, "the address tables run past the end of the array" + at(o));
  }
  for (uint64_t i = 0; i < n_local + n_targets; i++, o += kAddressWords) {
    Address a;
    if (!decode_address(words + o, a)) return fail(error, "address family must be 4 or 6" + at(o));
    (i < n_local ? p->locals : p->targets).push_back(a);
  }
  p->doors.reserve(n_doors);
  for (uint64_t i = 0; i < n_doors; i++) {
    const std::string which = "door " + std::to_string(i);
    if (n - o < kDoorHeaderWords) return fail(error, which + " header runs past the end of the array" + at(o));
    const uint32_t* w = words + o;
    const uint32_t n_steps = w[6];
    const bool derived = w[5] & kOptDerived;
    if (w[5] & kOptSpa) {
      Door d{};
      std::string wrong = decode_spa(w, n - o, o, d);
      if (!wrong.empty()) return fail(error, which + wrong);
      if (w[1] > n_targets) return fail(error, which + " names group " + std::to_string(w[1]) + " beyond the targets" + at(o + 1));
      p->spa_doors.push_back(uint16_t(i));
      p->doors.push_back(std::move(d));
      o += w[0];
      continue;
    }
    if (n_steps < 1 || n_steps > kMaxSteps) return fail(error, which + " has " + std::to_string(n_steps) + " steps, not 1..32" + at(o + 6));
    if (!derived && w[0] != kDoorHeaderWords + n_steps) return fail(error, which + " word count does not match its steps" + at(o));
    if (w[0] > n - o) return fail(error, which + " runs past the end of the array" + at(o));
    if (w[1] > n_targets) return fail(error, which + " names group " + std::to_string(w[1]) + " beyond the targets" + at(o + 1));
    Door d{};
    d.group = w[1];
    d.fingerprint = w[2];
    d.seq_timeout = int32_t(w[3]);
    d.must_set = uint8_t(w[4] & 0x3f);
    d.must_clear = uint8_t((w[4] >> 8) & 0x3f);
    d.options = w[5];
    d.timeout_us = int64_t(d.seq_timeout) * 1000000;
    d.length = n_steps;
    if (derived) {
      std::string wrong = decode_derived(w, o, d);
      if (!wrong.empty()) return fail(error, which + wrong);
    }
    for (uint32_t k = 0; k < n_steps && !derived; k++) {
      uint32_t s = w[kDoorHeaderWords + k];
      uint32_t proto = s >> 16;
      if (proto != kProtoTcp && proto != kProtoUdp && proto != kProtoIcmp) {
        return fail(error, which + " step " + std::to_string(k) + " has protocol " + std::to_string(proto) + ", not 6, 17 or 1" +
                               at(o + kDoorHeaderWords + k));
      }
      d.steps.push_back(s);
    }
    p->doors.push_back(std::move(d));
    o += w[0];
  }
  if (o != n) return fail(error, "there are " + std::to_string(n - o) + " words after the last door" + at(o));

  // Cohorts in order of their first door; members in config order. A derived door is a cohort of its own.
  std::unordered_map<uint64_t, uint32_t> cohort_of_key;
  p->derived_by_group.resize(n_targets + 1);
  for (size_t i = 0; i < p->doors.size(); i++) {
    Door& d = p->doors[i];
    if (d.is_spa()) {
      d.cohort = UINT32_MAX;  // no attempts, no cohort
      continue;
    }
    if (d.is_derived()) {
      d.cohort = uint32_t(p->cohorts.size());
      d.member = 0;
      p->cohorts.push_back(Cohort{d.group, 0, 1, {uint16_t(i)}});
      p->derived_by_group[d.group].push_back(uint16_t(i));
      p->has_derived = true;
      continue;
    }
    auto [it, added] = cohort_of_key.emplace(group_step_key(d.group, d.steps[0]), uint32_t(p->cohorts.size()));
    if (added) p->cohorts.push_back(Cohort{d.group, d.steps[0], 0, {}});
    Cohort& c = p->cohorts[it->second];
    if (c.size == kMaxCohort) return fail(error, "more than 8 doors of one group share a first step (door " + std::to_string(i) + ")");
    d.cohort = it->second;
    d.member = c.size;
    c.doors[c.size++] = uint16_t(i);
  }
  std::vector<std::pair<uint64_t, uint32_t>> keyed(cohort_of_key.begin(), cohort_of_key.end());
  std::sort(keyed.begin(), keyed.end());
  for (const auto& [key, cohort] : keyed) {
    p->cohort_keys.push_back(key);
    p->cohort_by_key.push_back(cohort);
  }

  p->step_bits.assign((kStepPlanes << 16) / 64, 0);
  for (size_t i = 0; i < p->doors.size(); i++) {
    const Door& d = p->doors[i];
    for (uint32_t s : d.steps) {
      p->step_uses.push_back(StepUse{group_step_key(d.group, s), uint16_t(i)});
      size_t bit = step_plane(uint8_t(s >> 16)) << 16 | (s & 0xffff);
      p->step_bits[bit >> 6] |= uint64_t(1) << (bit & 63);
    }
  }
  std::sort(p->step_uses.begin(), p->step_uses.end(),
            [](const StepUse& a, const StepUse& b) { return a.key != b.key ? a.key < b.key : a.door < b.door; });
  p->step_uses.erase(std::unique(p->step_uses.begin(), p->step_uses.end(),
                                 [](const StepUse& a, const StepUse& b) { return a.key == b.key && a.door == b.door; }),
                     p->step_uses.end());
  return p;
}

}  // namespace knockd
