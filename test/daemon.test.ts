import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../src/config/parse.js';
import { formatAddress, parseAddress, type Address } from '../src/address.js';
import { acquirePidFile, Daemon, PidFileError, releasePidFile, settingsFrom, type CaptureEngineLike, type DaemonArgs } from '../src/daemon.js';
import type { CaptureOptions } from '../src/capture/engine.js';
import { batchFromFrames } from '../src/match/frame.js';
import { TsMatcher } from '../src/match/matcher.js';
import { packageRoot } from '../src/native.js';
import { Lab } from '../src/tools/netns.js';
import { readState, writeState } from '../src/control/state.js';
import { knockFrame } from './helpers/packets.js';
import { isRoot as root, T0 } from './helpers/env.js';

const dir = mkdtempSync(join(tmpdir(), 'kf-daemon-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const file = (name: string) => join(dir, `${seq++}-${name}`);

// ------------------------------------------------------------------ pid file

test('pid file: written as "<pid>\\n", removed only by its owner', () => {
  const path = file('a.pid');
  acquirePidFile(path);
  assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  releasePidFile(path, process.pid + 1);
  assert.ok(existsSync(path), 'another pid must not remove it');
  releasePidFile(path);
  assert.ok(!existsSync(path));
});

test('pid file: a live duplicate is refused with the running pid', () => {
  const path = file('b.pid');
  writeFileSync(path, `${process.ppid}\n`); // a process that certainly exists
  assert.throws(() => acquirePidFile(path), (err: Error) => err instanceof PidFileError && err.message.includes(`already running with pid ${process.ppid}`));
  assert.equal(readFileSync(path, 'utf8'), `${process.ppid}\n`);
});

test('pid file: a stale one (its process is gone) is replaced', () => {
  const path = file('c.pid');
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(path, `${gone.stdout}\n`);
  acquirePidFile(path);
  assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  releasePidFile(path);
});

test('pid file: an unwritable place gives knockd\'s message', () => {
  assert.throws(() => acquirePidFile('/nonexistent-kf/x.pid'), /^Error: could not create pid file \/nonexistent-kf\/x\.pid: No such file or directory$/);
});

// ------------------------------------------------------------------ settings

test('settings: -i beats Interface=, LogFile=/PidFile= beat -g/-p, relative paths resolve at start-up', () => {
  const path = file('s.conf');
  writeFileSync(path, '[options]\n  Interface = eth7\n  LogFile = k.log\n  PidFile = /run/k.pid\n[A]\n  sequence = 1\n');
  const cfg = parseConfig(path);
  const s = settingsFrom({ config: 'rel.conf', interface: 'eth1', logfile: '/cli.log', pidfile: '/cli.pid' }, cfg, '/srv');
  assert.deepEqual([s.interfaces, s.logFile, s.pidFile, s.configPath], [['eth1'], '/srv/k.log', '/run/k.pid', '/srv/rel.conf']);
  const plain = parseConfig(writeConf('[A]\n  sequence = 1\n'));
  const d = settingsFrom({ config: '/x', logfile: 'g.log', pidfile: 'p.pid', threads: 3, stateFile: 'st.json', logFormat: 'json', metrics: '127.0.0.1:1' }, plain, '/w');
  assert.deepEqual([d.interfaces, d.logFile, d.pidFile, d.threads, d.stateFile, d.logFormat, d.metrics], [['eth0'], '/w/g.log', '/w/p.pid', 3, '/w/st.json', 'json', '127.0.0.1:1']);
  const defaults = settingsFrom({ config: '/x' }, plain, '/w');
  assert.deepEqual([defaults.pidFile, defaults.stateFile, defaults.logFile, defaults.logFormat], ['/var/run/knockd.pid', '/var/lib/knockd-fast/state.json', undefined, 'knockd']);
});

function writeConf(text: string): string {
  const path = file('knockd.conf');
  writeFileSync(path, text);
  return path;
}

// ------------------------------------------------------------------ the daemon with a capture seam

/** The capture side stands in for AF_PACKET: frames go through a real matcher into the daemon. */
class MatcherCapture implements CaptureEngineLike {
  readonly matcher = new TsMatcher();
  loads = 0;
  closed = false;
  private now = T0;
  private readonly locals: Address[];
  constructor(private readonly req: CaptureOptions) {
    this.locals = req.addresses;
    this.matcher.load(req.program);
  }
  load(words: Uint32Array): void {
    this.loads++;
    this.matcher.load(words);
  }
  localAddresses(): Address[] {
    return this.locals;
  }
  /** knocks from src to the first local address of its family; a port may be given as `1000/udp` */
  knock(src: string, ...ports: (number | string)[]): void {
    const family = src.includes(':') ? 6 : 4;
    const dstAddr = this.locals.find((a) => a.family === family)!;
    const dst = formatAddress(dstAddr.family, dstAddr.bytes);
    const frames = ports.map((p) => {
      const [port, proto] = String(p).split('/');
      return { data: knockFrame({ src, dst, dport: Number(port), proto: proto === 'udp' ? ('udp' as const) : ('tcp' as const) }), timeUs: (this.now += 100_000), linkType: 1 };
    });
    this.req.onEvents(this.matcher.feed(batchFromFrames(frames)));
  }
  stats() {
    return this.matcher.stats();
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function startDaemon(confText: string, extra: { stateFile?: string; locals?: string[]; oneTime?: string; args?: Partial<DaemonArgs> } = {}) {
  const out = file('cmd.out');
  const log = file('knockd.log');
  const oneTime = file('onetime');
  if (extra.oneTime !== undefined) writeFileSync(oneTime, extra.oneTime);
  const conf = writeConf(confText.replaceAll('OUT', out).replaceAll('LOG', log).replaceAll('ONETIME', oneTime));
  let capture: MatcherCapture | undefined;
  const exits: number[] = [];
  const stdout: string[] = [];
  const daemon = new Daemon(
    { config: conf, interface: 'lo', stateFile: extra.stateFile ?? file('state.json'), matcher: 'ts', verbose: true, ...extra.args },
    parseConfig(conf),
    { stdout: (t) => stdout.push(t), stderr: (t) => stdout.push(`stderr: ${t}`) },
    {
      openCapture: async (req) => (capture = new MatcherCapture(req)),
      readAddresses: () => (extra.locals ?? ['127.0.0.1']).map((a) => parseAddress(a)!),
      exit: (code) => exits.push(code),
    },
  );
  await daemon.start();
  const logText = () => (existsSync(log) ? readFileSync(log, 'utf8').replace(/^\[\d{4}-\d\d-\d\d \d\d:\d\d\] /gm, '') : '');
  // the daemon writes the -v lines of one event batch at once: a write can hold several lines
  const stdoutLines = () => stdout.join('').split('\n');
  return { daemon, capture: capture as MatcherCapture, conf, out, log, oneTime, logText, exits, stdout, stdoutLines };
}

const DOOR = (seq: string, extra = '') =>
  `[options]\n  LogFile = LOG\n[A]\n  sequence = ${seq}\n  seq_timeout = 5\n  start_command = echo START %IP% >> OUT\n${extra}`;

test('daemon: start-up line, knockd\'s event lines in the log file and on stdout (-v), the command runs', async () => {
  const d = await startDaemon(DOOR('7000,8000'));
  try {
    d.capture.knock('127.0.0.9', 7000, 8000);
    await until('the command', () => existsSync(d.out));
    await until('the log line', () => d.logText().includes('running command'));
    assert.equal(
      d.logText(),
      [
        'starting up, listening on lo',
        '127.0.0.9: A: Stage 1',
        '127.0.0.9: A: Stage 2',
        '127.0.0.9: A: OPEN SESAME',
        `A: running command: echo START 127.0.0.9 >> ${d.out}`,
        '',
      ].join('\n'),
    );
    assert.equal(readFileSync(d.out, 'utf8'), 'START 127.0.0.9\n');
    assert.ok(d.stdoutLines().includes('127.0.0.9: A: OPEN SESAME'));
    assert.ok(/^\[\d{4}-\d\d-\d\d \d\d:\d\d\] starting up/.test(readFileSync(d.log, 'utf8')));
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('daemon: SIGHUP with a bad config logs the error and keeps the old config running (deviation 5)', async () => {
  const d = await startDaemon(DOOR('7000,8000'));
  try {
    writeFileSync(d.conf, readFileSync(d.conf, 'utf8') + '  bogus = 1\n');
    process.kill(process.pid, 'SIGHUP');
    await until('the reload lines', () => d.logText().includes('running config is kept'));
    assert.match(d.logText(), new RegExp(`re-reading config file: ${d.conf}\nconfig: line 7: syntax error\nerror: the new config was not loaded; the running config is kept\n`));
    assert.equal(d.capture.loads, 0);
    assert.deepEqual(d.exits, []);
    d.capture.knock('127.0.0.9', 7000, 8000);
    await until('the old door to open', () => d.logText().includes('OPEN SESAME'));
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('daemon: SIGHUP with a good config swaps the new program in', async () => {
  const d = await startDaemon(DOOR('7000,8000'));
  try {
    writeFileSync(d.conf, readFileSync(d.conf, 'utf8').replace('7000,8000', '5000,6000'));
    process.kill(process.pid, 'SIGHUP');
    await until('the new program', () => d.capture.loads === 1);
    d.capture.knock('127.0.0.9', 7000, 8000);
    d.capture.knock('127.0.0.9', 5000, 6000);
    await until('the new door to open', () => d.logText().includes('OPEN SESAME'));
    assert.doesNotMatch(d.logText(), /A: Stage 1\n127\.0\.0\.9: A: Stage 2\n127\.0\.0\.9: A: OPEN SESAME\n[^]*A: Stage 1/);
    assert.match(d.logText(), /re-reading config file: .*\n127\.0\.0\.9: A: Stage 1\n127\.0\.0\.9: A: Stage 2\n127\.0\.0\.9: A: OPEN SESAME\n/);
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('daemon: SIGTERM logs "shutting down", closes capture, keeps pending stops in the state file, exits 15', async () => {
  const stateFile = file('term-state.json');
  const d = await startDaemon(DOOR('7000', '  cmd_timeout = 3600\n  stop_command = echo STOP %IP% >> OUT\n'), { stateFile });
  d.capture.knock('127.0.0.9', 7000);
  await until('the start command', () => existsSync(d.out));
  process.kill(process.pid, 'SIGTERM');
  await until('the exit', () => d.exits.length === 1);
  assert.deepEqual(d.exits, [15]);
  assert.ok(d.capture.closed);
  assert.match(d.logText(), /shutting down\n$/);
  const stops = readState(stateFile).stops;
  assert.deepEqual(stops.map((s) => [s.door, s.source, s.command]), [['A', '127.0.0.9', `echo STOP 127.0.0.9 >> ${d.out}`]]);
});

test('daemon: a stop already due in the state file (the daemon was killed) runs at start-up', async () => {
  const stateFile = file('due-state.json');
  const out = file('due.out');
  writeState(stateFile, { version: 1, stops: [{ door: 'A', source: '127.0.0.7', family: 4, command: `echo STOP 127.0.0.7 >> ${out}`, dueMs: Date.now() - 1000 }] });
  const d = await startDaemon(DOOR('7000'), { stateFile });
  try {
    await until('the stop command', () => existsSync(out));
    assert.equal(readFileSync(out, 'utf8'), 'STOP 127.0.0.7\n');
    await until('the log line', () => d.logText().includes('running command: echo STOP'));
    assert.match(d.logText(), /127\.0\.0\.7: A: command timeout\nA: running command: echo STOP 127\.0\.0\.7/);
  } finally {
    await d.daemon.shutdown(15);
  }
  assert.deepEqual(readState(stateFile).stops, []);
});

// ------------------------------------------------------------------ golden log files (reference rows)

const CONFORMANCE = ['192.0.2.2', 'fd00::2'];
const A = '198.51.100.1';
const S = '2001:db8::5';
const C1 = (extra = '') => `[options]\n  LogFile = LOG\n[A]\n  sequence = 7000,8000,9000\n  seq_timeout = 5\n  command = echo A %IP% >> OUT\n${extra}`;

/** Waits for `n` lines after the start-up line and returns them (the file's prefix stripped). */
async function logLines(d: Awaited<ReturnType<typeof startDaemon>>, n: number): Promise<string[]> {
  const lines = () => d.logText().split('\n').filter((l) => l !== '').slice(1);
  await until(`${n} log lines`, () => lines().length >= n);
  return lines();
}

test('log file, row 1 (C1): stages, OPEN SESAME, the running command line', async () => {
  const d = await startDaemon(C1(), { locals: CONFORMANCE });
  try {
    d.capture.knock(A, 7000, 8000, 9000);
    assert.deepEqual(await logLines(d, 5), [`${A}: A: Stage 1`, `${A}: A: Stage 2`, `${A}: A: Stage 3`, `${A}: A: OPEN SESAME`, `A: running command: echo A ${A} >> ${d.out}`]);
    await until('the command output', () => existsSync(d.out) && readFileSync(d.out, 'utf8') === `A ${A}\n`);
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('log file, row 14 (C9): every completion runs the command again', async () => {
  const d = await startDaemon('[options]\n  LogFile = LOG\n[A]\n  sequence = 7000\n  command = echo A %IP% >> OUT\n', { locals: CONFORMANCE });
  try {
    d.capture.knock(A, 7000, 7000);
    const cmd = `A: running command: echo A ${A} >> ${d.out}`;
    assert.deepEqual(await logLines(d, 6), [`${A}: A: Stage 1`, `${A}: A: OPEN SESAME`, cmd, `${A}: A: Stage 1`, `${A}: A: OPEN SESAME`, cmd]);
    await until('two command runs', () => existsSync(d.out) && readFileSync(d.out, 'utf8') === `A ${A}\nA ${A}\n`);
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('log file, rows 32/33 (C10): IPv6 uses command_6; an empty start_command_6 runs nothing', async () => {
  const d = await startDaemon(C1('  command_6 = echo A6 %IP% >> OUT\n'), { locals: CONFORMANCE });
  try {
    d.capture.knock(S, 7000, 8000, 9000);
    assert.deepEqual((await logLines(d, 5)).slice(3), [`${S}: A: OPEN SESAME`, `A: running command: echo A6 ${S} >> ${d.out}`]);
  } finally {
    await d.daemon.shutdown(15);
  }
  const e = await startDaemon(C1('  start_command_6 =\n'), { locals: CONFORMANCE });
  try {
    e.capture.knock(S, 7000, 8000, 9000);
    e.capture.knock(A, 7000, 8000, 9000);
    const lines = await logLines(e, 9);
    assert.deepEqual(lines.slice(3, 4), [`${S}: A: OPEN SESAME`]);
    assert.equal(lines.filter((l) => l.includes('running command')).length, 1, 'only the IPv4 knock runs a command');
  } finally {
    await e.daemon.shutdown(15);
  }
});

test('log file, row 39 (C13): START twice, then each stop with its "command timeout" line', async () => {
  const d = await startDaemon('[options]\n  LogFile = LOG\n[A]\n  sequence = 7000\n  start_command = echo START %IP% >> OUT\n  cmd_timeout = 1\n  stop_command = echo STOP %IP% >> OUT\n', { locals: CONFORMANCE });
  try {
    d.capture.knock(A, 7000, 7000);
    const lines = await logLines(d, 10);
    assert.deepEqual(lines, [
      `${A}: A: Stage 1`,
      `${A}: A: OPEN SESAME`,
      `A: running command: echo START ${A} >> ${d.out}`,
      `${A}: A: Stage 1`,
      `${A}: A: OPEN SESAME`,
      `A: running command: echo START ${A} >> ${d.out}`,
      `${A}: A: command timeout`,
      `A: running command: echo STOP ${A} >> ${d.out}`,
      `${A}: A: command timeout`,
      `A: running command: echo STOP ${A} >> ${d.out}`,
    ]);
    await until('the commands', () => existsSync(d.out) && readFileSync(d.out, 'utf8') === `START ${A}\nSTART ${A}\nSTOP ${A}\nSTOP ${A}\n`);
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('log file, row 40 (C9, command = exit 3): the non-zero status line', async () => {
  const d = await startDaemon('[options]\n  LogFile = LOG\n[A]\n  sequence = 7000\n  command = exit 3\n', { locals: CONFORMANCE });
  try {
    d.capture.knock(A, 7000);
    assert.deepEqual(await logLines(d, 4), [`${A}: A: Stage 1`, `${A}: A: OPEN SESAME`, 'A: running command: exit 3', 'A: command returned non-zero status code (3)']);
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('log file, row 36 (C12): one-time lines are used up in the file and the next sequence is swapped in', async () => {
  const d = await startDaemon('[options]\n  LogFile = LOG\n[A]\n  one_time_sequences = ONETIME\n  seq_timeout = 5\n  command = echo A %IP% >> OUT\n', {
    locals: CONFORMANCE,
    oneTime: '7000,8000,9000\n 1000:udp,2000\n3000,4000\n',
  });
  try {
    d.capture.knock(A, 7000, 8000, 9000);
    await logLines(d, 5);
    assert.equal(readFileSync(d.oneTime, 'utf8'), '#000,8000,9000\n 1000:udp,2000\n3000,4000\n');
    assert.equal(d.capture.loads, 1, 'the new program is swapped in');
    d.capture.knock(A, 7000, 8000, 9000);
    d.capture.knock(A, '1000/udp', 2000);
    const lines = await logLines(d, 9);
    assert.deepEqual(lines.slice(5), [`${A}: A: Stage 1`, `${A}: A: Stage 2`, `${A}: A: OPEN SESAME`, `A: running command: echo A ${A} >> ${d.out}`]);
    assert.equal(readFileSync(d.oneTime, 'utf8'), '#000,8000,9000\n#1000:udp,2000\n3000,4000\n');
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('log file, row 37 (C12, last line used): knockd\'s exhaustion line, the door is disabled, the daemon keeps running', async () => {
  const d = await startDaemon('[options]\n  LogFile = LOG\n[A]\n  one_time_sequences = ONETIME\n  command = echo A %IP% >> OUT\n[B]\n  sequence = 5000\n', {
    locals: CONFORMANCE,
    oneTime: '7000,8000\n',
  });
  try {
    d.capture.knock(A, 7000, 8000);
    assert.deepEqual((await logLines(d, 5)).slice(2), [
      `${A}: A: OPEN SESAME`,
      `A: running command: echo A ${A} >> ${d.out}`,
      'no more sequences left in the one time sequences file for door A --> disabling the door',
    ]);
    d.capture.knock(A, 7000, 8000, 5000);
    assert.deepEqual((await logLines(d, 7)).slice(5), [`${A}: B: Stage 1`, `${A}: B: OPEN SESAME`]);
    assert.deepEqual(d.exits, []);
  } finally {
    await d.daemon.shutdown(15);
  }
});

test('--log-format json: JSON lines with the event fields in the log file and on stdout; -D adds debug lines', async () => {
  const d = await startDaemon(C1(), { locals: CONFORMANCE, args: { logFormat: 'json', debug: true } });
  try {
    d.capture.knock(A, 7000, 8000, 9000);
    await until('the command line', () => readFileSync(d.log, 'utf8').includes('running command'));
    const records = readFileSync(d.log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(records[0].message, 'starting up, listening on lo');
    assert.ok(records.every((r) => r.v === 1 && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/.test(r.time as string)), 'docs/EVENTS.md version 1, µs times');
    assert.deepEqual({ ...records[4], time: undefined }, { v: 1, time: undefined, message: `${A}: A: OPEN SESAME`, event: 'open', door: 'A', source: A });
    assert.deepEqual({ ...records[3], time: undefined }, { v: 1, time: undefined, message: `${A}: A: Stage 3`, event: 'stage', door: 'A', source: A, stage: 3 });
    assert.ok(d.stdoutLines().some((t) => t.startsWith('{') && t.includes('"event":"open"')));
    assert.ok(d.stdoutLines().some((t) => t.startsWith('debug: program generation')));
    assert.ok(d.stdoutLines().some((t) => t.startsWith('debug: event {"kind":"completed"')));
  } finally {
    await d.daemon.shutdown(15);
  }
});

// ------------------------------------------------------------------ metrics, inside a private namespace


test('metrics: the Prometheus endpoint serves the counters (scraped inside a private network namespace)', { skip: !root && 'needs root to create a network namespace' }, () => {
  const lab = new Lab('metrics');
  try {
    lab.ns('m');
    const script = `
      import { Metrics } from ${JSON.stringify(join(packageRoot, 'src', 'report', 'metrics.ts'))};
      const m = new Metrics(() => ({ frames: 42, visible: 7, stages: 5, completed: 2, failedTimeout: 1, failedWrongPort: 3, evicted: 4, tracked: 9, ringDrops: 6, suppressed: 8, commandRuns: 2, commandFailures: 1 }));
      m.grants.inc({ door: 'A', outcome: 'granted' });
      m.nftBatchSeconds.observe(0.003);
      const { port } = await m.listen('127.0.0.1:19101');
      const res = await fetch('http://127.0.0.1:' + port + '/metrics');
      process.stdout.write(await res.text());
      const missing = await fetch('http://127.0.0.1:' + port + '/nope');
      process.stdout.write('status404=' + missing.status + '\\n');
      await m.close();
    `;
    const r = lab.run('m', process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: packageRoot, timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    const body = r.stdout;
    for (const line of [
      'knockd_packets_total 42',
      'knockd_steps_total 5',
      'knockd_completions_total 2',
      'knockd_failures_total{reason="timeout"} 1',
      'knockd_failures_total{reason="wrong_port"} 3',
      'knockd_failures_total{reason="evicted"} 4',
      'knockd_evictions_total 4',
      'knockd_tracked_sources 9',
      'knockd_drops_total{where="ring"} 6',
      'knockd_suppressed_events_total 8',
      'knockd_grants_total{door="A",outcome="granted"} 1',
      'knockd_command_runs_total 2',
      'knockd_command_failures_total 1',
      'knockd_nft_batch_seconds_count 1',
      'status404=404',
    ]) {
      assert.ok(body.includes(`${line}\n`), `${line}\n--- body:\n${body}`);
    }
  } finally {
    lab.destroy();
  }
});

test('metrics: a bad listen address is an error saying what to write', async () => {
  const { Metrics, parseListen } = await import('../src/report/metrics.js');
  assert.deepEqual(parseListen('[::1]:9101'), { host: '::1', port: 9101 });
  assert.deepEqual(parseListen('127.0.0.1:9101'), { host: '127.0.0.1', port: 9101 });
  for (const bad of ['9101', '127.0.0.1:0', 'host:99999', '[nope]:1']) {
    assert.throws(() => parseListen(bad), /expected ADDR:PORT such as 127\.0\.0\.1:9101/);
  }
  await assert.rejects(new Metrics(() => ({})).listen('x'), /invalid metrics address "x"/);
});

// ------------------------------------------------------------------ the real daemon, inside a private namespace

test('knockd-fast -d in a private netns: pid file, live duplicate refused, kill -9 then restart resumes the stop, SIGHUP, SIGTERM', { skip: !root && 'needs root to create a network namespace' }, async () => {
  const lab = new Lab('daemon');
  try {
    lab.ns('d');
    const out = file('e2e.out');
    const log = file('e2e.log');
    const pid = file('e2e.pid');
    const state = file('e2e-state.json');
    const conf = file('e2e.conf');
    const good = `[options]\n  LogFile = ${log}\n  PidFile = ${pid}\n[A]\n  sequence = 7000\n  start_command = echo START %IP% >> ${out}\n  cmd_timeout = 3\n  stop_command = echo STOP %IP% >> ${out}\n`;
    writeFileSync(conf, good);
    const cli = join(packageRoot, 'bin', 'knockd-fast.js');
    // a relative -c: the daemon resolves it before moving to /, so SIGHUP still finds the file
    const daemonize = () =>
      lab.run('d', process.execPath, [cli, '-c', basename(conf), '-i', 'lo', '-d', '--state-file', state, '--threads', '1', '--metrics', '127.0.0.1:19102'], { timeout: 30_000, cwd: dir });
    const livePid = () => Number(readFileSync(pid, 'utf8'));
    const running = (p: number) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    };
    const outText = () => (existsSync(out) ? readFileSync(out, 'utf8') : '');
    const logText = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');

    const first = daemonize();
    assert.equal(first.status, 0, first.stderr);
    const p1 = livePid();
    assert.ok(running(p1));
    await until('the start-up line', () => logText().includes('starting up, listening on lo'));

    const dup = daemonize();
    assert.equal(dup.status, 1);
    assert.match(dup.stderr, new RegExp(`already running with pid ${p1}`));

    lab.exec('d', process.execPath, [join(packageRoot, 'bin', 'knock-fast.js'), '127.0.0.1', '7000']);
    await until('the start command', () => outText() === 'START 127.0.0.1\n');
    await until('the pending stop in the state file', () => existsSync(state) && readState(state).stops.length === 1);

    process.kill(p1, 'SIGKILL');
    await until('the kill', () => !running(p1));
    assert.equal(livePid(), p1, 'kill -9 leaves the pid file behind');

    const second = daemonize(); // the stale pid file is replaced
    assert.equal(second.status, 0, second.stderr);
    const p2 = livePid();
    assert.notEqual(p2, p1);
    await until('the resumed stop command', () => outText() === 'START 127.0.0.1\nSTOP 127.0.0.1\n', 15_000);

    const scrape = lab.exec('d', process.execPath, ['-e', "fetch('http://127.0.0.1:19102/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    assert.match(scrape, /^knockd_command_runs_total 1$/m, 'the restored stop command ran in this process');
    assert.match(scrape, /^knockd_tracked_sources 0$/m);
    assert.match(scrape, /^knockd_drops_total\{where="ring"\} \d+$/m);

    writeFileSync(conf, `${good}  bogus = 1\n`);
    process.kill(p2, 'SIGHUP');
    await until('the reload error', () => logText().includes('running config is kept'));
    assert.match(logText(), /config: line 9: syntax error\n/, 'the relative config path is still found after -d');
    assert.ok(running(p2), 'a bad config on SIGHUP does not stop the daemon');

    process.kill(p2, 'SIGTERM');
    await until('the exit', () => !running(p2));
    assert.ok(!existsSync(pid), 'SIGTERM removes the pid file');
    assert.match(logText(), /shutting down\n$/);
  } finally {
    lab.destroy();
  }
});

// ------------------------------------------------------------------ the state file across failed and corrupt start-ups (issue 14 finding 2)

test('a start-up that fails leaves the state file exactly as it was and runs none of its stops', async () => {
  const stateFile = file('failed-start-state.json');
  const out = file('failed-start.out');
  const content = `{ "version": 1, "stops": [\n  { "door": "A", "source": "127.0.0.7", "family": 4, "command": "echo STOP >> ${out}", "dueMs": ${Date.now() - 1000} }\n] }\n`;
  writeFileSync(stateFile, content);
  const conf = writeConf(DOOR('7000').replaceAll('LOG', file('failed.log')).replaceAll('OUT', out));
  const daemon = new Daemon({ config: conf, interface: 'lo', stateFile, matcher: 'ts' }, parseConfig(conf), { stdout: () => undefined, stderr: () => undefined }, {
    openCapture: () => {
      throw new Error('capture failed: Operation not permitted');
    },
    exit: () => undefined,
  });
  await assert.rejects(daemon.start(), /capture failed/);
  await sleep(200);
  assert.equal(readFileSync(stateFile, 'utf8'), content);
  assert.ok(!existsSync(out), 'the due stop did not run in a daemon that never started');
});

test('a corrupt state file is moved aside with a log line and the daemon starts', async () => {
  for (const corrupt of ['', '{', 'null', '[]', '{"version":2,"stops":[]}', '{"version":1,"stops":[{"door":"A"}]}', '\u0000\u0001']) {
    const stateFile = file('corrupt-state.json');
    writeFileSync(stateFile, corrupt);
    const d = await startDaemon(DOOR('7000'), { stateFile });
    try {
      const aside = `${stateFile}.unreadable-`;
      await until('the log line', () => d.logText().includes(`moved it aside to ${aside}`));
      const kept = readdirSync(dir).filter((f) => join(dir, f).startsWith(aside));
      assert.equal(kept.length, 1);
      assert.equal(readFileSync(join(dir, kept[0]), 'utf8'), corrupt);
      assert.deepEqual(d.exits, []);
    } finally {
      await d.daemon.shutdown(15);
    }
    assert.deepEqual(readState(stateFile).stops, []);
  }
});
