// Native vs TS matcher on the same seeded traces (issue 2): (a) 100k sources knocking 3-step sequences,
// interleaved; (b) the same with 90% non-knock frames; (c) a spoofed first-knock flood from 2M sources with
// MaxTracked 1M. Reports packets/s, ns/packet, native/TS ratio and the measured state memory per tracked
// source; writes bench/results/matcher.json. KNOCKD_BENCH_SHORT=1: a short run that exits non-zero unless
// native is at least 2x TS on (a), judged on the median of alternating native/TS rounds so that a burst of
// load on the shared machine cannot decide it. Run with --expose-gc (bench/run.ts does) for the memory figures.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { batchFromFrames } from '../src/match/frame.js';
import type { FrameBatch, Matcher } from '../src/match/matcher-api.js';
import { TsMatcher } from '../src/match/matcher.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { packageRoot } from '../src/native.js';
import { CONFIGS, compile } from '../test/helpers/doors.js';
import { rng, TCP } from '../test/helpers/packets.js';
import { reportRow } from './report.js';
import { BATCH, TraceBuilder } from './trace.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';
const SOURCES = 100_000;
const FLOOD_SOURCES = SHORT ? 200_000 : 2_000_000;
const FLOOD_MAX_TRACKED = FLOOD_SOURCES / 2;
const BENCH_TIME_MS = SHORT ? 1500 : 5000;
const GATE_ROUNDS = 7; // odd, so the median is one measured round
const GATE_MIN_RATIO = 2;

