// Differential test: seeded random traces (test/helpers/packets.ts randomTrace, and derivedTrace for
// configs with derived doors) fed to TsMatcher and NativeMatcher in the same random batches, with ticks
// and reloads in between, must give byte-identical event streams and identical counters. A failure names
// the seed and the first diverging event.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DoorConfig, KnockdConfig } from '../src/config/types.js';
import { decodeEvents, EVENT_RECORD_SIZE } from '../src/match/events.js';
import { batchFromFrames, type CapturedFrame } from '../src/match/frame.js';
import { LinkType, type Matcher } from '../src/match/matcher-api.js';
import { TsMatcher } from '../src/match/matcher.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import type { CompileOptions } from '../src/config/program.js';
import { derivedDoor, derivedTrace, range } from './helpers/derived.js';
import { KNOCK_TRACE_CONFIGS, compile, config, door } from './helpers/doors.js';
import { knockFrame, randomTrace, rng, TCP } from './helpers/packets.js';
import { keyGen, payloadPool, spaDoor, withSpaFrames } from './helpers/spa.js';
import { T0 } from './helpers/env.js';

const TRACES = Number(process.env.KNOCKD_PARITY_TRACES ?? 2000);
const DERIVED_TRACES = Number(process.env.KNOCKD_PARITY_DERIVED_TRACES ?? 500);
const FIRST_SEED = Number(process.env.KNOCKD_PARITY_SEED ?? 1);
const SPA_TRACES = Number(process.env.KNOCKD_PARITY_SPA_TRACES ?? 300);
const LONG_TRACES = Number(process.env.KNOCKD_PARITY_LONG_TRACES ?? 150);

/** SPA doors (two key sets, one port) next to knock doors; payloads from the stock client, made once. */
const SPA_KEYS = [keyGen(), keyGen()];
const SPA_POOL = payloadPool(SPA_KEYS);
const SPA_CONFIG_CHOICES: (() => KnockdConfig)[] = [
  () => config([spaDoor('P', SPA_KEYS[0]), door('A', '7000,8000,9000', { seqTimeout: 5 }), door('U', '62201:udp,7000', { seqTimeout: 3 })]),
  () => config([door('A', '7000,8000', { seqTimeout: 2 }), spaDoor('P', SPA_KEYS[1]), spaDoor('Q', SPA_KEYS[0])]),
  () => config([spaDoor('Q', SPA_KEYS[0], {}, undefined, { target: 'fd00::2', targetAddress: { family: 6, bytes: Uint8Array.of(0xfd, ...new Array(14).fill(0), 2) } }), door('C', '5000,6000', { seqTimeout: 4 })]),
];

/** Derived doors with small ranges and short time steps, so random knocks start attempts and windows turn. */
const DERIVED_CONFIG_CHOICES: (() => KnockdConfig)[] = [
  () => config([derivedDoor('D', { ports: range(40000, 40019), timeStep: 2 })]),
  () =>
    config([
      derivedDoor('D', { ports: range(40000, 40009), sequenceLength: 6, protocols: ['tcp', 'udp'], timeStep: 3 }, { allowDuplicates: true, seqTimeout: 4 }),
      door('X', '40003,40005', { seqTimeout: 3 }),
    ]),
  () =>
    config([
      derivedDoor('N', { ports: [...range(1000, 1004), 2000, 2001], bindSource: false, timeStep: 1, sequenceLength: 2 }),
      derivedDoor('O', { ports: range(1000, 1009), sequenceLength: 1, timeStep: 2 }, { tcpflags: 'syn' }),
      door('F', '1003,1001:udp', { seqTimeout: 2 }),
    ]),
  () =>
    config([
      derivedDoor('T', { ports: range(30000, 30015), timeStep: 5 }, { target: 'fd00::2', seqTimeout: 2 }),
      derivedDoor('L', { ports: range(30000, 30015), timeStep: 2, sequenceLength: 3 }, { seqTimeout: 0 }),
      derivedDoor('M', { ports: range(30010, 30030), protocols: ['udp'], timeStep: 4 }, { seqTimeout: 70 }),
    ]),
];

