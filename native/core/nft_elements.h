// Actions step, nftables: set-element updates written straight to the kernel over NETLINK_NETFILTER, one
// transaction per batch — no nft process, no text to parse — so a grant is installed microseconds after
// its batch is sent. Tables, chains and sets are still installed by `nft` (once, at start and reload).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace knockd {

// The elements of one set to (re)open: `addr_len` bytes per address (4 for ipv4_addr, 16 for ipv6_addr)
// and a timeout in milliseconds for each.
struct NftSetElements {
  uint8_t nf_family;  // NFPROTO_*: inet 1, ip 2, arp 3, netdev 5, bridge 7, ip6 10
  std::string table;
  std::string set;
  uint8_t addr_len;
  std::vector<uint8_t> addresses;
  std::vector<uint64_t> timeouts_ms;
};

// Outcome of an operation: `error` is 0 or an errno; `message` says what failed (with the kernel's
// extended-ack text when it gives one).
struct NftResult {
  int error = 0;
  std::string message;
};

class NftElementWriter {
 public:
  // `last_seq`: the sequence number before the first message's (tests start near 2^32 to cross the wrap)
  explicit NftElementWriter(uint32_t last_seq = 0) : seq_(last_seq) {}
  NftElementWriter(const NftElementWriter&) = delete;
  NftElementWriter& operator=(const NftElementWriter&) = delete;
  ~NftElementWriter();

  // Opens the netlink socket, inside the network namespace at `netns_path` (e.g. /run/netns/NAME) when it
  // is not empty. The namespace is entered by a short-lived thread, so the caller's thread never moves.
  NftResult open(const std::string& netns_path);

  // One transaction: for every set, add its elements with their timeouts, delete them and add them again.
  // `add` alone does not restart the timeout of an element that is already there; the delete and re-add
  // in the same transaction do, and no packet ever sees the element missing. All or nothing.
  NftResult refresh(const std::vector<NftSetElements>& sets);

  bool is_open() const { return fd_ >= 0; }
  void close();

 private:
  int fd_ = -1;
  uint32_t seq_;
  std::vector<uint8_t> buffer_;
  std::vector<const NftSetElements*> message_sets_;
};

}  // namespace knockd
