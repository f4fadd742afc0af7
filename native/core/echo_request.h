// The knock client's ICMP step: one echo request with a chosen payload length, what `ping -s LEN` sends,
// through an unprivileged "ping socket" (SOCK_DGRAM with IPPROTO_ICMP / IPPROTO_ICMPV6). The kernel
// fills in the identifier and the checksum. Linux lets a process open one when one of its groups lies in
// the sysctl net.ipv4.ping_group_range (which governs ICMPv6 too); otherwise socket() fails with EACCES.
#pragma once
#include <cstdint>

namespace knockd {

struct EchoRequestResult {
  int error;            // 0, or the errno of the call that failed
  const char* syscall;  // "socket", "bind" or "sendto" when error != 0
};

// family 4 (addresses in bytes 0-3) or 6; src may be null (the kernel picks the source address).
EchoRequestResult send_echo_request(uint8_t family, const uint8_t dst[16], const uint8_t* src, uint16_t payload_bytes);

}  // namespace knockd
