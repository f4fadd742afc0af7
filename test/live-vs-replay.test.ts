// Issue 18: `--replay` prints what the live daemon prints. One config exercises every door feature that
// the controller or the matcher decides: stages, open, timeout (TCP and UDP), one-time sequences (the
// issue's own example: .2 opens, .3 reuses the used sequence and is ignored, .4 and .5 open with the next
// ones, then the door is disabled), Cooldown, Dedupe, and a derived door whose second use in its window
// is refused by the used-table. The knock clients send the traffic on a private namespace's loopback; the
// daemon (native, then TS matcher) prints its -v lines while tcpdump captures; `--replay` of that capture,
// with either matcher, must print the same event lines in the same order. The operator's one-time file is
// restored before the replay, and the replay must leave it untouched.
//
// The differential test's seeded random traces go live too: one of its knock-door configs and its trace
// generator, restricted to what a loopback carries (Ethernet frames at least a header long) and re-timed
// so that no decision lies near a timeout, are written as a pcap and sent by tcpreplay into a private
// namespace's lo, where a native-matcher daemon, a TS-matcher daemon and tcpdump listen at once. Both
// daemons' lines must equal `--replay` of tcpdump's capture on either matcher, and of the pcap sent.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes, randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliPath, knockClientPath } from '../src/tools/demo.js';
import { Lab } from '../src/tools/netns.js';
import { readCaptureFile, writePcap } from '../src/capture/pcap.js';
import { parseConfigText } from '../src/config/parse.js';
import { TCP_FLAG, type DoorConfig } from '../src/config/types.js';
import type { CapturedFrame } from '../src/match/frame.js';
import { LinkType } from '../src/match/matcher-api.js';
import { collectLines, stop, waitFor } from './helpers/processes.js';
import { KNOCK_TRACE_CONFIGS } from './helpers/doors.js';
import { isRoot as root, T0 } from './helpers/env.js';
import { linkFrame, randomTrace, rng } from './helpers/packets.js';

const tcpdump = existsSync('/usr/bin/tcpdump') || existsSync('/usr/sbin/tcpdump');
const skip = !root ? 'needs root (network namespace, AF_PACKET)' : !tcpdump ? 'needs tcpdump (apt-get install tcpdump)' : false;

/** The lines the controller decides; "running command", start-up and shutdown lines are the daemon's own. */
const DECIDED = /: (Stage \d+|OPEN SESAME|sequence timeout \(stage \d+\)|sequence completed during cooldown \(\d+s left\), not opening|already open, window extended)$|^no more sequences left|^error while disabling/;

const ONE_TIME = '1111,2222,3333\n4444,5555,6666\n7777,8888,9999\n';

let lab: Lab | undefined;
let dir = '';

before(() => {
  if (skip) return;
  lab = new Lab('lvr');
  lab.ns('n');
  dir = mkdtempSync(join(tmpdir(), 'kf-lvr-'));
});

