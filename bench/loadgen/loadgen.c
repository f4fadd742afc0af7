// loadgen: sends a port-knock load trace as raw Ethernet frames through AF_PACKET (sendmmsg) on one
// interface, at a target rate or as fast as possible, bounded in frame count and in time, and prints
// a JSON report of what it actually sent (including when each legitimate knocker's last knock left).
//
// The trace is legitimate knockers (each a full sequence, distinct sources, realistic gaps), spaced so
// no two are in progress at once, interleaved with one kind of noise:
//   none        nothing else
//   background  TCP SYNs and UDP datagrams from random sources to random non-knock ports
//   flood       TCP SYNs to the first knock port from spoofed sources, a new address for every frame
//               (a bijection over 10.0.0.0/8: 16.7 million addresses before one repeats)
//   pairs       the two-known-ports attack: each spoofed source sends the first knock port, then the
//               second (frames 2m and 2m+1 come from source m, drawn as in flood)
//   spa         forged SPA packets: UDP to the first port from spoofed sources (as in flood), each with
//               --spa-len random base64 characters, what a flood of an SPA port costs one HMAC apiece
// With --spa-payloads FILE the legitimate knockers are SPA clients instead: one per line of FILE (an SPA
// payload as `fwknop --save-packet` writes it), each sending that one UDP datagram to the first port.
// With --dup every legitimate knock is sent twice (browsers and `nc -z` send two SYNs).
//
// Every frame is built in advance: the legitimate frames in full, the noise from one template whose
// source address, source port and checksums are rewritten in a fixed batch buffer, so the send loop
// allocates nothing.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ETH_LEN = 14, IP_LEN = 20, TCP_LEN = 20, UDP_LEN = 8, FRAME_MAX = 1514, PAYLOAD_MAX = FRAME_MAX - ETH_LEN - IP_LEN - UDP_LEN };
enum { BATCH_MAX = 1024, PORTS_MAX = 16 };
enum noise_kind { NOISE_NONE, NOISE_BACKGROUND, NOISE_FLOOD, NOISE_PAIRS, NOISE_SPA };

struct options {
  const char *ifname;
  uint8_t src_mac[6], dst_mac[6];
  uint32_t dst_ip;  // host order
  uint16_t ports[PORTS_MAX];
  int nports;
  int knockers;
  double knock_gap_s;   // mean gap between the steps of one knocker
  double dup_gap_s;     // > 0: every legitimate knock is sent again this much later
  enum noise_kind noise;
  double rate;          // noise frames per second; 0 = as fast as possible
  double duration_s;    // hard bound on the run
  uint64_t count;       // hard bound on frames sent (all kinds); 0 = no bound
  uint64_t seed;
  int batch;
  int spa_len;               // payload bytes of a forged SPA packet (--noise spa)
  char **spa_payloads;       // --spa-payloads: one legitimate SPA payload per knocker
};

struct frame {
  uint8_t bytes[FRAME_MAX];
  uint16_t len;
};

// One legitimate frame of the schedule.
struct knock {
  double at_s;          // offset from the start of the run
  int knocker;
  int last;             // the final step of the knocker's sequence (the duplicate of it too)
  struct frame frame;
};

struct knocker_report {
  uint32_t src;
  double first_sent_us;  // CLOCK_REALTIME, microseconds since the epoch
  double last_sent_us;
};

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static uint64_t rng_state;
static uint64_t rng_next(void) {  // splitmix64: reproducible traces from --seed
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }

