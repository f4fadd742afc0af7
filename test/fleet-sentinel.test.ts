// The fleet's store behind Redis Sentinel: a primary, a replica and three sentinels in a store namespace
// (node-redis and the sentinels speak TCP only, so they live on a namespace address), two gateways each
// with its own daemon. The primary is killed; the sentinels promote the replica and grants keep flowing.
// Root only; everything is removed afterwards, also on failure.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FLEET_NET, FleetLab, sshDoor, type SentinelStore } from '../src/tools/fleetlab.js';
import type { Daemon } from '../src/tools/demo.js';
import { isRoot as root } from './helpers/env.js';

const SSH = sshDoor(120);

describe('a fleet whose store is behind Redis Sentinel', { skip: root ? false : 'needs root (network namespaces, AF_PACKET, nftables)', timeout: 300_000 }, () => {
  let lab: FleetLab;
  let store: SentinelStore;
  const daemons: Daemon[] = [];

  before(async () => {
    lab = new FleetLab('sentinel', 2);
    store = await lab.startSentinelStore();
    await lab.startEchoServers(22);
  });
  after(async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await lab?.destroy();
  });

  test('the primary is killed, the sentinels promote the replica, and grants keep flowing', async () => {
    assert.ok(await lab.until(() => store.settled(), 60_000), 'the sentinels see the replica and each other');
    for (const i of [0, 1]) daemons.push(await lab.startDaemon(i, lab.writeConfig(`s${i}.conf`, lab.options(i, '', store.url) + SSH)));
    const [a, b] = daemons;
    for (const d of daemons) await d.waitFor(/fleet: connected to redis\+sentinel:\/\/192\.0\.2\.100:26379,192\.0\.2\.100:26380,192\.0\.2\.100:26381\/kf\/0/);
    for (const d of daemons) await d.waitFor(/fleet: catch-up \(connect\)/);
    lab.knock(0, ['7000', '8000', '9000']);
    await b.waitFor(/203\.0\.113\.10: ssh: opened by fleet member gw0/);
    assert.equal(lab.probe(1), 'open', 'before the failover: B admits the client A let in');

    assert.equal(store.primaryPort(), 6379);
    await store.kill(6379);
    assert.ok(await lab.until(() => store.primaryPort() === 6380, 60_000), 'the sentinels promote the replica');
    for (const d of daemons) await d.waitFor(/fleet: store .* unreachable/, 30_000);
    // connected again, to the new primary: the second "connected" line of each member
    for (const d of daemons) assert.ok(await lab.until(() => d.lines.filter((l) => /fleet: connected to/.test(l)).length >= 2, 60_000), `reconnected:\n${d.lines.join('\n')}`);

    lab.knock(0, ['7000', '8000', '9000'], FLEET_NET.client2);
    await b.waitFor(/203\.0\.113\.11: ssh: opened by fleet member gw0/, 30_000);
    assert.equal(lab.probe(1, FLEET_NET.client2), 'open', 'after the failover: a grant made on A reaches B');
    lab.knock(1, ['7000', '8000', '9000'], FLEET_NET.client2);
    await a.waitFor(/203\.0\.113\.11: ssh: opened by fleet member gw1/, 30_000);
    const stored = store.cli(6380, ['--raw', 'KEYS', 'kf:{test}:g:*']).trim().split('\n').sort();
    assert.deepEqual(stored, ['kf:{test}:g:ssh|4|203.0.113.10', 'kf:{test}:g:ssh|4|203.0.113.11'], 'the grant from before the failover was replicated; the new one written to the new primary');
    for (const d of daemons) {
      assert.equal(d.lines.filter((l) => /fleet: store .* unreachable/.test(l)).length, 1, `one line for the outage, not one per attempt:\n${d.lines.join('\n')}`);
      assert.equal(d.lines.some((l) => /^\s+at /.test(l)), false, 'no stack trace');
    }
  });
});