after(() => {
  lab?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function config(): { conf: string; seqs: string } {
  const seqs = join(dir, 'seqs.txt');
  const key = join(dir, 'door.key');
  writeFileSync(key, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const conf = join(dir, 'knockd.conf');
  writeFileSync(
    conf,
    `[plain]
    sequence = 7000,8000,9000
    seq_timeout = 2
    tcpflags = syn
[udp]
    sequence = 7100:udp,8100:udp
    seq_timeout = 2
[opencloseSMTP]
    one_time_sequences = ${seqs}
    seq_timeout = 2
    tcpflags = syn
    start_command = true
[cool]
    sequence = 7200,8200
    seq_timeout = 2
    tcpflags = syn
    cooldown = 60
    start_command = true
[dedupe]
    sequence = 7300,8300
    seq_timeout = 2
    tcpflags = syn
    dedupe = yes
    cmd_timeout = 60
    start_command = true
[derived]
    secret_file = ${key}
    port_range = 40000-49999
    time_step = 3600
    seq_timeout = 2
    start_command = true
`,
  );
  return { conf, seqs };
}

function knock(source: string, args: string[]): void {
  lab!.exec('n', process.execPath, [knockClientPath(), '--source', source, ...args]);
}

/** Sends every feature's traffic, waiting for the daemon's line after each step so the order is fixed. */
async function traffic(lines: string[], key: string): Promise<void> {
  const door = (src: string, d: string, what = 'OPEN SESAME') => new RegExp(`^${src.replaceAll('.', '\\.')}: ${d}: ${what.replace(/[()]/g, '\\$&')}`);
  knock('127.0.1.1', ['127.0.0.1', '7000', '8000', '9000']);
  await waitFor(lines, door('127.0.1.1', 'plain'), 10_000);
  knock('127.0.1.2', ['127.0.0.1', '7100:udp', '8100:udp']);
  await waitFor(lines, door('127.0.1.2', 'udp'), 10_000);
  knock('127.0.1.4', ['127.0.0.1', '7000', '8000']);
  await waitFor(lines, door('127.0.1.4', 'plain', 'sequence timeout (stage 2)'), 10_000);
  // issue 18's one-time example
  knock('127.0.0.2', ['127.0.0.1', '1111', '2222', '3333']);
  await waitFor(lines, door('127.0.0.2', 'opencloseSMTP'), 10_000);
  await sleep(300); // the next program is in the matchers
  knock('127.0.0.3', ['127.0.0.1', '1111', '2222', '3333']);
  knock('127.0.0.4', ['127.0.0.1', '4444', '5555', '6666']);
  await waitFor(lines, door('127.0.0.4', 'opencloseSMTP'), 10_000);
  await sleep(300);
  knock('127.0.0.5', ['127.0.0.1', '7777', '8888', '9999']);
  await waitFor(lines, /^no more sequences left in the one time sequences file for door opencloseSMTP/, 10_000);
  // Cooldown: the repeat comes well inside the 60 s, however slowly the clients start
  knock('127.0.2.1', ['127.0.0.1', '7200', '8200']);
  knock('127.0.2.1', ['127.0.0.1', '7200', '8200']);
  await waitFor(lines, door('127.0.2.1', 'cool', 'sequence completed during cooldown'), 10_000);
  // Dedupe: the repeat extends the open window
  knock('127.0.2.2', ['127.0.0.1', '7300', '8300']);
  knock('127.0.2.2', ['127.0.0.1', '7300', '8300']);
  await waitFor(lines, door('127.0.2.2', 'dedupe', 'already open, window extended'), 10_000);
  // a derived sequence opens once per window (an hour here) and source: the used-table refuses the second
  knock('127.0.3.1', ['--secret-file', key, '--port-range', '40000-49999', '--time-step', '3600', '127.0.0.1']);
  await waitFor(lines, door('127.0.3.1', 'derived'), 10_000);
  knock('127.0.3.1', ['--secret-file', key, '--port-range', '40000-49999', '--time-step', '3600', '127.0.0.1']);
  await sleep(3000); // every attempt still pending times out (seq_timeout 2) before the daemon stops
}

for (const liveMatcher of ['native', 'ts'] as const) {
  test(`live daemon (${liveMatcher} matcher) and --replay of its capture print the same lines, on both matchers`, { skip, timeout: 180_000 }, async () => {
    const { conf, seqs } = config();
    writeFileSync(seqs, ONE_TIME);
    const capture = join(dir, `live-${liveMatcher}.pcap`);
    const dump = lab!.spawn('n', 'tcpdump', ['-i', 'lo', '--immediate-mode', '-U', '-n', '-w', capture, 'tcp or udp']);
    const dumpErr = collectLines(dump, 'stderr');
    const daemon = lab!.spawn('n', process.execPath, [
      cliPath(), '-c', conf, '-i', 'lo', '-v', '--threads', '1', '--matcher', liveMatcher,
      '-g', join(dir, `${liveMatcher}.log`), '--state-file', join(dir, `${liveMatcher}-state.json`),
    ]);
    const lines = collectLines(daemon);
    try {
      await waitFor(dumpErr, /listening on/, 10_000);
      await waitFor(lines, /starting up/, 15_000);
      await traffic(lines, join(dir, 'door.key'));
    } finally {
      await stop(daemon, 'SIGTERM');
      await stop(dump, 'SIGINT');
    }
    const live = lines.filter((l) => DECIDED.test(l));
    // what the issue expects of the one-time door, and each feature shows up
    const oneTime = live.filter((l) => l.includes('opencloseSMTP: OPEN') || l.startsWith('no more'));
    assert.deepEqual(oneTime, [
      '127.0.0.2: opencloseSMTP: OPEN SESAME',
      '127.0.0.4: opencloseSMTP: OPEN SESAME',
      '127.0.0.5: opencloseSMTP: OPEN SESAME',
      'no more sequences left in the one time sequences file for door opencloseSMTP --> disabling the door',
    ]);
    assert.ok(!live.some((l) => l.startsWith('127.0.0.3:')), live.join('\n'));
    assert.equal(live.filter((l) => l === '127.0.3.1: derived: OPEN SESAME').length, 1, live.join('\n'));
    assert.equal(live.filter((l) => l === '127.0.2.2: dedupe: OPEN SESAME').length, 2, live.join('\n'));

    writeFileSync(seqs, ONE_TIME); // the operator's file as it was before the live run
    for (const matcher of ['native', 'ts']) {
      const r = lab!.exec('n', process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '--replay', capture, '-v', '--matcher', matcher]);
      assert.deepEqual(r.split('\n').filter((l) => DECIDED.test(l)), live, `--replay --matcher ${matcher} of the ${liveMatcher} daemon's traffic`);
      assert.equal(readFileSync(seqs, 'utf8'), ONE_TIME, 'replay never rewrites the one-time file');
    }
  });
}

// ---- seeded random traces, sent live by tcpreplay ----

// A fixed seed by default, so that a CI run tests what the last one tested (this one made --replay's timeout
// order differ from the daemon's before replay ticked like it); KNOCKD_LIVE_SEED=random explores, a number
// reproduces.
const SEED_ENV = process.env.KNOCKD_LIVE_SEED || '228439287';
const SEED = SEED_ENV === 'random' ? randomInt(1, 2 ** 31) : Number(SEED_ENV);
/** A round of a live trace lasts at most this long, in µs. */
const ROUND_SPAN_US = 500_000;
/** Every timeout decision of a live trace is at least this far from its deadline, in µs: more than the
 * matchers' 16 ms wheel bucket plus a capture or event-loop delay, and than tcpreplay's lag on a loaded
 * machine (it falls behind by 1 to 8 ms a packet: up to 620 ms over a round has been seen). */
const MARGIN_US = 1_000_000;
/** seq_timeout of the live doors, each at least a round and the margin: the differential configs' 25 s,
 * 70 s and ≤ 0 s would make the run long or put decisions within microseconds of a deadline. */
const LIVE_TIMEOUTS = [2, 3];

/** The frame as lo carries it: an Ethernet frame (the IP packet of the other link types re-wrapped),
 * none shorter than the Ethernet header (the kernel refuses to send those). */
function asEthernet(f: CapturedFrame): Uint8Array | undefined {
  switch (f.linkType) {
    case LinkType.ETHERNET:
      return f.data.byteLength >= 14 ? f.data : undefined;
    case LinkType.LINUX_SLL:
      return linkFrame(f.data.subarray(16)); // randomTrace tags only Ethernet frames with VLANs
    case LinkType.LINUX_SLL2:
      return linkFrame(f.data.subarray(20));
    case LinkType.RAW:
      return linkFrame(f.data);
    default:
      throw new Error(`seed ${SEED}: no Ethernet form for link type ${f.linkType}`);
  }
}

/** A door as knockd.conf text: the fields the trace configs set. */
function doorText(d: DoorConfig): string {
  const flags = Object.entries(TCP_FLAG).flatMap(([name, bit]) =>
    d.tcpFlags.mustSet & bit ? [name.toLowerCase()] : d.tcpFlags.mustClear & bit ? [`!${name.toLowerCase()}`] : [],
  );
  return [
    `[${d.name}]`,
    `sequence = ${d.sequence.map((s) => `${s.port}:${s.proto}`).join(',')}`,
    `seq_timeout = ${d.seqTimeout}`,
    'start_command = true',
    ...(flags.length > 0 ? [`tcpflags = ${flags.join(',')}`] : []),
    ...(d.target !== undefined ? [`target = ${d.target}`] : []),
    ...(d.allowDuplicates ? ['allow_duplicates = yes'] : []),
  ].join('\n    ');
}

interface LiveTrace {
  doors: DoorConfig[];
  frames: { data: Uint8Array; timeUs: number }[];
  /** the round of each frame */
  rounds: number[];
  longestS: number;
}

/**
 * The differential test's trace for a seed (its config choice and generator, see matcher.parity.test.ts),
 * sent in rounds: a round lasts at most ROUND_SPAN_US, so its packets are the margin or more inside the
 * shortest timeout, and the next round starts the longest timeout plus the margin after its last packet,
 * so every attempt of a round times out in the quiet between rounds. Packet order is the generator's.
 */
function liveTrace(seed: number): LiveTrace {
  const rand = rng(seed);
  const cfg = KNOCK_TRACE_CONFIGS[Math.floor(rand() * KNOCK_TRACE_CONFIGS.length)]();
  const doors = cfg.doors.map((d) => ({ ...d, seqTimeout: LIVE_TIMEOUTS[Math.floor(rand() * LIVE_TIMEOUTS.length)] }));
  // knocks go to the trace's local addresses, or to the one IPv4 target of a config whose doors all have it (C11)
  const target = doors.every((d) => d.targetAddress?.family === 4 && d.target === doors[0].target) ? doors[0].target : undefined;
  const trace = randomTrace({
    seed,
    packets: 200 + Math.floor(rand() * 100),
    doors,
    locals: [target ?? '192.0.2.2', 'fd00::2'],
    sources: 6 + Math.floor(rand() * 12),
    floodChance: rand() < 0.5 ? 0.02 : 0,
    floodSize: 4 + Math.floor(rand() * 20),
  });
  const timeouts = doors.map((d) => d.seqTimeout * 1e6);
  assert.ok(Math.min(...timeouts) >= ROUND_SPAN_US + MARGIN_US, 'a round and the margin fit in the shortest timeout');
  const quiet = Math.max(...timeouts) + MARGIN_US;
  const frames: LiveTrace['frames'] = [];
  const rounds: number[] = [];
  let timeUs = T0;
  let roundStart = T0;
  let roundLeft = 0;
  for (const f of trace) {
    const data = asEthernet(f);
    if (!data) continue;
    const gap = 1_000 + Math.floor(rand() * 9_000);
    if (frames.length > 0 && (roundLeft === 0 || timeUs + gap - roundStart > ROUND_SPAN_US)) {
      timeUs += quiet;
      roundStart = timeUs;
      rounds.push(rounds[rounds.length - 1] + 1);
      roundLeft = 40 + Math.floor(rand() * 40);
    } else if (frames.length > 0) {
      timeUs += gap;
      rounds.push(rounds[rounds.length - 1]);
    } else {
      roundLeft = 40 + Math.floor(rand() * 40);
      rounds.push(0);
    }
    roundLeft--;
    frames.push({ data, timeUs });
  }
  return { doors, frames, rounds, longestS: Math.max(...doors.map((d) => d.seqTimeout)) };
}

/** How far the sending moved the trace's timing where decisions hang on it, in µs: the largest stretch
 * between two packets of one round, and the largest squeeze between packets of different rounds. */
function distortion(trace: LiveTrace, capturedUs: number[]): number {
  const drift = capturedUs.map((c, i) => c - capturedUs[0] - (trace.frames[i].timeUs - trace.frames[0].timeUs));
  let worst = 0;
  let roundMin = Infinity;
  let roundMax = -Infinity;
  let earlierMax = -Infinity;
  drift.forEach((d, i) => {
    if (i > 0 && trace.rounds[i] !== trace.rounds[i - 1]) {
      earlierMax = Math.max(earlierMax, roundMax);
      roundMin = Infinity;
      roundMax = -Infinity;
    }
    roundMin = Math.min(roundMin, d);
    roundMax = Math.max(roundMax, d);
    worst = Math.max(worst, d - roundMin, earlierMax - d);
  });
  return worst;
}

function framesOf(path: string): CapturedFrame[] {
  const out: CapturedFrame[] = [];
  for (const b of readCaptureFile(path)) {
    for (let i = 0; i < b.timestampsUs.length; i++) {
      out.push({ data: b.data.slice(b.offsets[i], b.offsets[i + 1]), timeUs: b.timestampsUs[i], linkType: b.linkTypes[i] });
    }
  }
  return out;
}

const tcpreplay = existsSync('/usr/bin/tcpreplay');

test(`a seeded random trace (seed ${SEED}) sent live by tcpreplay: both daemons print what --replay prints`, { skip: skip || (tcpreplay ? false : 'needs tcpreplay (apt-get install tcpreplay)'), timeout: 120_000 }, async (t) => {
  const started = Date.now();
  const rerun = `rerun: KNOCKD_LIVE_SEED=${SEED} node --import tsx --test --test-name-pattern='seeded random' test/live-vs-replay.test.ts`;
  t.diagnostic(rerun);
  lab!.ns('r');
  // the trace's local addresses (helpers/packets.ts) on the capture interface
  lab!.exec('r', 'ip', ['addr', 'add', '192.0.2.2/32', 'dev', 'lo']);
  lab!.exec('r', 'ip', ['addr', 'add', 'fd00::2/128', 'dev', 'lo', 'nodad']);
  const trace = liveTrace(SEED);
  const text = trace.doors.map(doorText).join('\n') + '\n';
  const conf = join(dir, 'random.conf');
  writeFileSync(conf, text);
  const fields = (d: DoorConfig) => [d.name, d.sequence, d.seqTimeout, d.tcpFlags, d.targetAddress, d.allowDuplicates];
  assert.deepEqual(parseConfigText(text, conf).doors.map(fields), trace.doors.map(fields), `seed ${SEED}: the daemon's config holds the trace's doors`);
  const sent = join(dir, 'random-sent.pcap');
  writeFileSync(sent, writePcap(trace.frames, LinkType.ETHERNET));

  const replay = (capture: string, matcher: string) =>
    lab!.exec('r', process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '--replay', capture, '-v', '--matcher', matcher]).split('\n').filter((l) => DECIDED.test(l));
  const expected = replay(sent, 'native');
  assert.ok(expected.some((l) => l.endsWith('OPEN SESAME')) && expected.some((l) => l.includes('sequence timeout')), `seed ${SEED}: the trace opens and times out:\n${expected.join('\n')}`);

  const capture = join(dir, 'random-live.pcap');
  const dump = lab!.spawn('r', 'tcpdump', ['-i', 'lo', '--immediate-mode', '-U', '-n', '-w', capture]);
  const dumpErr = collectLines(dump, 'stderr');
  const daemons = (['native', 'ts'] as const).map((matcher) => {
    const child = lab!.spawn('r', process.execPath, [
      cliPath(), '-c', conf, '-i', 'lo', '-v', '--threads', '1', '--matcher', matcher,
      '-g', join(dir, `random-${matcher}.log`), '--state-file', join(dir, `random-${matcher}-state.json`),
    ]);
    return { matcher, child, lines: collectLines(child) };
  });
  const decided = (lines: string[]) => lines.filter((l) => DECIDED.test(l));
  try {
    await waitFor(dumpErr, /listening on/, 10_000);
    for (const d of daemons) await waitFor(d.lines, /starting up/, 15_000);
    const sender = lab!.spawn('r', 'tcpreplay', ['-i', 'lo', '-q', sent]);
    const sendErr = collectLines(sender, 'stderr');
    const traceS = (trace.frames[trace.frames.length - 1].timeUs - trace.frames[0].timeUs) / 1e6;
    const code = await new Promise<number | null>((resolve) => {
      const kill = setTimeout(() => sender.kill('SIGKILL'), (traceS + 30) * 1000);
      sender.once('exit', (c) => (clearTimeout(kill), resolve(c)));
    });
    assert.equal(code, 0, `tcpreplay: ${sendErr.join('\n')}`);
    // the last attempts time out at most the longest timeout after the last packet, plus a bucket and a tick
    const quietUntil = Date.now() + trace.longestS * 1000 + 300;
    const end = quietUntil + 15_000;
    while (Date.now() < end && (Date.now() < quietUntil || daemons.some((d) => decided(d.lines).length < expected.length))) await sleep(50);
  } finally {
    for (const d of daemons) await stop(d.child, 'SIGTERM');
    await stop(dump, 'SIGINT');
  }

  // Two sources' timeouts due within one tick of each other come out in the order of the tick that found
  // them: the daemon's ticks follow its own clock, --replay's the capture's, so their phase differs and
  // so may that order (seed 228439287 in CI). Every other order is fixed by the packets (no packet is within
  // the margin of a deadline): compare each run of consecutive timeout lines as a set, and each source's
  // lines in full order.
  const timeoutRunsSorted = (lines: string[]) => {
    const out: string[] = [];
    let run: string[] = [];
    for (const l of [...lines, '']) {
      if (l.includes('sequence timeout')) run.push(l);
      else {
        out.push(...run.sort());
        run = [];
        if (l) out.push(l);
      }
    }
    return out;
  };
  const bySource = (lines: string[]) => {
    const out = new Map<string, string[]>();
    for (const l of lines) out.set(l.split(': ')[0], [...(out.get(l.split(': ')[0]) ?? []), l]);
    return [...out.entries()].sort(([a], [b]) => a.localeCompare(b));
  };
  const captured = framesOf(capture);
  assert.deepEqual(captured.map((f) => Buffer.from(f.data).toString('hex')), trace.frames.map((f) => Buffer.from(f.data).toString('hex')), `seed ${SEED}: tcpdump saw the frames sent, in order\n${rerun}`);
  for (const matcher of ['native', 'ts']) {
    const replayed = replay(capture, matcher);
    for (const d of daemons) {
      const what = `seed ${SEED}: the ${d.matcher}-matcher daemon against --replay --matcher ${matcher} of the capture\n${rerun}`;
      assert.deepEqual(bySource(decided(d.lines)), bySource(replayed), what);
      assert.deepEqual(timeoutRunsSorted(decided(d.lines)), timeoutRunsSorted(replayed), what);
    }
  }
  // the pcap sent decides the same for every source when tcpreplay kept its timing within the margin (a
  // stalled sender changes the trace, not the software; it runs slow by 1 to 8 ms a packet under load).
  // Across sources the order of timeouts follows their deadlines, which the lag moves by milliseconds, so
  // the pcap sent is compared source by source; the capture above, with the daemons' own times, also across
  // sources.
  const moved = distortion(trace, captured.map((f) => f.timeUs));
  t.diagnostic(`${trace.frames.length} frames in ${trace.rounds[trace.rounds.length - 1] + 1} rounds, ${expected.length} lines, timing moved by ${(moved / 1000).toFixed(1)} ms, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (moved + 16_384 < MARGIN_US) assert.deepEqual(bySource(decided(daemons[0].lines)), bySource(expected), `seed ${SEED}: each source's live lines against --replay of the pcap sent\n${rerun}`);
  else t.diagnostic(`tcpreplay moved the timing by ${moved} µs: the pcap sent is not the trace the daemons saw; compared with the capture only`);
});
