// The two-known-ports attack (issue 14, finding 5; docs/MATCHER.md §4.1) at the default MaxTracked:
// legitimate knockers' success on the attacked door and on another door, run through both matchers (which
// must agree exactly). Success depends on trace time only, not on the machine's speed. Writes
// bench/results/attack.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeEvents } from '../src/match/events.js';
import { DEFAULTS } from '../src/config/types.js';
import type { FrameBatch, Matcher } from '../src/match/matcher-api.js';
import { TsMatcher } from '../src/match/matcher.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { packageRoot } from '../src/native.js';
import { compile, config, door } from '../test/helpers/doors.js';
import { TCP } from '../test/helpers/packets.js';
import { reportRow } from './report.js';
import { T0, TraceBuilder } from './trace.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';

// Spoofed sources each send the first two knocks of door P (7000, 8000), a new source every 1/rate s,
// from t = 0 until the attackers have filled the table and 3 s more; legitimate knockers on P and on Q
// (another door) start evenly over 2.5 s of that and send their three knocks `gap` apart. knockd's default
// seq_timeout. Under §4.1 a knocker is lost if a gap outlasts about maxTracked further attackers.
const ATTACK_DOORS = config([door('P', '7000,8000,9000', { seqTimeout: 25 }), door('Q', '7100,8100,9100', { seqTimeout: 25 })]);
const attackProgram = compile(ATTACK_DOORS, { eventBudget: 2000, maxTracked: DEFAULTS.maxTracked }).words;
const LEGIT_PER_DOOR = SHORT ? 50 : 200;
const LEGIT_BASE = 0x3f000000; // legitimate sources: above every attacker's

function attackTrace(rate: number, gapUs: number): FrameBatch[] {
  const fillUs = (DEFAULTS.maxTracked / rate) * 1e6;
  const endUs = fillUs + 3e6 + 2 * gapUs;
  const legit: { t: number; source: number; port: number }[] = [];
  const first = fillUs + 0.5e6;
  const span = endUs - first - 2 * gapUs - 1;
  for (let i = 0; i < 2 * LEGIT_PER_DOOR; i++) {
    const ports = i % 2 === 0 ? [7000, 8000, 9000] : [7100, 8100, 9100];
    const t = first + Math.floor((span * Math.floor(i / 2)) / LEGIT_PER_DOOR);
    ports.forEach((port, k) => legit.push({ t: t + k * gapUs, source: LEGIT_BASE + i, port }));
  }
  legit.sort((a, b) => a.t - b.t);
  const pairs = Math.floor((endUs * rate) / 1e6);
  const trace = new TraceBuilder(2 * pairs + legit.length);
  let next = 0;
  for (let i = 0; i < pairs; i++) {
    const t = Math.floor((i * 1e6) / rate);
    for (; next < legit.length && legit[next].t <= t; next++) trace.push(legit[next].source, legit[next].port, TCP.SYN, T0 + legit[next].t);
    trace.push(i, 7000, TCP.SYN, T0 + t);
    trace.push(i, 8000, TCP.SYN, T0 + t + 1);
  }
  for (; next < legit.length; next++) trace.push(legit[next].source, legit[next].port, TCP.SYN, T0 + legit[next].t);
  return trace.batches();
}

interface AttackResult {
  rate: number;
  gapMs: number;
  frames: number;
  attackedDoorSuccess: number;
  otherDoorSuccess: number;
  evictedProgressed: number;
}

/** Legitimate success under the attack, the same on both matchers (or an error). */
function runAttack(rate: number, gapUs: number): AttackResult {
  const batches = attackTrace(rate, gapUs);
  const outcome = (m: Matcher): { opened: number[]; evictedProgressed: number } => {
    m.load(attackProgram);
    const opened = [0, 0];
    for (const b of batches) for (const e of decodeEvents(m.feed(b))) if (e.kind === 'completed') opened[e.door]++;
    return { opened, evictedProgressed: m.stats().evictedProgressed };
  };
  const native = outcome(new NativeMatcher());
  const ts = outcome(new TsMatcher());
  if (JSON.stringify(native) !== JSON.stringify(ts)) throw new Error(`the matchers disagree: native ${JSON.stringify(native)}, TS ${JSON.stringify(ts)}`);
  const result = {
    rate,
    gapMs: gapUs / 1000,
    frames: batches.reduce((a, b) => a + b.timestampsUs.length, 0),
    attackedDoorSuccess: native.opened[0] / LEGIT_PER_DOOR,
    otherDoorSuccess: native.opened[1] / LEGIT_PER_DOOR,
    evictedProgressed: native.evictedProgressed,
  };
  reportRow({
    bench: 'attack',
    case: `two known ports, ${rate / 1e3}k new sources/s, knocks ${result.gapMs} ms apart`,
    values: { frames: result.frames, 'attacked door ok %': 100 * result.attackedDoorSuccess, 'other door ok %': 100 * result.otherDoorSuccess },
  });
  return result;
}

const cases = [runAttack(100_000, 100_000), runAttack(1_000_000, 100_000), runAttack(1_000_000, 2_000_000)];
const dir = join(packageRoot, 'bench', 'results');
mkdirSync(dir, { recursive: true });
writeFileSync(
  join(dir, 'attack.json'),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      short: SHORT,
      maxTracked: DEFAULTS.maxTracked,
      seqTimeoutS: 25,
      legitimatePerDoor: LEGIT_PER_DOOR,
      method: 'spoofed sources send steps 1-2 of door P at the given rate; legitimate knockers send all of P or of Q with the given gap; success = COMPLETED events / knockers, identical on both matchers',
      cases,
    },
    null,
    2,
  )}\n`,
);
