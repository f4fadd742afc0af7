import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Grant, PendingStop } from '../src/actions/types.js';
import type { DoorConfig, KnockdConfig } from '../src/config/types.js';
import type { CommandActions, NftActions } from '../src/actions/types.js';
import { DoorController } from '../src/control/controller.js';
import type { KnockEvent } from '../src/match/events.js';
import { readState, writeState } from '../src/control/state.js';
import { T0 } from './helpers/env.js';

function door(name: string, extra: Partial<DoorConfig> = {}): DoorConfig {
  return {
    name,
    line: 1,
    sequence: [
      { port: 7000, proto: 'tcp' },
      { port: 8000, proto: 'tcp' },
    ],
    seqTimeout: 5,
    cmdTimeout: 10,
    tcpFlags: { mustSet: 0, mustClear: 0 },
    open: [],
    openTimeout: 30,
    hook: 'input',
    allowDuplicates: false,
    cooldown: 0,
    dedupe: false,
    ...extra,
  };
}

const A = '198.51.100.1';
const ev = {
  stage: (d: number, stage: number, source = A): KnockEvent => ({ kind: 'stage', door: d, generation: 1, shard: 0, family: 4, source, stage, timeUs: 0 }),
  done: (d: number, stage = 2, source = A, family: 4 | 6 = 4): KnockEvent => ({ kind: 'completed', door: d, generation: 1, shard: 0, family, source, stage, timeUs: 0, window: 0 }),
  timeout: (d: number, stage: number): KnockEvent => ({ kind: 'failed', reason: 'timeout', door: d, generation: 1, shard: 0, family: 4, source: A, stage, timeUs: 0 }),
  wrong: (d: number): KnockEvent => ({ kind: 'failed', reason: 'wrong_port', door: d, generation: 1, shard: 0, family: 4, source: A, stage: 1, timeUs: 0 }),
  evicted: (): KnockEvent => ({ kind: 'failed', reason: 'evicted', door: 0, generation: 1, shard: 0, family: 4, source: A, stage: 1, timeUs: 0 }),
};

/** A command backend that records what it was asked to do; stops come from the door's stop_command. */
function recordingCommands(now: () => number) {
  const calls: string[] = [];
  const actions: CommandActions = {
    start(g: Grant): PendingStop | undefined {
      calls.push(`start ${g.door.name} ${g.source}`);
      return g.door.stopCommand ? { door: g.door.name, source: g.source, family: g.family, command: g.door.stopCommand.replaceAll('%IP%', g.source), dueMs: now() + g.door.cmdTimeout * 1000 } : undefined;
    },
    stop(s: PendingStop) {
      calls.push(`stop ${s.door} ${s.source} ${s.command}`);
    },
  };
  return { calls, actions };
}

function setup(doors: DoorConfig[], extra: Partial<ConstructorParameters<typeof DoorController>[0]> = {}) {
  let clock = 1_000_000;
  const lines: string[] = [];
  const cmd = recordingCommands(() => clock);
  const grants: string[] = [];
  const nft: NftActions = {
    grant: (g) => void grants.push(`${g.door.name} ${g.source}`),
    async grantAll(all) {
      for (const g of all) this.grant(g);
    },
    flush: async () => {},
  };
  const c = new DoorController({ log: (m) => lines.push(m), commands: cmd.actions, nft, now: () => clock, ...extra });
  c.setProgram({ words: new Uint32Array(0), doors, generation: 1 });
  return { c, lines, calls: cmd.calls, grants, advance: (ms: number) => (clock += ms), now: () => clock };
}

test('stage, open and timeout lines are knockd\'s; wrong-port failures are silent', () => {
  const { c, lines, calls } = setup([door('A')]);
  c.handle([ev.stage(0, 1), ev.stage(0, 2), ev.done(0), ev.stage(0, 1), ev.wrong(0), ev.stage(0, 1), ev.timeout(0, 1)]);
  assert.deepEqual(lines, [
    `${A}: A: Stage 1`,
    `${A}: A: Stage 2`,
    `${A}: A: OPEN SESAME`,
    `${A}: A: Stage 1`,
    `${A}: A: Stage 1`,
    `${A}: A: sequence timeout (stage 1)`,
  ]);
  assert.deepEqual(calls, [`start A ${A}`]);
});

test('events of an unknown generation or door are ignored, suppressed records become a summary line', () => {
  const { c, lines } = setup([door('A')]);
  c.handle([{ ...ev.done(0), generation: 99 }, ev.done(5), { kind: 'suppressed', count: 1234, shard: 0, generation: 1, timeUs: 0 }]);
  assert.deepEqual(lines, ['1234 events suppressed']);
});

