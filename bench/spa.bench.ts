// SPA under a flood of forged packets (issue 13), side by side with Debian's fwknopd on the same machine:
// 1. HMAC rejections per second on one thread: the native matcher's feed() alone (frame parse + HMAC check
//    of a batch, no capture), and the TS matcher's for the ratio; random base64 payloads of fwknop's size.
// 2. Through the capture path: the daemon with one capture thread on a veth, bench/loadgen flooding the SPA
//    port as fast as it can; packets the daemon counted per second, ring drops, CPU per packet.
// 3. Legitimate SPA packets (made by the stock fwknop client just before each point, sent by the generator
//    among the flood) at rising flood rates: grants and their latency (generator send -> the grant line
//    read by this process) for knockd-fast, and for fwknopd -t (test mode: no firewall change; "--test
//    mode enabled, skipping firewall manipulation" is its grant) on the same interface, one after the
//    other, as Debian configures it and with its capture loop tuned; the first rate at which each misses
//    a legitimate packet.
// Root only for 2 and 3 (two namespaces and a veth, removed afterwards). KNOCKD_BENCH_SHORT=1: short runs.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { batchFromFrames } from '../src/match/frame.js';
import type { FrameBatch, Matcher } from '../src/match/matcher-api.js';
import { LinkType } from '../src/match/matcher-api.js';
import { TsMatcher } from '../src/match/matcher.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { packageRoot } from '../src/native.js';
import { compile, config } from '../test/helpers/doors.js';
import { knockFrame, rng } from '../test/helpers/packets.js';
import { isRoot, T0 } from '../test/helpers/env.js';
import { fwknopPayload, keyGen, spaDoor, writeKeyFile, type FwknopKeys } from '../test/helpers/spa.js';
import {
  buildTools, CLK_TCK, createLoadNet, ensureAddon, nowUs, percentile, readCpuTicks, runLoadgen,
  METRICS_PORT, scrapeMetrics, sleep, waitForExit, waitForLine, type LoadNet,
} from './load.js';
import { reportRow } from './report.js';

const SHORT = process.env.KNOCKD_BENCH_SHORT === '1';
const SPA_PORT = 62201;
const FORGED_LEN = 184; // what `fwknop -A tcp/22 -s` sends
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: packageRoot, encoding: 'utf8' }).trim();
console.log(`spa bench at ${commit}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on this machine`);

// --- 1. the check alone --------------------------------------------------------------------------------

function forgedBatch(n: number, seed: number): FrameBatch {
  const rand = rng(seed);
  return batchFromFrames(
    Array.from({ length: n }, (_, i) => ({
      data: knockFrame(
        { src: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, dst: '192.0.2.2', dport: SPA_PORT, proto: 'udp' },
        { data: Uint8Array.from({ length: FORGED_LEN }, () => B64.charCodeAt(Math.floor(rand() * 64))) },
      ),
      timeUs: T0 + i,
      linkType: LinkType.ETHERNET,
    })),
  );
}

/**
 * Rounds of feeding the batch for `ms` on this thread: the median forged packets rejected per second of
 * wall time, and per second of this process's CPU time (what one thread does when the shared machine
 * lets it run: feed() is synchronous and nothing else runs meanwhile).
 */
function rejectionRate(m: Matcher, batch: FrameBatch, rounds: number, ms: number): { wall: number; cpu: number } {
  const n = batch.timestampsUs.length;
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const before = m.stats().spaRejected;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    let fed = 0;
    while (performance.now() - t0 < ms) {
      m.feed(batch);
      fed += n;
    }
    const s = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    if (m.stats().spaRejected - before !== fed) throw new Error(`the matcher rejected ${m.stats().spaRejected - before} of ${fed} forged packets`);
    wall.push(fed / s);
    cpu.push(fed / ((c.user + c.system) / 1e6));
  }
  const median = (a: number[]) => a.sort((x, y) => x - y)[a.length >> 1];
  return { wall: median(wall), cpu: median(cpu) };
}

const keys = keyGen();
const program = compile(config([spaDoor('spa', keys)]), { eventBudget: 2000 }).words;
const batch = forgedBatch(4096, 1);
const native = new NativeMatcher();
native.load(program);
const ts = new TsMatcher();
ts.load(program);
const nativeRate = rejectionRate(native, batch, SHORT ? 3 : 7, SHORT ? 300 : 1000);
const tsRate = rejectionRate(ts, batch, 3, SHORT ? 300 : 1000);
reportRow({
  bench: 'spa',
  case: `forged ${FORGED_LEN}-byte SPA packets, native matcher feed(), 1 thread`,
  values: { 'rejected/CPU-s': Math.round(nativeRate.cpu), 'CPU ns/pkt': Math.round(1e9 / nativeRate.cpu), 'rejected/s': Math.round(nativeRate.wall) },
});
reportRow({
  bench: 'spa',
  case: `the same, TS matcher feed()`,
  values: { 'rejected/CPU-s': Math.round(tsRate.cpu), 'CPU ns/pkt': Math.round(1e9 / tsRate.cpu), 'rejected/s': Math.round(tsRate.wall), 'native/TS': +(nativeRate.cpu / tsRate.cpu).toFixed(1) },
});

