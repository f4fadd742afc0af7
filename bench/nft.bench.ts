// nftables backend throughput and latency (issue 4 item 4: >= 10,000 grants/s sustained, p99 <= 10 ms from
// grant to element installed). Runs the real NftBackend against the real nft inside a private namespace.
//   node --import tsx bench/nft.bench.ts [--rate 10000] [--seconds 5] [--burst 100000]
// Sustained: grants issued on a schedule of `rate` per second (spread over 1 ms ticks) for `seconds`;
// latency = from grant() to its promise resolving (the nft transaction holding it has committed).
// Burst: `burst` grants at once, time until all are installed (the backend's ceiling).
// Both element writers run, one after the other, each in a fresh namespace: netlink from the addon (the
// default) and the nft -i fallback, so their figures come from the same run.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { NftBackend } from '../src/actions/nft.js';
import { Lab } from '../src/tools/netns.js';
import { door } from '../test/helpers/doors.js';
import { reportRow } from './report.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';
const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: SHORT ? '2' : '5' },
    burst: { type: 'string', default: SHORT ? '20000' : '100000' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const burst = Number(values.burst);

/** Distinct addresses: 10.x.y.z from a counter, and IPv6 every 8th grant. */
function source(i: number): { source: string; family: 4 | 6 } {
  if (i % 8 === 7) return { source: `2001:db8::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}`, family: 6 };
  return { source: `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`, family: 4 };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function run(writer: 'netlink' | 'nft'): Promise<void> {
  const lab = new Lab('nftbench');
  try {
    lab.ns('n');
    const ssh = door('ssh', '7000', { open: [{ port: 22, proto: 'tcp' }], openTimeout: 120 });
    const batches: number[] = [];
    const backend = new NftBackend({
      doors: [ssh],
      log: (m) => console.error(`log: ${m}`),
      netns: lab.name('n'),
      writer,
      onBatch: (elements) => batches.push(elements),
    });
    await backend.start();

    // sustained
    const total = Math.round(rate * seconds);
    const latencies = new Float64Array(total);
    const pending: Promise<void>[] = [];
    const t0 = performance.now();
    let issued = 0;
    while (issued < total) {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
      for (; issued < due; issued++) {
        const i = issued;
        const at = performance.now();
        pending.push(backend.grant({ door: ssh, ...source(i) }).then((ok) => {
          if (!ok) throw new Error(`grant ${i} not installed`);
          latencies[i] = performance.now() - at;
        }));
      }
      await sleep(1);
    }
    await Promise.all(pending);
    const elapsed = (performance.now() - t0) / 1000;
    const sorted = Array.from(latencies).sort((a, b) => a - b);
    const meanBatch = batches.reduce((a, b) => a + b, 0) / batches.length;
    console.log(`${writer} sustained: ${total} grants at ${rate}/s target, ${(total / elapsed).toFixed(0)}/s achieved over ${elapsed.toFixed(2)} s`);
    console.log(
      `  latency ms: p50 ${quantile(sorted, 0.5).toFixed(2)}  p90 ${quantile(sorted, 0.9).toFixed(2)}  ` +
        `p99 ${quantile(sorted, 0.99).toFixed(2)}  max ${sorted[sorted.length - 1].toFixed(2)}`,
    );
    console.log(`  ${batches.length} batches, mean ${meanBatch.toFixed(1)} elements`);
    reportRow({
      bench: 'nft',
      case: `${writer}: sustained ${rate} grants/s for ${seconds} s`,
      values: {
        'grants/s': total / elapsed,
        'p50 ms': quantile(sorted, 0.5),
        'p99 ms': quantile(sorted, 0.99),
        'elements/batch': meanBatch,
      },
    });

    // burst
    batches.length = 0;
    const b0 = performance.now();
    const all: Promise<boolean>[] = [];
    for (let i = 0; i < burst; i++) all.push(backend.grant({ door: ssh, ...source(total + i) }));
    const ok = await Promise.all(all);
    const bElapsed = (performance.now() - b0) / 1000;
    if (ok.some((x) => !x)) throw new Error('burst grant not installed');
    console.log(`${writer} burst: ${burst} grants installed in ${bElapsed.toFixed(2)} s = ${(burst / bElapsed).toFixed(0)}/s, ${batches.length} batches`);
    reportRow({ bench: 'nft', case: `${writer}: burst of ${burst} grants`, values: { 'grants/s': burst / bElapsed, 'elements/batch': burst / batches.length } });
    await backend.close();
  } finally {
    lab.destroy();
  }
}

for (const writer of ['netlink', 'nft'] as const) await run(writer);
