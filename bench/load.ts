// The load benchmark (`npm run bench:load`, issues 6 and 17): the same knock traces, on the same machine,
// in the same run, against knockd-fast (native matcher with 1 and 2 threads, TS matcher), Debian's knockd
// 0.8, the nftables-only recipe (per-step sets updated from the ruleset, at the kernel's default set size
// and enlarged) and the count-only TPACKET_V3 reader. The generator (bench/loadgen) sends from one end of a
// veth pair between two private namespaces; each system captures on the other end. The equal-CPU scenario
// holds each user-space system to the same share of one core with CFS bandwidth control (cgroup v1
// cpu.cfs_quota_us or v2 cpu.max), so its break point is set by its cost per frame, not by the generator.
// knockd-fast runs as an installed package does (bin/ → a dist/ compiled into a temp directory for the run),
// so its start-up, CPU and RSS are the user's. Writes bench/results/load-<date>.{json,md,svg} (and
// -cpu-<budget>.svg).
//
// Detection: `OPEN SESAME` lines per legitimate source on each system's stdout (-v). Latency: from the
// moment the generator handed the last knock to the kernel to the moment the harness read the line.
// CPU: /proc/<pid>/stat utime+stime over the traffic. Memory: VmRSS sampled over time, and VmHWM; the
// memory scenario: VmRSS idle and with MaxTracked sources tracked.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Lab } from '../src/tools/netns.js';
import { packageRoot } from '../src/native.js';

// Not under build/: that folder belongs to cmake-js, which may wipe it while the run goes on. Not in the
// checkout either (npm test builds them and must leave it clean): a temp directory per checkout, which
// make keeps up to date.
export const TOOLS_DIR = join(tmpdir(), `knockd-fast-bench-tools-${createHash('sha256').update(packageRoot).digest('hex').slice(0, 12)}`);
export const LOADGEN = join(TOOLS_DIR, 'loadgen');
export const COUNTER = join(TOOLS_DIR, 'counter');
const KNOCK_PORTS = [7000, 8000, 9000];
const SENDER_ADDR = '192.0.2.1';
export const RECEIVER_ADDR = '192.0.2.2';
export const METRICS_PORT = 9464;
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Builds the generator and the counter into TOOLS_DIR (make, outside the addon). */
export function buildTools(): void {
  execFileSync('make', ['-s', '-C', join(packageRoot, 'bench', 'loadgen'), `OUT=${TOOLS_DIR}`], { stdio: 'inherit' });
}

/** The two test namespaces and the veth between them: a sends (veth-b), b receives (veth-a). */
export interface LoadNet {
  lab: Lab;
  senderIf: string;
  receiverIf: string;
  senderMac: string;
  receiverMac: string;
}

export function createLoadNet(): LoadNet {
  const lab = new Lab('load');
  for (const side of ['a', 'b']) {
    lab.ns(side);
    // No IPv6 on these links: no router solicitations or MLD reports among the counted frames.
    lab.exec(side, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  }
  const [senderIf, receiverIf] = lab.link({ a: 'a', b: 'b', aAddrs: [`${SENDER_ADDR}/24`], bAddrs: [`${RECEIVER_ADDR}/24`] });
  const mac = (side: string, ifname: string) =>
    (JSON.parse(lab.exec(side, 'ip', ['-j', 'link', 'show', ifname])) as { address: string }[])[0].address;
  return { lab, senderIf, receiverIf, senderMac: mac('a', senderIf), receiverMac: mac('b', receiverIf) };
}

export interface LoadgenSpec {
  knockers: number;
  noise: 'none' | 'background' | 'flood' | 'pairs' | 'spa';
  /** default: the knock ports 7000,8000,9000 */
  ports?: number[];
  /** a file of SPA payloads, one per line: the legitimate knockers send these instead (bench/spa.bench.ts) */
  spaPayloads?: string;
  rate: number; // noise frames/s, 0 = as fast as possible
  durationS: number;
  count?: number;
  dupGapMs?: number;
  seed?: number;
}

export interface LoadgenReport {
  stoppedBy: 'duration' | 'count' | 'signal' | 'error';
  startUs: number;
  elapsedS: number;
  sent: number;
  sentLegit: number;
  sentNoise: number;
  noiseRate: number;
  enobufsRetries: number;
  sendErrors: number;
  legitScheduled: number;
  knockers: { src: string; firstSentUs: number; lastSentUs: number }[];
}

export function loadgenArgs(net: Pick<LoadNet, 'senderIf' | 'senderMac' | 'receiverMac'>, spec: LoadgenSpec): string[] {
  return [
    '--interface', net.senderIf, '--src-mac', net.senderMac, '--dst-mac', net.receiverMac,
    '--dst-ip', RECEIVER_ADDR, '--ports', (spec.ports ?? KNOCK_PORTS).join(','), '--knockers', String(spec.knockers),
    '--noise', spec.noise, '--rate', String(spec.rate), '--duration', String(spec.durationS),
    '--count', String(spec.count ?? 0), '--dup-gap-ms', String(spec.dupGapMs ?? 0), '--seed', String(spec.seed ?? 1),
    ...(spec.spaPayloads ? ['--spa-payloads', spec.spaPayloads] : []),
  ];
}

/** Runs the generator in the sending namespace; resolves with its report. */
export function runLoadgen(net: LoadNet, spec: LoadgenSpec): Promise<LoadgenReport> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      ['netns', 'exec', net.lab.name('a'), LOADGEN, ...loadgenArgs(net, spec)],
      { timeout: (spec.durationS + 30) * 1000, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`loadgen failed: ${stderr.trim() || err.message}`));
        else resolve(JSON.parse(stdout) as LoadgenReport);
      },
    );
  });
}

/** Starts the count-only reader on the receiving end; resolves once its ring is bound. */
export async function startCounter(net: LoadNet): Promise<ChildProcess> {
  const child = net.lab.spawn('b', COUNTER, ['--interface', net.receiverIf]);
  await waitForLine(child, 'stderr', /^ready$/, 10_000);
  return child;
}

export interface CounterReport {
  elapsedS: number;
  packets: number;
  kernelPackets: number;
  ringDrops: number;
  queueFreezes: number;
}

/** Stops the counter (SIGTERM) and returns its report. */
export async function stopCounter(child: ChildProcess): Promise<CounterReport> {
  const out: string[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
  child.kill('SIGTERM');
  await waitForExit(child, 5_000);
  return JSON.parse(out.join('')) as CounterReport;
}

export function nowUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

export function waitForLine(child: ChildProcess, stream: 'stdout' | 'stderr', re: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child[stream]! });
    const seen: string[] = [];
    const done = (err?: Error, line?: string) => {
      clearTimeout(timer);
      rl.removeListener('line', onLine);
      child.removeListener('exit', onExit);
      if (err) reject(err);
      else resolve(line!);
    };
    const onLine = (line: string) => {
      seen.push(line);
      if (re.test(line)) done(undefined, line);
    };
    const onExit = (code: number | null) =>
      done(new Error(`exited (status ${code}) before printing ${re}; its ${stream}: ${seen.slice(-5).join(' | ')}`));
    const timer = setTimeout(() => done(new Error(`no line matching ${re} within ${timeoutMs} ms`)), timeoutMs);
    rl.on('line', onLine);
    child.once('exit', onExit);
  });
}

export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------
// Systems under test

type SystemId = 'native-1' | 'native-2' | 'ts' | 'knockd' | 'nft' | 'nft-large' | 'counter';

interface SystemDef {
  id: SystemId;
  label: string;
  /** true if it detects knocks (everything but the counter) */
  detects: boolean;
  /** the nftables recipe: rules in the kernel, no process (no CPU budget, no latency line, no RSS) */
  kernelOnly?: { setSize: number | null };
}

const SYSTEMS: SystemDef[] = [
  { id: 'native-1', label: 'knockd-fast, native matcher, 1 thread', detects: true },
  { id: 'native-2', label: 'knockd-fast, native matcher, 2 threads', detects: true },
  { id: 'ts', label: 'knockd-fast, --matcher ts', detects: true },
  { id: 'knockd', label: 'knockd 0.8 (Debian)', detects: true },
  { id: 'nft', label: 'nftables recipe, sets at the default size (65,535)', detects: true, kernelOnly: { setSize: null } },
  { id: 'nft-large', label: 'nftables recipe, sets enlarged to 1,048,576', detects: true, kernelOnly: { setSize: 1_048_576 } },
  { id: 'counter', label: 'count-only TPACKET_V3 reader (ceiling)', detects: false },
];

/**
 * knockd-fast as an installed package runs it: bin/knockd-fast.js beside a compiled dist/ (no src/, so
 * bin/ takes dist/), package.json and the addon under build/Release, in a temp directory made once per
 * run (never dist/ in the checkout, which keeps bin/ on the sources). node_modules is the checkout's.
 */
