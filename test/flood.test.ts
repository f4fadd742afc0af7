// Issue 14 finding 1, live: spoofed sources (hping3 --rand-source, inside the lab's namespaces only)
// complete a command door's one-port sequence tens of thousands of times. Meanwhile a legitimate knock on
// an nftables door must open it promptly, a legitimate knock on the command door right after the flood must
// run its command promptly, the drops must be summed up in the log, and SIGTERM must end the daemon within
// a second. Bounds are generous correctness bounds, not performance targets (those live in bench:soak).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayLab, NET } from '../src/tools/demo.js';
import { isRoot as root } from './helpers/env.js';

const skip = root ? false : 'needs root (network namespaces, AF_PACKET, nftables)';

describe('completion flood on a command door', { skip, timeout: 120_000 }, () => {
  let lab: GatewayLab;
  before(async () => {
    lab = new GatewayLab('flood');
    await lab.startEchoServers(22);
  });
  after(() => lab?.destroy());

  test('an nft door opens and a command door runs promptly during and after the flood; SIGTERM exits within 1 s', async () => {
    const out = `${lab.dir}/flood.out`;
    const log = `${lab.dir}/flood.log`;
    const conf = lab.writeConfig(
      'flood.conf',
      `[options]
    LogFile = ${log}
    StateFile = ${lab.dir}/flood.state
    NftTable = kf_flood
[A]
    Sequence = 7000
    Start_Command = echo START %IP% >> ${out}
    Cmd_Timeout = 2
    Stop_Command = true
[B]
    Sequence = 9100,9200
    Seq_Timeout = 5
    Open = 22/tcp
    Open_Timeout = 30
`,
    );
    const daemon = await lab.startDaemon(conf, ['--threads', '1']);
    let flood: ReturnType<typeof lab.lab.spawn> | undefined;
    try {
      // ~40,000 spoofed SYNs to A's port; every one completes A from a new source
      flood = lab.lab.spawn('client', 'hping3', ['-q', '-S', '-p', '7000', '--rand-source', '-i', 'u50', '-c', '40000', NET.gateway], { stdio: 'ignore' });
      const flooding = new Promise((r) => flood!.once('exit', r));
      await daemon.waitFor(/: A: OPEN SESAME/, 10_000);
      await sleep(300);
      lab.knock([NET.gateway, '9100', '9200']);
      await daemon.waitFor(new RegExp(`^${NET.client.replaceAll('.', '\\.')}: B: OPEN SESAME$`), 10_000);
      const opened = Date.now();
      while (!lab.nft(['list', 'table', 'inet', 'kf_flood']).includes(NET.client)) {
        assert.ok(Date.now() - opened < 10_000, 'the nft element follows the OPEN SESAME line within 10 s');
        await sleep(50);
      }
      assert.equal(flood.exitCode, null, 'the flood was still running when B opened');
      await Promise.race([flooding, sleep(60_000)]);
      assert.equal(lab.probe(NET.gateway), 'open', 'the nft door is open for the legitimate client');

      lab.knock(['--source', NET.client2, NET.gateway, '7000']);
      await daemon.waitFor(new RegExp(`^A: running command: echo START ${NET.client2.replaceAll('.', '\\.')} `), 10_000);
      await daemon.waitFor(/warning: A: \d+ start command\(s\) not run under load \(\d+: too many starts waiting for a child/, 10_000);

      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8'))?.[1]);
      assert.ok(rss < 400_000, `RSS after the flood: ${rss} kB`);
      const sent = Date.now();
      const code = await daemon.stop('SIGTERM');
      const took = Date.now() - sent;
      assert.equal(code, 15);
      assert.ok(took < 1000, `SIGTERM took ${took} ms to end the daemon`);
      assert.match(readFileSync(log, 'utf8'), /shutting down\n$/);
    } finally {
      flood?.kill('SIGKILL');
      await daemon.stop('SIGKILL');
      lab.nft(['delete', 'table', 'inet', 'kf_flood']);
    }
  });
});
