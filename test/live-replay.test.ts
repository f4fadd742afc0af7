// Live capture and offline replay are the same matcher fed the same packets: knocks sent with real sockets
// to 127.0.0.1 inside a private namespace (sources 127.x.y.z) give the daemon's -v lines, and the capture of
// that traffic (tcpdump on the same loopback) replayed with --replay gives exactly the same lines, in order.
// Debian's knockd 0.8 listens to the same traffic on the same config: the traffic avoids the reference's
// defects (one knocker at a time, so D1 never discards an attempt; a later packet so that its lazy timeout
// is logged), and its -v lines must be exactly ours.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliPath, knockClientPath } from '../src/tools/demo.js';
import { Lab } from '../src/tools/netns.js';
import { collectLines, stop, waitFor } from './helpers/processes.js';
import { isRoot as root } from './helpers/env.js';

const tcpdump = existsSync('/usr/bin/tcpdump') || existsSync('/usr/sbin/tcpdump');
const skip = !root ? 'needs root (network namespace, AF_PACKET)' : !tcpdump ? 'needs tcpdump (apt-get install tcpdump)' : false;
const KNOCKD = '/usr/sbin/knockd';

let lab: Lab | undefined;
let dir = '';
const EVENT = /: (Stage \d+|OPEN SESAME|sequence timeout \(stage \d+\))$/;

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'kf-live-'));
  lab = new Lab('live');
  lab.ns('n');
});

after(() => {
  lab?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const inNs = (cmd: string, args: string[]) => lab!.spawn('n', cmd, args);

function knock(source: string, ports: string[]): void {
  lab!.exec('n', process.execPath, [knockClientPath(), '--source', source, '127.0.0.1', ...ports]);
}

let live: string[] = [];
let reference: string[] | undefined;

test('live -v lines equal --replay of the captured traffic', { skip, timeout: 120_000 }, async () => {
  // knockd's grammar only, so the reference reads the same file; our log and state go through flags
  const conf = join(dir, 'knockd.conf');
  writeFileSync(
    conf,
    `[tcpdoor]
    sequence = 7000,8000,9000
    seq_timeout = 2
    tcpflags = syn
[udpdoor]
    sequence = 7100:udp,8100:udp
    seq_timeout = 2
[plaindoor]
    sequence = 7200,8200
    seq_timeout = 2
`,
  );
  const capture = join(dir, 'live.pcap');
  const dump = inNs('tcpdump', ['-i', 'lo', '--immediate-mode', '-U', '-n', '-w', capture, 'tcp or udp']);
  const dumpErr: string[] = [];
  dump.stderr!.on('data', (d: Buffer) => dumpErr.push(d.toString()));
  const daemon = inNs(process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '-v', '--threads', '1', '-g', join(dir, 'knockd-fast.log'), '--state-file', join(dir, 'state.json')]);
  const lines = collectLines(daemon);
  const knockd = existsSync(KNOCKD) ? inNs(KNOCKD, ['-c', conf, '-i', 'lo', '-v', '-g', join(dir, 'knockd.log')]) : undefined;
  const knockdLines = knockd ? collectLines(knockd) : [];
  try {
    await waitFor(dumpErr, /listening on/, 10_000);
    await waitFor(lines, /starting up/, 15_000);
    if (knockd) await waitFor(knockdLines, /listening on lo/, 10_000);
    knock('127.0.1.1', ['7000', '8000', '9000']); // opens tcpdoor
    knock('127.0.1.2', ['7100:udp', '8100:udp']); // opens udpdoor
    knock('127.0.1.3', ['7000', '9000']); // wrong second knock: Stage 1 only
    knock('127.0.1.5', ['7000', '7000', '7000', '8000', '9000']); // parity restart
    // a door without TCPFlags counts any TCP packet to its ports, RST+ACK included (knockd's pcap filter
    // admits them; derived doors differ on purpose: docs/MATCHER.md §10)
    for (const port of ['7200', '8200']) {
      // hping3 exits 1 when nothing answers, as nothing answers a RST
      const sent = lab!.run('n', 'hping3', ['-q', '-c', '1', '-R', '-A', '-p', port, '-a', '127.0.1.7', '127.0.0.1'], { timeout: 10_000 });
      assert.match(sent.stdout + sent.stderr, /1 packets transmitted/, `hping3 sent the RST+ACK: ${sent.stderr}`);
    }
    knock('127.0.1.4', ['7000', '8000']); // stops after two: times out
    await waitFor(lines, /127\.0\.1\.4: tcpdoor: sequence timeout \(stage 2\)/, 10_000);
    knock('127.0.1.6', ['7000', '8000', '9000']); // after the timeout: knockd logs its timeout at this packet
    await waitFor(lines, /127\.0\.1\.6: tcpdoor: OPEN SESAME/, 10_000);
    if (knockd) await waitFor(knockdLines, /127\.0\.1\.6: tcpdoor: OPEN SESAME/, 10_000);
    await sleep(300);
  } finally {
    await stop(daemon, 'SIGTERM');
    if (knockd) await stop(knockd, 'SIGTERM');
    await stop(dump, 'SIGINT');
  }
  live = lines.filter((l) => EVENT.test(l));
  if (knockd) reference = knockdLines.filter((l) => EVENT.test(l));
  for (const door of ['127.0.1.1: tcpdoor', '127.0.1.2: udpdoor', '127.0.1.7: plaindoor', '127.0.1.5: tcpdoor', '127.0.1.6: tcpdoor']) {
    assert.ok(live.includes(`${door}: OPEN SESAME`), live.join('\n'));
  }
  assert.ok(!live.includes('127.0.1.3: tcpdoor: Stage 2'), live.join('\n'));

  for (const matcher of ['native', 'ts']) {
    const r = lab!.run('n', process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '--replay', capture, '-v', '--matcher', matcher]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n').filter((l) => EVENT.test(l)), live, `--replay --matcher ${matcher} gives the live lines`);
  }
});

test("Debian's knockd 0.8 on the same traffic prints exactly the same event lines", { skip: skip || (existsSync(KNOCKD) ? false : `${KNOCKD} is not installed (apt-get install knockd)`) }, () => {
  assert.ok(reference, 'the reference ran beside the live capture');
  assert.ok(live.length > 0, 'the live run produced lines');
  assert.deepEqual(reference, live);
});
