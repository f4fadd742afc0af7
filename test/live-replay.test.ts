// Live capture and offline replay are the same matcher fed the same packets: knocks sent with real sockets
// to 127.0.0.1 inside a private namespace (sources 127.x.y.z) give the daemon's -v lines, and the capture of
// that traffic (tcpdump on the same loopback) replayed with --replay gives exactly the same lines, in order.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliPath, knockClientPath } from '../src/demo.js';

const root = process.getuid?.() === 0;
const tcpdump = existsSync('/usr/bin/tcpdump') || existsSync('/usr/sbin/tcpdump');
const skip = !root ? 'needs root (network namespace, AF_PACKET)' : !tcpdump ? 'needs tcpdump (apt-get install tcpdump)' : false;

const ns = `kf-live-${process.pid}`;
let dir = '';
const EVENT = /: (Stage \d+|OPEN SESAME|sequence timeout \(stage \d+\))$/;

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'kf-live-'));
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
});

after(() => {
  if (skip) return;
  spawnSync('ip', ['netns', 'del', ns]);
  rmSync(dir, { recursive: true, force: true });
});

const inNs = (cmd: string, args: string[], opts = {}): ChildProcess => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', ...opts });

function knock(source: string, ports: string[]): void {
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, knockClientPath(), '--source', source, '127.0.0.1', ...ports], { stdio: 'ignore' });
}

async function waitFor(lines: string[], pattern: RegExp, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!lines.some((l) => pattern.test(l))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${pattern}; got:\n${lines.join('\n')}`);
    await sleep(25);
  }
}

test('live -v lines equal --replay of the captured traffic', { skip, timeout: 120_000 }, async () => {
  const conf = join(dir, 'knockd.conf');
  writeFileSync(
    conf,
    `[options]
    LogFile = ${join(dir, 'knockd.log')}
    StateFile = ${join(dir, 'state.json')}
[tcpdoor]
    sequence = 7000,8000,9000
    seq_timeout = 2
    tcpflags = syn
[udpdoor]
    sequence = 7100:udp,8100:udp
    seq_timeout = 2
`,
  );
  const capture = join(dir, 'live.pcap');
  const dump = inNs('tcpdump', ['-i', 'lo', '-U', '-n', '-w', capture, 'tcp or udp']);
  const dumpErr: string[] = [];
  dump.stderr!.on('data', (d: Buffer) => dumpErr.push(d.toString()));
  await waitFor(dumpErr, /listening on/, 10_000);

  const daemon = inNs(process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '-v', '--threads', '1']);
  const lines: string[] = [];
  let buf = '';
  daemon.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  try {
    await waitFor(lines, /starting up/, 15_000);
    knock('127.0.1.1', ['7000', '8000', '9000']); // opens tcpdoor
    knock('127.0.1.2', ['7100:udp', '8100:udp']); // opens udpdoor
    knock('127.0.1.3', ['7000', '9000']); // wrong second knock: Stage 1 only
    knock('127.0.1.4', ['7000', '8000']); // stops after two: times out
    knock('127.0.1.5', ['7000', '7000', '7000', '8000', '9000']); // parity restart
    await waitFor(lines, /127\.0\.1\.4: tcpdoor: sequence timeout \(stage 2\)/, 10_000);
    await sleep(300);
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
  }
  const live = lines.filter((l) => EVENT.test(l));
  assert.ok(live.includes('127.0.1.1: tcpdoor: OPEN SESAME'), live.join('\n'));
  assert.ok(live.includes('127.0.1.2: udpdoor: OPEN SESAME'), live.join('\n'));
  assert.ok(live.includes('127.0.1.5: tcpdoor: OPEN SESAME'), live.join('\n'));
  assert.ok(!live.includes('127.0.1.3: tcpdoor: Stage 2'), live.join('\n'));

  for (const matcher of ['native', 'ts']) {
    const r = spawnSync(
      'ip',
      ['netns', 'exec', ns, process.execPath, cliPath(), '-c', conf, '-i', 'lo', '--replay', capture, '-v', '--matcher', matcher],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n').filter((l) => EVENT.test(l)), live, `--replay --matcher ${matcher} gives the live lines`);
  }
});
