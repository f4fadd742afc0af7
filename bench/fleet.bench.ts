// Fleet (issue 12): grants shared through a real redis-server (unix socket, started here) between members
// that are processes of their own (bench/fleet-member.ts: NftBackend in a private namespace, DoorController,
// FleetLink, a log file), as daemons are. Times are compared across processes on CLOCK_MONOTONIC.
//   latency:   share() on A (what the controller calls after a completed knock) -> element committed on B
//   sustained: 3 members each sharing RATE/3 grants per second for SECONDS; every grant applied on the 2
//              others: per member, the rate applied and share -> committed p50/p99
//   JS cost:   CPU of a member's process per remote grant (decode, verify, check, apply, nft batched), the
//              grants published from this process (not counted)
//   catch-up:  a member joining with CATCH_UP open grants in the store (nothing else), from start to every
//              element committed, and its CPU per grant
// On a 2-core machine the sustained phase runs 3 members + redis-server + this process on 2 cores.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeMessage, newNonce } from '../src/fleet/message.js';
import { RedisServer } from '../src/tools/fleetlab.js';
import { Lab } from '../src/tools/netns.js';
import { BENCH_FLEET, BENCH_KEY, benchIndex, benchSource as source, type MemberReply, type MemberRequest } from './fleet-protocol.js';
import { reportRow } from './report.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';
/** phases to run (default all): latency, sustained, cost, catchup */
const PHASES = (process.env.KNOCKD_BENCH_FLEET ?? 'latency,sustained,cost,catchup').split(',');
const LATENCY_GRANTS = SHORT ? 500 : 2000;
const RATE = 10_000;
const SECONDS = SHORT ? 2 : 5;
const COST_GRANTS = SHORT ? 10_000 : 50_000;
const CATCH_UP = SHORT ? 20_000 : 100_000;
const CHANNEL = `kf:{${BENCH_FLEET}}:grants`;

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const clockMs = () => Number(process.hrtime.bigint()) / 1e6;
const load = () => loadavg()[0].toFixed(1);

class Member {
  private readonly replies: ((r: MemberReply) => void)[] = [];
  onCommitted: ((sources: string[]) => void) | undefined;
  readonly ready: Promise<Extract<MemberReply, { kind: 'ready' }>>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.ready = new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`member ${name} exited (status ${code})`)));
      child.on('message', (r: MemberReply) => {
        if (r.kind === 'ready') resolve(r);
        else if (r.kind === 'committed') this.onCommitted?.(r.sources);
        else this.replies.shift()?.(r);
      });
    });
  }

  ask<K extends MemberReply['kind']>(q: MemberRequest): Promise<Extract<MemberReply, { kind: K }>> {
    return new Promise((resolve) => {
      this.replies.push(resolve as (r: MemberReply) => void);
      this.child.send(q);
    });
  }
}

const dir = mkdtempSync(join(tmpdir(), 'kf-fleet-bench-'));
const redis = new RedisServer(dir);
const lab = new Lab('fleetbench');
const members: Member[] = [];

