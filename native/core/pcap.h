// Capture files -> frames for replay, the fuzzer and the core tests. Reads classic pcap (both byte
// orders, microsecond and nanosecond magic) and pcapng (SHB in either byte order, IDB with if_tsresol,
// EPB, SPB). Frames point into the caller's buffer; nothing is copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace knockd {

struct CapturedFrame {
  const uint8_t* data;
  size_t len;          // captured bytes
  int64_t ts_us;       // microseconds since the epoch (SPB frames repeat the previous timestamp)
  uint16_t link_type;  // pcap LINKTYPE_*
};

// Appends every frame of the capture in `data` to `out`. Returns false with *error naming the byte
// offset of the first thing that does not fit; frames before it stay in `out`.
bool read_capture(const uint8_t* data, size_t len, std::vector<CapturedFrame>& out, std::string* error);

}  // namespace knockd