export function stageInstalledPackage(): string {
  const stage = mkdtempSync(join(tmpdir(), 'knockd-fast-load-package-'));
  try {
    cpSync(join(packageRoot, 'bin'), join(stage, 'bin'), { recursive: true });
    cpSync(join(packageRoot, 'package.json'), join(stage, 'package.json'));
    mkdirSync(join(stage, 'build', 'Release'), { recursive: true });
    cpSync(join(packageRoot, 'build', 'Release', 'knockd_fast.node'), join(stage, 'build', 'Release', 'knockd_fast.node'));
    symlinkSync(join(packageRoot, 'node_modules'), join(stage, 'node_modules'));
    execFileSync(process.execPath, [join(packageRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(packageRoot, 'tsconfig.build.json'),
      '--outDir', join(stage, 'dist'), '--sourceMap', 'false', '--declaration', 'false'], { stdio: 'inherit' });
  } catch (err) {
    rmSync(stage, { recursive: true, force: true });
    throw err;
  }
  return stage;
}

function commandFor(sys: SystemId, conf: string, iface: string, stateFile: string, installed: string, nodeFlags: string[] = []): [string, string[]] {
  const fast = (extra: string[]): [string, string[]] => [
    process.execPath,
    [...nodeFlags, join(installed, 'bin', 'knockd-fast.js'), '-c', conf, '-i', iface, '-v',
      '--metrics', `127.0.0.1:${METRICS_PORT}`, '--state-file', stateFile, ...extra],
  ];
  switch (sys) {
    case 'native-1': return fast(['--matcher', 'native', '--threads', '1']);
    case 'native-2': return fast(['--matcher', 'native', '--threads', '2']);
    case 'ts': return fast(['--matcher', 'ts', '--threads', '1']);
    case 'knockd': return ['knockd', ['-c', conf, '-i', iface, '-v']];
    case 'counter': return [COUNTER, ['--interface', iface]];
    case 'nft':
    case 'nft-large':
      throw new Error(`${sys} runs no process`);
  }
}

const NFT_TABLE = 'knock_bench';

/**
 * The nftables wiki's port-knocking recipe for the same door: a set of (source, next port) candidates
 * with `flags timeout`, filled and advanced by the ruleset itself, and a set of sources that completed.
 * The recipe's sets have no size (the kernel then caps them at 65,535 elements); an operator expecting
 * floods would enlarge them. The per-step timeout is the door's seq_timeout (the recipe's example uses 1 s
 * per step; nftables has no whole-sequence timeout), the opened source stays 120 s (long enough to be
 * listed after the run). A full set refuses new elements: `add` then matches nothing.
 */
function nftRuleset(setSize: number | null): string {
  const size = setSize === null ? '' : ` size ${setSize};`;
  const [p1, p2, p3] = KNOCK_PORTS;
  return `table inet ${NFT_TABLE} {
  set clients { type ipv4_addr; flags timeout;${size} }
  set candidates { type ipv4_addr . inet_service; flags timeout;${size} }
  chain input {
    type filter hook input priority -10; policy accept;
    tcp dport ${p1} add @candidates { ip saddr . ${p2} timeout 25s }
    tcp dport ${p2} ip saddr . tcp dport @candidates add @candidates { ip saddr . ${p3} timeout 25s }
    tcp dport ${p3} ip saddr . tcp dport @candidates add @clients { ip saddr timeout 120s }
  }
}
`;
}

/** The sources in the recipe's `clients` set: the ones that completed the sequence. */
function nftClients(net: LoadNet): Set<string> {
  const out = JSON.parse(net.lab.exec('b', 'nft', ['-j', 'list', 'set', 'inet', NFT_TABLE, 'clients'])) as {
    nftables: { set?: { elem?: ({ elem: { val: string } } | string)[] } }[];
  };
  const found = new Set<string>();
  for (const item of out.nftables) {
    for (const e of item.set?.elem ?? []) found.add(typeof e === 'string' ? e : e.elem.val);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------
// CPU budgets (CFS bandwidth control)

/** A cgroup that holds what is put in it to `pct` % of one CPU: v2 cpu.max, else v1 cpu.cfs_quota_us. */
class CpuBudget {
  readonly path: string;
  private readonly v2: boolean;

  constructor(readonly pct: number, tag: string) {
    this.v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    const root = this.v2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/cpu';
    if (!this.v2 && !existsSync(join(root, 'cpu.cfs_quota_us'))) {
      throw new Error('no CPU bandwidth control: neither cgroup v2 (/sys/fs/cgroup/cgroup.controllers) nor the v1 cpu controller (/sys/fs/cgroup/cpu) is mounted');
    }
    if (this.v2 && !readFileSync(join(root, 'cgroup.subtree_control'), 'utf8').includes('cpu')) {
      writeFileSync(join(root, 'cgroup.subtree_control'), '+cpu');
    }
    this.path = join(root, `knockd-fast-bench-${process.pid}-${tag}`);
    mkdirSync(this.path, { recursive: true });
    const periodUs = 100_000;
    const quotaUs = Math.round((periodUs * pct) / 100);
    if (this.v2) writeFileSync(join(this.path, 'cpu.max'), `${quotaUs} ${periodUs}`);
    else {
      writeFileSync(join(this.path, 'cpu.cfs_period_us'), String(periodUs));
      writeFileSync(join(this.path, 'cpu.cfs_quota_us'), String(quotaUs));
    }
  }

  /** Moves a process, all its threads and its future children, into the budget. */
  add(pid: number): void {
    writeFileSync(join(this.path, 'cgroup.procs'), String(pid));
  }

  /** Periods in which the budget ran out, and the time spent waiting for the next one. */
  throttling(): { periods: number; throttled: number; throttledS: number } {
    const stat = new Map(readFileSync(join(this.path, 'cpu.stat'), 'utf8').trim().split('\n').map((l) => {
      const [k, v] = l.split(' ');
      return [k, Number(v)] as const;
    }));
    return {
      periods: stat.get('nr_periods') ?? 0,
      throttled: stat.get('nr_throttled') ?? 0,
      throttledS: this.v2 ? (stat.get('throttled_usec') ?? 0) / 1e6 : (stat.get('throttled_time') ?? 0) / 1e9,
    };
  }

  /** Removes the cgroup once nothing is left in it. */
  remove(): void {
    try {
      rmdirSync(this.path);
    } catch {
      /* a process is still exiting: the kernel keeps the group until it is gone; retried by the caller */
    }
  }
}

/** The door every system runs; Allow_Duplicates only where the scenario needs it and the system has it. */
function configText(o: { allowDuplicates: boolean; seqTimeoutS?: number; maxTracked?: number }): string {
  return [
    '[options]',
    ...(o.maxTracked === undefined ? [] : [`\tMaxTracked = ${o.maxTracked}`]),
    '',
    '[door]',
    `\tsequence    = ${KNOCK_PORTS.join(',')}`,
    `\tseq_timeout = ${o.seqTimeoutS ?? 25}`,
    '\ttcpflags    = syn',
    '\tcommand     = /bin/true',
    ...(o.allowDuplicates ? ['\tAllow_Duplicates = yes'] : []),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Scenarios

type ScenarioId = 'none' | 'background' | 'flood' | 'pairs' | 'cpu' | 'duplicates' | 'sustained' | 'memory';

interface ScenarioDef {
  id: ScenarioId;
  title: string;
  noise: LoadgenSpec['noise'];
  /** noise rates in frames/s; 0 = as fast as the generator can */
  rates: number[];
  dupGapMs: number;
  /** seconds per point, when not the run's --seconds */
  durationS?: number;
  /** the systems it applies to, when not all */
  systems?: SystemId[];
  /** run every rate once per CPU budget (% of one core) */
  budgets?: number[];
}

const SCENARIOS: ScenarioDef[] = [
  { id: 'none', title: '(a) legitimate knockers only', noise: 'none', rates: [0], dupGapMs: 0 },
  { id: 'background', title: '(b) background traffic to non-knock ports', noise: 'background', rates: [20_000, 0], dupGapMs: 0 },
  {
    id: 'flood',
    title: "(c) spoofed-source flood to the door's first port",
    noise: 'flood',
    rates: [1_000, 2_000, 3_000, 5_000, 10_000, 30_000, 100_000, 0],
    dupGapMs: 0,
  },
  {
    id: 'pairs',
    title: "(f) two-known-ports attack: spoofed sources send the door's first two ports",
    noise: 'pairs',
    rates: [1_000, 3_000, 10_000, 30_000, 100_000, 0],
    dupGapMs: 0,
  },
  {
    id: 'cpu',
    title: "(g) equal CPU: spoofed flood to the door's first port, each system held to the same share of one core",
    noise: 'flood',
    rates: [300, 1_000, 3_000, 10_000, 30_000, 50_000, 100_000, 200_000, 300_000, 500_000, 0],
    dupGapMs: 0,
    systems: ['native-1', 'native-2', 'ts', 'knockd', 'counter'],
    budgets: [5, 10, 25],
  },
  { id: 'duplicates', title: '(d) every legitimate knock sent twice (Allow_Duplicates)', noise: 'none', rates: [0], dupGapMs: 1 },
  {
    id: 'sustained',
    title: '(e) sustained flood at the generator maximum (memory over time)',
    noise: 'flood',
    rates: [0],
    dupGapMs: 0,
    durationS: 15,
    systems: ['native-1', 'native-2', 'ts', 'knockd'],
  },
  {
    id: 'memory',
    title: '(h) memory: idle, and with MaxTracked sources tracked (a spoofed flood fills the table)',
    noise: 'flood',
    rates: [0],
    dupGapMs: 0,
    systems: ['native-1', 'native-2', 'ts'],
  },
];

/** MaxTracked of the memory scenario: the default. */
const MEMORY_MAX_TRACKED = 1_048_576;

// ---------------------------------------------------------------------------------------------------
// One measurement point

interface MemSample {
  tS: number;
  rssKiB: number;
}

interface PointResult {
  scenario: ScenarioId;
  system: SystemId;
  rateTarget: number; // 0 = as fast as possible
  offeredRate: number; // noise frames/s actually sent
  sent: number;
  elapsedS: number; // how long the generator sent
  knockers: number;
  detected: number;
  detectedPct: number;
  latencyMs: number[]; // per detected knocker
  /** knockd-fast: knockd_knock_to_open_seconds, the daemon's own part (kernel timestamp → OPEN line written):
   * [bucket upper bound in ms, cumulative count], the last bound -1 for +Inf (JSON has no Infinity) */
  daemonLatencyBuckets?: [number, number][];
  cpuS: number;
  packetsDelivered: number | null; // frames the system reports having read (knockd: unknown)
  cpuNsPerOfferedPacket: number;
  cpuNsPerDeliveredPacket: number | null;
  ringDrops: number | null;
  queueDrops: number | null;
  vethRxDropped: number;
  peakRssKiB: number;
  memory: MemSample[];
  startupS: number; // spawn to ready line
  shutdownS: number; // SIGTERM to exit
  cpuBudgetPct: number | null; // CFS bandwidth limit over the traffic, % of one core
  settleS?: number; // ready line to idle, before the budget applies
  throttledPeriods: number | null; // 100 ms periods in which the budget ran out
  /** memory scenario: VmRSS once idle after start-up, and once `tracked` of `maxTracked` sources are tracked */
  idleRssKiB?: number;
  fullRssKiB?: number;
  tracked?: number;
  maxTracked?: number;
  note?: string;
  error?: string;
}

export function readCpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
}

function readStatusKiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

export function vethRxDropped(net: LoadNet): number {
  const link = JSON.parse(net.lab.exec('b', 'ip', ['-s', '-j', 'link', 'show', net.receiverIf])) as {
    stats64: { rx: { dropped: number } };
  }[];
  return link[0].stats64.rx.dropped;
}

/**
 * The daemon's Prometheus samples by name, e.g. 'knockd_drops_total{where="ring"}'. Asynchronous on
 * purpose: the daemon writes -v lines to a pipe this process drains, so blocking here would stall it.
 */
export async function scrapeMetrics(net: LoadNet): Promise<Map<string, number>> {
  const script = `fetch('http://127.0.0.1:${METRICS_PORT}/metrics', { signal: AbortSignal.timeout(5000) })
    .then(r => r.text()).then(t => process.stdout.write(t))`;
  const text = await new Promise<string>((resolve, reject) =>
    execFile('ip', ['netns', 'exec', net.lab.name('b'), process.execPath, '-e', script], { timeout: 10_000, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => (err ? reject(new Error(stderr.trim().split('\n').at(-1) || err.message)) : resolve(stdout))),
  );
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) ([-+\d.eE]+|NaN)$/.exec(line);
    if (m) values.set(m[1], Number(m[2]));
  }
  return values;
}

export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

interface RunSettings {
  durationS: number;
  knockers: number;
  graceS: number;
}

function newPoint(sys: SystemDef, sc: ScenarioDef, rate: number, st: RunSettings, budgetPct: number | null): PointResult {
  return {
    scenario: sc.id, system: sys.id, rateTarget: rate, offeredRate: 0, sent: 0, elapsedS: 0, knockers: st.knockers, detected: 0,
    detectedPct: 0, latencyMs: [], cpuS: 0, packetsDelivered: null, cpuNsPerOfferedPacket: 0,
    cpuNsPerDeliveredPacket: null, ringDrops: null, queueDrops: null, vethRxDropped: 0, peakRssKiB: 0, memory: [], startupS: 0, shutdownS: 0,
    cpuBudgetPct: budgetPct, throttledPeriods: null,
    ...(sc.dupGapMs > 0 && sys.id === 'knockd'
      ? { note: 'knockd 0.8 has no Allow_Duplicates: a repeated SYN invalidates the attempt' }
      : {}),
  };
}

/** A point for the nftables recipe: load the ruleset, send, list who completed, remove the table. */
async function runNftPoint(net: LoadNet, sys: SystemDef, sc: ScenarioDef, rate: number, st: RunSettings, workDir: string): Promise<PointResult> {
  const base = newPoint(sys, sc, rate, st, null);
  const rules = join(workDir, `${sys.id}.nft`);
  writeFileSync(rules, nftRuleset(sys.kernelOnly!.setSize));
  try {
    net.lab.exec('b', 'nft', ['-f', rules]);
    const drop0 = vethRxDropped(net);
    const gen = await runLoadgen(net, {
      knockers: st.knockers, noise: sc.noise, rate, durationS: sc.durationS ?? st.durationS, dupGapMs: sc.dupGapMs, seed: 1 + rate,
    });
    const clients = nftClients(net);
    base.vethRxDropped = vethRxDropped(net) - drop0;
    base.offeredRate = Math.round(gen.noiseRate);
    base.sent = gen.sent;
    base.elapsedS = gen.elapsedS;
    base.detected = gen.knockers.filter((k) => clients.has(k.src)).length;
    base.detectedPct = gen.knockers.length ? (100 * base.detected) / gen.knockers.length : 0;
    base.note = 'the nftables recipe works in the softirq of the receiving CPU: no process, so no CPU figure, latency line or RSS';
  } catch (err) {
    base.error = (err as Error).message.split('\n')[0];
  } finally {
    try {
      net.lab.exec('b', 'nft', ['delete', 'table', 'inet', NFT_TABLE]);
    } catch {
      /* never loaded */
    }
  }
  return base;
}

/** Where a run keeps its files: configs and state files, the staged installed package, perf profiles (--perf). */
interface RunDirs {
  work: string;
  installed: string;
  perf?: string;
}

/** knockd-fast itself (not a peer). */
const isKnockdFast = (sys: SystemId): boolean => sys === 'native-1' || sys === 'native-2' || sys === 'ts';

async function runPoint(net: LoadNet, sys: SystemDef, sc: ScenarioDef, rate: number, st: RunSettings, dirs: RunDirs, budgetPct: number | null = null): Promise<PointResult> {
  if (sys.kernelOnly) return runNftPoint(net, sys, sc, rate, st, dirs.work);
  const allowDup = sc.dupGapMs > 0 && sys.id !== 'knockd';
  const conf = join(dirs.work, `${sys.id}-${sc.id}.conf`);
  writeFileSync(conf, configText({ allowDuplicates: allowDup }));
  // --perf: the flood at the generator's maximum is profiled (JS frames named through --perf-basic-prof).
  const perfData = dirs.perf && sc.id === 'flood' && rate === 0 && budgetPct === null && isKnockdFast(sys.id)
    ? join(dirs.perf, `perf-${sys.id}.data`) : null;
  const [cmd, args] = commandFor(sys.id, conf, net.receiverIf, join(dirs.work, `${sys.id}.state.json`), dirs.installed,
    perfData ? ['--perf-basic-prof'] : []);
  const base = newPoint(sys, sc, rate, st, budgetPct);
  // Start-up runs unlimited; the budget holds from before the traffic to the exit.
  const budget = budgetPct === null ? null : new CpuBudget(budgetPct, `${sys.id}-${rate}`);
  const spawnedAt = performance.now();
  const child = net.lab.spawn('b', cmd, args, { cwd: dirs.work });
  const pid = child.pid!;
  const opens = new Map<string, number>(); // source → time the first OPEN line was read
  const stderrTail: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderrTail.push(...d.toString().split('\n').filter(Boolean).slice(-5)));
  try {
    if (sys.id === 'counter') await waitForLine(child, 'stderr', /^ready$/, 10_000);
    else await waitForLine(child, 'stdout', /listening on|starting up/, 30_000);
    if (sys.detects) {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = /^(\S+)(?: \([^)]*\))?: [^:]+: OPEN SESAME$/.exec(line);
        if (m && !opens.has(m[1])) opens.set(m[1], nowUs());
      });
    }
    base.startupS = (performance.now() - spawnedAt) / 1000;
    if (budget) {
      // Work left over from start-up (module loading, JIT warm-up) would take the first seconds of a small
      // budget: wait until the process idles.
      await settle(pid);
      base.settleS = (performance.now() - spawnedAt) / 1000 - base.startupS;
      budget.add(pid);
    }
    await sleep(300); // the capture socket is bound before the ready line; let the ring settle
    const drop0 = vethRxDropped(net);
    const cpu0 = readCpuTicks(pid);
    const t0 = performance.now();
    const sampler = setInterval(() => {
      try {
        base.memory.push({ tS: Math.round(performance.now() - t0) / 1000, rssKiB: readStatusKiB(pid, 'VmRSS') });
      } catch {
        /* exited: the error shows below */
      }
    }, 250);
    let gen: LoadgenReport;
    const perf = perfData ? spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '4000', '-g', '-p', String(pid), '-o', perfData], { stdio: 'inherit' }) : null;
    try {
      gen = await runLoadgen(net, {
        knockers: st.knockers, noise: sc.noise, rate, durationS: sc.durationS ?? st.durationS, dupGapMs: sc.dupGapMs,
        seed: 1 + rate,
      });
      // A system that is behind still gets the grace period to print what it has queued.
      const deadline = performance.now() + st.graceS * 1000;
      while (sys.detects && opens.size < gen.knockers.length && performance.now() < deadline) await sleep(50);
      if (!sys.detects) await sleep(300);
    } finally {
      clearInterval(sampler);
      if (perf) {
        perf.kill('SIGINT');
        await waitForExit(perf, 30_000);
      }
    }
    base.cpuS = (readCpuTicks(pid) - cpu0) / CLK_TCK;
    base.peakRssKiB = readStatusKiB(pid, 'VmHWM');
    base.vethRxDropped = vethRxDropped(net) - drop0;
    base.offeredRate = Math.round(gen.noiseRate);
    base.sent = gen.sent;
    base.elapsedS = gen.elapsedS;
    for (const k of gen.knockers) {
      const at = opens.get(k.src);
      if (at !== undefined && k.lastSentUs > 0) base.latencyMs.push((at - k.lastSentUs) / 1000);
    }
    base.detected = base.latencyMs.length;
    base.detectedPct = gen.knockers.length ? (100 * base.detected) / gen.knockers.length : 0;
    base.cpuNsPerOfferedPacket = gen.sent ? (base.cpuS * 1e9) / gen.sent : 0;
    if (sys.id === 'counter') {
      const report = await stopCounter(child);
      base.packetsDelivered = report.packets;
      base.ringDrops = report.ringDrops;
    } else if (sys.id !== 'knockd') {
      try {
        const m = await scrapeMetrics(net);
        base.packetsDelivered = m.get('knockd_packets_total') ?? null;
        base.ringDrops = m.get('knockd_drops_total{where="ring"}') ?? null;
        base.queueDrops = m.get('knockd_drops_total{where="event_queue"}') ?? null;
        base.daemonLatencyBuckets = [...m].flatMap(([key, n]) => {
          const le = /^knockd_knock_to_open_seconds_bucket\{le="([^"]+)"\}$/.exec(key)?.[1];
          return le === undefined ? [] : [[le === '+Inf' ? -1 : Number(le) * 1000, n] as [number, number]];
        }).sort((a, b) => (a[0] < 0 ? 1 : b[0] < 0 ? -1 : a[0] - b[0]));
      } catch (err) {
        base.note = `metrics endpoint unreadable: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    if (base.packetsDelivered) base.cpuNsPerDeliveredPacket = (base.cpuS * 1e9) / base.packetsDelivered;
    if (budget) base.throttledPeriods = budget.throttling().throttled;
  } catch (err) {
    base.error = failure(err, stderrTail);
  } finally {
    base.shutdownS = await stopProcess(child);
    for (let i = 0; budget && i < 20 && existsSync(budget.path); i++) {
      budget.remove();
      if (existsSync(budget.path)) await sleep(100);
    }
    if (perfData && existsSync(perfData)) {
      // After the exit (nothing left to stall); Node's /tmp/perf-<pid>.map names the JS frames.
      const perfText = (args: string[]) => execFileSync('perf', [...args, '-i', perfData],
        { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'ignore'] });
      const stages = perfStages(perfText(['script', '-F', 'comm,tid,time,ip,sym,dso']), base.packetsDelivered ?? 0);
      writeFileSync(perfData.replace(/\.data$/, '.txt'), `${stages}\n${perfText(['report', '--no-children', '--sort', 'comm,dso,sym', '--stdio', '--percent-limit', '0.2', '-g', 'none'])}`);
      console.error(`perf profile of ${sys.id} at the top flood point (${perfData.replace(/\.data$/, '.txt')}):\n${stages}`);
    }
  }
  return base;
}

/** Where a sample of the daemon went, by thread and call chain (leaf first). */
function perfStage(comm: string, frames: string[]): string {
  const chain = frames.join(' | '), leaf = frames[0] ?? '';
  if (comm.startsWith('kf-capture')) {
    if (chain.includes('exc_page_fault')) return 'capture thread: page faults (first touch of pool/index pages, copy-on-write)';
    if (chain.includes('flush_tlb')) return 'capture thread: TLB shootdowns';
    if (/walk_block|walk_ring|locate_network_frame/.test(leaf)) return 'capture thread: ring walk';
    if (/knockd_fast\.node/.test(leaf) && !/Capture::|deliver/.test(leaf)) return 'capture thread: parse + match + eviction + event records (feed_batch)';
    if (/deliver|napi|uv_async|malloc|_int_|free|operator new|memmove|memcpy/.test(chain)) return 'capture thread: batch hand-over (allocation, TSFN queue)';
    if (/poll|schedule|do_syscall|eventfd|getsockopt/.test(chain)) return 'capture thread: poll, wake-ups, statistics';
    return 'capture thread: other kernel (interrupts, softirq)';
  }
  if (comm === 'sh' || comm === 'true') return "commands: the door's command (sh -c ...)";
  if (/fork|copy_page_range|dup_mm|copy_process/.test(chain)) return 'Node: fork for commands';
  if (/JS:|\[JIT\]/.test(leaf)) return 'Node: JavaScript (controller, log lines, decoding)';
  if (/ksys_write|libc_write|vfs_write|pipe_write/.test(chain)) return 'Node: write(2) of -v lines';
  if (/Scavenge|MarkCompact|Heap::|Sweeper|Marking/.test(chain)) return 'Node: garbage collection';
  if (/\(\/usr\/bin\/node\)|napi|uv_/.test(leaf)) return 'Node: V8 and Node runtime (builtins, JIT compiler, napi, TSFN)';
  return 'Node: other (libc, kernel)';
}

/**
 * `perf script` output (call chains) summed by stage; with the frames the daemon read, CPU per frame of
 * each stage for the whole recording and for its second half (the flood fills MaxTracked in the first).
 */
export function perfStages(script: string, frames: number): string {
  const samples: { time: number; stage: string }[] = [];
  for (const block of script.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    const head = /^(\S.*?)\s+\d+\s+(?:\[\d+\]\s+)?([\d.]+):/.exec(lines[0] ?? '');
    if (!head) continue;
    const callChain = lines.slice(1).map((l) => l.trim().replace(/^\S+\s+/, ''));
    samples.push({ time: Number(head[2]), stage: perfStage(head[1].trim(), callChain) });
  }
  if (samples.length === 0) return 'perf: no samples';
  const t0 = samples[0].time, t1 = samples.at(-1)!.time;
  const out: string[] = [];
  for (const [title, from] of [['whole recording', t0], ['second half', (t0 + t1) / 2]] as const) {
    const mine = samples.filter((x) => x.time >= from);
    const counts = new Map<string, number>();
    for (const x of mine) counts.set(x.stage, (counts.get(x.stage) ?? 0) + 1);
    // cpu-clock at perf's default 4 kHz: a sample is 250 µs of CPU; frames read at an even rate
    const nsPerFrame = frames > 0 ? (mine.length * 250_000) / (frames * ((t1 - from) / (t1 - t0))) : 0;
    out.push(`${title}: ${mine.length} samples over ${(t1 - from).toFixed(1)} s, ${nsPerFrame.toFixed(0)} ns of CPU per frame read`);
    for (const [stage, n] of [...counts].sort((a, b) => b[1] - a[1])) {
      out.push(`  ${((100 * n) / mine.length).toFixed(1).padStart(5)} %  ${((nsPerFrame * n) / mine.length).toFixed(0).padStart(5)} ns/frame  ${stage}`);
    }
  }
  return out.join('\n');
}

/** What went wrong at a point, with the end of the process's stderr. */
const failure = (err: unknown, stderrTail: string[]): string =>
  `${(err as Error).message}${stderrTail.length ? `; stderr: ${stderrTail.slice(-3).join(' | ')}` : ''}`;

/** SIGTERM, then the seconds until it exited (SIGKILL after 5 s). */
async function stopProcess(child: ChildProcess): Promise<number> {
  const stopAt = performance.now();
  child.kill('SIGTERM');
  await waitForExit(child, 5_000);
  return (performance.now() - stopAt) / 1000;
}

/** Waits until a process idles after start-up: at most 10 ms of CPU in each of two 500 ms windows (15 s at most). */
async function settle(pid: number): Promise<void> {
  const settleBy = performance.now() + 15_000;
  for (let quiet = 0, last = readCpuTicks(pid); quiet < 2 && performance.now() < settleBy; ) {
    await sleep(500);
    const now = readCpuTicks(pid);
    quiet = now - last <= CLK_TCK / 100 ? quiet + 1 : 0;
    last = now;
  }
}

/**
 * The memory scenario: VmRSS once the daemon idles after start-up, then spoofed first knocks as fast as the
 * generator can (a new source per frame, seq_timeout 1 h so none expires) in 5 s rounds until the daemon
 * reports MaxTracked sources tracked (at most 3 minutes), then VmRSS again.
 */
async function runMemoryPoint(net: LoadNet, sys: SystemDef, sc: ScenarioDef, st: RunSettings, dirs: RunDirs): Promise<PointResult> {
  const conf = join(dirs.work, `${sys.id}-${sc.id}.conf`);
  writeFileSync(conf, configText({ allowDuplicates: false, seqTimeoutS: 3600, maxTracked: MEMORY_MAX_TRACKED }));
  const [cmd, args] = commandFor(sys.id, conf, net.receiverIf, join(dirs.work, `${sys.id}.state.json`), dirs.installed);
  const base = newPoint(sys, sc, 0, { ...st, knockers: 0 }, null);
  base.maxTracked = MEMORY_MAX_TRACKED;
  const spawnedAt = performance.now();
  const child = net.lab.spawn('b', cmd, args, { cwd: dirs.work });
  const pid = child.pid!;
  const stderrTail: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderrTail.push(...d.toString().split('\n').filter(Boolean).slice(-5)));
  try {
    await waitForLine(child, 'stdout', /listening on|starting up/, 30_000);
    child.stdout!.resume(); // -v lines: drained, not read
    base.startupS = (performance.now() - spawnedAt) / 1000;
    await settle(pid);
    base.idleRssKiB = readStatusKiB(pid, 'VmRSS');
    const cpu0 = readCpuTicks(pid);
    const fillBy = performance.now() + 180_000;
    base.tracked = 0;
    for (let round = 0; base.tracked < MEMORY_MAX_TRACKED && performance.now() < fillBy; round++) {
      const gen = await runLoadgen(net, { knockers: 0, noise: 'flood', rate: 0, durationS: 5, seed: 1000 + round });
      base.sent += gen.sent;
      base.elapsedS += gen.elapsedS;
      await sleep(500);
      base.tracked = (await scrapeMetrics(net)).get('knockd_tracked_sources') ?? 0;
    }
    await settle(pid);
    base.fullRssKiB = readStatusKiB(pid, 'VmRSS');
    base.peakRssKiB = readStatusKiB(pid, 'VmHWM');
    base.cpuS = (readCpuTicks(pid) - cpu0) / CLK_TCK;
    base.offeredRate = base.elapsedS ? Math.round(base.sent / base.elapsedS) : 0;
    if (base.tracked < MEMORY_MAX_TRACKED) base.note = `the table did not fill within 3 minutes (${base.tracked} of ${MEMORY_MAX_TRACKED} tracked)`;
  } catch (err) {
    base.error = failure(err, stderrTail);
  } finally {
    base.shutdownS = await stopProcess(child);
  }
  return base;
}

// ---------------------------------------------------------------------------------------------------
// Summary, report files

interface SystemSummary {
  system: SystemId;
  label: string;
  /** per scenario: the highest offered noise rate at which it, and every lower rate, detected 100 % */
  zeroMissRate: Partial<Record<ScenarioId, number | null>>;
  firstMissRate: Partial<Record<ScenarioId, number | null>>;
  latencyP50Ms: number | null;
  latencyP99Ms: number | null;
  latencySamples: number;
  /** the daemon's part of the same knocks (knockd_knock_to_open_seconds): the bucket bound (ms) holding p50 / p99 */
  daemonLatencyP50Ms: number | null; // Infinity (null in JSON): above the largest bucket
  daemonLatencyP99Ms: number | null;
  maxDeliveredRate: number | null; // frames/s read, at the highest flood point
  topFloodCpuNsPerFrame: number | null; // CPU per frame read (or offered, for knockd) at the highest flood point
  ringDrops: number | null;
  peakRssKiB: number;
  /** equal-CPU scenario, per budget: break point (the counter: first ring drop) and capacity per core */
  cpu: { budgetPct: number; zeroMissRate: number | null; firstMissRate: number | null; perCoreRate: number | null }[];
}

/** The highest rate with no miss at it or any lower rate, and the first rate with a miss (by offered rate). */
function breakPoint(pts: PointResult[], missed: (p: PointResult) => boolean): { zero: number | null; first: number | null } {
  const sorted = [...pts].sort((a, b) => a.offeredRate - b.offeredRate);
  const firstMiss = sorted.findIndex(missed);
  return {
    zero: firstMiss === 0 || sorted.length === 0 ? null : sorted[(firstMiss < 0 ? sorted.length : firstMiss) - 1].offeredRate,
    first: firstMiss < 0 ? null : sorted[firstMiss].offeredRate,
  };
}

const budgetsOf = (points: PointResult[]): number[] =>
  [...new Set(points.map((p) => p.cpuBudgetPct).filter((b): b is number => b !== null))].sort((a, b) => a - b);

function summarize(points: PointResult[]): SystemSummary[] {
  return SYSTEMS.filter((sys) => points.some((p) => p.system === sys.id)).map((sys) => {
    const mine = points.filter((p) => p.system === sys.id && !p.error);
    const zeroMissRate: SystemSummary['zeroMissRate'] = {};
    const firstMissRate: SystemSummary['firstMissRate'] = {};
    for (const sc of SCENARIOS) {
      const pts = mine.filter((p) => p.scenario === sc.id && p.cpuBudgetPct === null);
      if (!sys.detects || pts.length === 0) continue;
      const bp = breakPoint(pts, (p) => p.detected < p.knockers);
      zeroMissRate[sc.id] = bp.zero;
      firstMissRate[sc.id] = bp.first;
    }
    const cpu = budgetsOf(mine).map((budgetPct) => {
      const pts = mine.filter((p) => p.scenario === 'cpu' && p.cpuBudgetPct === budgetPct);
      const bp = breakPoint(pts, (p) => (sys.detects ? p.detected < p.knockers : (p.ringDrops ?? 0) > 0));
      return { budgetPct, zeroMissRate: bp.zero, firstMissRate: bp.first, perCoreRate: bp.zero === null ? null : Math.round(bp.zero / (budgetPct / 100)) };
    });
    // Knock latency without a CPU budget (a throttled system's lag is the budget's, shown by its misses).
    const lat = mine.filter((p) => p.cpuBudgetPct === null).flatMap((p) => p.latencyMs).sort((a, b) => a - b);
    const daemonBuckets = new Map<number, number>();
    for (const p of mine.filter((q) => q.cpuBudgetPct === null)) {
      for (const [le, n] of p.daemonLatencyBuckets ?? []) daemonBuckets.set(le, (daemonBuckets.get(le) ?? 0) + n);
    }
    const daemonSorted = [...daemonBuckets].map(([le, n]): [number, number] => [le < 0 ? Infinity : le, n]).sort((a, b) => a[0] - b[0]);
    const daemonTotal = daemonSorted.at(-1)?.[1] ?? 0;
    const bucketOf = (pct: number) => (daemonTotal ? daemonSorted.find(([, n]) => n >= (pct / 100) * daemonTotal)![0] : null);
    const flood = mine.filter((p) => p.scenario === 'flood' && p.packetsDelivered !== null);
    const top = flood.sort((a, b) => b.offeredRate - a.offeredRate)[0];
    const topCpu = mine.filter((p) => p.scenario === 'flood' && !sys.kernelOnly).sort((a, b) => b.offeredRate - a.offeredRate)[0];
    const drops = mine.map((p) => p.ringDrops).filter((d): d is number => d !== null);
    return {
      system: sys.id, label: sys.label, zeroMissRate, firstMissRate,
      latencyP50Ms: percentile(lat, 50), latencyP99Ms: percentile(lat, 99), latencySamples: lat.length,
      daemonLatencyP50Ms: bucketOf(50), daemonLatencyP99Ms: bucketOf(99),
      maxDeliveredRate: top ? Math.round(top.packetsDelivered! / top.elapsedS) : null,
      topFloodCpuNsPerFrame: topCpu && topCpu.cpuS >= MIN_CPU_S ? (topCpu.cpuNsPerDeliveredPacket ?? topCpu.cpuNsPerOfferedPacket) : null,
      ringDrops: drops.length ? drops.reduce((a, b) => a + b, 0) : null,
      peakRssKiB: Math.max(0, ...mine.map((p) => p.peakRssKiB)),
      cpu,
    };
  });
}

/** Below this, CPU time (10 ms ticks) is too coarse to divide by a frame count. */
const MIN_CPU_S = 0.1;
const fmtRate = (r: number | null | undefined) =>
  r === null || r === undefined ? '—' : r >= 1000 ? `${(r / 1000).toFixed(r >= 10_000 ? 0 : 1)}k` : String(r);
const fmtNum = (n: number | null | undefined, digits = 1) => (n === null || n === undefined ? '—' : n.toFixed(digits));

function markdown(report: Report): string {
  const out: string[] = [];
  out.push(`# Load benchmark, ${report.date}`, '');
  out.push(`Reproduce: \`${report.command}\` (as root; ${report.settings.durationS} s per point, ` +
    `${report.settings.knockers} legitimate knockers per point, whole run ${Math.round(report.wallS)} s).`, '');
  out.push(`Machine: ${report.machine.cpus} × ${report.machine.cpuModel}, ${report.machine.memGiB} GiB, kernel ${report.machine.kernel}, Node ${report.machine.node}.`, '');
  out.push(`Charts: [offered flood rate vs legitimate knocks detected](load-${report.date}.svg), ` +
    (report.points.some((p) => p.scenario === 'pairs') ? `[the two-known-ports attack](load-${report.date}-pairs.svg), ` : '') +
    (report.points.some((p) => p.scenario === 'sustained') ? `[memory over time under the flood](load-${report.date}-memory.svg).` : ''), '');
  out.push('## Summary', '');
  out.push('| System | zero-miss flood rate (pps) | first miss at (pps) | latency p50 / p99 (ms) | frames read/s at top flood | ring drops | peak RSS (MiB) |');
  out.push('|---|---|---|---|---|---|---|');
  for (const s of report.summary) {
    out.push(`| ${s.label} | ${fmtRate(s.zeroMissRate.flood)} | ${fmtRate(s.firstMissRate.flood)} | ` +
      `${fmtNum(s.latencyP50Ms, 2)} / ${fmtNum(s.latencyP99Ms, 2)} (n=${s.latencySamples}) | ${fmtRate(s.maxDeliveredRate)} | ` +
      `${s.ringDrops ?? '—'} | ${(s.peakRssKiB / 1024).toFixed(1)} |`);
  }
  const budgets = budgetsOf(report.points);
  if (budgets.length) {
    out.push('', '## Equal CPU (CFS bandwidth control)', '');
    out.push('Each user-space system is held to the same share of one core from the end of its start-up to its exit; ' +
      'break point = the highest flood rate at which it, and every lower rate, detected every legitimate knock ' +
      '(the count-only reader: no ring drop); per core = break point ÷ budget. ' +
      `Charts: ${budgets.map((b) => `[${b} %](load-${report.date}-cpu-${b}.svg)`).join(', ')}.`, '');
    out.push(`| System | ${budgets.map((b) => `${b} %: no miss up to / first miss (pps) | ${b} %: per core`).join(' | ')} |`);
    out.push(`|---|${budgets.map(() => '---|---').join('|')}|`);
    for (const s of report.summary.filter((x) => x.cpu.length)) {
      out.push(`| ${s.label} | ${budgets.map((b) => {
        const c = s.cpu.find((x) => x.budgetPct === b);
        return c ? `${fmtRate(c.zeroMissRate)} / ${c.firstMissRate === null ? 'none' : fmtRate(c.firstMissRate)} | ${fmtRate(c.perCoreRate)}` : '— | —';
      }).join(' | ')} |`);
    }
  }
  const found = findings(report);
  if (found.length) out.push('', '## Findings (computed from the points below)', '', ...found.map((f) => `- ${f}`));
  for (const sc of SCENARIOS) {
    const pts = report.points.filter((p) => p.scenario === sc.id);
    if (!pts.length) continue;
    out.push('', `## ${sc.title}`, '');
    if (sc.id === 'memory') {
      out.push('knockd-fast as installed (bin/ → dist/, no tsx). Per source = (full − idle) ÷ tracked.', '');
      out.push('| System | MaxTracked | tracked | flood (pps) | idle VmRSS (MiB) | full VmRSS (MiB) | per tracked source (bytes) | peak RSS (MiB) |');
      out.push('|---|---|---|---|---|---|---|---|');
      for (const p of pts) {
        out.push(p.error ? `| ${p.system} | error: ${p.error.replace(/\|/g, '/')} |||||||`
          : `| ${p.system} | ${p.maxTracked} | ${p.tracked} | ${fmtRate(p.offeredRate)} | ${fmtNum(p.idleRssKiB! / 1024)} | ` +
            `${fmtNum(p.fullRssKiB! / 1024)} | ${fmtNum(bytesPerSource(p))} | ${fmtNum(p.peakRssKiB / 1024)} |`);
      }
      for (const n of new Set(pts.map((p) => p.note).filter(Boolean))) out.push('', `Note: ${n}.`);
      continue;
    }
    out.push('| System | target (pps) | offered (pps) | detected | latency p50 / max (ms) | CPU (s) | CPU ns/offered frame | frames read | ring drops | veth rx drops | peak RSS (MiB) |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const p of pts) {
      const lat = [...p.latencyMs].sort((a, b) => a - b);
      const det = SYSTEMS.find((s) => s.id === p.system)!.detects ? `${p.detected}/${p.knockers} (${p.detectedPct.toFixed(0)} %)` : 'n/a';
      const who = `${p.system}${p.cpuBudgetPct === null ? '' : ` @ ${p.cpuBudgetPct} % CPU`}`;
      out.push(p.error
        ? `| ${who} | ${p.rateTarget ? fmtRate(p.rateTarget) : 'max'} | error: ${p.error.replace(/\|/g, '/')} |||||||||`
        : `| ${who} | ${p.rateTarget ? fmtRate(p.rateTarget) : sc.noise === 'none' ? '—' : 'max'} | ${fmtRate(p.offeredRate)} | ${det} | ` +
          `${fmtNum(percentile(lat, 50), 2)} / ${fmtNum(lat.at(-1), 2)} | ${p.cpuS.toFixed(2)} | ` +
          `${sc.noise !== 'none' && p.cpuS >= MIN_CPU_S ? p.cpuNsPerOfferedPacket.toFixed(0) : '—'} | ` + // knocks alone: idle CPU over a few frames
          `${p.packetsDelivered ?? '—'} | ${p.ringDrops ?? '—'} | ${p.vethRxDropped} | ${(p.peakRssKiB / 1024).toFixed(1)} |`);
    }
    if (sc.id === 'sustained') {
      out.push('');
      for (const p of pts.filter((q) => q.memory.length > 1)) {
        const first = p.memory[0], last = p.memory.at(-1)!;
        out.push(`- ${p.system}: VmRSS ${(first.rssKiB / 1024).toFixed(1)} MiB at ${first.tS} s → ` +
          `${(last.rssKiB / 1024).toFixed(1)} MiB at ${last.tS} s, ${Math.round(p.offeredRate * p.elapsedS)} spoofed sources sent`);
      }
    }
    const notes = [...new Set(pts.map((p) => p.note).filter(Boolean))];
    for (const n of notes) out.push('', `Note: ${n}.`);
  }
  if (report.skipped.length) {
    out.push('', '## Not run', '');
    for (const s of report.skipped) out.push(`- ${s}`);
  }
  out.push('');
  return out.join('\n');
}

