// Fleet (issue 12): grants shared through a real redis-server (unix socket, started here) between members
// that each have their own NftBackend in a private namespace and their own DoorController and FleetLink.
// The members run in this one process (one JS thread for all of them: the sustained figure is therefore a
// floor for what separate daemons reach).
//   latency:   share() on A (what the controller calls after a completed knock) -> element committed on B
//   sustained: 3 members each sharing rate/3 grants per second; every grant applied on the 2 others
//   catch-up:  a member joining with N open grants in the store, from start() to every element committed
//   JS cost:   CPU time of the receiving process per remote grant (decode, verify, check, apply; nft batched)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NftBackend } from '../src/actions/nft.js';
import type { FleetConfig } from '../src/config/types.js';
import { DoorController } from '../src/control/controller.js';
import { FleetLinkImpl } from '../src/fleet/link.js';
import { encodeMessage, newNonce } from '../src/fleet/message.js';
import { RedisServer } from '../src/tools/fleetlab.js';
import { Lab } from '../src/tools/netns.js';
import { door } from '../test/helpers/doors.js';
import { reportRow } from './report.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';
const LATENCY_GRANTS = SHORT ? 500 : 2000;
const RATE = 10_000;
const SECONDS = SHORT ? 2 : 5;
const CATCH_UP = SHORT ? 20_000 : 100_000;
const KEY = new Uint8Array(32).fill(0x5a);
const ssh = door('ssh', '7000', { open: [{ port: 22, proto: 'tcp' }], openTimeout: 600, startCommand: undefined });

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const source = (i: number) => `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;

interface Member {
  name: string;
  link: FleetLinkImpl;
  nft: NftBackend;
  /** source -> ms when its element was committed here */
  committed: Map<string, number>;
}

const dir = mkdtempSync(join(tmpdir(), 'kf-fleet-bench-'));
const redis = new RedisServer(dir);
const lab = new Lab('fleetbench');
const members: Member[] = [];

function fleetConfig(member: string): FleetConfig {
  return { url: redis.url, name: 'bench', member, keyFile: '(bench)', key: KEY, offline: 'local', commands: 'local' };
}

async function member(name: string): Promise<Member> {
  lab.ns(name);
  const nft = new NftBackend({ doors: [ssh], log: (m) => console.error(`${name} nft: ${m}`), netns: lab.name(name) });
  await nft.start();
  const committed = new Map<string, number>();
  const controller = new DoorController({ log: () => undefined, nft });
  const target = {
    applyRemoteGrant: async (...args: Parameters<DoorController['applyRemoteGrant']>) => {
      await controller.applyRemoteGrant(...args);
      committed.set(args[1], performance.now());
    },
    applyLineUsed: () => undefined,
    currentSequence: () => [],
  };
  let connected: () => void = () => undefined;
  const ready = new Promise<void>((r) => (connected = r));
  const link = new FleetLinkImpl({
    config: fleetConfig(name),
    doors: [ssh],
    version: 'bench',
    target,
    log: (m) => {
      if (/catch-up/.test(m)) connected();
      if (/refused|unreachable|failed/.test(m)) console.error(`${name}: ${m}`);
    },
  });
  controller.attach({ fleet: link });
  link.start();
  await ready;
  const m = { name, link, nft, committed };
  members.push(m);
  return m;
}

async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error('timed out');
    await sleep(1);
  }
}

try {
  await redis.start();
  const a = await member('a');
  const b = await member('b');

  // latency: one grant at a time, A -> B
  const lat: number[] = [];
  for (let i = 0; i < LATENCY_GRANTS; i++) {
    const src = source(i);
    const t = performance.now();
    a.link.share({ door: ssh, source: src, family: 4 }, 600_000);
    await waitFor(() => b.committed.has(src), 5000);
    lat.push(b.committed.get(src)! - t);
  }
  lat.sort((x, y) => x - y);
  console.log(`latency A -> element committed on B: p50 ${quantile(lat, 0.5).toFixed(2)} ms, p99 ${quantile(lat, 0.99).toFixed(2)} ms over ${LATENCY_GRANTS} grants`);
  reportRow({ bench: 'fleet', case: 'knock on A -> element committed on B', values: { 'p50 ms': quantile(lat, 0.5), 'p99 ms': quantile(lat, 0.99) } });

  // sustained: three members, each sharing a third of the rate
  const c = await member('c');
  const all = [a, b, c];
  for (const m of all) m.committed.clear();
  const sharedAt = new Map<string, number>();
  const total = RATE * SECONDS;
  const t0 = performance.now();
  let issued = 0;
  while (issued < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
    for (; issued < due; issued++) {
      const src = source(100_000 + issued);
      sharedAt.set(src, performance.now());
      all[issued % 3].link.share({ door: ssh, source: src, family: 4 }, 600_000);
    }
    await sleep(1);
  }
  // each grant is applied on the two members that did not make it
  await waitFor(() => all.reduce((n, m) => n + m.committed.size, 0) >= 2 * total, 60_000);
  const elapsed = (performance.now() - t0) / 1000;
  const sus: number[] = [];
  for (const m of all) for (const [src, at] of m.committed) sus.push(at - sharedAt.get(src)!);
  sus.sort((x, y) => x - y);
  console.log(`sustained: ${total} grants at ${RATE}/s over 3 members, all applied everywhere in ${elapsed.toFixed(2)} s; latency p50 ${quantile(sus, 0.5).toFixed(2)} ms p99 ${quantile(sus, 0.99).toFixed(2)} ms`);
  reportRow({ bench: 'fleet', case: `sustained ${RATE} grants/s, 3 members (one process)`, values: { 'grants/s': total / elapsed, 'p50 ms': quantile(sus, 0.5), 'p99 ms': quantile(sus, 0.99) } });

  // JS cost per remote grant: B alone receives messages published by a plain client
  for (const m of [a, c]) await m.link.close();
  const costN = SHORT ? 10_000 : 50_000;
  const raws: string[] = [];
  const exp = Date.now() + 600_000;
  for (let i = 0; i < costN; i++) raws.push(encodeMessage(KEY, 'bench', { type: 'grant', member: 'x', door: 'ssh', family: 4, subject: source(300_000 + i), expiryMs: exp, nonce: newNonce(), seq: i }));
  b.committed.clear();
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  for (let i = 0; i < costN; i += 1000) await Promise.all(raws.slice(i, i + 1000).map((r) => redis.command(['PUBLISH', 'kf:{bench}:grants', r])));
  await waitFor(() => b.committed.size >= costN, 60_000);
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = (cpu.user + cpu.system) / costN;
  console.log(`JS cost per remote grant (this process: the receiving member and the publishing client): ${cpuUs.toFixed(1)} µs CPU, ${costN} grants in ${((performance.now() - w0) / 1000).toFixed(2)} s`);
  reportRow({ bench: 'fleet', case: 'CPU per remote grant (receiver + publishing client)', values: { 'µs': cpuUs } });

  // catch-up: N open grants in the store, a member joins
  const pipeline: Promise<unknown>[] = [];
  for (let i = 0; i < CATCH_UP; i++) {
    const raw = encodeMessage(KEY, 'bench', { type: 'grant', member: 'x', door: 'ssh', family: 4, subject: source(400_000 + i), expiryMs: exp, nonce: newNonce(), seq: i });
    pipeline.push(redis.command(['SET', `kf:{bench}:g:ssh|4|${source(400_000 + i)}`, raw, 'PXAT', String(exp)]));
    if (pipeline.length >= 5000) await Promise.all(pipeline.splice(0));
  }
  await Promise.all(pipeline);
  const stored = (await redis.command(['DBSIZE'])) as number;
  const j0 = performance.now();
  const d = await member('d');
  const joinMs = performance.now() - j0;
  console.log(`catch-up: member joined with ${stored} keys in the store; ${d.link.stats.lastCatchUp?.grants} grants read and committed in ${d.link.stats.lastCatchUp?.ms.toFixed(0)} ms (start to ready ${joinMs.toFixed(0)} ms incl. nft table install)`);
  reportRow({ bench: 'fleet', case: `catch-up of ${CATCH_UP} grants`, values: { ms: d.link.stats.lastCatchUp?.ms ?? NaN } });
} finally {
  for (const m of members) {
    await m.link.close().catch(() => undefined);
    await m.nft.close().catch(() => undefined);
  }
  lab.destroy();
  await redis.kill();
  rmSync(dir, { recursive: true, force: true });
}