static double now_mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static double now_real_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint16_t checksum_finish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return (uint16_t)~sum;
}
static uint32_t checksum_add(uint32_t sum, const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += (uint32_t)(p[n - 1] << 8);
  return sum;
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

// Builds Ethernet + IPv4 + (TCP SYN | UDP with `payload`, or with a 1-byte payload as the knock client sends).
static void build_frame(struct frame *f, const struct options *o, uint32_t src, uint16_t sport,
                        uint16_t dport, int udp, uint32_t seq, const uint8_t *payload, size_t plen) {
  uint8_t *e = f->bytes, *ip = e + ETH_LEN, *l4 = ip + IP_LEN;
  if (!payload) plen = 1;
  size_t l4len = udp ? UDP_LEN + plen : TCP_LEN;
  memset(f->bytes, 0, ETH_LEN + IP_LEN + l4len);
  if (udp && payload) memcpy(l4 + UDP_LEN, payload, plen);
  memcpy(e, o->dst_mac, 6);
  memcpy(e + 6, o->src_mac, 6);
  put16(e + 12, ETHERTYPE_IP);
  ip[0] = 0x45;
  put16(ip + 2, (uint16_t)(IP_LEN + l4len));
  put16(ip + 4, (uint16_t)seq);
  put16(ip + 6, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = udp ? IPPROTO_UDP : IPPROTO_TCP;
  put32(ip + 12, src);
  put32(ip + 16, o->dst_ip);
  put16(ip + 10, checksum_finish(checksum_add(0, ip, IP_LEN)));
  put16(l4, sport);
  put16(l4 + 2, dport);
  if (udp) {
    put16(l4 + 4, (uint16_t)l4len);
  } else {
    put32(l4 + 4, seq);
    l4[12] = 5 << 4;
    l4[13] = 0x02;  // SYN
    put16(l4 + 14, 64240);
  }
  uint32_t sum = checksum_add(0, ip + 12, 8);  // pseudo-header: addresses, protocol, length
  sum += ip[9];
  sum += (uint32_t)l4len;
  uint16_t c = checksum_finish(checksum_add(sum, l4, l4len));
  if (udp && c == 0) c = 0xFFFF;
  put16(l4 + (udp ? 6 : 16), c);
  f->len = (uint16_t)(ETH_LEN + IP_LEN + l4len);
}

static int is_knock_port(const struct options *o, uint16_t port) {
  for (int i = 0; i < o->nports; i++)
    if (o->ports[i] == port) return 1;
  return 0;
}

// The next noise frame, written into f. n is the noise frame's index in the run.
static void build_noise(struct frame *f, const struct options *o, uint64_t n) {
  if (o->noise == NOISE_FLOOD || o->noise == NOISE_PAIRS) {
    const int pairs = o->noise == NOISE_PAIRS && o->nports >= 2;
    const uint64_t m = pairs ? n / 2 : n;  // the spoofed source's index
    // An odd multiplier is a bijection modulo 2^24: every address of 10/8 once per 16.7 M sources.
    uint32_t host = (uint32_t)((m * 0x9E3779B1ull + 1) & 0xFFFFFF);
    build_frame(f, o, 0x0A000000u | host, (uint16_t)(1024 + (m % 60000)), o->ports[pairs ? n % 2 : 0], 0, (uint32_t)n, NULL, 0);
    return;
  }
  if (o->noise == NOISE_SPA) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t payload[PAYLOAD_MAX];
    for (int i = 0; i < o->spa_len; i += 10) {
      uint64_t r = rng_next();
      for (int j = i; j < i + 10 && j < o->spa_len; j++, r >>= 6) payload[j] = (uint8_t)b64[r & 63];
    }
    uint32_t host = (uint32_t)((n * 0x9E3779B1ull + 1) & 0xFFFFFF);
    build_frame(f, o, 0x0A000000u | host, (uint16_t)(1024 + (n % 60000)), o->ports[0], 1, (uint32_t)n, payload, (size_t)o->spa_len);
    return;
  }
  uint64_t r = rng_next();
  uint16_t dport;
  do {
    dport = (uint16_t)(1 + rng_next() % 65535);
  } while (is_knock_port(o, dport));
  uint32_t src = 0xC0A80000u | (uint32_t)(r & 0xFFFF);  // 192.168.0.0/16
  build_frame(f, o, src, (uint16_t)(1024 + ((r >> 16) % 60000)), dport, (int)((r >> 40) & 1), (uint32_t)(r >> 32), NULL, 0);
}

static int parse_mac(const char *s, uint8_t out[6]) {
  unsigned v[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
  for (int i = 0; i < 6; i++) {
    if (v[i] > 255) return -1;
    out[i] = (uint8_t)v[i];
  }
  return 0;
}

static int parse_ports(const char *s, struct options *o) {
  char *copy = strdup(s), *save = NULL;
  o->nports = 0;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *end;
    long p = strtol(tok, &end, 10);
    if (*end || p < 1 || p > 65535 || o->nports == PORTS_MAX) {
      free(copy);
      return -1;
    }
    o->ports[o->nports++] = (uint16_t)p;
  }
  free(copy);
  return o->nports > 0 ? 0 : -1;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: loadgen --interface IF --src-mac MAC --dst-mac MAC --dst-ip IPV4 --ports P1,P2,...\n"
          "               [--knockers N] [--knock-gap-ms MS] [--dup-gap-ms MS]\n"
          "               [--noise none|background|flood|pairs|spa] [--rate PPS (0 = as fast as possible)]\n"
          "               [--spa-len BYTES] [--spa-payloads FILE]\n"
          "               --duration SECONDS [--count FRAMES] [--seed N] [--batch N]\n"
          "Sends the trace on IF with AF_PACKET (needs CAP_NET_RAW) and prints a JSON report on stdout.\n");
}

