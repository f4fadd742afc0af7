// libFuzzer target over everything the C++ core reads untrusted: raw frames of every link type, and
// program words. Capture files are read only by src/capture/pcap.ts (what --replay runs; test/pcap.test.ts).
// Input: "KFP1" + words is decoded as a program; anything else is [u16 link type][frame] fed to a
// matcher with doors on the ports a seed is likely to hit.
#include <cstring>
#include <memory>
#include <vector>

#include "matcher.h"
#include "program.h"

using namespace knockd;

namespace {

std::shared_ptr<const Program> fuzz_program() {
  // Two cohorts on 7000, UDP and ICMP echo (56 bytes: ping's default) steps, an IPv6 target, all-local
  // and small limits so eviction, rejection and the budget are reachable.
  static const uint32_t words[] = {
      kProgramMagic, kProgramVersion, 1, kFlagStageEvents | kFlagAllLocal, 4, 3, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0,
      6, 0xfd000000, 0, 0, 2,                                                              // target fd00::2
      10, 0, 1, 5, 2, kOptAllowDuplicates, 3, 7000 | 6u << 16, 8000 | 6u << 16, 9000 | 6u << 16,  //
      9, 0, 2, 1, 0, 0, 2, 7000 | 6u << 16, 56 | 1u << 16,                                    //
      9, 1, 3, 0, 0, 0, 2, 7000 | 6u << 16, 1 | 17u << 16,                                    //
  };
  static std::shared_ptr<const Program> program = [] {
    std::vector<uint32_t> w(std::begin(words), std::end(words));
    w[9] = uint32_t(w.size());
    return Program::decode(w.data(), w.size(), nullptr);
  }();
  return program;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<EventRecord> events;
  Matcher matcher;
  matcher.load(fuzz_program());
  if (size >= 4 && std::memcmp(data, "KFP1", 4) == 0) {
    std::vector<uint32_t> words((size - 4) / 4 + 1);
    words[0] = kProgramMagic;
    std::memcpy(words.data() + 1, data + 4, (size - 4) / 4 * 4);
    auto p = Program::decode(words.data(), words.size(), nullptr);
    if (p && p->max_tracked <= 4096) matcher.load(p);
    return 0;
  }
  if (size < 2) return 0;
  const uint16_t link = uint16_t(data[0] | data[1] << 8);
  // Replay the same frame at several times so timeouts and the wheel run over the parsed state.
  for (int64_t t : {0, 1000, 6000000, 6001000}) matcher.feed(data + 2, size - 2, link, t, events);
  return 0;
}