// --- 2 and 3. in namespaces ----------------------------------------------------------------------------

// fwknopd as Debian installs it (PCAP_DISPATCH_COUNT 100, PCAP_LOOP_SLEEP 100000 µs: at most 1,000 packets
// a second leave its capture buffer) and tuned as far as its config goes (8,000,000 per dispatch, 1 ms sleep)
const FWKNOPD_CONFIGS = { fwknopd: '', 'fwknopd-tuned': 'PCAP_DISPATCH_COUNT 8000000;\nPCAP_LOOP_SLEEP 1000;\n' } as const;
const SYSTEMS = ['knockd-fast', 'fwknopd', 'fwknopd-tuned'] as const;

interface Point {
  system: (typeof SYSTEMS)[number];
  rateTarget: number;
  offered: number;
  legit: number;
  granted: number;
  latencyMs: number[];
}

/** Starts a system on the receiving end; `grants` fills with source -> the time its grant line was read. */
async function startSystem(net: LoadNet, system: Point['system'], dir: string, grants: Map<string, number>): Promise<ChildProcess> {
  let child: ChildProcess;
  const watch = (stream: NodeJS.ReadableStream, re: RegExp) =>
    createInterface({ input: stream }).on('line', (line) => {
      const m = re.exec(line);
      if (m && !grants.has(m[1])) grants.set(m[1], nowUs());
    });
  if (system === 'knockd-fast') {
    // the checkout's bin/ runs src/ through tsx; one capture thread
    const args = [join(packageRoot, 'bin', 'knockd-fast.js'), '-c', join(dir, 'knockd.conf'), '-i', net.receiverIf, '-v'];
    args.push('--metrics', `127.0.0.1:${METRICS_PORT}`, '--state-file', join(dir, 'state.json'), '--matcher', 'native', '--threads', '1');
    child = net.lab.spawn('b', process.execPath, args, { cwd: packageRoot });
    await waitForLine(child, 'stdout', /listening on|starting up/, 30_000);
    watch(child.stdout!, /^(\S+): spa: OPEN SESAME/);
  } else {
    const run = join(dir, 'fwknopd-run');
    rmSync(run, { recursive: true, force: true });
    mkdirSync(run, { mode: 0o700 });
    const conf = join(dir, `${system}.conf`);
    writeFileSync(conf, FWKNOPD_CONFIGS[system], { mode: 0o600 });
    child = net.lab.spawn('b', 'fwknopd', ['-c', conf, '-a', join(dir, 'access.conf'), '-i', net.receiverIf, '-f', '-t', '-v', '-r', run, '-d', join(run, 'digest.cache'), '-p', join(run, 'pid')]);
    const accepted = /^\[([\d.]+)\] \(stanza #\d+\) --test mode enabled, skipping firewall manipulation/;
    watch(child.stdout!, accepted);
    watch(child.stderr!, accepted);
    await Promise.any([waitForLine(child, 'stderr', /main event loop/, 30_000), waitForLine(child, 'stdout', /main event loop/, 30_000)]);
  }
  await sleep(300); // the capture socket is bound before the ready line; let it settle
  return child;
}

/** CPU ticks of the daemon's capture thread (native/core/capture.cc names it kf-capture-N). */
function captureThreadTicks(pid: number): number {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    if (readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== 'kf-capture-0') continue;
    const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime
  }
  throw new Error(`no kf-capture-0 thread in process ${pid}`);
}

async function stopSystem(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  await waitForExit(child, 5_000);
}

/** Fresh legitimate payloads (their timestamps must be within 120 s when they arrive), one per line. */
function legitFile(dir: string, k: FwknopKeys, n: number): string {
  const path = join(dir, 'legit.spa');
  writeFileSync(path, Array.from({ length: n }, () => Buffer.from(fwknopPayload({ keys: k })).toString('latin1')).join('\n') + '\n');
  return path;
}