/** Timeouts near and beyond 2^32 µs (4,294.97 s), where native records keep 32 bits of t_first or, past
 * 4,294 s, a side array of the high bits (MATCHER.md §9); the doors of the first two share fingerprints,
 * so a reload between them keeps attempts while switching layouts. Cohorts mix long and short members. */
const LONG_DOORS = (): DoorConfig[] => [
  door('A', '7000,8000,9000', { seqTimeout: 4294 }),
  door('B', '7000,8000', { seqTimeout: 3 }),
  door('C', '5000:udp,6000,5000:udp', { seqTimeout: 4200, allowDuplicates: true }),
  door('D', '6000,7000', { seqTimeout: 0 }),
  // 32 steps, the most a door has: live stages 1..31 (5 bits in a native record), completing at 32
  door('L', ['7000', ...Array.from({ length: 30 }, (_, k) => String(7100 + k)), '9000'].join(','), { seqTimeout: 4294 }),
];
const LONG_CONFIG_CHOICES: (() => KnockdConfig)[] = [
  () => config(LONG_DOORS()),
  () => config([...LONG_DOORS(), door('W', '7000,9000,8000', { seqTimeout: 100_000 })]),
  // 4,295 s is the first timeout beyond compact records
  () => config([door('X', '8000,9000', { seqTimeout: 4295 }), door('B', '7000,8000', { seqTimeout: 3 }), door('Y', '8000,7000,6000', { seqTimeout: 4294 })]),
];

interface Scenario {
  cfg: KnockdConfig;
  opts: Partial<CompileOptions>;
}

function scenario(rand: () => number, choices = KNOCK_TRACE_CONFIGS): Scenario {
  const cfg = choices[Math.floor(rand() * choices.length)]();
  const opts: Partial<CompileOptions> = {
    maxTracked: rand() < 0.5 ? 1 + Math.floor(rand() * 12) : 1024,
    eventBudget: rand() < 0.3 ? 1 + Math.floor(rand() * 20) : 0,
    stageEvents: rand() < 0.85,
    allLocal: rand() < 0.15,
    ignoreIpv6: rand() < 0.1,
  };
  return { cfg, opts };
}

function describeEvent(batch: Uint8Array, index: number): string {
  const rec = batch.subarray(index * EVENT_RECORD_SIZE, (index + 1) * EVENT_RECORD_SIZE);
  if (rec.byteLength < EVENT_RECORD_SIZE) return '(none)';
  return `${JSON.stringify(decodeEvents(rec)[0])} [${Buffer.from(rec).toString('hex')}]`;
}

function compareBatch(seed: number, step: string, ts: Uint8Array, native: Uint8Array): void {
  if (Buffer.from(ts).equals(Buffer.from(native))) return;
  const n = Math.max(ts.byteLength, native.byteLength) / EVENT_RECORD_SIZE;
  let i = 0;
  while (i < n && Buffer.compare(ts.subarray(i * 40, i * 40 + 40), native.subarray(i * 40, i * 40 + 40)) === 0) i++;
  assert.fail(
    `seed ${seed}: event streams diverge at ${step}, event ${i} of ${ts.byteLength / 40} (TS) / ${native.byteLength / 40} (native)\n` +
      `  TS:     ${describeEvent(ts, i)}\n  native: ${describeEvent(native, i)}\n` +
      `  rerun: KNOCKD_PARITY_SEED=${seed} KNOCKD_PARITY_TRACES=1 node --import tsx --test test/matcher.parity.test.ts`,
  );
}

/** Evictions over all traces run so far, to check that both kinds of victim (§4.1) were compared. */
const evictions = { stage1: 0, progressed: 0 };

