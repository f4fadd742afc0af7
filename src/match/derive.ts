// Derived doors: the expected knock sequence for a source and a time window, computed from a shared
// secret (docs/MATCHER.md §10). Used by the TS matcher, the knock client and the tests; the C++ twin is
// native/core/derive.cc.
import { createHmac } from 'node:crypto';

export interface DerivedParams {
  key: Uint8Array; // 16..64 bytes
  sequenceLength: number; // 1..32
  /** sorted, disjoint inclusive port ranges */
  ranges: [number, number][];
  protocols: ('tcp' | 'udp')[]; // tcp before udp
  timeStep: number; // seconds
  bindSource: boolean;
}

export interface DerivedStep {
  port: number;
  proto: 'tcp' | 'udp';
}

const MAGIC = Buffer.from('KFD1', 'ascii');

export function windowOf(timeUs: number, timeStep: number): number {
  return Math.floor(timeUs / (timeStep * 1e6));
}

export function rangeSize(ranges: [number, number][]): number {
  return ranges.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
}

function nthPort(ranges: [number, number][], index: number): number {
  for (const [lo, hi] of ranges) {
    const n = hi - lo + 1;
    if (index < n) return lo + index;
    index -= n;
  }
  throw new RangeError('port index beyond the ranges');
}

export function derivationBlock(p: DerivedParams, window: number, family: 4 | 6, src: Uint8Array, k: number): Buffer {
  const msg = Buffer.alloc(4 + 8 + 1 + 16 + 1);
  MAGIC.copy(msg, 0);
  msg.writeBigUInt64BE(BigInt(window), 4);
  if (p.bindSource) {
    msg[12] = family;
    msg.set(src.subarray(0, 16), 13);
  }
  msg[29] = k;
  return createHmac('sha256', p.key).update(msg).digest();
}

/** The whole expected sequence of a source in a window. */
export function deriveSequence(p: DerivedParams, window: number, family: 4 | 6, src: Uint8Array): DerivedStep[] {
  const total = rangeSize(p.ranges);
  const steps: DerivedStep[] = [];
  let block: Buffer | undefined;
  for (let i = 0; i < p.sequenceLength; i++) {
    if ((i & 3) === 0) block = derivationBlock(p, window, family, src, i >> 2);
    const j = (i & 3) * 8;
    const portIndex = block!.readUInt32BE(j) % total;
    const protoIndex = block!.readUInt32BE(j + 4) % p.protocols.length;
    steps.push({ port: nthPort(p.ranges, portIndex), proto: p.protocols[protoIndex] });
  }
  return steps;
}
