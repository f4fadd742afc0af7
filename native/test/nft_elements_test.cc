// NftElementWriter against the real kernel: the test moves itself into a fresh network namespace of its
// own (gone when it exits), installs sets there with `nft` and checks what the netlink writer left in
// them. Needs root and nft; exits 77 (skipped) without them.
#include "nft_elements.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "test_util.h"

using knockd::NftElementWriter;
using knockd::NftResult;
using knockd::NftSetElements;

namespace {

constexpr int kSkipped = 77;  // ctest's SKIP_RETURN_CODE

bool nft_script(const char* script) {
  FILE* p = popen("nft -f -", "w");
  if (!p) return false;
  std::fputs(script, p);
  return pclose(p) == 0;
}

std::string nft_output(const std::string& args) {
  FILE* p = popen(("nft " + args + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  for (size_t n; p && (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  if (p) pclose(p);
  return out;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

NftSetElements set_of(const char* set, uint8_t addr_len, size_t n, uint64_t timeout_ms) {
  NftSetElements s{1, "knockd_fast", set, addr_len, std::vector<uint8_t>(n * addr_len), std::vector<uint64_t>(n, timeout_ms)};
  for (size_t i = 0; i < n; i++) {
    uint8_t* a = s.addresses.data() + i * addr_len;
    a[0] = addr_len == 4 ? 198 : 0x20;
    a[1] = addr_len == 4 ? 51 : 0x01;
    a[addr_len - 2] = uint8_t(i >> 8);
    a[addr_len - 1] = uint8_t(i);
  }
  return s;
}

}  // namespace

int main() {
  if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
    std::printf("nft_elements_test: skipped (needs root to enter a network namespace of its own)\n");
    return kSkipped;
  }
  if (nft_output("--version").find("nftables") == std::string::npos) {
    std::printf("nft_elements_test: skipped (nft not installed: apt-get install nftables)\n");
    return kSkipped;
  }

  NftElementWriter missing_ns;
  NftResult r = missing_ns.open("/run/netns/knockd-fast-no-such-namespace");
  CHECK(r.error == ENOENT);
  CHECK(r.message.find("cannot open network namespace") == 0);

  NftElementWriter writer;
  CHECK(writer.open("").error == 0);

  // nothing installed yet: the kernel refuses, and the message names the set
  r = writer.refresh({set_of("d_v4", 4, 1, 1000)});
  CHECK(r.error == ENOENT);
  CHECK(r.message == "set knockd_fast d_v4: No such file or directory");

  CHECK(nft_script("add table inet knockd_fast\n"
                   "add set inet knockd_fast d_v4 { type ipv4_addr; flags timeout; }\n"
                   "add set inet knockd_fast d_v6 { type ipv6_addr; flags timeout; }\n"));

  // both families in one transaction, each element with its own timeout
  NftSetElements v4 = set_of("d_v4", 4, 2, 60000);
  v4.timeouts_ms[1] = 120000;
  r = writer.refresh({v4, set_of("d_v6", 16, 1, 90000)});
  CHECK(r.error == 0);
  const std::string listed_v4 = nft_output("list set inet knockd_fast d_v4");
  CHECK(listed_v4.find("198.51.0.0 timeout 1m") != std::string::npos);
  CHECK(listed_v4.find("198.51.0.1 timeout 2m") != std::string::npos);
  CHECK(nft_output("list set inet knockd_fast d_v6").find("2001::") != std::string::npos);

  // the same elements again (a refresh) and a batch longer than one message holds
  r = writer.refresh({v4, set_of("d_v6", 16, 2500, 30000)});
  CHECK(r.error == 0);
  CHECK(count(nft_output("-j list set inet knockd_fast d_v6"), "\"val\"") == 2500);
  CHECK(count(nft_output("-j list set inet knockd_fast d_v4"), "\"val\"") == 2);

  // all or nothing: an IPv4 address for the IPv6 set fails the whole batch, the IPv4 set is untouched
  r = writer.refresh({set_of("d_v4", 4, 10, 1000), set_of("d_v6", 4, 1, 1000)});
  CHECK(r.error == EINVAL);
  CHECK(r.message.find("set knockd_fast d_v6: Invalid argument") == 0);
  CHECK(count(nft_output("-j list set inet knockd_fast d_v4"), "\"val\"") == 2);

  // the writer goes on after a refused batch
  CHECK(writer.refresh({set_of("d_v4", 4, 3, 1000)}).error == 0);
  CHECK(count(nft_output("-j list set inet knockd_fast d_v4"), "\"val\"") == 3);

  writer.close();
  CHECK(writer.refresh({v4}).error == EBADF);

  // sequence numbers wrap within a batch: acks are still counted and errors still named by their set
  NftElementWriter wrapping(0xFFFFFFFEu);
  CHECK(wrapping.open("").error == 0);
  r = wrapping.refresh({set_of("d_v4", 4, 1, 1000), set_of("nope", 4, 1, 1000)});
  CHECK(r.error == ENOENT);
  CHECK(r.message == "set knockd_fast nope: No such file or directory");
  CHECK(wrapping.refresh({set_of("d_v4", 4, 4, 1000)}).error == 0);
  CHECK(count(nft_output("-j list set inet knockd_fast d_v4"), "\"val\"") == 4);

  if (test::failures) std::fprintf(stderr, "nft_elements_test: %d failure(s)\n", test::failures);
  else std::printf("nft_elements_test: ok\n");
  return test::failures ? 1 : 0;
}
