// The capture reader: classic pcap in both byte orders with µs and ns timestamps, pcapng sections in
// both byte orders with if_tsresol, EPB and SPB, unknown blocks skipped, and errors that name the
// offset. A replayed capture drives the matcher through conformance row 1.
#include "pcap.h"

#include "test_util.h"

using namespace knockd;
using namespace test;

namespace {

struct Writer {
  std::vector<uint8_t> b;
  bool big = false;
  void u32(uint32_t v) {
    for (int i = 0; i < 4; i++) b.push_back(uint8_t(big ? v >> (24 - 8 * i) : v >> (8 * i)));
  }
  void u16(uint16_t v) {
    if (big) b.push_back(uint8_t(v >> 8)), b.push_back(uint8_t(v));
    else b.push_back(uint8_t(v)), b.push_back(uint8_t(v >> 8));
  }
  void bytes(const std::vector<uint8_t>& v) { b.insert(b.end(), v.begin(), v.end()); }
  void pad() {
    while (b.size() % 4) b.push_back(0);
  }
};

const Addr kSrc = v4(198, 51, 100, 1), kDst = v4(192, 0, 2, 2);
const std::vector<uint8_t> k7000 = knock(kSrc, kDst, tcp(7000)), k8000 = knock(kSrc, kDst, tcp(8000)),
                           k9000 = knock(kSrc, kDst, tcp(9000));

std::vector<uint8_t> classic(bool big, bool nano) {
  Writer w{{}, big};
  w.u32(nano ? 0xa1b23c4d : 0xa1b2c3d4);
  w.u16(2), w.u16(4), w.u32(0), w.u32(0), w.u32(65535), w.u32(1);
  const std::vector<uint8_t>* frames[] = {&k7000, &k8000, &k9000};
  for (uint32_t i = 0; i < 3; i++) {
    w.u32(1700000000 + i);
    w.u32(nano ? 250000000 : 250000);  // .25 s
    w.u32(uint32_t(frames[i]->size())), w.u32(uint32_t(frames[i]->size()));
    w.bytes(*frames[i]);
  }
  return w.b;
}

void block(Writer& w, uint32_t type, const std::vector<uint8_t>& body) {
  uint32_t len = uint32_t(12 + ((body.size() + 3) & ~size_t(3)));
  w.u32(type), w.u32(len);
  w.bytes(body);
  w.pad();
  w.u32(len);
}

std::vector<uint8_t> body(bool big, std::initializer_list<uint32_t> words) {
  Writer w{{}, big};
  for (uint32_t x : words) w.u32(x);
  return w.b;
}

// Section with an ns-resolution interface (EPB), then a µs interface, an unknown block and an SPB.
std::vector<uint8_t> pcapng(bool big) {
  Writer w{{}, big};
  Writer shb{{}, big};
  shb.u32(0x1A2B3C4D), shb.u16(1), shb.u16(0), shb.u32(0xffffffff), shb.u32(0xffffffff);
  block(w, 0x0A0D0D0A, shb.b);
  Writer idb{{}, big};
  idb.u16(1), idb.u16(0), idb.u32(65535);
  idb.u16(9), idb.u16(1), idb.b.push_back(9), idb.pad();  // if_tsresol = 10^-9
  idb.u16(0), idb.u16(0);
  block(w, 1, idb.b);
  Writer idb2{{}, big};
  idb2.u16(101), idb2.u16(0), idb2.u32(65535);
  block(w, 1, idb2.b);
  const uint64_t ns = 1700000000250000000ull;
  Writer epb{{}, big};
  epb.u32(0), epb.u32(uint32_t(ns >> 32)), epb.u32(uint32_t(ns)), epb.u32(uint32_t(k7000.size())),
      epb.u32(uint32_t(k7000.size()));
  epb.bytes(k7000);
  block(w, 6, epb.b);
  block(w, 0x0BAD, body(big, {1, 2, 3}));
  Writer spb{{}, big};
  spb.u32(uint32_t(k8000.size()));
  spb.bytes(k8000);
  block(w, 3, spb.b);
  const std::vector<uint8_t> raw = ipv4(kSrc, kDst, kProtoTcp, l4(kProtoTcp, 9000, kSyn));
  const uint64_t us = 1700000002250000ull;
  Writer epb2{{}, big};
  epb2.u32(1), epb2.u32(uint32_t(us >> 32)), epb2.u32(uint32_t(us)), epb2.u32(uint32_t(raw.size())),
      epb2.u32(uint32_t(raw.size()));
  epb2.bytes(raw);
  block(w, 6, epb2.b);
  return w.b;
}

std::vector<CapturedFrame> read_ok(const std::vector<uint8_t>& file) {
  std::vector<CapturedFrame> frames;
  std::string error;
  bool ok = read_capture(file.data(), file.size(), frames, &error);
  if (!ok) std::fprintf(stderr, "  read_capture: %s\n", error.c_str());
  CHECK(ok);
  return frames;
}

std::string read_error(const std::vector<uint8_t>& file) {
  std::vector<CapturedFrame> frames;
  std::string error;
  CHECK(!read_capture(file.data(), file.size(), frames, &error));
  return error;
}

void classic_formats() {
  for (bool big : {false, true}) {
    for (bool nano : {false, true}) {
      auto file = classic(big, nano);
      auto frames = read_ok(file);
      CHECK(frames.size() == 3);
      if (frames.size() != 3) continue;
      CHECK(frames[0].ts_us == 1700000000250000LL && frames[2].ts_us == 1700000002250000LL);
      CHECK(frames[1].len == k8000.size() && std::memcmp(frames[1].data, k8000.data(), k8000.size()) == 0);
      CHECK(frames[0].link_type == kLinkEthernet);
    }
  }
}

void pcapng_formats() {
  for (bool big : {false, true}) {
    auto frames = read_ok(pcapng(big));
    CHECK(frames.size() == 3);
    if (frames.size() != 3) continue;
    CHECK(frames[0].ts_us == 1700000000250000LL && frames[0].link_type == kLinkEthernet);
    CHECK(frames[1].ts_us == frames[0].ts_us && frames[1].len == k8000.size());  // SPB: no timestamp of its own
    CHECK(frames[2].ts_us == 1700000002250000LL && frames[2].link_type == kLinkRaw);
  }
}

void errors_name_offsets() {
  auto file = classic(false, false);
  file.resize(file.size() - 1);  // last record cut short
  std::string e = read_error(file);
  size_t last = 24 + 2 * (16 + k7000.size());
  CHECK(e.find("offset " + std::to_string(last)) != std::string::npos && e.find("runs past the end") != std::string::npos);
  CHECK(read_error({1, 2, 3, 4, 5}).find("not a pcap or pcapng") != std::string::npos);
  CHECK(read_error({0xd4, 0xc3}).find("fewer than 4 bytes") != std::string::npos);
  auto ng = pcapng(false);
  ng[28 + 4] = 0xff;  // first IDB length (after the 28-byte SHB)
  e = read_error(ng);
  CHECK(e.find("pcapng at offset 28") != std::string::npos);
  ng = pcapng(true);
  ng[11] ^= 0xff;  // byte-order magic
  CHECK(read_error(ng).find("byte-order magic") != std::string::npos);
  // Every truncation either fails with a message or yields a prefix of the frames; never out of bounds.
  for (const auto& f : {classic(true, true), pcapng(false), pcapng(true)}) {
    for (size_t n = 0; n < f.size(); n++) {
      std::unique_ptr<uint8_t[]> exact(new uint8_t[n ? n : 1]);
      std::memcpy(exact.get(), f.data(), n);
      std::vector<CapturedFrame> frames;
      std::string error;
      bool ok = read_capture(exact.get(), n, frames, &error);
      CHECK(ok || !error.empty());
      CHECK(frames.size() <= 3);
    }
  }
}

void replay_through_matcher() {
  ProgramSpec spec;
  spec.locals = {kDst};
  spec.doors = {{{tcp(7000), tcp(8000), tcp(9000)}}};
  Matcher m;
  m.load(make_program(spec));
  std::vector<EventRecord> events;
  auto file = pcapng(true);
  for (const CapturedFrame& f : read_ok(file)) m.feed(f.data, f.len, f.link_type, f.ts_us, events);
  CHECK(events.size() == 4);
  if (events.size() == 4) CHECK(events[3].kind == kEventCompleted && events[3].time_us == 1700000002250000LL);
}

}  // namespace

int main() {
  classic_formats();
  pcapng_formats();
  errors_name_offsets();
  replay_through_matcher();
  if (failures) std::fprintf(stderr, "pcap_test: %d failures\n", failures);
  else std::printf("pcap_test: ok\n");
  return failures ? 1 : 0;
}