/** A seeded permutation of 0..n-1. */
function permutation(n: number, rand: () => number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** (a)/(b): every source knocks 7000, 8000, 9000; the three rounds are each in a fresh random order, so
 * all 100k attempts are in flight at once. `noise` non-knock frames (other ports, ACK segments) follow
 * each knock. */
function knockTrace(seed: number, noise: number): FrameBatch[] {
  const rand = rng(seed);
  const t = new TraceBuilder(SOURCES * 3 * (1 + noise));
  const ports = [7000, 8000, 9000];
  const other = [443, 80, 22, 53, 8443];
  for (const port of ports) {
    for (const s of permutation(SOURCES, rand)) {
      t.push(s, port, TCP.SYN);
      for (let k = 0; k < noise; k++) t.push(Math.floor(rand() * 0x3fffffff), other[k % other.length], TCP.ACK);
    }
  }
  return t.batches();
}

/** (c): one first knock from each of FLOOD_SOURCES spoofed sources. */
function floodTrace(): FrameBatch[] {
  const t = new TraceBuilder(FLOOD_SOURCES); // 1 µs apart: 1M frames per second of trace time
  for (let s = 0; s < FLOOD_SOURCES; s++) t.push(s * 2654435761, 7000, TCP.SYN);
  return t.batches();
}

const C1 = CONFIGS.C1();
// The daemon's settings: stage events on, the default event budget (floods fold into SUPPRESSED).
const knockProgram = compile(C1, { eventBudget: 2000, maxTracked: 1_048_576 }).words;
const floodProgram = compile(C1, { eventBudget: 2000, maxTracked: FLOOD_MAX_TRACKED }).words;

function feedAll(m: Matcher, batches: FrameBatch[]): number {
  let events = 0;
  for (const b of batches) events += m.feed(b).byteLength;
  return events;
}

const gc = (globalThis as { gc?: () => void }).gc;
function settledMemory(): { rss: number; heap: number } {
  gc?.();
  gc?.();
  const u = process.memoryUsage();
  return { rss: u.rss, heap: u.heapUsed + u.arrayBuffers };
}

/** Bytes per tracked source, measured: process memory before the matcher exists vs after the flood has
 * filled its table (native: RSS, as the C++ pool commits pages on first touch; TS: JS heap + buffers). */
function measureMemory(make: () => Matcher, batches: FrameBatch[], kind: 'rss' | 'heap'): { perSource: number; tracked: number } {
  const before = settledMemory()[kind];
  const m = make();
  m.load(floodProgram);
  feedAll(m, batches);
  const tracked = m.stats().tracked;
  const after = settledMemory()[kind];
  // keep m alive past the measurement
  if (m.stats().frames !== batches.reduce((a, b) => a + b.timestampsUs.length, 0)) throw new Error('flood not fully fed');
  return { perSource: (after - before) / tracked, tracked };
}

interface CaseResult {
  case: string;
  frames: number;
  nativePps: number;
  tsPps: number;
}

async function runCase(name: string, batches: FrameBatch[], program: Uint32Array): Promise<CaseResult> {
  const frames = batches.reduce((a, b) => a + b.timestampsUs.length, 0);
  const native = new NativeMatcher();
  const ts = new TsMatcher();
  native.load(program);
  ts.load(program);
  // one untimed pass each: the flood fills the table, so every timed pass is in the steady state
  feedAll(native, batches);
  feedAll(ts, batches);
  const bench = new Bench({ time: BENCH_TIME_MS, warmup: false, iterations: 2 });
  bench.add('native', () => void feedAll(native, batches));
  bench.add('ts', () => void feedAll(ts, batches));
  await bench.run();
  const pps = (task: string): number => {
    const r = bench.getTask(task)?.result;
    if (!r || !('latency' in r)) throw new Error(`bench task ${task} did not complete`);
    return frames / (r.latency.mean / 1000);
  };
  const result = { case: name, frames, nativePps: pps('native'), tsPps: pps('ts') };
  reportRow({
    bench: 'matcher',
    case: name,
    values: {
      frames,
      'native Mpps': result.nativePps / 1e6,
      'native ns/pkt': 1e9 / result.nativePps,
      'TS Mpps': result.tsPps / 1e6,
      'TS ns/pkt': 1e9 / result.tsPps,
      'native/TS': result.nativePps / result.tsPps,
    },
  });
  return result;
}

/** Native/TS throughput ratios on the same batches, one per round: each round times one pass of each,
 * in alternating order, so load that comes and goes hits both sides of a round alike. */
function alternatingRatios(batches: FrameBatch[], program: Uint32Array): number[] {
  const native = new NativeMatcher();
  const ts = new TsMatcher();
  native.load(program);
  ts.load(program);
  feedAll(native, batches); // the steady state, as in runCase
  feedAll(ts, batches);
  const timed = (m: Matcher): number => {
    const t0 = performance.now();
    feedAll(m, batches);
    return performance.now() - t0;
  };
  const ratios: number[] = [];
  for (let round = 0; round < GATE_ROUNDS; round++) {
    let nativeMs: number;
    let tsMs: number;
    if (round % 2 === 0) {
      nativeMs = timed(native);
      tsMs = timed(ts);
    } else {
      tsMs = timed(ts);
      nativeMs = timed(native);
    }
    ratios.push(tsMs / nativeMs);
  }
  return ratios;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main(): Promise<void> {
  const flood = floodTrace();
  // memory first, before the other traces are built, so nothing else moves the baseline
  const nativeMemory = measureMemory(() => new NativeMatcher(), flood, 'rss');
  const tsMemory = measureMemory(() => new TsMatcher(), flood, 'heap');
  reportRow({
    bench: 'matcher',
    case: `(c) memory, MaxTracked ${FLOOD_MAX_TRACKED}`,
    values: { tracked: nativeMemory.tracked, 'native B/source': nativeMemory.perSource, 'TS B/source': tsMemory.perSource },
  });

  const results: CaseResult[] = [];
  const traceA = knockTrace(1, 0);
  results.push(await runCase('(a) 100k sources, 3-step, interleaved', traceA, knockProgram));
  const gateRatios = alternatingRatios(traceA, knockProgram);
  const gateRatio = median(gateRatios);
  reportRow({
    bench: 'matcher',
    case: `(a) native/TS, median of ${GATE_ROUNDS} alternating rounds`,
    values: { 'native/TS': gateRatio, 'lowest round': Math.min(...gateRatios), 'highest round': Math.max(...gateRatios) },
  });
  results.push(await runCase('(b) as (a) + 90% non-knock frames', knockTrace(2, 9), knockProgram));
  results.push(await runCase(`(c) first-knock flood, ${FLOOD_SOURCES / 1e6}M sources`, flood, floodProgram));

  const dir = join(packageRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'matcher.json'),
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        short: SHORT,
        node: process.version,
        batchFrames: BATCH,
        cases: results.map((r) => ({ ...r, nativeNsPerPacket: 1e9 / r.nativePps, tsNsPerPacket: 1e9 / r.tsPps, ratio: r.nativePps / r.tsPps })),
        gate: { case: results[0].case, rounds: gateRatios, medianRatio: gateRatio, required: GATE_MIN_RATIO, enforced: SHORT },
        memory: {
          maxTracked: FLOOD_MAX_TRACKED,
          tracked: nativeMemory.tracked,
          nativeBytesPerSource: nativeMemory.perSource,
          tsBytesPerSource: tsMemory.perSource,
          method: 'native: RSS delta (calloc pages commit on touch); TS: heapUsed + arrayBuffers delta; both after gc()',
        },
        gcExposed: gc !== undefined,
      },
      null,
      2,
    )}\n`,
  );
  if (SHORT && !(gateRatio >= GATE_MIN_RATIO)) {
    console.error(
      `native is only ${gateRatio.toFixed(2)}x TS on (a) (median of ${GATE_ROUNDS} alternating rounds: ` +
        `${gateRatios.map((r) => r.toFixed(2)).join(', ')}); the short bench requires at least ${GATE_MIN_RATIO}x`,
    );
    process.exitCode = 1;
  }
}

await main();
