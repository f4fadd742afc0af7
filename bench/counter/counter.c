// counter: the count-only reader, the ceiling of this machine's capture path. It opens the same kind
// of socket knockd-fast does (AF_PACKET, TPACKET_V3 mmap ring, classic BPF filter attached before
// bind, incoming packets only) and does nothing with a packet but count it. Runs until SIGINT/SIGTERM
// or --duration, then prints a JSON report; prints "ready" on stderr once the ring is bound.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static double now_mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what) {
  fprintf(stderr, "counter: %s: %s\n", what, strerror(errno));
  exit(1);
}

static long parse_positive(const char *s, const char *name) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v <= 0) {
    fprintf(stderr, "counter: --%s must be a positive integer, got '%s'\n", name, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  static const struct option longs[] = {{"interface", 1, 0, 'i'},  {"duration", 1, 0, 't'},
                                        {"block-kib", 1, 0, 'b'},  {"blocks", 1, 0, 'n'},
                                        {"retire-ms", 1, 0, 'r'},  {"help", 0, 0, 'h'},
                                        {0, 0, 0, 0}};
  const char *ifname = NULL;
  double duration_s = 0;
  long block_kib = 1024, blocks = 32, retire_ms = 4;
  for (int c; (c = getopt_long(argc, argv, "", longs, NULL)) != -1;) {
    switch (c) {
      case 'i': ifname = optarg; break;
      case 't': duration_s = (double)parse_positive(optarg, "duration"); break;
      case 'b': block_kib = parse_positive(optarg, "block-kib"); break;
      case 'n': blocks = parse_positive(optarg, "blocks"); break;
      case 'r': retire_ms = parse_positive(optarg, "retire-ms"); break;
      case 'h':
      default:
        fprintf(c == 'h' ? stdout : stderr,
                "usage: counter --interface IF [--duration S] [--blocks N] [--block-kib K] [--retire-ms MS]\n"
                "Counts incoming IPv4 frames on IF through a TPACKET_V3 ring until SIGTERM/SIGINT or S seconds.\n");
        return c == 'h' ? 0 : 2;
    }
  }
  if (!ifname) {
    fprintf(stderr, "counter: --interface is required\n");
    return 2;
  }
  unsigned ifindex = if_nametoindex(ifname);
  if (!ifindex) {
    fprintf(stderr, "counter: no interface named '%s' in this network namespace\n", ifname);
    return 1;
  }

  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0 until bound: nothing is queued before the filter
  if (fd < 0) fail("socket(AF_PACKET) (needs root or CAP_NET_RAW)");
  // Incoming IPv4 frames only: the same work class as knockd-fast's filter, without the port tests.
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_PKTTYPE)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 3, 0),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0x40000),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) fail("SO_ATTACH_FILTER");
  int version = TPACKET_V3;
  if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0) fail("PACKET_VERSION");
  struct tpacket_req3 req = {
      .tp_block_size = (unsigned)(block_kib * 1024),
      .tp_block_nr = (unsigned)blocks,
      .tp_frame_size = 2048,
      .tp_frame_nr = (unsigned)(block_kib * 1024 / 2048 * blocks),
      .tp_retire_blk_tov = (unsigned)retire_ms,
  };
  if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) fail("PACKET_RX_RING");
  size_t ring_len = (size_t)req.tp_block_size * req.tp_block_nr;
  uint8_t *ring = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd, 0);
  if (ring == MAP_FAILED) fail("mmap of the ring");
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)ifindex};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) fail("bind");

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  fprintf(stderr, "ready\n");

  uint64_t packets = 0, bytes = 0, blocks_read = 0, kernel_packets = 0, kernel_drops = 0, freezes = 0;
  const double start = now_mono_s();
  unsigned cur = 0;
  struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLERR};
  // On a stop, frames still sit in the block the kernel has not retired yet (it retires after retire_ms)
  // and in the veth backlog: keep reading until nothing has arrived for a few retire periods.
  const double drain_s = 3.0 * (double)retire_ms / 1000.0 + 0.05;
  double drain_until = 0, stopped_at = 0;
  for (;;) {
    if (drain_until == 0 && (stop_requested || (duration_s != 0 && now_mono_s() - start >= duration_s))) {
      stopped_at = now_mono_s();
      drain_until = stopped_at + drain_s;
    }
    if (drain_until != 0 && now_mono_s() >= drain_until) break;
    struct tpacket_block_desc *bd = (struct tpacket_block_desc *)(ring + (size_t)cur * req.tp_block_size);
    if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
      if (poll(&pfd, 1, drain_until != 0 ? (int)retire_ms : 100) < 0 && errno != EINTR) fail("poll");
      continue;
    }
    if (drain_until != 0) drain_until = now_mono_s() + drain_s;
    struct tpacket3_hdr *h = (struct tpacket3_hdr *)((uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt);
    for (uint32_t i = 0; i < bd->hdr.bh1.num_pkts; i++) {
      bytes += h->tp_snaplen;
      packets++;
      h = (struct tpacket3_hdr *)((uint8_t *)h + h->tp_next_offset);
    }
    blocks_read++;
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    cur = (cur + 1) % req.tp_block_nr;
  }
  const double elapsed = stopped_at - start;  // the drain is not part of the measured run
  struct tpacket_stats_v3 st;  // reset on read: one read at the end holds the whole run
  socklen_t len = sizeof st;
  if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    kernel_packets = st.tp_packets;
    kernel_drops = st.tp_drops;
    freezes = st.tp_freeze_q_cnt;
  }
  printf("{\"interface\":\"%s\",\"elapsedS\":%.6f,\"packets\":%llu,\"bytes\":%llu,\"blocks\":%llu,"
         "\"kernelPackets\":%llu,\"ringDrops\":%llu,\"queueFreezes\":%llu}\n",
         ifname, elapsed, (unsigned long long)packets, (unsigned long long)bytes, (unsigned long long)blocks_read,
         (unsigned long long)kernel_packets, (unsigned long long)kernel_drops, (unsigned long long)freezes);
  munmap(ring, ring_len);
  close(fd);
  return 0;
}
