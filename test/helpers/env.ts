// What the tests share about their environment: the start of their capture times, and whether they run
// as root (network namespaces, AF_PACKET sockets, nftables).

/** An ordinary capture time, µs since the epoch (2023-11-14T22:13:20Z): where the tests' traces start. */
export const T0 = 1_700_000_000_000_000;

export const isRoot = process.getuid?.() === 0;

/** A skip reason for a test that needs root for `what` (false as root). */
export function needsRoot(what: string): string | false {
  return isRoot ? false : `needs root (${what})`;
}