async function member(name: string): Promise<Member> {
  lab.ns(name);
  const child = fork(join(import.meta.dirname, 'fleet-member.ts'), [name, redis.url, lab.name(name), join(dir, `${name}.log`)], { execArgv: ['--import', 'tsx', ...(process.env.PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.PROF] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const m = new Member(name, child);
  members.push(m);
  await m.ready;
  return m;
}

async function stop(m: Member): Promise<void> {
  const exited = new Promise((r) => m.child.once('exit', r));
  await m.ask({ kind: 'stop' });
  await exited;
  members.splice(members.indexOf(m), 1);
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
}

const signed = (i: number, exp: number) => encodeMessage(BENCH_KEY, BENCH_FLEET, { type: 'grant', member: 'x', door: 'ssh', family: 4, subject: source(i), expiryMs: exp, nonce: newNonce(), seq: i });

try {
  await redis.start();
  console.log(`fleet bench: load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} at start`);

  if (PHASES.includes('latency')) {
    // one grant at a time, A -> B
    const [a, b] = [await member('a'), await member('b')];
    await b.ask({ kind: 'notify', on: true });
    for (let i = 0; i < LATENCY_GRANTS; i++) {
      const committed = new Promise<void>((resolve) => (b.onCommitted = (s) => s.includes(source(i)) && resolve()));
      a.child.send({ kind: 'share', start: i, end: i + 1, step: 1, rate: 1, t0: clockMs() } satisfies MemberRequest);
      await committed;
    }
    const shared = new Map((await a.ask<'report'>({ kind: 'report' })).sharedAt);
    const lat = (await b.ask<'report'>({ kind: 'report' })).committed.map(([s, t]) => t - shared.get(benchIndex(s))!);
    lat.sort((x, y) => x - y);
    console.log(`latency A -> element committed on B (separate processes): p50 ${quantile(lat, 0.5).toFixed(2)} ms, p99 ${quantile(lat, 0.99).toFixed(2)} ms over ${lat.length} grants (load ${load()})`);
    reportRow({ bench: 'fleet', case: 'knock on A -> element committed on B', values: { 'p50 ms': quantile(lat, 0.5), 'p99 ms': quantile(lat, 0.99) } });
    await stop(a);
    await stop(b);
    await redis.command(['FLUSHDB']);
  }

  if (PHASES.includes('sustained')) {
    // three members, each sharing a third of the rate, in phase from one start time
    const all = [await member('s0'), await member('s1'), await member('s2')];
    const total = RATE * SECONDS;
    const base = 1_000_000;
    const t0 = clockMs() + 200;
    await Promise.all(all.map((m, k) => m.ask({ kind: 'share', start: base + k, end: base + total, step: 3, rate: RATE / 3, t0 })));
    const offeredS = (clockMs() - t0) / 1000;
    const expected = Math.round((2 * total) / 3);
    await waitFor(async () => (await Promise.all(all.map((m) => m.ask<'stats'>({ kind: 'stats' })))).every((s) => s.applied >= expected - 1), 120_000, 'every grant applied on every other member');
    const reports = await Promise.all(all.map((m) => m.ask<'report'>({ kind: 'report' })));
    const sharedAt = new Map(reports.flatMap((r) => r.sharedAt));
    for (const [k, m] of all.entries()) {
      const committed = reports[k].committed;
      const lat = committed.map(([s, t]) => t - sharedAt.get(benchIndex(s))!);
      lat.sort((x, y) => x - y);
      const last = Math.max(...committed.map(([, t]) => t));
      const rate = committed.length / ((last - t0) / 1000);
      console.log(`sustained, member ${m.name}: ${committed.length} remote grants applied at ${rate.toFixed(0)}/s (offered ${RATE}/s fleet-wide for ${offeredS.toFixed(2)} s); share -> committed p50 ${quantile(lat, 0.5).toFixed(2)} ms p99 ${quantile(lat, 0.99).toFixed(2)} ms (load ${load()})`);
      reportRow({ bench: 'fleet', case: `sustained ${RATE} grants/s fleet-wide, 3 member processes: member ${m.name}`, values: { 'grants/s': rate, 'p50 ms': quantile(lat, 0.5), 'p99 ms': quantile(lat, 0.99) } });
    }
    for (const m of all) await stop(m);
    await redis.command(['FLUSHDB']);
  }

  const exp = Date.now() + 600_000;
  if (PHASES.includes('cost')) {
    // a member alone receives grants published by this process's client
    const r = await member('r');
    const raws: string[] = [];
    for (let i = 0; i < COST_GRANTS; i++) raws.push(signed(2_000_000 + i, exp));
    await r.ask({ kind: 'cpu-start' });
    const w0 = performance.now();
    for (let i = 0; i < COST_GRANTS; i += 1000) await Promise.all(raws.slice(i, i + 1000).map((raw) => redis.command(['PUBLISH', CHANNEL, raw])));
    let stats = { applied: 0, cpuUs: 0, systemUs: 0 };
    await waitFor(async () => (stats = await r.ask<'stats'>({ kind: 'stats' })).applied >= COST_GRANTS, 60_000, 'every published grant applied');
    const cpuUs = stats.cpuUs / COST_GRANTS;
    console.log(`CPU per remote grant (the member's process only): ${cpuUs.toFixed(1)} µs (${(stats.systemUs / COST_GRANTS).toFixed(1)} µs of it in the kernel), ${COST_GRANTS} grants published in bursts of 1,000, applied in ${((performance.now() - w0) / 1000).toFixed(2)} s (load ${load()})`);
    reportRow({ bench: 'fleet', case: 'CPU per remote grant (member process)', values: { µs: cpuUs } });
    await stop(r);
    await redis.command(['FLUSHDB']);
  }

  if (PHASES.includes('catchup')) {
    // exactly CATCH_UP open grants in the store, a member joins
    const pipeline: Promise<unknown>[] = [];
    for (let i = 0; i < CATCH_UP; i++) {
      pipeline.push(redis.command(['SET', `kf:{${BENCH_FLEET}}:g:ssh|4|${source(3_000_000 + i)}`, signed(3_000_000 + i, exp), 'PXAT', String(exp)]));
      if (pipeline.length >= 5000) await Promise.all(pipeline.splice(0));
    }
    await Promise.all(pipeline);
    const stored = (await redis.command(['DBSIZE'])) as number;
    const d = await member('d');
    const { catchUp, catchUpCpuUs } = await d.ready;
    console.log(
      `catch-up: ${stored} grants in the store; ${catchUp.grants} read, verified and committed in ${catchUp.ms.toFixed(0)} ms; CPU ${(catchUpCpuUs / catchUp.grants).toFixed(1)} µs per grant (connect included) (load ${load()})`,
    );
    reportRow({ bench: 'fleet', case: `catch-up of ${CATCH_UP} grants`, values: { ms: catchUp.ms, 'µs CPU/grant': catchUpCpuUs / catchUp.grants } });
    await stop(d);
  }
} finally {
  for (const m of members) m.child.kill('SIGKILL');
  lab.destroy();
  await redis.kill();
  rmSync(dir, { recursive: true, force: true });
}