/** Memory scenario: VmRSS growth per tracked source. */
const bytesPerSource = (p: PointResult): number | null =>
  p.tracked ? ((p.fullRssKiB! - p.idleRssKiB!) * 1024) / p.tracked : null;

/** The issue's targets, stated with the measured figures (nothing here is assumed). */
function findings(report: Report): string[] {
  const by = (id: SystemId) => report.summary.find((s) => s.system === id);
  const out: string[] = [];
  const knockd = by('knockd'), native = by('native-1'), ts = by('ts'), counter = by('counter');
  const floodTop = Math.max(0, ...report.points.filter((p) => p.scenario === 'flood' && !p.error).map((p) => p.offeredRate));
  if (knockd?.firstMissRate.flood != null) {
    out.push(`knockd 0.8 first missed legitimate knocks under the spoofed first-port flood at ${fmtRate(knockd.firstMissRate.flood)} pps ` +
      `(no misses up to ${fmtRate(knockd.zeroMissRate.flood)} pps, ${report.settings.durationS} s points, seq_timeout ${report.settings.seqTimeout}).`);
  }
  for (const s of report.summary.filter((x) => x.system !== 'knockd' && x.system !== 'counter')) {
    const zero = s.zeroMissRate.flood;
    const all = s.firstMissRate.flood == null;
    let line = `${s.label}: ${all ? `no missed knock at any flood rate, up to ${fmtRate(zero)} pps (the generator's maximum here: ${fmtRate(floodTop)} pps)`
      : `no misses up to ${fmtRate(zero)} pps, first miss at ${fmtRate(s.firstMissRate.flood)} pps`}`;
    if (knockd?.firstMissRate.flood && zero) {
      const ratio = zero / knockd.firstMissRate.flood;
      line += `; ${all ? '≥ ' : ''}${ratio.toFixed(0)}× knockd's first-miss rate (target ≥ 100×: ${ratio >= 100 ? 'met' : all ? 'not shown: the generator is the limit' : 'not met'})`;
    }
    out.push(line + '.');
  }
  if (counter?.maxDeliveredRate && native?.maxDeliveredRate) {
    const pct = (100 * native.maxDeliveredRate) / counter.maxDeliveredRate;
    const topOf = (id: SystemId) => report.points.filter((p) => p.scenario === 'flood' && p.system === id && p.packetsDelivered !== null)
      .sort((a, b) => b.offeredRate - a.offeredRate)[0];
    const readShare = (id: SystemId) => {
      const p = topOf(id);
      return `${((100 * p.packetsDelivered!) / p.sent).toFixed(1)} % of the ${fmtRate(p.offeredRate)} pps offered to it`;
    };
    out.push(`Capture at the top flood point: knockd-fast native (1 thread) read ${fmtRate(native.maxDeliveredRate)} frames/s ` +
      `(${readShare('native-1')}), the count-only reader ${fmtRate(counter.maxDeliveredRate)}/s (${readShare('counter')}); ` +
      `${pct.toFixed(0)} % of the reader's rate (target ≥ 90 %). The generator offers less while a busier reader shares the ` +
      `machine, so compare the shares read as well as the rates. Ring drops over the whole run: native (1 thread) ` +
      `${native.ringDrops ?? '—'}, count-only ${counter.ringDrops ?? '—'}.`);
  }
  if (native?.topFloodCpuNsPerFrame && ts?.topFloodCpuNsPerFrame) {
    out.push(`CPU per frame read at the top flood point, same capture path: native ${native.topFloodCpuNsPerFrame.toFixed(0)} ns, ` +
      `--matcher ts ${ts.topFloodCpuNsPerFrame.toFixed(0)} ns (TS/native ${(ts.topFloodCpuNsPerFrame / native.topFloodCpuNsPerFrame).toFixed(1)}×); ` +
      `knockd ${knockd?.topFloodCpuNsPerFrame ? `${knockd.topFloodCpuNsPerFrame.toFixed(0)} ns per offered frame at its last flood point` : '—'}.`);
  }
  for (const b of budgetsOf(report.points)) {
    const at = (x: SystemSummary | undefined) => x?.cpu.find((c) => c.budgetPct === b);
    const k = at(knockd);
    const parts = report.summary.filter((x) => x.system !== 'knockd' && at(x)).map((x) => {
      const c = at(x)!;
      const reach = c.firstMissRate === null ? `${x.system !== 'counter' ? 'no miss' : 'no ring drop'} up to ${fmtRate(c.zeroMissRate)} pps (the highest rate offered)`
        : `${fmtRate(c.zeroMissRate)} pps, first ${x.system !== 'counter' ? 'miss' : 'ring drop'} at ${fmtRate(c.firstMissRate)}`;
      const ratio = k?.firstMissRate && c.zeroMissRate && x.system !== 'counter'
        ? `, ${c.firstMissRate === null ? '≥ ' : ''}${(c.zeroMissRate / k.firstMissRate).toPrecision(2)}× knockd's first-miss rate` : '';
      return `${x.system} ${reach} (${fmtRate(c.perCoreRate)} pps per core${ratio})`;
    });
    out.push(`At ${b} % of one core: knockd 0.8 ${k ? (k.firstMissRate === null ? `missed nothing up to ${fmtRate(k.zeroMissRate)} pps` : `first missed at ${fmtRate(k.firstMissRate)} pps (no miss up to ${fmtRate(k.zeroMissRate)})`) : 'not run'}; ${parts.join('; ')}.`);
  }
  const pairsLines = report.summary.filter((x) => x.zeroMissRate.pairs !== undefined).map((x) =>
    `${x.system} ${x.firstMissRate.pairs == null ? `no miss up to ${fmtRate(x.zeroMissRate.pairs)} pps` : `no miss up to ${fmtRate(x.zeroMissRate.pairs)} pps, first miss at ${fmtRate(x.firstMissRate.pairs)}`}`);
  if (pairsLines.length) out.push(`Two-known-ports attack (spoofed sources send the first two ports): ${pairsLines.join('; ')}.`);
  const lat = report.summary.filter((s) => s.latencySamples > 0)
    .map((s) => `${s.system} ${fmtNum(s.latencyP50Ms, 1)} / ${fmtNum(s.latencyP99Ms, 1)} ms`);
  if (lat.length) out.push(`Last knock sent → OPEN SESAME line read, p50 / p99 over every detected knock of the run (target p99 ≤ 5 ms): ${lat.join('; ')}.`);
  const bound = (ms: number | null) => (ms === null || !Number.isFinite(ms) ? '> 1000' : `≤ ${ms}`);
  const own = report.summary.filter((s) => s.daemonLatencyP99Ms != null)
    .map((s) => `${s.system} p50 ${bound(s.daemonLatencyP50Ms)}, p99 ${bound(s.daemonLatencyP99Ms)} ms`);
  if (own.length) out.push(`Of that, the daemon's own part (kernel timestamp of the last knock → OPEN SESAME line written, ` +
    `knockd_knock_to_open_seconds; bucket bounds, 1 ms clock; the rest is the harness reading the line on the same two cores): ${own.join('; ')}.`);
  for (const p of report.points.filter((q) => q.scenario === 'memory' && !q.error)) {
    const idle = p.idleRssKiB! / 1024, perSource = bytesPerSource(p);
    out.push(`Memory, ${p.system} as installed: idle VmRSS ${idle.toFixed(1)} MiB (target ≤ 64 MiB: ${idle <= 64 ? 'met' : 'not met'}); ` +
      `with ${p.tracked} of ${p.maxTracked} sources tracked ${(p.fullRssKiB! / 1024).toFixed(1)} MiB, idle + ${fmtNum(perSource)} bytes per tracked source ` +
      `(target ≤ 64: ${perSource !== null && perSource <= 64 && p.tracked === p.maxTracked ? 'met' : 'not met'}).`);
  }
  for (const p of report.points.filter((q) => q.scenario === 'sustained' && q.memory.length > 1)) {
    const rss = p.memory.map((m) => m.rssKiB / 1024);
    const half = rss.slice(Math.floor(rss.length / 2));
    out.push(`Sustained flood, ${p.system}: VmRSS ${rss[0].toFixed(1)} → ${rss.at(-1)!.toFixed(1)} MiB over ${p.memory.at(-1)!.tS} s ` +
      `(second half ${Math.min(...half).toFixed(1)}–${Math.max(...half).toFixed(1)} MiB) at ${fmtRate(p.offeredRate)} pps from ` +
      `${Math.round(p.offeredRate * p.elapsedS)} distinct spoofed sources.`);
  }
  return out;
}

