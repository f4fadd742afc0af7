// `knockd-fast demo --fleet`: the failover story on two gateways that share one Redis — a knock on A opens
// B too, A crashes and B still admits the client, A comes back and catches up — narrated step by step. It
// runs on FleetLab, the network the fleet tests use, and removes everything at the end, on failure and on
// Ctrl-C (the lab's namespaces, daemons, Redis and temporary directory).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { FLEET_NET, FleetLab, gatewayAddress, sshDoor } from './fleetlab.js';
import { DemoChecks, demoCanRun, type Daemon } from './demo.js';
import { parseConfig } from '../config/parse.js';
import { fleetStatus } from '../fleet/status.js';

export interface FleetDemoOptions {
  out?: (line: string) => void;
  /** the door's Open_Timeout, s: long enough for A to crash and come back within it */
  openTimeout?: number;
}

/** Runs the narrated story; returns the exit code (0 when every check held). */
export async function runFleetDemo(opts: FleetDemoOptions = {}): Promise<number> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const openTimeout = opts.openTimeout ?? 30;
  if (!demoCanRun(out, 'knockd-fast demo --fleet', [['nft', 'nftables'], ['redis-server', 'redis-server']])) return 1;
  const checks = new DemoChecks(out);
  const check = checks.check;
  const A = gatewayAddress(0);
  const B = gatewayAddress(1);
  let lab: FleetLab | undefined;
  const daemons: Daemon[] = [];
  try {
    out('1. Building a private network: one client, two gateways A and B, one Redis (a unix socket, no network).');
    lab = new FleetLab('fleetdemo', 2);
    await lab.redis.start();
    await lab.startEchoServers(22);
    out(`   client ${FLEET_NET.client} reaches gateway A at ${A} and gateway B at ${B}; port 22 listens on both.`);
    out('   (a router hashing on the source address, or a VRRP pair, would send each client to one of them.)');

    out('2. Starting knockd-fast on A and on B: the same door, the same Fleet store and key, each its own member name.');
    const configs = [0, 1].map((i) => lab!.writeConfig(`gw${i}.conf`, lab!.options(i) + sshDoor(openTimeout)));
    for (const l of readFileSync(configs[0], 'utf8').trimEnd().split('\n')) out(`   | ${l}`);
    for (const i of [0, 1]) daemons.push(await lab.startDaemon(i, configs[i]));
    const [a, b] = daemons;
    for (const d of daemons) await d.waitFor(/fleet: catch-up \(connect\)/);
    out(`   A: ${a.lines.find((l) => l.includes('fleet: connected')) ?? '(no connect line)'}`);

    out('3. Before any knock, the client tries port 22 on both gateways.');
    check('port 22 is closed on A and on B (the SYN is dropped)', lab.probe(0) === 'closed' && lab.probe(1) === 'closed', 'nobody who has not knocked sees the guarded port on any member.');

    out(`4. The client knocks on A only: knock-fast ${A} 7000 8000 9000`);
    const knockedAt = Date.now();
    lab.knock(0, ['7000', '8000', '9000']);
    out(`   A: ${await a.waitFor(/ssh: OPEN SESAME/).catch(() => '(no OPEN SESAME line)')}`);
    const onB = await b.waitFor(/ssh: opened by fleet member gw0/).catch(() => '');
    out(`   B: ${onB || '(B heard nothing)'}`);
    check('port 22 opens on A, where the knock arrived', lab.probe(0) === 'open', 'the door opens at once on the member that saw the knock.');
    check('port 22 opens on B too, for the same client', lab.probe(1) === 'open', 'A wrote the signed grant to Redis; B verified it and added the client to its own nftables set.');
    check('still closed on B for another address', lab.probe(1, FLEET_NET.client2) === 'closed', 'the grant is for the source that knocked, on every member.');

    out('5. Failover: A crashes (kill -9) and its link goes down, as when VRRP moves the traffic to B.');
    await a.stop('SIGKILL');
    lab.lab.exec('gw0', 'ip', ['link', 'set', 'to-client', 'down']);
    check('B still admits the client', lab.probe(1) === 'open', "the grant lives in B's kernel with its own expiry: neither A nor Redis is needed to keep it.");

    out('6. A comes back: its link up, its daemon started again. It reads the open grants from Redis.');
    lab.lab.exec('gw0', 'ip', ['link', 'set', 'to-client', 'up']);
    lab.lab.exec('gw0', 'ip', ['route', 'replace', '203.0.113.0/24', 'via', '198.51.100.2']);
    const a2 = await lab.startDaemon(0, configs[0]);
    daemons[0] = a2;
    out(`   A: ${await a2.waitFor(/fleet: catch-up \(connect\)/).catch(() => '(no catch-up line)')}`);
    const left = await a2.waitFor(/ssh: opened by fleet member gw0 \(\d+s left\)/).catch(() => '');
    out(`   A: ${left || '(A did not install the grant)'}`);
    check(
      'A admits the client again, for the time the grant has left',
      left !== '' && lab.probe(0) === 'open',
      'a member that restarted, joined late or was cut off converges without a new knock, and never extends a grant.',
    );

    out('7. What the operator sees: knockd-fast -c gw0.conf fleet status');
    const config = parseConfig(configs[0]);
    for (const l of (await fleetStatus(config.options.fleet!, config.doors)).trimEnd().split('\n')) out(`   | ${l}`);

    const closeAt = knockedAt + openTimeout * 1000 + 1500;
    out(`8. Waiting ${Math.max(0, Math.ceil((closeAt - Date.now()) / 1000))} s for the grant's Open_Timeout (${openTimeout} s from the knock) to pass...`);
    await sleep(Math.max(0, closeAt - Date.now()));
    check('port 22 is closed again on A and on B', lab.probe(0) === 'closed' && lab.probe(1) === 'closed', 'every member closes the door at the same moment: the grant carried its absolute expiry.');
  } catch (err) {
    checks.stopped(err as Error);
  } finally {
    out('9. Removing the namespaces, their veth pairs, the daemons and Redis.');
    for (const d of daemons) await d.stop('SIGKILL');
    await lab?.destroy();
  }
  return checks.summary();
}
