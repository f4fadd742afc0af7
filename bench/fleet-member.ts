// One fleet member of bench/fleet.bench.ts as a process of its own (what a fleet is: one daemon, one JS
// thread per gateway): its NftBackend in the namespace the bench made, its DoorController and FleetLink,
// driven over the IPC channel. Times are process.hrtime (CLOCK_MONOTONIC, the same clock in every process),
// in ms, so the bench compares a share here with an element committed in another member.
// The controller logs to a file as a daemon with LogFile does (a remote grant's line is part of its cost).
// argv: NAME REDIS_URL NETNS LOG_FILE
import { NftBackend } from '../src/actions/nft.js';
import { DoorController } from '../src/control/controller.js';
import { Logger } from '../src/report/log.js';
import { FleetLinkImpl, type FleetTarget } from '../src/fleet/link.js';
import { BENCH_FLEET, BENCH_KEY, benchDoor, benchSource, type MemberReply, type MemberRequest } from './fleet-protocol.js';

const [name, url, netns, logFile] = process.argv.slice(2);
const clockMs = () => Number(process.hrtime.bigint()) / 1e6;
const send = (reply: MemberReply) => process.send!(reply);

const nft = new NftBackend({ doors: [benchDoor], log: (m) => console.error(`${name} nft: ${m}`), netns });
await nft.start();
const logger = new Logger({ logFile });
const controller = new DoorController({ log: (m, f) => logger.log(m, f), logBatch: (fn) => logger.batch(fn), nft });
/** source -> when its element was committed here */
const committed = new Map<string, number>();
/** grant index -> when this member shared it */
const sharedAt = new Map<number, number>();
let notify = false;
const target: FleetTarget = {
  applyRemoteGrants: async (grants) => {
    await controller.applyRemoteGrants(grants);
    const t = clockMs();
    for (const g of grants) committed.set(g.source, t);
    if (notify) send({ kind: 'committed', sources: grants.map((g) => g.source) });
  },
  applyLineUsed: () => undefined,
  currentSequence: () => [],
};
let cpu0 = process.cpuUsage();
let catchUpCpuUs = 0;
const link = new FleetLinkImpl({
  config: { url, name: BENCH_FLEET, member: name, keyFile: '(bench)', key: BENCH_KEY, offline: 'local', commands: 'local' },
  doors: [benchDoor],
  version: 'bench',
  target,
  log: (m) => {
    if (/catch-up \(connect\)/.test(m)) {
      const c = process.cpuUsage(cpu0);
      catchUpCpuUs = c.user + c.system;
      send({ kind: 'ready', catchUp: link.stats.lastCatchUp!, catchUpCpuUs });
    }
    if (/refused|unreachable|failed/.test(m)) console.error(`${name}: ${m}`);
  },
});
controller.attach({ fleet: link });
cpu0 = process.cpuUsage();
link.start();

/** Shares grants start, start + step, … (< end) at `rate` per second from `t0` (this clock), as knocks would. */
async function share(start: number, end: number, step: number, rate: number, t0: number): Promise<void> {
  let i = start;
  while (i < end) {
    const due = start + Math.floor(((clockMs() - t0) / 1000) * rate) * step;
    for (; i < end && i <= due; i += step) {
      sharedAt.set(i, clockMs());
      // what the controller does for a completed knock: the element here, then the grant to the fleet
      const grant = { door: benchDoor, source: benchSource(i), family: 4 as const };
      void nft.grant(grant);
      link.share(grant, 600_000);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}

process.on('message', (q: MemberRequest) => {
  void (async () => {
    switch (q.kind) {
      case 'share':
        await share(q.start, q.end, q.step, q.rate, q.t0);
        return send({ kind: 'shared' });
      case 'notify':
        notify = q.on;
        return send({ kind: 'ok' });
      case 'cpu-start':
        cpu0 = process.cpuUsage();
        return send({ kind: 'ok' });
      case 'stats': {
        const c = process.cpuUsage(cpu0);
        return send({ kind: 'stats', applied: link.stats.applied, cpuUs: c.user + c.system, systemUs: c.system });
      }
      case 'report':
        return send({ kind: 'report', committed: [...committed], sharedAt: [...sharedAt] });
      case 'clear':
        committed.clear();
        sharedAt.clear();
        return send({ kind: 'ok' });
      case 'stop':
        await link.close();
        await nft.close();
        logger.close();
        send({ kind: 'ok' });
        process.disconnect();
    }
  })();
});