function runSeed(seed: number, kind: 'knock' | 'derived' | 'spa' | 'long' = 'knock'): number {
  const rand = rng(seed * 7919);
  const choices =
    kind === 'derived' ? DERIVED_CONFIG_CHOICES : kind === 'spa' ? SPA_CONFIG_CHOICES : kind === 'long' ? LONG_CONFIG_CHOICES : KNOCK_TRACE_CONFIGS;
  const first = scenario(rand, choices);
  const doors: DoorConfig[] = first.cfg.doors.filter((d) => !d.spa);
  const packets = 100 + Math.floor(rand() * 300);
  const sources = 4 + Math.floor(rand() * 40);
  const trace = kind === 'derived'
    ? derivedTrace({ seed, packets, doors, sources })
    : randomTrace({
        seed,
        packets,
        doors,
        sources,
        floodChance: rand() < 0.3 ? 0.02 : 0,
        floodSize: 4 + Math.floor(rand() * 40),
        // long timeouts: start a few seconds before a multiple of 2^32 µs, so attempts straddle it
        startUs: kind === 'long' ? (Math.floor(T0 / 2 ** 32) + 1) * 2 ** 32 - Math.floor(rand() * 5_000_000) : undefined,
      });
  const frames = kind === 'spa' ? withSpaFrames(trace, SPA_POOL, rand, 20 + Math.floor(rand() * 60)) : trace;
  const matchers: [Matcher, Matcher] = [new TsMatcher(), new NativeMatcher()];
  const program = compile(first.cfg, { ...first.opts, generation: 1 }).words;
  for (const m of matchers) m.load(program);
  let generation = 1;
  let events = 0;
  for (let at = 0; at < frames.length; ) {
    const size = Math.floor(rand() * 40);
    const batch = batchFromFrames(frames.slice(at, at + size));
    const [a, b] = matchers.map((m) => m.feed(batch));
    compareBatch(seed, `frames ${at}..${at + size}`, a, b);
    events += a.byteLength / EVENT_RECORD_SIZE;
    at += size;
    const roll = rand();
    if (roll < 0.15 && at > 0) {
      // a tick between batches, sometimes far ahead (the capture loop ticks every 100 ms)
      const last = frames[Math.min(at, frames.length) - 1].timeUs;
      const far = kind === 'long' ? 9_000_000_000 : 90_000_000;
      const now = last + Math.floor(rand() < 0.8 ? rand() * 300_000 : rand() * far);
      const [ta, tb] = matchers.map((m) => m.tick(now));
      compareBatch(seed, `tick ${now}`, ta, tb);
    } else if (roll < 0.2) {
      // a reload: the same doors (attempts survive), another config, or other limits
      const next = rand() < 0.5 ? { cfg: first.cfg, opts: scenario(rand).opts } : scenario(rand, choices);
      // above 16,769,024 records native links need more than 24 bits (the side array, MATCHER.md §9)
      if (kind === 'long' && rand() < 0.1) next.opts.maxTracked = 16_769_025;
      const words = compile(next.cfg, { ...next.opts, generation: ++generation }).words;
      for (const m of matchers) m.load(words);
    }
  }
  assert.deepEqual(matchers[1].stats(), matchers[0].stats(), `seed ${seed}: counters differ`);
  const stats = matchers[0].stats();
  evictions.progressed += stats.evictedProgressed;
  evictions.stage1 += stats.evicted - stats.evictedProgressed;
  return events;
}

test(`TsMatcher and NativeMatcher agree on ${TRACES} seeded random traces`, () => {
  let events = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + TRACES; seed++) events += runSeed(seed);
  assert.ok(events > TRACES, `the traces produced too few events (${events}) to compare anything`);
  if (TRACES >= 100) {
    assert.ok(evictions.stage1 > 0 && evictions.progressed > 0, `the traces evicted from both age lists (${JSON.stringify(evictions)})`);
  }
});

test(`TsMatcher and NativeMatcher agree on ${DERIVED_TRACES} seeded random traces with derived doors`, () => {
  let events = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + DERIVED_TRACES; seed++) events += runSeed(seed, 'derived');
  assert.ok(events > DERIVED_TRACES, `the traces produced too few events (${events}) to compare anything`);
});

test(`TsMatcher and NativeMatcher agree on ${SPA_TRACES} seeded random traces with SPA packets`, () => {
  let events = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SPA_TRACES; seed++) events += runSeed(seed, 'spa');
  assert.ok(events > SPA_TRACES, `the traces produced too few events (${events}) to compare anything`);
});

test(`TsMatcher and NativeMatcher agree on ${LONG_TRACES} seeded random traces with timeouts near and beyond 2^32 µs`, () => {
  let events = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + LONG_TRACES; seed++) events += runSeed(seed, 'long');
  assert.ok(events > LONG_TRACES, `the traces produced too few events (${events}) to compare anything`);
});