static void die_usage(const char *what) {
  fprintf(stderr, "loadgen: %s\n", what);
  usage(stderr);
  exit(2);
}

static double parse_number(const char *s, const char *name, double min) {
  char *end;
  double v = strtod(s, &end);
  if (*end || v < min) {
    fprintf(stderr, "loadgen: --%s must be a number >= %g, got '%s'\n", name, min, s);
    exit(2);
  }
  return v;
}

// --spa-payloads: one payload per line; the knockers are as many as the lines.
static void read_spa_payloads(const char *path, struct options *o) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "loadgen: --spa-payloads %s: %s\n", path, strerror(errno));
    exit(2);
  }
  char line[PAYLOAD_MAX + 2];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    size_t len = strcspn(line, "\r\n");
    if (len == 0) continue;
    line[len] = 0;
    o->spa_payloads = realloc(o->spa_payloads, (size_t)(n + 1) * sizeof *o->spa_payloads);
    if (!o->spa_payloads || !(o->spa_payloads[n++] = strdup(line))) { perror("loadgen: --spa-payloads"); exit(1); }
  }
  fclose(f);
  if (n == 0) die_usage("--spa-payloads names a file without payloads");
  o->knockers = n;
  o->nports = 1;
}

static void parse_options(int argc, char **argv, struct options *o) {
  static const struct option longs[] = {
      {"interface", 1, 0, 'i'}, {"src-mac", 1, 0, 's'},  {"dst-mac", 1, 0, 'm'},   {"dst-ip", 1, 0, 'd'},
      {"ports", 1, 0, 'p'},     {"knockers", 1, 0, 'k'}, {"knock-gap-ms", 1, 0, 'g'}, {"dup-gap-ms", 1, 0, 'u'},
      {"noise", 1, 0, 'n'},     {"rate", 1, 0, 'r'},     {"duration", 1, 0, 't'},  {"count", 1, 0, 'c'},
      {"seed", 1, 0, 'S'},      {"batch", 1, 0, 'b'},    {"help", 0, 0, 'h'},      {"spa-len", 1, 0, 'L'},
      {"spa-payloads", 1, 0, 'P'}, {0, 0, 0, 0}};
  const char *spa_file = NULL;
  memset(o, 0, sizeof *o);
  o->knock_gap_s = 0.1;
  o->seed = 1;
  o->batch = 64;
  o->spa_len = 184;  // what `fwknop -A tcp/22 -s` sends
  o->duration_s = -1;
  int have_src = 0, have_dst = 0, have_ip = 0;
  for (int c; (c = getopt_long(argc, argv, "", longs, NULL)) != -1;) {
    switch (c) {
      case 'i': o->ifname = optarg; break;
      case 's': if (parse_mac(optarg, o->src_mac)) die_usage("--src-mac must look like 02:00:00:00:00:01"); have_src = 1; break;
      case 'm': if (parse_mac(optarg, o->dst_mac)) die_usage("--dst-mac must look like 02:00:00:00:00:02"); have_dst = 1; break;
      case 'd': {
        struct in_addr a;
        if (inet_pton(AF_INET, optarg, &a) != 1) die_usage("--dst-ip must be an IPv4 address such as 192.0.2.2");
        o->dst_ip = ntohl(a.s_addr);
        have_ip = 1;
        break;
      }
      case 'p': if (parse_ports(optarg, o)) die_usage("--ports must be 1 to 16 comma-separated ports in 1..65535"); break;
      case 'k': o->knockers = (int)parse_number(optarg, "knockers", 0); break;
      case 'g': o->knock_gap_s = parse_number(optarg, "knock-gap-ms", 0) / 1e3; break;
      case 'u': o->dup_gap_s = parse_number(optarg, "dup-gap-ms", 0) / 1e3; break;
      case 'n':
        if (!strcmp(optarg, "none")) o->noise = NOISE_NONE;
        else if (!strcmp(optarg, "background")) o->noise = NOISE_BACKGROUND;
        else if (!strcmp(optarg, "flood")) o->noise = NOISE_FLOOD;
        else if (!strcmp(optarg, "pairs")) o->noise = NOISE_PAIRS;
        else if (!strcmp(optarg, "spa")) o->noise = NOISE_SPA;
        else die_usage("--noise must be none, background, flood, pairs or spa");
        break;
      case 'r': o->rate = parse_number(optarg, "rate", 0); break;
      case 't': o->duration_s = parse_number(optarg, "duration", 0.001); break;
      case 'c': o->count = (uint64_t)parse_number(optarg, "count", 0); break;
      case 'S': o->seed = (uint64_t)parse_number(optarg, "seed", 0); break;
      case 'b': o->batch = (int)parse_number(optarg, "batch", 1); break;
      case 'L': o->spa_len = (int)parse_number(optarg, "spa-len", 1); break;
      case 'P': spa_file = optarg; break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); exit(2);
    }
  }
  if (optind != argc) die_usage("unexpected positional argument");
  if (!o->ifname) die_usage("--interface is required");
  if (!have_src || !have_dst || !have_ip || !o->nports) die_usage("--src-mac, --dst-mac, --dst-ip and --ports are required");
  if (o->duration_s < 0) die_usage("--duration is required (the run is always bounded in time)");
  if (o->batch > BATCH_MAX) die_usage("--batch must be at most 1024");
  if (o->spa_len > PAYLOAD_MAX) die_usage("--spa-len must be at most 1472");
  if (spa_file) read_spa_payloads(spa_file, o);
}

