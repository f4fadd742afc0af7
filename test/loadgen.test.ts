// The load generator (bench/loadgen) sends exactly the frames of its trace into a veth between two
// private namespaces and reports what it sent; the count-only reader (bench/counter) and tcpdump on the
// receiving end check the count and the frames. Root only: it creates its own namespaces and removes them.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  buildTools,
  createLoadNet,
  LOADGEN,
  loadgenArgs,
  runLoadgen,
  startCounter,
  stopCounter,
  type LoadNet,
} from '../bench/load.js';
import { isRoot as root } from './helpers/env.js';

const haveTcpdump = (() => {
  try {
    execFileSync('tcpdump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('loadgen', { skip: root ? false : 'needs root: it creates network namespaces and AF_PACKET sockets' }, () => {
  let net: LoadNet;
  before(() => {
    buildTools();
    net = createLoadNet();
  });
  after(() => net?.lab.destroy());

  test('sends exactly --count frames of a background trace and the reader counts exactly those', async () => {
    const counter = await startCounter(net);
    const sent = await runLoadgen(net, { knockers: 0, noise: 'background', rate: 20_000, durationS: 20, count: 5_000 });
    const seen = await stopCounter(counter);
    assert.equal(sent.stoppedBy, 'count');
    assert.equal(sent.sent, 5_000);
    assert.equal(sent.sentNoise, 5_000);
    assert.equal(sent.sendErrors, 0);
    assert.equal(seen.packets, 5_000);
    assert.equal(seen.ringDrops, 0);
  });

  test('sends every knock of every knocker, twice with --dup-gap-ms, and reports when the last one left', async () => {
    for (const dupGapMs of [0, 1]) {
      const counter = await startCounter(net);
      const rep = await runLoadgen(net, { knockers: 4, noise: 'none', rate: 0, durationS: 2.5, dupGapMs });
      const seen = await stopCounter(counter);
      const perKnocker = 3 * (dupGapMs ? 2 : 1);
      assert.equal(rep.stoppedBy, 'duration');
      assert.equal(rep.legitScheduled, 4 * perKnocker);
      assert.equal(rep.sentLegit, 4 * perKnocker);
      assert.equal(seen.packets, 4 * perKnocker);
      assert.deepEqual(rep.knockers.map((k) => k.src), ['172.16.0.1', '172.16.0.2', '172.16.0.3', '172.16.0.4']);
      for (const k of rep.knockers) {
        assert.ok(k.firstSentUs >= rep.startUs && k.lastSentUs > k.firstSentUs, `${k.src}: first/last knock times`);
      }
    }
  });

  test('a flood frame goes to the first knock port from a new source each time, with correct checksums', {
    skip: haveTcpdump ? false : 'tcpdump is not installed (apt-get install tcpdump)',
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kf-loadgen-'));
    try {
      const pcap = join(dir, 'flood.pcap');
      const dump = net.lab.spawn('b', 'tcpdump', ['-i', net.receiverIf, '-U', '-w', pcap, '-c', '1000', 'ip']);
      await new Promise<void>((resolve) => dump.stderr!.on('data', (d: Buffer) => /listening on/.test(d.toString()) && resolve()));
      const rep = await runLoadgen(net, { knockers: 0, noise: 'flood', rate: 50_000, durationS: 20, count: 1_000 });
      await new Promise<void>((resolve) => (dump.exitCode !== null ? resolve() : dump.once('exit', () => resolve())));
      assert.equal(rep.sent, 1_000);
      const text = execFileSync('tcpdump', ['-nn', '-vv', '-r', pcap], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const flows = [...text.matchAll(/(\d+\.\d+\.\d+\.\d+)\.\d+ > 192\.0\.2\.2\.(\d+): Flags \[S\], cksum 0x[0-9a-f]+ \((\w+)\)/g)];
      assert.equal(flows.length, 1_000);
      assert.ok(flows.every((m) => m[2] === '7000' && m[3] === 'correct' && m[1].startsWith('10.')));
      assert.equal(new Set(flows.map((m) => m[1])).size, 1_000, 'every flood frame has its own source address');
      assert.doesNotMatch(text, /bad cksum/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('loadgen refuses a run without a time bound and says which option is missing', () => {
  buildTools();
  const args = loadgenArgs(
    { senderIf: 'lo', senderMac: '02:00:00:00:00:01', receiverMac: '02:00:00:00:00:02' },
    { knockers: 1, noise: 'none', rate: 0, durationS: 1 },
  ).filter((a, i, all) => a !== '--duration' && all[i - 1] !== '--duration');
  return new Promise<void>((resolve) => {
    execFile(LOADGEN, args, (err, _stdout, stderr) => {
      assert.equal((err as { code?: number } | null)?.code, 2);
      assert.match(stderr, /--duration is required/);
      resolve();
    });
  });
});