test('without Dedupe every completion runs the start command again (knockd row 14)', () => {
  const { c, calls } = setup([door('A')]);
  c.handle([ev.done(0), ev.done(0)]);
  assert.deepEqual(calls, [`start A ${A}`, `start A ${A}`]);
});

test('Dedupe: a repeat while open extends the window instead of running start_command again', () => {
  const d = door('A', { dedupe: true, stopCommand: 'echo STOP %IP%', cmdTimeout: 10 });
  const { c, calls, lines, advance, now } = setup([d]);
  c.handle([ev.done(0)]);
  advance(4000);
  c.handle([ev.done(0)]);
  assert.deepEqual(calls, [`start A ${A}`]);
  assert.equal(lines.at(-1), `${A}: A: already open, window extended`);
  const stops = c.pendingStops();
  assert.equal(stops.length, 1);
  assert.equal(stops[0].dueMs, now() + 10_000);
  // after the window has passed, a completion opens anew
  advance(11_000);
  c.handle([ev.done(0)]);
  assert.deepEqual(calls, [`start A ${A}`, `start A ${A}`]);
  void c.close();
});

test('Dedupe refreshes the nft element of an nft door', () => {
  const d = door('A', { dedupe: true, open: [{ port: 22, proto: 'tcp' }] });
  const { c, grants, advance } = setup([d]);
  c.handle([ev.done(0)]);
  advance(1000);
  c.handle([ev.done(0)]);
  assert.deepEqual(grants, [`A ${A}`, `A ${A}`]);
});

test('Cooldown: no grant for the same source and door until it has passed; other sources unaffected', () => {
  const { c, calls, lines, advance } = setup([door('A', { cooldown: 60 })]);
  c.handle([ev.done(0)]);
  advance(30_000);
  c.handle([ev.done(0), ev.done(0, 2, '198.51.100.2')]);
  assert.deepEqual(calls, [`start A ${A}`, 'start A 198.51.100.2']);
  assert.match(lines.join('\n'), /198\.51\.100\.1: A: sequence completed during cooldown \(30s left\), not opening/);
  advance(30_000);
  c.handle([ev.done(0)]);
  assert.equal(calls.length, 3);
});

test('stop timers run the stop command with knockd\'s "command timeout" line', async () => {
  const d = door('A', { stopCommand: 'echo STOP %IP%', cmdTimeout: 0 });
  const { c, calls, lines } = setup([d]);
  c.handle([ev.done(0), ev.done(0)]);
  await sleep(20);
  assert.deepEqual(calls, [`start A ${A}`, `start A ${A}`, `stop A ${A} echo STOP ${A}`, `stop A ${A} echo STOP ${A}`]);
  assert.deepEqual(lines.slice(-2), [`${A}: A: command timeout`, `${A}: A: command timeout`]);
});

