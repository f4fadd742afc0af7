// NftElementWriter: see nft_elements.h. The messages are those `nft` itself sends for
// `add element` / `delete element` (NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM inside one nfnetlink batch).
#include "nft_elements.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <thread>

namespace knockd {

namespace {

constexpr int kSocketBufferBytes = 4 << 20;  // a batch of 1,024 IPv6 elements is ~110 KB
constexpr int kReplyTimeoutSeconds = 5;      // the kernel answers in microseconds; this only bounds a hang
// an attribute's length is 16 bits: 1,024 elements of at most 40 bytes keep the element list under 64 KiB
constexpr size_t kElementsPerMessage = 1024;

// Appends netlink messages and attributes to a byte buffer, 4-byte aligned as netlink requires.
class MessageBuilder {
 public:
  explicit MessageBuilder(std::vector<uint8_t>& out) : out_(out) { out_.clear(); }

  size_t begin_message(uint16_t type, uint16_t flags, uint32_t seq, uint8_t family, uint16_t res_id) {
    const size_t at = out_.size();
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = NLM_F_REQUEST | flags;
    h.nlmsg_seq = seq;
    append(&h, sizeof h);
    nfgenmsg g{};
    g.nfgen_family = family;
    g.version = NFNETLINK_V0;
    g.res_id = htons(res_id);
    append(&g, sizeof g);
    return at;
  }

  void end_message(size_t at) {
    const uint32_t len = uint32_t(out_.size() - at);
    std::memcpy(out_.data() + at + offsetof(nlmsghdr, nlmsg_len), &len, sizeof len);
  }

  void attribute(uint16_t type, const void* data, size_t len) {
    nlattr a{};
    a.nla_len = uint16_t(NLA_HDRLEN + len);
    a.nla_type = type;
    append(&a, sizeof a);
    append(data, len);
  }

  void string_attribute(uint16_t type, const std::string& s) { attribute(type, s.c_str(), s.size() + 1); }

  size_t begin_nested(uint16_t type) {
    const size_t at = out_.size();
    nlattr a{};
    a.nla_type = uint16_t(type | NLA_F_NESTED);
    append(&a, sizeof a);
    return at;
  }

  void end_nested(size_t at) {
    const uint16_t len = uint16_t(out_.size() - at);
    std::memcpy(out_.data() + at + offsetof(nlattr, nla_len), &len, sizeof len);
  }

 private:
  void append(const void* data, size_t len) {
    const auto* p = static_cast<const uint8_t*>(data);
    out_.insert(out_.end(), p, p + len);
    out_.resize(NLMSG_ALIGN(out_.size()), 0);
  }

  std::vector<uint8_t>& out_;
};

// One NEWSETELEM (with timeouts) or DELSETELEM message for elements [from, to) of `s`.
void set_elements_message(MessageBuilder& b, const NftSetElements& s, size_t from, size_t to, bool add, uint32_t seq) {
  const uint16_t type = uint16_t(NFNL_SUBSYS_NFTABLES << 8 | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM));
  const size_t msg = b.begin_message(type, uint16_t(NLM_F_ACK | (add ? NLM_F_CREATE : 0)), seq, s.nf_family, 0);
  b.string_attribute(NFTA_SET_ELEM_LIST_TABLE, s.table);
  b.string_attribute(NFTA_SET_ELEM_LIST_SET, s.set);
  const size_t list = b.begin_nested(NFTA_SET_ELEM_LIST_ELEMENTS);
  for (size_t i = from; i < to; i++) {
    const size_t elem = b.begin_nested(NFTA_LIST_ELEM);
    const size_t key = b.begin_nested(NFTA_SET_ELEM_KEY);
    b.attribute(NFTA_DATA_VALUE, s.addresses.data() + i * s.addr_len, s.addr_len);
    b.end_nested(key);
    if (add) {
      const uint64_t timeout = htobe64(s.timeouts_ms[i]);
      b.attribute(NFTA_SET_ELEM_TIMEOUT, &timeout, sizeof timeout);
    }
    b.end_nested(elem);
  }
  b.end_nested(list);
  b.end_message(msg);
}

// The kernel's extended-ack text of an error reply, if any.
std::string ack_message(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  const size_t start = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nlmsgerr));  // capped: only the request's header
  for (size_t at = start; at + NLA_HDRLEN <= h->nlmsg_len;) {
    nlattr a;
    std::memcpy(&a, reinterpret_cast<const uint8_t*>(h) + at, sizeof a);
    if (a.nla_len < NLA_HDRLEN || at + a.nla_len > h->nlmsg_len) break;
    if (a.nla_type == NLMSGERR_ATTR_MSG) {
      const char* text = reinterpret_cast<const char*>(h) + at + NLA_HDRLEN;
      return std::string(text, strnlen(text, a.nla_len - NLA_HDRLEN));
    }
    at += NLA_ALIGN(a.nla_len);
  }
  return {};
}

