// Issue 18: `--replay` prints what the live daemon prints. One config exercises every door feature that
// the controller or the matcher decides: stages, open, timeout (TCP and UDP), one-time sequences (the
// issue's own example: .2 opens, .3 reuses the used sequence and is ignored, .4 and .5 open with the next
// ones, then the door is disabled), Cooldown, Dedupe, and a derived door whose second use in its window
// is refused by the used-table. The knock clients send the traffic on a private namespace's loopback; the
// daemon (native, then TS matcher) prints its -v lines while tcpdump captures; `--replay` of that capture,
// with either matcher, must print the same event lines in the same order. The operator's one-time file is
// restored before the replay, and the replay must leave it untouched.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
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