test('state file: pending stops are persisted, restored after a restart, and a due stop runs at start-up', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-ctl-'));
  try {
    const stateFile = join(dir, 'sub', 'state.json');
    const d = door('A', { stopCommand: 'echo STOP %IP%', cmdTimeout: 100 });
    const first = setup([d], { stateFile });
    first.c.restoreState(); // the file is written only by a controller that has read it
    first.c.handle([ev.done(0)]);
    await sleep(10); // the coalesced write
    const saved = readState(stateFile);
    assert.equal(saved.stops.length, 1);
    assert.equal(saved.stops[0].command, `echo STOP ${A}`);
    // the daemon dies without close() (kill -9): a new controller picks the stop up
    const second = setup([d], { stateFile });
    second.c.restoreState();
    assert.deepEqual(second.c.pendingStops().map((s) => s.command), [`echo STOP ${A}`]);
    await second.c.close();
    // a restart after the due time runs it at once
    const third = setup([d], { stateFile });
    third.advance(200_000);
    third.c.restoreState();
    await sleep(10);
    assert.deepEqual(third.calls, [`stop A ${A} echo STOP ${A}`]);
    await sleep(10);
    assert.deepEqual(readState(stateFile).stops, []);
    assert.deepEqual(readdirSync(join(dir, 'sub')), ['state.json'], 'no temporary file is left behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a corrupt state file is kept: moved aside with a log line naming both files, never replaced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-ctl-'));
  try {
    const stateFile = join(dir, 'state.json');
    const corrupt = '{"version":1,"stops":[{"door":1}]}';
    writeFileSync(stateFile, corrupt);
    const { c, lines } = setup([door('A')], { stateFile });
    c.restoreState();
    const aside = readdirSync(dir).filter((f) => f.startsWith('state.json.unreadable-'));
    assert.equal(aside.length, 1);
    assert.equal(readFileSync(join(dir, aside[0]), 'utf8'), corrupt, 'the content is kept as it was');
    assert.match(lines.join('\n'), new RegExp(`^error: state file ${stateFile} is not a knockd-fast state file of version 1; moved it aside to ${join(dir, aside[0])}`, 'm'));
    assert.throws(() => readState(join(dir, aside[0])), /is not a knockd-fast state file of version 1/);
    await c.close();
    assert.deepEqual(readState(stateFile).stops, [], 'a new state file is written once the controller has started');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('before restoreState the state file is not replaced: a failed start-up keeps it, adding only stops of starts that ran', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-ctl-'));
  try {
    const stateFile = join(dir, 'state.json');
    const d = door('A', { stopCommand: 'echo STOP %IP%', cmdTimeout: 100 });
    const old = { door: 'A', source: '198.51.100.7', family: 4 as const, command: 'echo STOP 198.51.100.7', dueMs: 5e15 };
    for (const content of ['{not json', JSON.stringify({ version: 1, stops: [old] })]) {
      writeFileSync(stateFile, content);
      const quiet = setup([d], { stateFile });
      await sleep(20);
      await quiet.c.close(); // start-up failed before any knock: the file stays byte for byte
      assert.equal(readFileSync(stateFile, 'utf8'), content);
      const { c, lines } = setup([d], { stateFile });
      c.handle([ev.done(0)]); // a knock ran its start command before start-up failed
      await sleep(20);
      assert.equal(readFileSync(stateFile, 'utf8'), content, 'nothing is written while starting');
      await c.close();
      if (content.startsWith('{not')) {
        assert.equal(readFileSync(stateFile, 'utf8'), content, 'a corrupt file is never replaced');
        assert.match(lines.at(-1)!, /^error: cannot add 1 pending stop command\(s\) to state file .*: the file is not valid JSON .*; run them by hand: echo STOP 198\.51\.100\.1$/);
      } else {
        assert.deepEqual(readState(stateFile).stops.map((s) => s.command), ['echo STOP 198.51.100.7', `echo STOP ${A}`]);
      }
      assert.deepEqual(readdirSync(dir), ['state.json']);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('one-time sequences: rotation moves the current sequence on, never the config; exhaustion logs knockd\'s line and disables the door', () => {
  const d = door('A', { oneTimeSequences: '/x' });
  const cfg: KnockdConfig = { path: '/x.conf', options: {} as KnockdConfig['options'], doors: [d, door('B')], warnings: [] };
  const first = d.sequence;
  const next = [[{ port: 1000, proto: 'udp' as const }]];
  let changes = 0;
  const { c, lines } = setup([d], { rotateOneTime: () => next.shift() ?? [], onDoorsChanged: () => changes++ });
  c.handle([ev.done(0)]);
  assert.equal(changes, 1);
  assert.equal(d.sequence, first, 'the parsed config is a value: never changed');
  const current = c.withCurrentSequences(cfg);
  assert.deepEqual(current.doors[0].sequence, [{ port: 1000, proto: 'udp' }]);
  assert.equal(current.doors[1], cfg.doors[1]);
  // a completion the old program still matched with the used sequence opens nothing (issue 18: .3's reuse)
  c.handle([ev.done(0)]);
  assert.equal(lines.filter((l) => l.endsWith('OPEN SESAME')).length, 1);
  assert.equal(changes, 1);
  // the owner swaps in the program of the current sequences; its completion rotates again
  c.setProgram({ words: new Uint32Array(0), doors: current.doors, generation: 2 });
  c.handle([{ ...ev.done(0, 1), generation: 2 }]);
  assert.equal(changes, 2);
  assert.deepEqual(c.withCurrentSequences(cfg).doors[0].sequence, []);
  assert.equal(lines.at(-1), 'no more sequences left in the one time sequences file for door A --> disabling the door');
  // a new config (SIGHUP) starts from the file again
  c.resetSequences();
  assert.equal(c.withCurrentSequences(cfg), cfg);
});

test('one-time sequences: a file that cannot be rewritten disables the door with the backend\'s line', () => {
  const d = door('A', { oneTimeSequences: '/x' });
  const cfg: KnockdConfig = { path: '/x.conf', options: {} as KnockdConfig['options'], doors: [d], warnings: [] };
  const { c, lines } = setup([d], {
    rotateOneTime: () => {
      throw new Error('error while disabling used one time sequence for door A --> disabling the door');
    },
  });
  c.handle([ev.done(0)]);
  assert.deepEqual(c.withCurrentSequences(cfg).doors[0].sequence, []);
  assert.equal(d.sequence.length, 2);
  assert.equal(lines.at(-1), 'error while disabling used one time sequence for door A --> disabling the door');
});

test('-l: lines carry "<src> (<host>)" and keep event order although lookups finish out of order', async () => {
  const { c, lines } = setup([door('A')], {
    lookup: true,
    reverse: async (a) => {
      await sleep(a === A ? 30 : 1);
      if (a === '198.51.100.9') throw new Error('ENOTFOUND');
      return [a === A ? 'slow.example' : 'fast.example'];
    },
  });
  c.handle([ev.stage(0, 1), ev.stage(0, 1, '198.51.100.2'), ev.stage(0, 1, '198.51.100.9')]);
  assert.deepEqual(lines, []); // nothing blocks: the lines come when the names are known
  await c.drainLines();
  assert.deepEqual(lines, [`${A} (slow.example): A: Stage 1`, '198.51.100.2 (fast.example): A: Stage 1', '198.51.100.9: A: Stage 1']);
});

test('evictions are summarised, at most one line per second', async () => {
  const { c, lines } = setup([door('A')]);
  c.handle([ev.evicted(), ev.evicted(), ev.evicted()]);
  assert.deepEqual(lines, []);
  await c.close();
  assert.deepEqual(lines, ['3 knock attempts evicted (MaxTracked reached)']);
});

test('evictions are summed per second of event time: an event of a later second writes the summary first', async () => {
  const { c, lines } = setup([door('A')]);
  const at = (e: KnockEvent, s: number): KnockEvent => ({ ...e, timeUs: T0 + s * 1e6 });
  c.handle([at(ev.evicted(), 0), at(ev.evicted(), 0.5), at(ev.stage(0, 1), 0.7), at(ev.evicted(), 1.2), at(ev.stage(0, 1), 3)]);
  assert.deepEqual(lines, [
    `${A}: A: Stage 1`,
    '2 knock attempts evicted (MaxTracked reached)',
    '1 knock attempts evicted (MaxTracked reached)',
    `${A}: A: Stage 1`,
  ]);
  await c.close();
});

test('the summary timer writes evictions when no later event comes', async () => {
  const { c, lines } = setup([door('A')], { summaryAfterMs: 20 });
  c.handle([ev.evicted()]);
  await sleep(60);
  assert.deepEqual(lines, ['1 knock attempts evicted (MaxTracked reached)']);
  await c.close();
});

test('decisions use the clock given the event time (--replay: the capture\'s clock)', () => {
  const d = door('A', { cooldown: 10 });
  const seen: number[] = [];
  const { c, lines } = setup([d], { now: (t?: number) => (seen.push(t as number), (t as number) / 1000) });
  const at = (s: number): KnockEvent => ({ ...ev.done(0), timeUs: T0 + s * 1e6 });
  c.handle([at(0), at(9.5), at(10)]);
  assert.deepEqual(lines, [`${A}: A: OPEN SESAME`, `${A}: A: sequence completed during cooldown (1s left), not opening`, `${A}: A: OPEN SESAME`]);
  assert.equal(seen[1], 1_700_000_009_500_000);
});

test('timers over 2^31-1 ms: a 30-day cmd_timeout and a state entry due in 30 days do not fire early (issue 14 finding 4)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-ctl-'));
  try {
    const stateFile = join(dir, 'state.json');
    const month = 30 * 24 * 3600 * 1000;
    writeState(stateFile, { version: 1, stops: [{ door: 'A', source: '198.51.100.9', family: 4, command: 'echo LATER', dueMs: Date.now() + month }] });
    const d = door('A', { stopCommand: 'echo STOP %IP%', cmdTimeout: 2592000 });
    const { calls, actions } = recordingCommands(Date.now);
    const lines: string[] = [];
    const c = new DoorController({ log: (m) => lines.push(m), commands: actions, stateFile });
    c.setProgram({ words: new Uint32Array(0), doors: [d], generation: 1 });
    c.restoreState();
    c.handle([ev.done(0)]);
    await sleep(100);
    assert.deepEqual(calls, [`start A ${A}`], 'no stop ran');
    assert.ok(!lines.some((l) => l.includes('command timeout')));
    assert.equal(c.pendingStops().length, 2);
    await c.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('forgetStop: the stop of a start the command backend dropped is unscheduled and leaves the state file', async () => {
  const d = door('A', { stopCommand: 'echo STOP %IP%', cmdTimeout: 0 });
  const { c, calls } = setup([d]);
  c.handle([ev.done(0), ev.done(0, 2, '198.51.100.2')]);
  c.forgetStop(c.pendingStops().find((s) => s.source === A)!);
  await sleep(20);
  assert.deepEqual(calls, [`start A ${A}`, 'start A 198.51.100.2', 'stop A 198.51.100.2 echo STOP 198.51.100.2']);
  await c.close();
});