async function floodPoint(net: LoadNet, system: Point['system'], dir: string, rate: number, legit: number, durationS: number, graceS: number): Promise<Point> {
  const grants = new Map<string, number>();
  const child = await startSystem(net, system, dir, grants);
  try {
    const payloads = legitFile(dir, keys, legit);
    const gen = await runLoadgen(net, { knockers: legit, noise: 'spa', ports: [SPA_PORT], spaPayloads: payloads, rate, durationS, seed: 7 + rate });
    const deadline = performance.now() + graceS * 1000;
    while (grants.size < gen.knockers.length && performance.now() < deadline) await sleep(50);
    const latencyMs = gen.knockers.flatMap((k) => (grants.has(k.src) && k.lastSentUs > 0 ? [(grants.get(k.src)! - k.lastSentUs) / 1000] : [])).sort((a, b) => a - b);
    return { system, rateTarget: rate, offered: Math.round(gen.noiseRate), legit: gen.knockers.length, granted: latencyMs.length, latencyMs };
  } finally {
    await stopSystem(child);
  }
}

async function inNamespaces(): Promise<void> {
  ensureAddon();
  buildTools();
  const dir = mkdtempSync(join(tmpdir(), 'kf-spa-bench-'));
  const net = createLoadNet();
  try {
    const keyFile = writeKeyFile(dir, keys);
    writeFileSync(join(dir, 'knockd.conf'), `[options]\n  LogFile = ${join(dir, 'knockd.log')}\n  NftTable = kf_spa_bench\n[spa]\n  SPA_Key_File = ${keyFile}\n  Open = 22/tcp\n  Open_Timeout = 30\n`);
    writeFileSync(join(dir, 'access.conf'), `SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\nOPEN_PORTS tcp/22\n`, { mode: 0o600 });

    // 2. the capture path: one capture thread, the generator as fast as it goes, no legitimate packets
    {
      const grants = new Map<string, number>();
      const child = await startSystem(net, 'knockd-fast', dir, grants);
      try {
        const m0 = await scrapeMetrics(net);
        const cpu0 = readCpuTicks(child.pid!);
        const thread0 = captureThreadTicks(child.pid!);
        const gen = await runLoadgen(net, { knockers: 0, noise: 'spa', ports: [SPA_PORT], rate: 0, durationS: SHORT ? 3 : 8, seed: 3 });
        await sleep(500);
        const m1 = await scrapeMetrics(net);
        const cpuS = (readCpuTicks(child.pid!) - cpu0) / CLK_TCK;
        const threadS = (captureThreadTicks(child.pid!) - thread0) / CLK_TCK;
        const seen = (m1.get('knockd_packets_total') ?? 0) - (m0.get('knockd_packets_total') ?? 0);
        const ringDrops = (m1.get('knockd_drops_total{where="ring"}') ?? 0) - (m0.get('knockd_drops_total{where="ring"}') ?? 0);
        reportRow({
          bench: 'spa',
          case: 'forged SPA flood through the capture path, daemon --threads 1, generator at full speed (CPU: the capture thread)',
          values: {
            'offered/s': Math.round(gen.noiseRate),
            'rejected/s': Math.round(seen / gen.elapsedS),
            'ring drops': ringDrops,
            'rejected/CPU-s': Math.round(seen / Math.max(threadS, 1 / CLK_TCK)),
            'CPU ns/pkt': Math.round((threadS * 1e9) / Math.max(1, seen)),
            'process CPU ns/pkt': Math.round((cpuS * 1e9) / Math.max(1, seen)),
          },
        });
      } finally {
        await stopSystem(child);
      }
    }

    // 3. legitimate packets among rising floods, each system on its own
    const rates = SHORT ? [2_000, 0] : [500, 1_000, 2_000, 5_000, 20_000, 100_000, 0];
    const legit = SHORT ? 5 : 20;
    const durationS = SHORT ? 4 : 10;
    const points: Point[] = [];
    for (const rate of rates) {
      for (const system of SYSTEMS) {
        const p = await floodPoint(net, system, dir, rate, legit, durationS, SHORT ? 5 : 10);
        points.push(p);
        reportRow({
          bench: 'spa',
          case: `${system === 'knockd-fast' ? system : `${system} -t`}, legitimate SPA among ${rate ? `${rate} forged/s` : 'a full-speed flood'}`,
          values: { 'offered/s': p.offered, granted: `${p.granted}/${p.legit}`, 'p50 ms': percentile(p.latencyMs, 50) ?? '-', 'p99 ms': percentile(p.latencyMs, 99) ?? '-' },
        });
      }
    }
    for (const system of SYSTEMS) {
      const own = points.filter((p) => p.system === system);
      const missed = own.filter((p) => p.granted < p.legit).sort((a, b) => a.offered - b.offered)[0];
      reportRow({ bench: 'spa', case: `${system}: first flood rate at which a legitimate packet was missed`, values: { 'offered/s': missed ? missed.offered : `none up to ${Math.max(...own.map((p) => p.offered))}` } });
    }
  } finally {
    net.lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!isRoot) console.log('spa bench: the capture path and fwknopd parts skipped (need root for namespaces)');
else await inNamespaces();