// Legitimate knockers: distinct sources 172.16.0.0/12, start times spread evenly over the run with a
// margin at the end so the last one finishes; gaps between steps are the mean ±30 %.
static struct knock *build_schedule(const struct options *o, size_t *n_out, struct knocker_report *rep) {
  size_t per = (size_t)o->nports * (o->dup_gap_s > 0 ? 2 : 1);
  size_t n = (size_t)o->knockers * per;
  struct knock *k = calloc(n ? n : 1, sizeof *k);
  if (!k) { perror("loadgen: calloc"); exit(1); }
  double span = o->knock_gap_s * 1.3 * (o->nports - 1) + o->dup_gap_s;
  double usable = o->duration_s - span - 0.2;
  double spacing = o->knockers > 0 ? usable / o->knockers : 0;
  if (o->knockers > 0 && spacing <= span) {
    fprintf(stderr, "loadgen: %d knockers with %.0f ms sequences do not fit in %.1f s without overlapping; "
                    "lower --knockers or raise --duration\n", o->knockers, span * 1e3, o->duration_s);
    exit(2);
  }
  size_t i = 0;
  for (int kn = 0; kn < o->knockers; kn++) {
    uint32_t src = 0xAC100000u | (uint32_t)(kn + 1);
    rep[kn].src = src;
    double t = 0.1 + spacing * kn;
    uint16_t sport = (uint16_t)(32768 + rng_next() % 28000);
    for (int s = 0; s < o->nports; s++) {
      if (s > 0) t += o->knock_gap_s * (0.7 + 0.6 * rng_unit());
      for (int d = 0; d < (o->dup_gap_s > 0 ? 2 : 1); d++) {
        struct knock *x = &k[i++];
        x->at_s = t + d * o->dup_gap_s;
        x->knocker = kn;
        x->last = s == o->nports - 1;
        // A knock client uses a fresh source port per connect(); the duplicate is the same SYN again.
        if (o->spa_payloads) {
          const char *p = o->spa_payloads[kn];
          build_frame(&x->frame, o, src, sport, o->ports[0], 1, (uint32_t)rng_next(), (const uint8_t *)p, strlen(p));
        } else {
          build_frame(&x->frame, o, src, (uint16_t)(sport + s), o->ports[s], 0, (uint32_t)rng_next(), NULL, 0);
        }
      }
    }
  }
  *n_out = n;
  return k;
}