int open_socket() {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return -errno;
  const int one = 1;
  const timeval timeout{kReplyTimeoutSeconds, 0};
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  // buffer sizes beyond the sysctl maximum need CAP_NET_ADMIN (FORCE); the plain option is the fallback
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &kSocketBufferBytes, sizeof kSocketBufferBytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSocketBufferBytes, sizeof kSocketBufferBytes);
  }
  if (setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0 ||
      bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

}  // namespace

NftElementWriter::~NftElementWriter() { close(); }

void NftElementWriter::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

NftResult NftElementWriter::open(const std::string& netns_path) {
  close();
  int fd;
  if (netns_path.empty()) {
    fd = open_socket();
  } else {
    const int ns = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      const int err = errno;
      return {err, "cannot open network namespace " + netns_path + ": " + std::strerror(err)};
    }
    // a socket stays in the namespace it was created in; only this helper thread ever changes namespace
    std::thread([&] { fd = setns(ns, CLONE_NEWNET) == 0 ? open_socket() : -errno; }).join();
    ::close(ns);
    if (fd < 0) return {-fd, "cannot open a netlink socket in network namespace " + netns_path + ": " + std::strerror(-fd)};
  }
  if (fd < 0) return {-fd, std::string("cannot open a NETLINK_NETFILTER socket: ") + std::strerror(-fd)};
  fd_ = fd;
  return {};
}

NftResult NftElementWriter::refresh(const std::vector<NftSetElements>& sets) {
  if (fd_ < 0) return {EBADF, "the netlink socket is not open"};
  MessageBuilder b(buffer_);
  const uint32_t first = ++seq_;
  b.end_message(b.begin_message(NFNL_MSG_BATCH_BEGIN, 0, first, AF_UNSPEC, NFNL_SUBSYS_NFTABLES));
  message_sets_.clear();  // the set of each element message, by seq − first − 1
  for (const NftSetElements& s : sets) {
    for (size_t from = 0; from < s.timeouts_ms.size(); from += kElementsPerMessage) {
      const size_t to = std::min(s.timeouts_ms.size(), from + kElementsPerMessage);
      set_elements_message(b, s, from, to, true, ++seq_);
      set_elements_message(b, s, from, to, false, ++seq_);
      set_elements_message(b, s, from, to, true, ++seq_);
      message_sets_.insert(message_sets_.end(), 3, &s);
    }
  }
  size_t expected_acks = message_sets_.size();
  const uint32_t last = ++seq_;
  b.end_message(b.begin_message(NFNL_MSG_BATCH_END, 0, last, AF_UNSPEC, NFNL_SUBSYS_NFTABLES));
  if (expected_acks == 0) return {};

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd_, buffer_.data(), buffer_.size(), 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) < 0) {
    const int err = errno;
    return {err, "netlink send of " + std::to_string(buffer_.size()) + " bytes failed: " + std::strerror(err)};
  }

  // One reply per element message: an ack, or the error that made the kernel abort the whole batch. An
  // error about the batch itself (e.g. EPERM without CAP_NET_ADMIN) is the only reply there will be.
  NftResult result;
  alignas(nlmsghdr) uint8_t reply[16384];
  while (expected_acks > 0) {
    const ssize_t n = recv(fd_, reply, sizeof reply, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      close();  // replies of this batch may still arrive; the next open starts clean
      return {err, err == EAGAIN ? "no reply from the kernel within " + std::to_string(kReplyTimeoutSeconds) + " s"
                                 : std::string("netlink receive failed: ") + std::strerror(err)};
    }
    // NLMSG_OK/NLMSG_NEXT compare signed with unsigned lengths; the same walk, spelled out
    for (size_t at = 0; at + NLMSG_HDRLEN <= size_t(n);) {
      const auto* h = reinterpret_cast<const nlmsghdr*>(reply + at);
      if (h->nlmsg_len < NLMSG_HDRLEN || at + h->nlmsg_len > size_t(n)) break;
      at += NLMSG_ALIGN(h->nlmsg_len);
      if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) continue;
      // position in this batch, modulo 2^32: sequence numbers wrap after a few days of busy grants
      const uint32_t position = h->nlmsg_seq - first;
      if (position > last - first) continue;  // a late reply to an abandoned batch
      const bool about_batch = position == 0 || position == last - first;
      nlmsgerr e;
      std::memcpy(&e, NLMSG_DATA(h), sizeof e);
      if (e.error != 0 && result.error == 0) {
        result.error = -e.error;
        const std::string detail = ack_message(h);
        result.message = std::string(std::strerror(-e.error)) + (detail.empty() ? "" : ": " + detail);
        if (!about_batch) {
          const NftSetElements& s = *message_sets_[position - 1];
          result.message = "set " + s.table + " " + s.set + ": " + result.message;
        }
      }
      if (about_batch) return result;
      expected_acks--;
    }
  }
  return result;
}

}  // namespace knockd
