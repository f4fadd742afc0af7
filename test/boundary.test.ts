// The NativeMatcher boundary: argument checking (TypeError / RangeError, never a crash, state untouched),
// empty and large batches, and corrupt programs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EVENT_RECORD_SIZE } from '../src/match/events.js';
import { batchFromFrames } from '../src/match/frame.js';
import { LinkType, STAT_NAMES } from '../src/match/matcher-api.js';
import { loadBinding } from '../src/native.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { MAX_DOORS, ProgramError } from '../src/config/program.js';
import { TsMatcher } from '../src/match/matcher.js';
import { CONFIGS, compile, config, door } from './helpers/doors.js';
import { knockFrame } from './helpers/packets.js';
import { T0 } from './helpers/env.js';

const program = compile(CONFIGS.C1()).words;

function loaded(): NativeMatcher {
  const m = new NativeMatcher();
  m.load(program);
  return m;
}

/** Source 10.x.y.z knocks the first step of C1 at T0 + i µs. */
function firstKnocks(n: number) {
  return batchFromFrames(
    Array.from({ length: n }, (_, i) => ({
      data: knockFrame({ src: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, dst: '192.0.2.2', dport: 7000 }),
      timeUs: T0 + i,
      linkType: LinkType.ETHERNET,
    })),
  );
}

test('an empty batch returns no events and counts nothing', () => {
  const m = loaded();
  const out = m.feed({ data: new Uint8Array(0), offsets: new Uint32Array(1), timestampsUs: new Float64Array(0), linkTypes: new Uint16Array(0) });
  assert.ok(out instanceof Uint8Array);
  assert.equal(out.byteLength, 0);
  assert.equal(m.stats().frames, 0);
});

test('a batch of 200,000 frames returns every event in one copy', () => {
  const m = loaded();
  const out = m.feed(firstKnocks(200_000));
  assert.equal(out.byteLength, 200_000 * EVENT_RECORD_SIZE);
  const s = m.stats();
  assert.equal(s.frames, 200_000);
  assert.equal(s.stages, 200_000);
  assert.equal(s.tracked, 200_000);
  // every event is a STAGE 1 with its own source, in frame order
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (const i of [0, 1, 65_535, 199_999]) {
    const o = i * EVENT_RECORD_SIZE;
    assert.equal(view.getUint8(o), 1);
    assert.equal(view.getUint8(o + 3), 1);
    assert.equal(Number(view.getBigInt64(o + 16, true)), T0 + i);
    assert.deepEqual([...out.subarray(o + 25, o + 28)], [(i >> 16) & 255, (i >> 8) & 255, i & 255]);
  }
});

test('wrong argument types are TypeErrors', () => {
  const handle = new (loadBinding().NativeMatcher)();
  handle.load(program);
  const b = firstKnocks(2);
  const call = (...args: unknown[]) => (handle.feed as (...a: unknown[]) => Uint8Array)(...args);
  assert.throws(() => call(Array.from(b.data), b.offsets, b.timestampsUs, b.linkTypes), { name: 'TypeError', message: /data must be a Uint8Array/ });
  assert.throws(() => call(b.data, new Int32Array(b.offsets), b.timestampsUs, b.linkTypes), { name: 'TypeError', message: /offsets must be a Uint32Array/ });
  assert.throws(() => call(b.data, b.offsets, new Float32Array(2), b.linkTypes), { name: 'TypeError', message: /timestampsUs must be a Float64Array/ });
  assert.throws(() => call(b.data, b.offsets, b.timestampsUs, new Uint32Array(2)), { name: 'TypeError', message: /linkTypes must be a Uint16Array/ });
  assert.throws(() => call(), { name: 'TypeError' });
  assert.throws(() => (handle.tick as (t: unknown) => Uint8Array)('now'), { name: 'TypeError', message: /nowUs must be a number/ });
  assert.throws(() => (handle.stats as (o: unknown) => void)(new Float32Array(13)), { name: 'TypeError', message: /Float64Array/ });
  assert.throws(() => (handle.load as (p: unknown) => void)([1, 2, 3]), { name: 'TypeError', message: /Uint32Array/ });
  assert.throws(() => new (loadBinding().NativeMatcher as unknown as new (s: unknown) => unknown)('x'), { name: 'TypeError' });
  assert.throws(() => new (loadBinding().NativeMatcher)(70_000), { name: 'RangeError' });
});