int main(int argc, char **argv) {
  struct options o;
  parse_options(argc, argv, &o);
  rng_state = o.seed;

  unsigned ifindex = if_nametoindex(o.ifname);
  if (!ifindex) {
    fprintf(stderr, "loadgen: no interface named '%s' in this network namespace\n", o.ifname);
    return 1;
  }
  int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: a send-only socket, it never receives
  if (fd < 0) {
    fprintf(stderr, "loadgen: socket(AF_PACKET): %s (needs root or CAP_NET_RAW)\n", strerror(errno));
    return 1;
  }
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = (int)ifindex};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    fprintf(stderr, "loadgen: bind to %s: %s\n", o.ifname, strerror(errno));
    return 1;
  }
  int one = 1, sndbuf = 8 << 20;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);  // best effort: veth has no qdisc
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);

  struct knocker_report *rep = calloc(o.knockers ? (size_t)o.knockers : 1, sizeof *rep);
  size_t nknocks;
  struct knock *knocks = build_schedule(&o, &nknocks, rep);

  static struct frame batch[BATCH_MAX];
  static struct mmsghdr msgs[BATCH_MAX];
  static struct iovec iov[BATCH_MAX];
  static int batch_knock[BATCH_MAX];  // index into knocks, or -1 for noise
  for (int i = 0; i < BATCH_MAX; i++) {
    iov[i].iov_base = batch[i].bytes;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  uint64_t sent = 0, sent_legit = 0, sent_noise = 0, noise_next = 0, send_errors = 0, enobufs = 0;
  size_t next_knock = 0;
  int reason_count = 0, reason_signal = 0;
  const double start = now_mono_s();
  const double start_real_us = now_real_us();
  double elapsed = 0;
  while (!stop_requested) {
    elapsed = now_mono_s() - start;
    if (elapsed >= o.duration_s) break;
    if (o.count && sent >= o.count) { reason_count = 1; break; }
    uint64_t room = o.count ? o.count - sent : UINT64_MAX;
    int n = 0;
    // Legitimate frames first: they are due at their own times, independent of the noise rate.
    while (n < o.batch && (uint64_t)n < room && next_knock < nknocks && knocks[next_knock].at_s <= elapsed) {
      batch[n] = knocks[next_knock].frame;
      iov[n].iov_len = batch[n].len;
      batch_knock[n++] = (int)next_knock++;
    }
    if (o.noise != NOISE_NONE) {
      uint64_t due = o.rate > 0 ? (uint64_t)(elapsed * o.rate) : UINT64_MAX;
      while (n < o.batch && (uint64_t)n < room && noise_next < due) {
        build_noise(&batch[n], &o, noise_next++);
        iov[n].iov_len = batch[n].len;
        batch_knock[n++] = -1;
      }
    }
    if (n == 0) {
      // Nothing due: sleep until the next frame is due (a short nap keeps pacing smooth).
      double next = o.duration_s;
      if (next_knock < nknocks && knocks[next_knock].at_s < next) next = knocks[next_knock].at_s;
      if (o.noise != NOISE_NONE && o.rate > 0 && (double)noise_next / o.rate < next) next = (double)noise_next / o.rate;
      double wait = next - elapsed;
      if (wait > 0.0005) wait = 0.0005;
      if (wait > 0) {
        struct timespec ts = {0, (long)(wait * 1e9)};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    int done = 0;
    while (done < n && !stop_requested) {
      int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS || errno == EAGAIN) { enobufs++; sched_yield(); continue; }
        fprintf(stderr, "loadgen: sendmmsg on %s: %s\n", o.ifname, strerror(errno));
        send_errors++;
        break;
      }
      double t_us = now_real_us();
      for (int i = done; i < done + r; i++) {
        if (batch_knock[i] < 0) { sent_noise++; continue; }
        const struct knock *k = &knocks[batch_knock[i]];
        struct knocker_report *kr = &rep[k->knocker];
        if (kr->first_sent_us == 0) kr->first_sent_us = t_us;
        if (k->last) kr->last_sent_us = t_us;  // the last knock (or its duplicate, whichever left later)
        sent_legit++;
      }
      done += r;
      sent += (uint64_t)r;
    }
    if (send_errors) break;
  }
  if (stop_requested) reason_signal = 1;
  elapsed = now_mono_s() - start;

  printf("{\"interface\":\"%s\",\"noise\":\"%s\",\"rateTarget\":%.0f,\"durationTarget\":%.3f,\"countLimit\":%llu,",
         o.ifname, o.noise == NOISE_FLOOD ? "flood" : o.noise == NOISE_PAIRS ? "pairs" : o.noise == NOISE_SPA ? "spa" : o.noise == NOISE_BACKGROUND ? "background" : "none", o.rate,
         o.duration_s, (unsigned long long)o.count);
  printf("\"stoppedBy\":\"%s\",\"startUs\":%.0f,\"elapsedS\":%.6f,\"sent\":%llu,\"sentLegit\":%llu,"
         "\"sentNoise\":%llu,\"noiseRate\":%.0f,\"enobufsRetries\":%llu,\"sendErrors\":%llu,\"legitScheduled\":%zu,",
         reason_signal ? "signal" : reason_count ? "count" : send_errors ? "error" : "duration", start_real_us,
         elapsed, (unsigned long long)sent, (unsigned long long)sent_legit, (unsigned long long)sent_noise,
         elapsed > 0 ? (double)sent_noise / elapsed : 0.0, (unsigned long long)enobufs,
         (unsigned long long)send_errors, nknocks);
  printf("\"knockers\":[");
  for (int i = 0; i < o.knockers; i++) {
    printf("%s{\"src\":\"%u.%u.%u.%u\",\"firstSentUs\":%.0f,\"lastSentUs\":%.0f}", i ? "," : "", rep[i].src >> 24,
           (rep[i].src >> 16) & 255, (rep[i].src >> 8) & 255, rep[i].src & 255, rep[i].first_sent_us,
           rep[i].last_sent_us);
  }
  printf("]}\n");
  free(knocks);
  free(rep);
  close(fd);
  return send_errors ? 1 : 0;
}