test('TsMatcher and NativeMatcher agree when identical doors (one fingerprint) carry attempts over a reload: by rank (MATCHER.md §5)', () => {
  const twin = (): DoorConfig => door('A', '7000,8000,9000', { seqTimeout: 5 });
  const before = config([twin(), twin(), door('B', '7000,8000', { seqTimeout: 5 })]);
  const after = config([door('C', '7000,6000', { seqTimeout: 5 }), twin(), twin()]);
  const frame = (dport: number, timeUs: number): CapturedFrame => ({
    data: knockFrame({ src: '198.51.100.1', dst: '192.0.2.2', dport, flags: TCP.SYN }),
    timeUs,
    linkType: LinkType.ETHERNET,
  });
  const matchers: [Matcher, Matcher] = [new TsMatcher(), new NativeMatcher()];
  for (const m of matchers) m.load(compile(before, { generation: 1 }).words);
  const [a1, b1] = matchers.map((m) => m.feed(batchFromFrames([frame(7000, T0)])));
  compareBatch(0, 'first knock', a1, b1);
  for (const m of matchers) m.load(compile(after, { generation: 2 }).words);
  const [a2, b2] = matchers.map((m) => m.feed(batchFromFrames([frame(8000, T0 + 1000), frame(9000, T0 + 2000)])));
  compareBatch(0, 'after the reload', a2, b2);
  const opened = decodeEvents(a2).filter((e) => e.kind === 'completed').map((e) => e.door);
  assert.deepEqual(opened, [1, 2], 'both identical doors open');
});

/** Thousands of sources with attempts in flight at once, as on a busy gateway: the TS matcher's record
 * pool grows past its first allocation and its index fills, under evictions, timeouts and a shrinking
 * reload. The random traces above stay under a hundred sources. */
function runCrowd(seed: number, maxTracked: number, shrinkTo: number): number {
  const rand = rng(seed);
  const sources = 5000;
  const address = (s: number): string => (s % 7 === 0 ? `2001:db8::${s.toString(16)}` : `10.${(s >> 16) & 255}.${(s >> 8) & 255}.${s & 255}`);
  const cfg = config([door('A', '7000,8000,9000', { seqTimeout: 1 }), door('B', '7000,8000', { seqTimeout: 3 }), door('C', '5000,6000', { seqTimeout: 2 })]);
  const frames: CapturedFrame[] = [];
  let timeUs = T0;
  for (const ports of [
    [7000, 5000],
    [8000, 6000],
    [9000, 9000],
  ]) {
    const order = Array.from({ length: sources }, (_, s) => s);
    for (let i = sources - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    for (const s of order) {
      const src = address(s);
      const dport = rand() < 0.05 ? 4000 : ports[s % 2];
      timeUs += Math.floor(rand() * 250);
      frames.push({ data: knockFrame({ src, dst: src.includes(':') ? 'fd00::2' : '192.0.2.2', dport, flags: TCP.SYN }), timeUs, linkType: LinkType.ETHERNET });
    }
  }
  const matchers: [Matcher, Matcher] = [new TsMatcher(), new NativeMatcher()];
  for (const m of matchers) m.load(compile(cfg, { maxTracked, generation: 1 }).words);
  let events = 0;
  for (let at = 0; at < frames.length; ) {
    const size = 1 + Math.floor(rand() * 4096);
    const batch = batchFromFrames(frames.slice(at, at + size));
    const [a, b] = matchers.map((m) => m.feed(batch));
    compareBatch(seed, `frames ${at}..${at + size}`, a, b);
    events += a.byteLength / EVENT_RECORD_SIZE;
    at += size;
    if (at >= frames.length / 2 && shrinkTo > 0) {
      for (const m of matchers) m.load(compile(cfg, { maxTracked: shrinkTo, generation: 2 }).words);
      shrinkTo = 0;
    }
  }
  assert.deepEqual(matchers[1].stats(), matchers[0].stats(), `seed ${seed}: counters differ`);
  return events;
}

test('TsMatcher and NativeMatcher agree with 5,000 sources in flight: a growing pool, evictions, a shrinking reload', () => {
  assert.ok(runCrowd(1, 8192, 3000) > 10_000);
  assert.ok(runCrowd(2, 2500, 0) > 10_000);
});
