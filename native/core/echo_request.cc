// send_echo_request: see echo_request.h.
#include "echo_request.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace knockd {
namespace {

// A socket address of `family` for `bytes` (port 0: a ping socket's port is its echo identifier, which
// the kernel picks).
socklen_t socket_address(uint8_t family, const uint8_t bytes[16], sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (family == 4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&out);
    a->sin_family = AF_INET;
    std::memcpy(&a->sin_addr, bytes, 4);
    return sizeof(sockaddr_in);
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&out);
  a->sin6_family = AF_INET6;
  std::memcpy(&a->sin6_addr, bytes, 16);
  return sizeof(sockaddr_in6);
}

}  // namespace

EchoRequestResult send_echo_request(uint8_t family, const uint8_t dst[16], const uint8_t* src, uint16_t payload_bytes) {
  const int fd = family == 4 ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMP)
                             : socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return {errno, "socket"};
  EchoRequestResult result{0, nullptr};
  sockaddr_storage addr;
  if (src && bind(fd, reinterpret_cast<const sockaddr*>(&addr), socket_address(family, src, addr)) != 0) {
    result = {errno, "bind"};  // (the arguments, socket_address's filling of addr included, run before bind)
  } else {
    // type, code 0, checksum and identifier left to the kernel, sequence 1; the payload's bytes carry nothing
    std::vector<uint8_t> message(8 + size_t(payload_bytes), 0);
    message[0] = family == 4 ? 8 : 128;
    message[7] = 1;
    const socklen_t len = socket_address(family, dst, addr);
    if (sendto(fd, message.data(), message.size(), 0, reinterpret_cast<const sockaddr*>(&addr), len) < 0) result = {errno, "sendto"};
  }
  close(fd);
  return result;
}

}  // namespace knockd
