// The contract both matchers implement (docs/MATCHER.md): frames in, event batches out, time as a parameter.

/** n frames: frame i is data[offsets[i] .. offsets[i+1]), captured at timestampsUs[i] on linkTypes[i]. */
export interface FrameBatch {
  data: Uint8Array;
  offsets: Uint32Array; // length n + 1
  timestampsUs: Float64Array; // integer microseconds since the epoch
  linkTypes: Uint16Array; // pcap LINKTYPE_* per frame
}

export const STAT_NAMES = [
  'frames',
  'malformed',
  'notKnock',
  'invisible',
  'visible',
  'stages',
  'completed',
  'failedTimeout',
  'failedWrongPort',
  'evicted',
  'suppressed',
  'evictedProgressed',
  'tracked',
  'spaAccepted',
  'spaRejected',
] as const;
export type StatName = (typeof STAT_NAMES)[number];
export type MatcherStats = Record<StatName, number>;

export interface Matcher {
  /** load or replace the program (src/config/program.ts); in-progress attempts of unchanged doors survive */
  load(program: Uint32Array): void;
  /** match a batch of frames; returns event records (40 bytes each, src/match/events.ts) */
  feed(batch: FrameBatch): Uint8Array;
  /** advance time without packets (fires due timeouts) */
  tick(nowUs: number): Uint8Array;
  stats(): MatcherStats;
}

export const LinkType = { ETHERNET: 1, RAW: 101, LINUX_SLL: 113, LINUX_SLL2: 276, IPV4: 228, IPV6: 229 } as const;