test('inconsistent lengths and offsets are RangeErrors and leave the matcher untouched', () => {
  const m = loaded();
  const b = firstKnocks(3);
  const bad = (patch: Partial<typeof b>, message: RegExp) => assert.throws(() => m.feed({ ...b, ...patch }), { name: 'RangeError', message });
  bad({ offsets: b.offsets.subarray(0, 3) }, /one more entry than there are frames/);
  bad({ offsets: new Uint32Array([...b.offsets, b.offsets[3]]) }, /one more entry than there are frames/);
  bad({ timestampsUs: b.timestampsUs.subarray(0, 2) }, /timestampsUs has 2 entries/);
  bad({ offsets: Uint32Array.from(b.offsets, (o, i) => (i === 3 ? o + 1 : o)) }, /beyond the end of data/);
  bad({ offsets: Uint32Array.from(b.offsets, (o, i) => (i === 1 ? b.offsets[2] + 1 : o)) }, /must not decrease/);
  bad({ timestampsUs: Float64Array.from([T0, Number.NaN, T0]) }, /timestampsUs\[1\] must be a whole number/);
  bad({ timestampsUs: Float64Array.from([T0, T0 + 0.5, T0]) }, /timestampsUs\[1\]/);
  assert.throws(() => m.tick(Number.POSITIVE_INFINITY), { name: 'RangeError' });
  const s = m.stats();
  assert.equal(s.frames, 0, 'a rejected batch must not be half processed');
  assert.equal(m.feed(b).byteLength, 3 * EVENT_RECORD_SIZE);
});

test('feed and tick before load are errors that say what to do', () => {
  const m = new NativeMatcher();
  assert.throws(() => m.feed(firstKnocks(1)), /call load\(program\) before feed\(\)/);
  assert.throws(() => m.tick(T0), /call load\(program\)/);
});

test('a corrupt program is a TypeError naming the problem; the loaded one stays in force', () => {
  const m = loaded();
  const corrupt = (mutate: (w: Uint32Array) => Uint32Array, message: RegExp) => {
    const w = mutate(program.slice());
    assert.throws(() => m.load(w), { name: 'TypeError', message });
  };
  corrupt((w) => w.subarray(0, 10), /fewer than the 16-word header/);
  corrupt((w) => ((w[0] = 0xdeadbeef), w), /bad magic/);
  corrupt((w) => ((w[1] = 9), w), /version 9/);
  corrupt((w) => w.subarray(0, w.length - 1), /header says/);
  corrupt((w) => ((w[8] = 5), w), /door 1 header runs past the end/);
  corrupt((w) => ((w[16 + 2 * 5 + 6] = 40), w), /steps, not 1\.\.32/);
  corrupt((w) => ((w[16 + 2 * 5 + 1] = 3), w), /group 3 beyond the targets/);
  // still matching with the good program
  assert.equal(m.feed(firstKnocks(1)).byteLength, EVENT_RECORD_SIZE);
});

test('the door limit: 65,535 doors compile and both matchers load them; one more is refused by the compiler', () => {
  // door numbers are 16 bits in event records (binding contract program.maxDoors); distinct first steps
  // keep every cohort at one door
  const doors = Array.from({ length: MAX_DOORS + 1 }, (_, i) => door(`D${i}`, `${(i % 65535) + 1}:${i < 65535 ? 'tcp' : 'udp'}`));
  const words = compile(config(doors.slice(0, MAX_DOORS))).words;
  const native = new NativeMatcher();
  native.load(words);
  native.close();
  new TsMatcher().load(words);
  assert.throws(() => compile(config(doors)), (e: unknown) => e instanceof ProgramError && /at most 65535 doors are supported \(the configuration has 65536\)/.test(e.message));
});

test('stats(out) rejects a short array', () => {
  const handle = new (loadBinding().NativeMatcher)();
  assert.throws(() => handle.stats(new Float64Array(5)), { name: 'RangeError', message: new RegExp(`needs ${STAT_NAMES.length} entries`) });
});

test('close() frees the matcher: every later call but close() throws a clear error', () => {
  const m = loaded();
  m.feed(firstKnocks(10));
  m.close();
  m.close();
  assert.throws(() => m.feed(firstKnocks(1)), /NativeMatcher: closed/);
  assert.throws(() => m.tick(T0), /NativeMatcher: closed/);
  assert.throws(() => m.load(program), /NativeMatcher: closed/);
  assert.throws(() => m.stats(), /NativeMatcher: closed/);
});
