// Command backend with the real /bin/sh: knockd's selection, expansion, limits, log texts and ordering,
// the concurrency limit, and stop commands resumed from the state file through the DoorController.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { COMMAND_LIMIT_BYTES, CommandBackend, expandCommand } from '../src/actions/commands.js';
import { DoorController } from '../src/control/controller.js';
import { writeState } from '../src/control/state.js';
import { door } from './helpers/doors.js';

const dir = mkdtempSync(join(tmpdir(), 'kf-commands-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
/** A fresh output file for one test. */
const outFile = () => join(dir, `out${n++}`);
const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

function backend(maxConcurrent?: number) {
  const logs: string[] = [];
  const b = new CommandBackend({ log: (m) => logs.push(m), maxConcurrent, now: () => 1_000_000, output: 'ignore' });
  return { b, logs };
}

test('%IP% is replaced everywhere, exactly and unquoted; other % text stays', () => {
  assert.equal(expandCommand('a %IP% b%IP%c %ip% x%IP %IP', '2001:db8::5'), 'a 2001:db8::5 b2001:db8::5c %ip% x%IP %IP');
});

test('start runs, then the stop after its start finished; knockd log lines', async () => {
  const out = outFile();
  const { b, logs } = backend();
  const d = door('A', '7000', {
    startCommand: `sleep 0.3; echo START %IP% >> ${out}`,
    stopCommand: `echo STOP %IP% >> ${out}`,
    cmdTimeout: 1,
  });
  const stop = b.start({ door: d, source: '198.51.100.1', family: 4 });
  assert.deepEqual(stop, { door: 'A', source: '198.51.100.1', family: 4, dueMs: 1_001_000, command: `echo STOP 198.51.100.1 >> ${out}` });
  b.stop(stop!); // due while the start is still running: it must wait for it
  await sleep(50);
  await b.idle();
  assert.deepEqual(lines(out), ['START 198.51.100.1', 'STOP 198.51.100.1']);
  assert.deepEqual(logs, [`A: running command: sleep 0.3; echo START 198.51.100.1 >> ${out}`, `A: running command: echo STOP 198.51.100.1 >> ${out}`]);
});

test('two successes run two starts and two stops (no de-duplication)', async () => {
  const out = outFile();
  const { b } = backend();
  const d = door('A', '7000', { startCommand: `echo START %IP% >> ${out}`, stopCommand: `echo STOP %IP% >> ${out}`, cmdTimeout: 1 });
  const stops = [b.start({ door: d, source: '198.51.100.1', family: 4 }), b.start({ door: d, source: '198.51.100.1', family: 4 })];
  await b.idle();
  for (const s of stops) b.stop(s!);
  await b.idle();
  assert.deepEqual(lines(out), ['START 198.51.100.1', 'START 198.51.100.1', 'STOP 198.51.100.1', 'STOP 198.51.100.1']);
});

test('IPv6 uses the _6 commands, falls back to the IPv4 ones, and an empty _6 runs nothing', async () => {
  const out = outFile();
  const { b, logs } = backend();
  const plain = door('P', '7000', { startCommand: `echo P %IP% >> ${out}`, stopCommand: `echo P-stop %IP% >> ${out}` });
  const six = door('S', '7000', {
    startCommand: `echo S %IP% >> ${out}`,
    startCommand6: `echo S6 %IP% >> ${out}`,
    stopCommand: `echo S-stop %IP% >> ${out}`,
    stopCommand6: `echo S6-stop %IP% >> ${out}`,
  });
  const empty = door('E', '7000', { startCommand: `echo E %IP% >> ${out}`, startCommand6: '', stopCommand: `echo E-stop >> ${out}` });
  const s1 = b.start({ door: plain, source: '2001:db8::5', family: 6 });
  await b.idle();
  const s2 = b.start({ door: six, source: '2001:db8::5', family: 6 });
  await b.idle();
  assert.equal(b.start({ door: empty, source: '2001:db8::5', family: 6 }), undefined, 'no start, so no stop either');
  b.stop(s1!);
  await b.idle();
  b.stop(s2!);
  await b.idle();
  assert.deepEqual(lines(out), ['P 2001:db8::5', 'S6 2001:db8::5', 'P-stop 2001:db8::5', 'S6-stop 2001:db8::5']);
  assert.equal(logs.filter((l) => l.startsWith('E:')).length, 0);
  // the same door for IPv4 still runs its IPv4 command
  b.start({ door: empty, source: '198.51.100.9', family: 4 });
  await b.idle();
  assert.equal(lines(out).at(-1), 'E 198.51.100.9');
});

test('no start command: nothing runs and no stop is scheduled', () => {
  const { b, logs } = backend();
  assert.equal(b.start({ door: door('N', '7000', { startCommand: undefined, stopCommand: 'echo never' }), source: '198.51.100.1', family: 4 }), undefined);
  assert.deepEqual(logs, []);
});

test('a non-zero exit status is logged with knockd text; a signal shows as 128+n', async () => {
  const { b, logs } = backend();
  b.start({ door: door('A', '7000', { startCommand: 'exit 3' }), source: '198.51.100.1', family: 4 });
  b.start({ door: door('K', '7000', { startCommand: 'kill -9 $$' }), source: '198.51.100.1', family: 4 });
  await b.idle();
  assert.ok(logs.includes('A: command returned non-zero status code (3)'), logs.join('\n'));
  assert.ok(logs.includes('K: command returned non-zero status code (137)'), logs.join('\n'));
  assert.equal(b.stats().failures, 2);
});

test('commands of 4096 bytes or more after expansion are not run, with knockd texts', async () => {
  const out = outFile();
  const { b, logs } = backend();
  const source = '198.51.100.1';
  // `echo x >> out #<pad> %IP%`: padded so that the expansion is exactly `size` bytes
  const sized = (size: number) => {
    const head = `echo x >> ${out} #`;
    return head + 'p'.repeat(size - head.length - 1 - source.length) + ' %IP%';
  };
  assert.equal(Buffer.byteLength(expandCommand(sized(COMMAND_LIMIT_BYTES), source)), COMMAND_LIMIT_BYTES);
  assert.equal(b.start({ door: door('L', '7000', { startCommand: sized(COMMAND_LIMIT_BYTES) }), source, family: 4 }), undefined);
  assert.equal(
    b.start({ door: door('L', '7000', { startCommand: `echo y >> ${out}`, stopCommand: sized(COMMAND_LIMIT_BYTES) }), source, family: 4 }),
    undefined,
  );
  await b.idle();
  assert.deepEqual(logs, [
    "error: parsed start command has been truncated! --> won't execute it",
    "error: parsed stop command has been truncated! --> won't execute start command",
  ]);
  assert.deepEqual(lines(out), []);
  b.start({ door: door('L', '7000', { startCommand: sized(COMMAND_LIMIT_BYTES - 1) }), source, family: 4 });
  await b.idle();
  assert.deepEqual(lines(out), ['x'], 'a 4095-byte command runs');
});

test('at most maxConcurrent children run; the rest wait and all run', async () => {
  const running = join(dir, `running${n++}`);
  const out = outFile();
  const { b } = backend(3);
  // each child marks itself running, records how many are running, and unmarks itself
  const cmd = `mkdir -p ${running}; touch ${running}/$$; ls ${running} | wc -l >> ${out}; sleep 0.2; rm ${running}/$$`;
  const d = door('C', '7000', { startCommand: cmd });
  for (let i = 0; i < 10; i++) b.start({ door: d, source: `198.51.100.${i}`, family: 4 });
  assert.deepEqual(b.stats(), { runs: 3, failures: 0, dropped: 0, running: 3, queued: 7 });
  await b.idle();
  const counts = lines(out).map(Number);
  assert.equal(counts.length, 10);
  assert.ok(Math.max(...counts) <= 3, `up to ${Math.max(...counts)} children ran at once`);
  assert.equal(b.stats().runs, 10);
});

test('a shell that cannot be started logs knockd fork failure', async () => {
  const logs: string[] = [];
  const b = new CommandBackend({ log: (m) => logs.push(m), shell: '/nonexistent/sh' });
  b.start({ door: door('F', '7000', { startCommand: 'true' }), source: '198.51.100.1', family: 4 });
  await b.idle();
  assert.deepEqual(logs, ['F: running command: true', 'error: command fork failed!']);
});

test('stops from the state file: a due one runs at start-up, a later one at its time', async () => {
  const out = outFile();
  const state = join(dir, `state${n++}.json`);
  const now = Date.now();
  writeState(state, {
    version: 1,
    stops: [
      { door: 'A', source: '198.51.100.1', family: 4, dueMs: now - 5000, command: `echo due >> ${out}` },
      { door: 'A', source: '198.51.100.2', family: 4, dueMs: now + 600, command: `echo later >> ${out}` },
    ],
  });
  const logs: string[] = [];
  const commands = new CommandBackend({ log: (m) => logs.push(m), output: 'ignore' });
  const controller = new DoorController({ log: (m) => logs.push(m), commands, stateFile: state });
  controller.restoreState();
  try {
    for (let i = 0; i < 100 && lines(out).length < 1; i++) await sleep(20);
    assert.deepEqual(lines(out), ['due']);
    assert.equal(controller.pendingStops().length, 1);
    for (let i = 0; i < 250 && lines(out).length < 2; i++) await sleep(20);
    await commands.idle();
    assert.deepEqual(lines(out), ['due', 'later']);
    assert.deepEqual(
      logs.filter((l) => !l.startsWith('A: running')),
      ['198.51.100.1: A: command timeout', '198.51.100.2: A: command timeout'],
    );
  } finally {
    await controller.close();
  }
});

test('a completion flood is bounded: per-door waiting limit (the oldest waiting start goes), one waiting start per source, newest first, doors take turns, drops summed up', async () => {
  const out = outFile();
  const logs: string[] = [];
  const b = new CommandBackend({
    log: (m) => logs.push(m),
    output: 'ignore',
    limits: { maxConcurrent: 1, maxWaitingPerDoor: 3, maxWaiting: 100, startsPerSecond: 1000 },
  });
  const a = door('A', '7000', { startCommand: `sleep 0.2; echo A %IP% >> ${out}` });
  const c = door('C', '7000', { startCommand: `echo C %IP% >> ${out}` });
  b.start({ door: a, source: '198.51.100.100', family: 4 }); // runs at once
  for (let i = 1; i <= 10; i++) b.start({ door: a, source: `198.51.100.${i}`, family: 4 }); // the newest 3 wait, 7 dropped
  b.start({ door: a, source: '198.51.100.10', family: 4 }); // already waiting: dropped
  b.start({ door: c, source: '203.0.113.1', family: 4 }); // another door: its own share
  assert.deepEqual(b.stats(), { runs: 1, failures: 0, dropped: 8, running: 1, queued: 4 });
  await b.idle();
  assert.deepEqual(lines(out), ['A 198.51.100.100', 'A 198.51.100.10', 'C 203.0.113.1', 'A 198.51.100.9', 'A 198.51.100.8']);
  for (let i = 0; i < 100 && !logs.some((l) => l.startsWith('warning')); i++) await sleep(20);
  assert.deepEqual(
    logs.filter((l) => l.startsWith('warning')),
    ['warning: A: 8 start command(s) not run under load (7: too many starts waiting for a child; 1: the source already had a start waiting)'],
  );
  b.close();
});

test('doors open awaiting their stop are bounded; stops are never dropped and free their place', async () => {
  const out = outFile();
  const logs: string[] = [];
  const b = new CommandBackend({ log: (m) => logs.push(m), output: 'ignore', now: () => 1_000_000, limits: { maxOpenPerDoor: 2 } });
  const d = door('A', '7000', { startCommand: `echo START %IP% >> ${out}`, stopCommand: `echo STOP %IP% >> ${out}`, cmdTimeout: 1 });
  const grant = (i: number) => b.start({ door: d, source: `198.51.100.${i}`, family: 4 });
  const [s1, s2, s3] = [grant(1), grant(2), grant(3)];
  assert.ok(s1 && s2);
  assert.equal(s3, undefined, 'a third open door is refused');
  await b.idle();
  b.stop(s1);
  assert.ok(grant(4), 'the stop freed a place');
  await b.idle();
  b.close();
  assert.deepEqual(lines(out).sort(), ['START 198.51.100.1', 'START 198.51.100.2', 'START 198.51.100.4', 'STOP 198.51.100.1']);
  assert.match(logs.at(-1)!, /^warning: A: 1 start command\(s\) not run under load \(1: too many doors open awaiting their stop command\)$/);
});

test('the start rate is bounded: a burst runs at once, the rest at startsPerSecond', async () => {
  const out = outFile();
  const b = new CommandBackend({ log: () => undefined, output: 'ignore', limits: { maxConcurrent: 4, startsPerSecond: 20 } });
  const d = door('R', '7000', { startCommand: `date +%s%N >> ${out}` });
  const began = Date.now();
  for (let i = 0; i < 10; i++) b.start({ door: d, source: `198.51.100.${i}`, family: 4 });
  await b.idle();
  // 4 at once (the burst), then 6 more at 20 a second: at least 250 ms in all
  assert.ok(Date.now() - began >= 250, `10 starts took ${Date.now() - began} ms`);
  assert.equal(lines(out).length, 10);
  b.close();
});

test('the stop of a start dropped while waiting does not run; the others do', async () => {
  const out = outFile();
  const b = new CommandBackend({ log: () => undefined, output: 'ignore', limits: { maxConcurrent: 1, maxWaitingPerDoor: 1 } });
  const d = door('A', '7000', { startCommand: `sleep 0.2; echo START %IP% >> ${out}`, stopCommand: `echo STOP %IP% >> ${out}`, cmdTimeout: 1 });
  const stops = [1, 2, 3].map((i) => b.start({ door: d, source: `198.51.100.${i}`, family: 4 })!); // .2 waits, then .3 replaces it
  assert.equal(b.stats().dropped, 1);
  for (const s of stops) b.stop(s);
  await b.idle();
  assert.deepEqual(lines(out), ['START 198.51.100.1', 'STOP 198.51.100.1', 'START 198.51.100.3', 'STOP 198.51.100.3']);
  b.close();
});

test('without prestart the worker starts at the first command, which runs', async () => {
  const out = outFile();
  // a shell of its own, so no other test's backend has started this spawner
  const b = new CommandBackend({ log: () => undefined, now: () => 1_000_000, output: 'ignore', shell: '/usr/bin/sh', prestart: false });
  const d = door('A', '7000', { startCommand: `echo START %IP% >> ${out}` });
  b.start({ door: d, source: '198.51.100.1', family: 4 });
  await b.idle();
  assert.deepEqual(lines(out), ['START 198.51.100.1']);
});
