// What batching buys at the addon boundary: NativeMatcher.feed() throughput for batch sizes 1..4096 on
// the same frames (one first knock from each of 64k sources, then their completions), i.e. the cost of a
// feed() call and its event copy against the per-frame work.
import { Bench } from 'tinybench';
import { batchFromFrames } from '../src/match/frame.js';
import { LinkType, type FrameBatch } from '../src/match/matcher-api.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { CONFIGS, compile } from '../test/helpers/doors.js';
import { knockFrame } from '../test/helpers/packets.js';
import { reportRow } from './report.js';
import { T0 } from '../test/helpers/env.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';
const SOURCES = 65_536;
const program = compile(CONFIGS.C9(), { eventBudget: 0 }).words; // one-step door: every frame completes

const all = batchFromFrames(
  Array.from({ length: SOURCES }, (_, i) => ({
    data: knockFrame({ src: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, dst: '192.0.2.2', dport: 7000 }),
    timeUs: T0 + i,
    linkType: LinkType.ETHERNET,
  })),
);

function slices(size: number): FrameBatch[] {
  const out: FrameBatch[] = [];
  for (let i = 0; i < SOURCES; i += size) {
    const end = Math.min(SOURCES, i + size);
    out.push({ data: all.data, offsets: all.offsets.subarray(i, end + 1), timestampsUs: all.timestampsUs.subarray(i, end), linkTypes: all.linkTypes.subarray(i, end) });
  }
  return out;
}

const bench = new Bench({ time: SHORT ? 300 : 1500, warmup: true });
const sizes = [1, 16, 256, 4096];
for (const size of sizes) {
  const batches = slices(size);
  const m = new NativeMatcher();
  m.load(program);
  bench.add(`batch ${size}`, () => {
    for (const b of batches) m.feed(b);
  });
}
await bench.run();
for (const size of sizes) {
  const r = bench.getTask(`batch ${size}`)?.result;
  if (!r || !('latency' in r)) throw new Error(`batch ${size} did not complete`);
  const pps = SOURCES / (r.latency.mean / 1000);
  reportRow({ bench: 'boundary', case: `${size} frames per feed()`, values: { 'Mpps': pps / 1e6, 'ns/frame': 1e9 / pps, 'events/frame': 1 } });
}