const SYSTEM_COLORS: Record<SystemId, string> = {
  'native-1': '#1f77b4', 'native-2': '#2ca02c', ts: '#9467bd', knockd: '#d62728', nft: '#ff7f0e', 'nft-large': '#8c564b', counter: '#7f7f7f',
};

interface Series {
  label: string;
  color: string;
  points: [number, number][];
  dashed?: boolean;
}

/** A line chart as hand-written SVG: axes with the given ticks, one polyline per series, a legend. */
function svgLineChart(c: {
  title: string;
  xLabel: string;
  yLabel: string;
  x: (v: number) => number; // data → 0..1
  y: (v: number) => number;
  xTicks: [number, string][];
  yTicks: [number, string][];
  series: Series[];
  verticals?: (Series & { at: number; lines: string[] })[];
}): string {
  const W = 880, H = 440, L = 70, R = 340, T = 40, B = 60;
  const pw = W - L - R, ph = H - T - B;
  const px = (v: number) => (L + pw * c.x(v)).toFixed(1);
  const py = (v: number) => (T + ph * (1 - c.y(v))).toFixed(1);
  const el: string[] = [`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`];
  el.push(`<text x="${L}" y="22" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`);
  for (const [v, text] of c.xTicks) {
    el.push(`<line x1="${px(v)}" y1="${T}" x2="${px(v)}" y2="${T + ph}" stroke="#ddd"/>`);
    el.push(`<text x="${px(v)}" y="${T + ph + 18}" font-size="12" text-anchor="middle">${text}</text>`);
  }
  for (const [v, text] of c.yTicks) {
    el.push(`<line x1="${L}" y1="${py(v)}" x2="${L + pw}" y2="${py(v)}" stroke="#ddd"/>`);
    el.push(`<text x="${L - 8}" y="${Number(py(v)) + 4}" font-size="12" text-anchor="end">${text}</text>`);
  }
  el.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  el.push(`<text x="${L + pw / 2}" y="${H - 15}" font-size="13" text-anchor="middle">${escapeXml(c.xLabel)}</text>`);
  el.push(`<text x="18" y="${T + ph / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 18 ${T + ph / 2})">${escapeXml(c.yLabel)}</text>`);
  let legendY = T + 10;
  const legend = (s: Series, lines: string[]) => {
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    el.push(`<line x1="${L + pw + 12}" y1="${legendY}" x2="${L + pw + 36}" y2="${legendY}" stroke="${s.color}" stroke-width="2"${dash}/>`);
    lines.forEach((line, i) => el.push(`<text x="${L + pw + 42}" y="${legendY + 4 + 14 * i}" font-size="11">${escapeXml(line)}</text>`));
    legendY += 8 + 14 * lines.length;
  };
  for (const s of c.series) {
    if (!s.points.length) continue;
    el.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map(([a, b]) => `${px(a)},${py(b)}`).join(' ')}"/>`);
    for (const [a, b] of s.points) el.push(`<circle cx="${px(a)}" cy="${py(b)}" r="3" fill="${s.color}"/>`);
    legend(s, [s.label]);
  }
  for (const v of c.verticals ?? []) {
    el.push(`<line x1="${px(v.at)}" y1="${T}" x2="${px(v.at)}" y2="${T + ph}" stroke="${v.color}" stroke-width="2" stroke-dasharray="6 4"/>`);
    legend(v, v.lines);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n${el.join('\n')}\n</svg>\n`;
}

/** Offered flood rate (log scale) vs legitimate knocks detected, one line per system, for one scenario
 * (and CPU budget). */
function svgDetection(report: Report, scenario: ScenarioId, budgetPct: number | null, title: string): string {
  const flood = report.points.filter((p) => p.scenario === scenario && p.cpuBudgetPct === budgetPct && !p.error && p.offeredRate > 0);
  const rates = flood.map((p) => p.offeredRate);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(1000, ...rates) * 1.05))); // 999 pps offered still starts at 1k
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(lo * 10, ...rates))));
  const decades: [number, string][] = [];
  for (let d = lo; d <= hi; d *= 10) decades.push([d, fmtRate(d)]);
  const ofSystem = (id: SystemId) => flood.filter((p) => p.system === id).sort((a, b) => a.offeredRate - b.offeredRate);
  const ceiling = SYSTEMS.filter((s) => !s.detects).flatMap((s) => {
    const top = ofSystem(s.id).at(-1);
    return top ? [{ label: s.label, color: SYSTEM_COLORS[s.id], points: [], dashed: true, at: top.offeredRate,
      lines: [`generator maximum, ${fmtRate(top.offeredRate)} pps,`, `${fmtRate(top.packetsDelivered! / top.elapsedS)}/s read by the count-only reader`] }] : [];
  });
  return svgLineChart({
    title,
    xLabel: 'offered flood rate (frames/s, log scale)',
    yLabel: 'legitimate knocks detected',
    x: (v) => (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)),
    y: (v) => v / 100,
    xTicks: decades,
    yTicks: [0, 20, 40, 60, 80, 100].map((v) => [v, `${v} %`]),
    series: SYSTEMS.filter((s) => s.detects).map((s) => ({
      label: s.label, color: SYSTEM_COLORS[s.id], points: ofSystem(s.id).map((p) => [p.offeredRate, p.detectedPct] as [number, number]),
    })),
    verticals: ceiling,
  });
}

/** Resident memory over time in the sustained flood. */
function svgMemory(report: Report): string {
  const top = SYSTEMS.flatMap((s) => {
    const p = report.points.find((q) => q.scenario === 'sustained' && q.system === s.id && !q.error);
    return p ? [{ s, p }] : [];
  });
  const maxT = Math.max(1, ...top.flatMap(({ p }) => p.memory.map((m) => m.tS)));
  const maxMiB = Math.max(1, ...top.flatMap(({ p }) => p.memory.map((m) => m.rssKiB / 1024)));
  const step = maxMiB > 200 ? 100 : maxMiB > 50 ? 25 : maxMiB > 20 ? 10 : 5;
  const yMax = Math.ceil(maxMiB / step) * step;
  const yTicks: [number, string][] = [];
  for (let v = 0; v <= yMax; v += step) yTicks.push([v, `${v}`]);
  const xTicks: [number, string][] = [];
  for (let t = 0; t <= maxT; t += 2) xTicks.push([t, `${t} s`]);
  return svgLineChart({
    title: 'Resident memory under a sustained spoofed flood (generator maximum)',
    xLabel: 'time since the generator started (s)',
    yLabel: 'VmRSS (MiB)',
    x: (v) => v / maxT,
    y: (v) => v / yMax,
    xTicks,
    yTicks,
    series: top.map(({ s, p }) => ({
      label: `${s.label} @ ${fmtRate(p.offeredRate)} pps`, color: SYSTEM_COLORS[s.id],
      points: p.memory.map((m) => [m.tS, m.rssKiB / 1024] as [number, number]),
    })),
  });
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

interface Report {
  date: string;
  command: string;
  wallS: number;
  machine: { cpus: number; cpuModel: string; memGiB: number; kernel: string; node: string; knockd: string };
  settings: RunSettings & { seqTimeout: number; knockPorts: number[]; pointOrder: string };
  skipped: string[];
  summary: SystemSummary[];
  points: PointResult[];
}

function ensureKnockd(): string {
  const version = () => {
    try {
      return execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'knockd'], { encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  };
  if (!version() || !existsSync('/usr/sbin/knockd')) {
    console.error('knockd is not installed: apt-get install -y knockd');
    execFileSync('apt-get', ['install', '-y', '-qq', 'knockd'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  return version();
}

/** knockd-fast's systems need the addon (even --matcher ts captures through it). */
export function ensureAddon(): void {
  if (existsSync(join(packageRoot, 'build', 'Release', 'knockd_fast.node'))) return;
  console.error('the knockd-fast addon is not built: npm run build:native');
  execFileSync('npm', ['run', '-s', 'build:native'], { cwd: packageRoot, stdio: 'inherit' });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '6' },
      knockers: { type: 'string', default: '12' },
      systems: { type: 'string', default: SYSTEMS.map((s) => s.id).join(',') },
      scenarios: { type: 'string', default: SCENARIOS.map((s) => s.id).join(',') },
      rates: { type: 'string' },
      budgets: { type: 'string' },
      out: { type: 'string', default: join(packageRoot, 'bench', 'results') },
      render: { type: 'string' },
      perf: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(`usage: npm run bench:load -- [--seconds S] [--knockers N] [--systems ${SYSTEMS.map((s) => s.id).join(',')}]
                          [--scenarios ${SCENARIOS.map((s) => s.id).join(',')}] [--out DIR]
                          [--rates PPS,... (0 = max; instead of each scenario's)] [--budgets PCT,... (the cpu scenario's)]
                          [--perf DIR (perf record knockd-fast at the top flood point: DIR/perf-<system>.{data,txt})]
       npm run bench:load -- --render DIR/load-<date>.json [--out DIR]   (rewrite the .md and .svg files from a report)
Needs root (network namespaces, AF_PACKET). Writes DIR/load-<date>.{json,md,svg} and DIR/load-<date>-memory.svg.`);
    return;
  }
  if (values.render) {
    writeReport(JSON.parse(readFileSync(values.render, 'utf8')) as Report, values.out!);
    return;
  }
  const pick = <T extends { id: string }>(all: T[], list: string, what: string): T[] =>
    list.split(',').map((id) => all.find((x) => x.id === id) ?? (() => {
      throw new Error(`unknown ${what} "${id}": choose from ${all.map((x) => x.id).join(', ')}`);
    })());
  const systems = pick(SYSTEMS, values.systems!, 'system');
  const numbers = (list: string, what: string): number[] => list.split(',').map((v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${what}: "${v}" is not a number >= 0`);
    return n;
  });
  const scenarios = pick(SCENARIOS, values.scenarios!, 'scenario').map((sc) => ({
    ...sc,
    ...(values.rates && sc.noise !== 'none' ? { rates: numbers(values.rates, 'rates') } : {}),
    ...(values.budgets && sc.budgets ? { budgets: numbers(values.budgets, 'budgets').filter((b) => b > 0) } : {}),
  }));
  const settings: RunSettings = { durationS: Number(values.seconds), knockers: Number(values.knockers), graceS: 3 };
  if (!(settings.durationS >= 2) || !(settings.knockers >= 1)) throw new Error('--seconds must be >= 2 and --knockers >= 1');

  const started = performance.now();
  buildTools();
  const knockdVersion = systems.some((s) => s.id === 'knockd') ? ensureKnockd() : '';
  if (systems.some((s) => s.id !== 'knockd' && s.id !== 'counter')) ensureAddon();
  const workDir = join('/tmp', `kf-load-${process.pid}`);
  mkdirSync(workDir, { recursive: true });
  const dirs: RunDirs = { work: workDir, installed: systems.some((s) => isKnockdFast(s.id)) ? stageInstalledPackage() : '' };
  if (values.perf) {
    dirs.perf = values.perf;
    mkdirSync(dirs.perf, { recursive: true });
  }
  const net = createLoadNet();
  const points: PointResult[] = [];
  const skipped: string[] = [];
  try {
    for (const sc of scenarios) {
      for (const budget of sc.budgets ?? [null]) {
      const misses = new Map<SystemId, number>(); // consecutive points below 100 %
      for (const rate of sc.rates) {
        for (const sys of systems) {
          const label = `${sc.id}${budget === null ? '' : ` ${budget}% cpu`} @ ${rate ? `${rate} pps` : sc.noise === 'none' ? 'legit only' : 'max'}`;
          if (sc.systems && !sc.systems.includes(sys.id)) continue;
          if ((misses.get(sys.id) ?? 0) >= 2) {
            skipped.push(`${sys.id} ${label}: already missed knocks at two lower rates`);
            continue;
          }
          const p = sc.id === 'memory' ? await runMemoryPoint(net, sys, sc, settings, dirs) : await runPoint(net, sys, sc, rate, settings, dirs, budget);
          points.push(p);
          if (sys.detects && !p.error) misses.set(sys.id, p.detected < p.knockers ? (misses.get(sys.id) ?? 0) + 1 : 0);
          if (p.error) misses.set(sys.id, 2); // an unavailable system is not retried at higher rates
          console.error(
            `${label.padEnd(22)} ${sys.id.padEnd(9)} ` +
              (p.error ? `error: ${p.error}` : `offered ${fmtRate(p.offeredRate)} pps, ` +
                `detected ${sys.detects ? `${p.detected}/${p.knockers}` : 'n/a'}, ` +
                `cpu ${p.cpuS.toFixed(2)} s, read ${p.packetsDelivered ?? '?'}, ring drops ${p.ringDrops ?? '?'}, ` +
                `rss ${(p.peakRssKiB / 1024).toFixed(1)} MiB, ` +
                (p.idleRssKiB === undefined ? '' : `idle ${(p.idleRssKiB / 1024).toFixed(1)} MiB, full ${((p.fullRssKiB ?? 0) / 1024).toFixed(1)} MiB with ${p.tracked} tracked, `) +
                `start ${p.startupS.toFixed(1)} s, stop ${p.shutdownS.toFixed(1)} s` +
                (p.throttledPeriods === null ? '' : `, settled ${p.settleS?.toFixed(1)} s, throttled in ${p.throttledPeriods} periods`)),
          );
        }
      }
      }
    }
  } finally {
    net.lab.destroy();
    if (dirs.installed) rmSync(dirs.installed, { recursive: true, force: true });
  }
  const date = new Date().toISOString().slice(0, 10);
  const report: Report = {
    date,
    command: 'sudo npm run bench:load',
    wallS: (performance.now() - started) / 1000,
    machine: {
      cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memGiB: Math.round(totalmem() / 2 ** 30),
      kernel: execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim(), node: process.version, knockd: knockdVersion,
    },
    settings: { ...settings, seqTimeout: 25, knockPorts: KNOCK_PORTS, pointOrder: 'scenario, then rate ascending, then system' },
    skipped,
    summary: summarize(points),
    points,
  };
  writeReport(report, values.out!);
}

function writeReport(report: Report, dir: string): void {
  report.summary = summarize(report.points);
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `load-${report.date}`);
  writeFileSync(`${base}.json`, JSON.stringify(report, null, 1) + '\n');
  writeFileSync(`${base}.md`, markdown(report));
  writeFileSync(`${base}.svg`, svgDetection(report, 'flood', null, "Spoofed flood to the door's first port: legitimate knocks detected"));
  if (report.points.some((p) => p.scenario === 'pairs')) {
    writeFileSync(`${base}-pairs.svg`, svgDetection(report, 'pairs', null, 'Two-known-ports attack: legitimate knocks detected'));
  }
  for (const b of budgetsOf(report.points)) {
    writeFileSync(`${base}-cpu-${b}.svg`, svgDetection(report, 'cpu', b, `Spoofed first-port flood, every system held to ${b} % of one core`));
  }
  if (report.points.some((p) => p.scenario === 'sustained')) writeFileSync(`${base}-memory.svg`, svgMemory(report));
  console.error(`wrote ${base}.json, .md and charts (run took ${Math.round(report.wallS)} s)`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: Error) => {
    console.error(`bench:load: ${err.message}`);
    process.exit(1);
  });
}
