import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { eventText, knockdTimestamp, knockerLabel, Logger, syslogDatagram, truncateMessage, unixDatagramTransport } from '../src/report/log.js';
import { T0 } from './helpers/env.js';

const fixed = new Date(2024, 0, 5, 7, 3, 9); // local time 2024-01-05 07:03:09

test('knockd timestamp: local time, minute resolution, zero padded', () => {
  assert.equal(knockdTimestamp(fixed), '2024-01-05 07:03');
});

test('log file lines are `[YYYY-MM-DD HH:MM] message` with no blank lines (deviation 7)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-log-'));
  try {
    const path = join(dir, 'knockd.log');
    const log = new Logger({ logFile: path, now: () => fixed });
    log.log('starting up, listening on eth0');
    log.log(eventText.timeout('198.51.100.1', 'A', 2));
    log.log('re-reading config file: /etc/knockd.conf');
    log.close();
    assert.equal(
      readFileSync(path, 'utf8'),
      '[2024-01-05 07:03] starting up, listening on eth0\n' +
        '[2024-01-05 07:03] 198.51.100.1: A: sequence timeout (stage 2)\n' +
        '[2024-01-05 07:03] re-reading config file: /etc/knockd.conf\n',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('log file is appended to, not truncated', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-log-'));
  try {
    const path = join(dir, 'knockd.log');
    new Logger({ logFile: path, now: () => fixed }).log('one');
    const second = new Logger({ logFile: path, now: () => fixed });
    second.log('two');
    second.close();
    assert.equal(readFileSync(path, 'utf8'), '[2024-01-05 07:03] one\n[2024-01-05 07:03] two\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('batch: the log file gets the same lines in the same order, in one append when the batch ends', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-log-'));
  try {
    for (const format of ['knockd', 'json'] as const) {
      const one = join(dir, `one-${format}.log`);
      const batched = join(dir, `batched-${format}.log`);
      const lines = ['before', '198.51.100.1: A: opened by fleet member b (30s left)', '198.51.100.2: A: opened by fleet member c (29s left)', 'after'];
      const plain = new Logger({ logFile: one, now: () => fixed, format });
      for (const l of lines) plain.log(l, { event: 'fleet_open', source: 'x' });
      plain.close();
      const out: string[] = [];
      const log = new Logger({ logFile: batched, now: () => fixed, format, verbose: true, stdout: (t) => void out.push(t) });
      log.log(lines[0], { event: 'fleet_open', source: 'x' });
      log.batch(() => {
        log.log(lines[1], { event: 'fleet_open', source: 'x' });
        log.batch(() => log.log(lines[2], { event: 'fleet_open', source: 'x' })); // nested: part of the outer batch
        // nothing of the batch is in the file yet; -v lines are not held back
        assert.equal(readFileSync(batched, 'utf8').split('\n').length, 2);
        assert.equal(out.length, 3);
      });
      log.log(lines[3], { event: 'fleet_open', source: 'x' });
      log.close();
      assert.equal(readFileSync(batched, 'utf8'), readFileSync(one, 'utf8'));
    }
    // a batch that throws still writes the lines it logged
    const path = join(dir, 'throws.log');
    const log = new Logger({ logFile: path, now: () => fixed });
    assert.throws(() =>
      log.batch(() => {
        log.log('one');
        throw new Error('boom');
      }),
    );
    log.close();
    assert.equal(readFileSync(path, 'utf8'), '[2024-01-05 07:03] one\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unopenable log file gives knockd\'s warning and logging goes on elsewhere', () => {
  const errors: string[] = [];
  const out: string[] = [];
  const log = new Logger({
    logFile: '/nonexistent-dir-kf/knockd.log',
    verbose: true,
    stderr: (t) => errors.push(t),
    stdout: (t) => out.push(t),
  });
  log.log('hello');
  assert.deepEqual(errors, ['warning: cannot open logfile: No such file or directory\n']);
  assert.deepEqual(out, ['hello\n']);
});

test('-v writes the bare message to stdout; without -v nothing', () => {
  const out: string[] = [];
  new Logger({ verbose: true, stdout: (t) => out.push(t) }).log(eventText.open('198.51.100.1', 'A'));
  new Logger({ verbose: false, stdout: (t) => out.push(t) }).log('not shown');
  assert.deepEqual(out, ['198.51.100.1: A: OPEN SESAME\n']);
});

test('JSON format: one object per line with time, message and fields, in file and on stdout', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-log-'));
  try {
    const path = join(dir, 'knockd.log');
    const out: string[] = [];
    const log = new Logger({ logFile: path, format: 'json', verbose: true, stdout: (t) => out.push(t), now: () => fixed });
    log.log('198.51.100.1: A: Stage 1', { event: 'stage', source: '198.51.100.1', door: 'A', stage: 1 });
    log.close();
    const line = readFileSync(path, 'utf8');
    assert.equal(line, out[0]);
    assert.ok(line.endsWith('\n'));
    assert.deepEqual(JSON.parse(line), {
      v: 1,
      time: fixed.toISOString().replace('Z', '000Z'),
      message: '198.51.100.1: A: Stage 1',
      event: 'stage',
      source: '198.51.100.1',
      door: 'A',
      stage: 1,
    });
    // an event's own time (µs) wins over the write time
    log.log('x', { event: 'open', timeUs: T0 + 123_456 });
    assert.equal(JSON.parse(out[1]).time, '2023-11-14T22:13:20.123456Z');
    assert.equal(JSON.parse(out[1]).timeUs, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('syslog datagram: LOG_USER|LOG_NOTICE, BSD timestamp, identity knockd, no pid', () => {
  assert.equal(syslogDatagram('shutting down', fixed).toString(), '<13>Jan  5 07:03:09 knockd: shutting down');
  const sent: string[] = [];
  new Logger({ syslog: (d) => sent.push(d.toString()), now: () => fixed }).log('x: A: OPEN SESAME');
  assert.deepEqual(sent, ['<13>Jan  5 07:03:09 knockd: x: A: OPEN SESAME']);
});

test('a failing syslog transport warns once and stops being tried', () => {
  const errors: string[] = [];
  let calls = 0;
  const log = new Logger({
    syslog: () => {
      calls++;
      throw Object.assign(new Error('connect ENOENT'), { errno: -2, code: 'ENOENT' });
    },
    stderr: (t) => errors.push(t),
  });
  log.log('a');
  log.log('b');
  assert.equal(calls, 1);
  assert.deepEqual(errors, ['warning: cannot write to syslog: No such file or directory\n']);
});

test('messages are cut to 1023 bytes as knockd does', () => {
  assert.equal(truncateMessage('x'.repeat(2000)).length, 1023);
  assert.equal(truncateMessage('short'), 'short');
});

test('reopen switches to the new log file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-log-'));
  try {
    const a = join(dir, 'a.log');
    const b = join(dir, 'b.log');
    const log = new Logger({ logFile: a, now: () => fixed });
    log.log('first');
    log.reopen(b);
    log.log('second');
    log.close();
    assert.equal(readFileSync(a, 'utf8'), '[2024-01-05 07:03] first\n');
    assert.equal(readFileSync(b, 'utf8'), '[2024-01-05 07:03] second\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('event texts are knockd\'s, with the -l host variant', () => {
  assert.equal(eventText.stage(knockerLabel('198.51.100.1', undefined), 'A', 3), '198.51.100.1: A: Stage 3');
  assert.equal(eventText.open(knockerLabel('2001:db8::5', 'h.example'), 'A'), '2001:db8::5 (h.example): A: OPEN SESAME');
  assert.equal(eventText.suppressed(42), '42 events suppressed');
});

// A datagram receiver needs AF_UNIX datagrams, which Node lacks: python3 plays the log daemon when present.
const python = spawnSync('python3', ['-c', 'import socket'], { encoding: 'utf8' }).status === 0;

test('syslog through the addon: one datagram per message to a unix datagram socket', { skip: !python && 'python3 is not installed (it plays the log daemon)' }, async () => {
  let transport: ((d: Buffer) => void) | undefined;
  try {
    transport = unixDatagramTransport('/nonexistent-kf/log');
    assert.fail('connecting to a missing socket must throw');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_NATIVE_LOAD') return; // addon not built: nothing to test
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOENT');
  }
  const dir = mkdtempSync(join(tmpdir(), 'kf-syslog-'));
  const path = join(dir, 'log');
  const receiver = spawn('python3', [
    '-c',
    `import socket,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('ready',flush=True)
for _ in range(2): print(s.recv(4096).decode(),flush=True)`,
    path,
  ]);
  try {
    const lines: string[] = [];
    let buffered = '';
    let wake = () => {};
    receiver.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop() ?? '';
      lines.push(...parts);
      wake();
    });
    const got = (n: number) =>
      new Promise<void>((resolve, reject) => {
        wake = () => (lines.length >= n ? resolve() : undefined);
        receiver.once('exit', () => (lines.length >= n ? resolve() : reject(new Error(`receiver exited after ${lines.join('|')}`))));
        wake();
      });
    await got(1);
    transport = unixDatagramTransport(path);
    const log = new Logger({ syslog: transport, now: () => fixed });
    log.log('starting up, listening on eth0');
    log.log('198.51.100.1: A: OPEN SESAME');
    await got(3);
    assert.deepEqual(lines, ['ready', '<13>Jan  5 07:03:09 knockd: starting up, listening on eth0', '<13>Jan  5 07:03:09 knockd: 198.51.100.1: A: OPEN SESAME']);
  } finally {
    receiver.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});
