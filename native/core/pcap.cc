// Classic pcap and pcapng parsing with every length checked against the buffer.
#include "pcap.h"

namespace knockd {
namespace {

constexpr uint32_t kPcapMicro = 0xa1b2c3d4, kPcapNano = 0xa1b23c4d;
constexpr uint32_t kBlockShb = 0x0A0D0D0A, kBlockIdb = 1, kBlockSpb = 3, kBlockEpb = 6;
constexpr uint32_t kByteOrderMagic = 0x1A2B3C4D;
constexpr uint16_t kOptEnd = 0, kOptTsresol = 9;

uint32_t bswap32(uint32_t v) { return __builtin_bswap32(v); }

struct Cursor {
  const uint8_t* data;
  size_t len;
  bool swapped = false;

  uint32_t u32(size_t at) const {
    uint32_t v = uint32_t(data[at]) | uint32_t(data[at + 1]) << 8 | uint32_t(data[at + 2]) << 16 | uint32_t(data[at + 3]) << 24;
    return swapped ? bswap32(v) : v;
  }
  uint16_t u16(size_t at) const {
    uint16_t v = uint16_t(data[at] | data[at + 1] << 8);
    return swapped ? uint16_t(v >> 8 | v << 8) : v;
  }
};

bool fail(std::string* error, const char* format, size_t offset, const std::string& what) {
  if (error) *error = std::string(format) + " at offset " + std::to_string(offset) + ": " + what;
  return false;
}

bool read_classic(Cursor c, std::vector<CapturedFrame>& out, std::string* error) {
  if (c.len < 24) return fail(error, "pcap", 0, "the 24-byte file header is cut short");
  uint32_t magic = c.u32(0);
  if (magic != kPcapMicro && magic != kPcapNano) {
    c.swapped = true;
    magic = c.u32(0);
  }
  const bool nano = magic == kPcapNano;
  const uint16_t link_type = uint16_t(c.u32(20) & 0xffff);  // the upper bits carry FCS information
  for (size_t o = 24; o < c.len;) {
    if (c.len - o < 16) return fail(error, "pcap", o, "the 16-byte record header is cut short");
    const uint32_t sec = c.u32(o), frac = c.u32(o + 4), caplen = c.u32(o + 8);
    if (caplen > c.len - o - 16) {
      return fail(error, "pcap", o, "captured length " + std::to_string(caplen) + " runs past the end of the file");
    }
    out.push_back(CapturedFrame{c.data + o + 16, caplen, int64_t(sec) * 1000000 + (nano ? frac / 1000 : frac), link_type});
    o += 16 + size_t(caplen);
  }
  return true;
}

struct Interface {
  uint16_t link_type;
  bool binary;         // if_tsresol: 2^-exp instead of 10^-exp
  uint8_t exponent;
};

int64_t to_micros(uint64_t ticks, const Interface& ifc) {
  if (ifc.binary) return int64_t((static_cast<unsigned __int128>(ticks) * 1000000) >> ifc.exponent);
  uint64_t scale = 1;
  if (ifc.exponent <= 6) {
    for (uint8_t i = ifc.exponent; i < 6; i++) scale *= 10;
    return int64_t(ticks * scale);
  }
  for (uint8_t i = 6; i < ifc.exponent && i < 26; i++) scale *= 10;
  return ifc.exponent >= 26 ? 0 : int64_t(ticks / scale);
}

bool read_idb(const Cursor& c, size_t o, size_t block_len, Interface& ifc, std::string* error) {
  if (block_len < 20) return fail(error, "pcapng", o, "interface description block shorter than 20 bytes");
  ifc = Interface{c.u16(o + 8), false, 6};
  for (size_t p = o + 16; p + 4 <= o + block_len - 4;) {
    const uint16_t code = c.u16(p), opt_len = c.u16(p + 2);
    if (code == kOptEnd) break;
    const size_t padded = (size_t(opt_len) + 3) & ~size_t(3);
    if (padded > o + block_len - 4 - (p + 4)) return fail(error, "pcapng", p, "option runs past the end of its block");
    if (code == kOptTsresol && opt_len >= 1) {
      const uint8_t v = c.data[p + 4];
      ifc.binary = v & 0x80;
      ifc.exponent = v & 0x7f;
      if (ifc.binary ? ifc.exponent > 63 : ifc.exponent > 19) {
        return fail(error, "pcapng", p, "if_tsresol " + std::to_string(v) + " is finer than the reader supports");
      }
    }
    p += 4 + padded;
  }
  return true;
}

bool read_ng(Cursor c, std::vector<CapturedFrame>& out, std::string* error) {
  std::vector<Interface> interfaces;
  int64_t last_ts = 0;
  for (size_t o = 0; o < c.len;) {
    if (c.len - o < 12) return fail(error, "pcapng", o, "block header is cut short");
    uint32_t type = c.u32(o);
    if (type == kBlockShb) {
      if (c.len - o < 28) return fail(error, "pcapng", o, "section header block is cut short");
      c.swapped = false;
      if (c.u32(o + 8) != kByteOrderMagic) {
        c.swapped = true;
        if (c.u32(o + 8) != kByteOrderMagic) return fail(error, "pcapng", o + 8, "bad byte-order magic");
      }
      interfaces.clear();
    }
    const uint32_t block_len = c.u32(o + 4);
    if (block_len < 12 || block_len % 4 != 0) {
      return fail(error, "pcapng", o, "block length " + std::to_string(block_len) + " is not a multiple of 4 of at least 12");
    }
    if (block_len > c.len - o) return fail(error, "pcapng", o, "block length " + std::to_string(block_len) + " runs past the end of the file");
    if (c.u32(o + block_len - 4) != block_len) return fail(error, "pcapng", o, "trailing block length does not match");
    if (type == kBlockIdb) {
      Interface ifc;
      if (!read_idb(c, o, block_len, ifc, error)) return false;
      interfaces.push_back(ifc);
    } else if (type == kBlockEpb) {
      if (block_len < 32) return fail(error, "pcapng", o, "enhanced packet block shorter than 32 bytes");
      const uint32_t id = c.u32(o + 8), caplen = c.u32(o + 20);
      if (id >= interfaces.size()) return fail(error, "pcapng", o, "packet names interface " + std::to_string(id) + ", which was not described");
      if (caplen > block_len - 32) return fail(error, "pcapng", o, "captured length " + std::to_string(caplen) + " runs past the end of its block");
      const uint64_t ticks = uint64_t(c.u32(o + 12)) << 32 | c.u32(o + 16);
      last_ts = to_micros(ticks, interfaces[id]);
      out.push_back(CapturedFrame{c.data + o + 28, caplen, last_ts, interfaces[id].link_type});
    } else if (type == kBlockSpb) {
      if (block_len < 16) return fail(error, "pcapng", o, "simple packet block shorter than 16 bytes");
      if (interfaces.empty()) return fail(error, "pcapng", o, "simple packet block before any interface description");
      const uint32_t orig = c.u32(o + 8);
      const size_t caplen = orig < block_len - 16 ? orig : block_len - 16;
      out.push_back(CapturedFrame{c.data + o + 12, caplen, last_ts, interfaces[0].link_type});
    }
    o += block_len;
  }
  return true;
}

}  // namespace

bool read_capture(const uint8_t* data, size_t len, std::vector<CapturedFrame>& out, std::string* error) {
  Cursor c{data, len};
  if (len < 4) return fail(error, "capture", 0, "fewer than 4 bytes, not a pcap or pcapng file");
  const uint32_t magic = c.u32(0);
  if (magic == kBlockShb) return read_ng(c, out, error);
  if (magic == kPcapMicro || magic == kPcapNano || bswap32(magic) == kPcapMicro || bswap32(magic) == kPcapNano) {
    return read_classic(c, out, error);
  }
  return fail(error, "capture", 0, "unknown magic number, not a pcap or pcapng file");
}

}  // namespace knockd
