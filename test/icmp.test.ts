// ICMP echo knocks live (issue 13, docs/MATCHER.md §3): inside a private namespace the daemon captures
// lo; iputils `ping -s LEN` and our client (`knockd-fast knock HOST LEN:icmp`, a ping socket through the
// addon) knock `7000,1200:icmp,9000` over IPv4 and IPv6; tcpdump's capture of the same traffic replayed
// with --replay on both matchers gives the same lines; without permission for ping sockets the client
// says how to grant it.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliPath, knockClientPath } from '../src/tools/demo.js';
import { Lab } from '../src/tools/netns.js';
import { isRoot as root } from './helpers/env.js';

const tools = ['/usr/bin/ping', '/usr/bin/tcpdump'].filter((p) => !existsSync(p) && !existsSync(p.replace('/bin/', '/sbin/')));
const skip = !root ? 'needs root (network namespace, AF_PACKET)' : tools.length > 0 ? `needs ${tools.join(', ')} (apt-get install iputils-ping tcpdump)` : false;
const EVENT = /: (Stage \d+|OPEN SESAME|sequence timeout \(stage \d+\))$/;

/** A child's stdout as a growing array of lines. */
function collectLines(child: ChildProcess, stream: 'stdout' | 'stderr' = 'stdout'): string[] {
  const lines: string[] = [];
  let partial = '';
  child[stream]!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  return lines;
}

async function waitFor(lines: string[], pattern: RegExp, child?: ChildProcess, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; !lines.some((l) => pattern.test(l)); await sleep(25)) {
    if (Date.now() > end || (child && child.exitCode !== null)) assert.fail(`no line matching ${pattern}; got:\n${lines.join('\n')}`);
  }
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

describe('live: ICMP echo knocks in a private namespace', { skip, timeout: 120_000 }, () => {
  let lab: Lab;
  let dir: string;
  before(() => {
    lab = new Lab('icmp');
    lab.ns('host');
    lab.exec('host', 'ip', ['addr', 'add', '127.0.1.1/8', 'dev', 'lo']);
    dir = mkdtempSync(join(tmpdir(), 'kf-icmp-'));
  });
  after(() => {
    lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a command in the namespace; returns its exit status and output. */
  const run = (cmd: string, args: string[]) => {
    const r = lab.run('host', cmd, args, { timeout: 20_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  const ourKnock = (args: string[]) => run(process.execPath, [cliPath(), 'knock', ...args]);
  const knockFast = (args: string[]) => run(process.execPath, [knockClientPath(), ...args]);

  test('ping -s and our client open 7000,1200:icmp,9000; --replay of the capture gives the same lines', async () => {
    lab.exec('host', 'sysctl', ['-qw', 'net.ipv4.ping_group_range=0 2147483647']);
    const conf = join(dir, 'knockd.conf');
    writeFileSync(conf, '[icmpdoor]\n    Sequence = 7000,1200:icmp,9000\n    Seq_Timeout = 60\n    TCPFlags = syn\n');
    const capture = join(dir, 'live.pcap');
    const dump = lab.spawn('host', 'tcpdump', ['-i', 'lo', '--immediate-mode', '-U', '-n', '-w', capture, 'tcp or udp or icmp or icmp6']);
    const dumpErr = collectLines(dump, 'stderr');
    const daemon = lab.spawn('host', process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '-v', '--threads', '1', '-g', join(dir, 'log'), '--state-file', join(dir, 'state')]);
    const lines = collectLines(daemon);
    let live: string[];
    try {
      await waitFor(dumpErr, /listening on/, dump);
      await waitFor(lines, /starting up, listening on/, daemon);

      // iputils ping (as root it uses a raw socket) between our client's TCP knocks, from 127.0.1.1
      assert.equal(knockFast(['--source', '127.0.1.1', '127.0.0.1', '7000']).status, 0);
      const ping = run('ping', ['-n', '-c', '1', '-W', '1', '-s', '1200', '-I', '127.0.1.1', '127.0.0.1']);
      assert.equal(ping.status, 0, ping.out);
      assert.equal(knockFast(['--source', '127.0.1.1', '127.0.0.1', '9000']).status, 0);
      await waitFor(lines, /^127\.0\.1\.1: icmpdoor: OPEN SESAME$/, daemon);

      // our client alone, through a ping socket: IPv4 and IPv6
      const ours = ourKnock(['-v', '127.0.0.1', '7000', '1200:icmp', '9000']);
      assert.equal(ours.status, 0, ours.out);
      assert.match(ours.out, /hitting icmp 127\.0\.0\.1:1200/);
      await waitFor(lines, /^127\.0\.0\.1: icmpdoor: OPEN SESAME$/, daemon);
      const ours6 = knockFast(['-6', '::1', '7000', '1200:icmp', '9000']);
      assert.equal(ours6.status, 0, ours6.out);
      await waitFor(lines, /^::1: icmpdoor: OPEN SESAME$/, daemon);

      // a ping of another length is a wrong knock
      assert.equal(knockFast(['--source', '127.0.1.1', '127.0.0.1', '7000']).status, 0);
      assert.equal(run('ping', ['-n', '-c', '1', '-W', '1', '-s', '56', '-I', '127.0.1.1', '127.0.0.1']).status, 0);
      assert.equal(knockFast(['--source', '127.0.1.1', '127.0.0.1', '9000']).status, 0);
      await sleep(500);
    } finally {
      await stop(daemon, 'SIGTERM');
      await stop(dump, 'SIGINT');
    }
    live = lines.filter((l) => EVENT.test(l));
    for (const who of ['127.0.1.1', '127.0.0.1', '::1']) {
      assert.deepEqual(
        live.filter((l) => l.startsWith(`${who}: `)).slice(0, 4),
        ['Stage 1', 'Stage 2', 'Stage 3', 'OPEN SESAME'].map((e) => `${who}: icmpdoor: ${e}`),
        live.join('\n'),
      );
    }
    assert.deepEqual(live.filter((l) => l.startsWith('127.0.1.1: ')).slice(4), ['127.0.1.1: icmpdoor: Stage 1'], 'ping -s 56 failed the attempt');

    for (const matcher of ['native', 'ts']) {
      const r = run(process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '--replay', capture, '-v', '--matcher', matcher]);
      assert.equal(r.status, 0, r.out);
      assert.deepEqual(r.out.split('\n').filter((l) => EVENT.test(l)), live, `--replay --matcher ${matcher} gives the live lines`);
    }
  });

  test('without permission for ping sockets our client says how to grant it, or to use ping', () => {
    lab.exec('host', 'sysctl', ['-qw', 'net.ipv4.ping_group_range=1 0']);
    for (const [args, host] of [
      [['127.0.0.1', '1200:icmp'], '127.0.0.1'],
      [['-6', '::1', '64:icmp'], '::1'],
    ] as const) {
      const r = knockFast([...args]);
      assert.equal(r.status, 1);
      assert.match(r.out, /^error: icmp hit to \S+ \(\d+ bytes\) could not be sent: this system does not let group 0 open ICMP echo \("ping"\) sockets\./);
      assert.ok(r.out.includes('sysctl -w net.ipv4.ping_group_range="0 0"'), r.out);
      assert.ok(r.out.includes(`ping -c 1 -s ${args[args.length - 1].split(':')[0]} ${host}`), r.out);
      assert.equal(r.out.trim().split('\n').length, 1, `one line, no stack trace: ${r.out}`);
    }
  });
});
