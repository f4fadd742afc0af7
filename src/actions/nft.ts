// Actions step, nftables: doors with `Open` get timeout sets and guard rules in a table owned by knockd-fast;
// doors with `NftSet` only get elements added to the operator's set. `nft` installs the table (at start and
// reload); grants are coalesced into batches written straight to the kernel over netlink by the addon
// (native/core/nft_elements.h), or, when the addon cannot load, by one long-lived `nft -i` process (see
// README "nftables doors" and bench/nft.bench.ts).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { parseAddress } from '../address.js';
import type { DoorConfig, NftSetRef, Proto } from '../config/types.js';
import { loadBinding, type NftElementsHandle } from '../native.js';
import type { Grant, LogFn } from './types.js';

export class NftError extends Error {
  override name = 'NftError';
}

const INSTALL_HINT = 'knockd-fast needs the nft tool for doors with Open or NftSet: apt-get install nftables';

/** Where nftables is: the network namespace (a name under /run/netns; default: the daemon's own) and the
 * environment whose PATH finds nft. */
export interface NftRunner {
  netns?: string;
  env?: NodeJS.ProcessEnv;
}

function nftArgv(runner: NftRunner): string[] {
  return runner.netns ? ['ip', 'netns', 'exec', runner.netns, 'nft'] : ['nft'];
}

export interface NftTableOptions extends NftRunner {
  /** NftTable; default knockd_fast (family inet) */
  table?: string;
}

// ---------------------------------------------------------------- ruleset

/** A set of the knockd-fast table, or the operator's set for NftSet doors. */
export interface DoorSet {
  door: string;
  family: 4 | 6;
  ref: NftSetRef;
  /** false for NftSet doors: the set belongs to the operator */
  owned: boolean;
}

interface GuardPlan {
  hook: 'input' | 'forward';
  proto: Proto;
  ports: number[];
  v4: string;
  v6: string;
}

export interface NftPlan {
  table: string;
  /** per door (index as in the config), its sets; empty for doors without Open/NftSet */
  doorSets: DoorSet[][];
  guards: GuardPlan[];
}

// nft identifiers, as src/config/parse.ts accepts them for NftTable
const IDENT = /^[A-Za-z_.][A-Za-z0-9_./-]{0,254}$/;

export function checkTableName(table: string): string {
  if (!IDENT.test(table) || table.length > 255) {
    throw new NftError(
      `NftTable = ${table} is not a valid nftables table name: use letters, digits and _ . / -, not starting with a digit`,
    );
  }
  return table;
}

/** Set names derived from door names: stable across restarts, unique within the table. */
export function planNft(doors: readonly DoorConfig[], table = 'knockd_fast'): NftPlan {
  checkTableName(table);
  const used = new Set<string>();
  const guards: GuardPlan[] = [];
  const doorSets = doors.map((door): DoorSet[] => {
    if (door.nftSet) {
      // the family of an operator's set is learned at install time; both candidates point at the same set
      return [4, 6].map((family) => ({ door: door.name, family: family as 4 | 6, ref: door.nftSet!, owned: false }));
    }
    if (door.open.length === 0) return [];
    const base = `d_${door.name.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 200)}`;
    let stem = base;
    for (let n = 2; used.has(stem); n++) stem = `${base}_${n}`;
    used.add(stem);
    const v4 = `${stem}_v4`;
    const v6 = `${stem}_v6`;
    for (const proto of ['tcp', 'udp'] as const) {
      const ports = [...new Set(door.open.filter((o) => o.proto === proto).map((o) => o.port))].sort((a, b) => a - b);
      if (ports.length > 0) guards.push({ hook: door.hook, proto, ports, v4, v6 });
    }
    return [
      { door: door.name, family: 4, ref: { family: 'inet', table, set: v4 }, owned: true },
      { door: door.name, family: 6, ref: { family: 'inet', table, set: v6 }, owned: true },
    ];
  });
  return { table, doorSets, guards };
}

const HOOK_PRIORITY = 'priority filter - 10';

function comment(door: string): string {
  return `knockd-fast door ${door}`.replace(/["\\\n]/g, "'").slice(0, 120);
}

/**
 * The install script: creates the table, sets and chains if missing (keeping existing elements) and
 * replaces the chains' rules, in one nft transaction. This is what `--test` prints.
 */
export function nftInstallScript(plan: NftPlan): string {
  const t = `inet ${plan.table}`;
  if (!plan.doorSets.some((sets) => sets.some((s) => s.owned))) {
    return '# no door has Open: knockd-fast installs no table (NftSet doors add to the operator\'s sets)\n';
  }
  const lines = [`add table ${t}`];
  for (const sets of plan.doorSets) {
    for (const s of sets) {
      if (!s.owned) continue;
      const type = s.family === 4 ? 'ipv4_addr' : 'ipv6_addr';
      lines.push(`add set ${t} ${s.ref.set} { type ${type}; flags timeout; comment "${comment(s.door)}"; }`);
    }
  }
  for (const hook of ['input', 'forward'] as const) {
    const guards = plan.guards.filter((g) => g.hook === hook);
    if (guards.length === 0) continue;
    lines.push(`add chain ${t} ${hook} { type filter hook ${hook} ${HOOK_PRIORITY}; policy accept; }`);
    lines.push(`flush chain ${t} ${hook}`);
    lines.push(`add rule ${t} ${hook} ct state established,related accept`);
    // a source granted by any door guarding a port may connect; every other new connection is dropped
    for (const g of guards) {
      const ports = `{ ${g.ports.join(', ')} }`;
      lines.push(`add rule ${t} ${hook} ${g.proto} dport ${ports} ip saddr @${g.v4} accept`);
      lines.push(`add rule ${t} ${hook} ${g.proto} dport ${ports} ip6 saddr @${g.v6} accept`);
    }
    for (const proto of ['tcp', 'udp'] as const) {
      const ports = [...new Set(guards.filter((g) => g.proto === proto).flatMap((g) => g.ports))].sort((a, b) => a - b);
      if (ports.length > 0) lines.push(`add rule ${t} ${hook} ${proto} dport { ${ports.join(', ')} } drop`);
    }
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- running nft

interface RunResult {
  code: number;
  output: string;
}

/** Runs nft once with `args`, feeding `input` on stdin; stdout and stderr are returned together. */
function runNft(runner: NftRunner, args: string[], input?: string): Promise<RunResult> {
  const argv = nftArgv(runner);
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], [...argv.slice(1), ...args], {
      env: runner.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new NftError(`cannot run ${argv[0]}: not found in PATH (${(runner.env ?? process.env).PATH ?? ''}); ${INSTALL_HINT}`)
          : new NftError(`cannot run ${argv.join(' ')}: ${err.message}`),
      );
    });
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
    child.stdin.on('error', () => {}); // the exit status reports the failure
    child.stdin.end(input ?? '');
  });
}

/** Fails with a clear message when nft cannot be run at all. */
export async function checkNft(runner: NftRunner): Promise<string> {
  const { code, output } = await runNft(runner, ['--version']);
  if (code !== 0) {
    throw new NftError(`cannot run ${nftArgv(runner).join(' ')} (exit status ${code}): ${output.trim()}; ${INSTALL_HINT}`);
  }
  return output.trim();
}

// `describe` is answered by nft without touching the kernel; its output marks the end of a command's output
const MARKER_COMMAND = 'describe tcp dport';
const MARKER = 'payload expression, datatype inet_service';

/**
 * One long-lived `nft -i` process. Each script is written to a private file and run with `include`:
 * the interactive line reader costs ~30 µs per element of a long line, the file scanner ~5 µs.
 */
class NftShell {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly dir = mkdtempSync(join(tmpdir(), 'knockd-fast-nft-'));
  private readonly file = join(this.dir, 'batch.nft');
  private output = '';
  private current: { resolve: (r: RunResult) => void; reject: (e: Error) => void } | undefined;
  private exited: Error | undefined;

  constructor(runner: NftRunner) {
    const argv = nftArgv(runner);
    this.child = spawn('/bin/sh', ['-c', 'exec "$@" -i 2>&1', 'sh', ...argv], {
      env: runner.env ?? process.env,
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    this.child.stdin.on('error', () => {}); // reported through 'close'
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => this.onData(d));
    this.child.on('close', (code, signal) => {
      this.exited = new NftError(`nft -i exited (${signal ?? `status ${code}`}): ${this.output.trim()}`);
      this.finish(undefined);
    });
    this.child.on('error', (err) => {
      this.exited = new NftError(`cannot run ${argv.join(' ')} -i: ${err.message}`);
      this.finish(undefined);
    });
  }

  get alive(): boolean {
    return this.exited === undefined;
  }

  /** Runs one script as one transaction. Only one script runs at a time (the caller serialises). */
  run(script: string): Promise<RunResult> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      this.current = { resolve, reject };
      writeFileSync(this.file, script);
      this.child.stdin.write(`include "${this.file}"\n${MARKER_COMMAND}\n`);
    });
  }

  private onData(chunk: string): void {
    this.output += chunk;
    const at = this.output.indexOf(MARKER);
    if (at < 0) return;
    const end = this.output.indexOf('\n', at);
    if (end < 0) return;
    const result = this.output.slice(0, at).trim();
    this.output = this.output.slice(end + 1);
    this.finish({ code: /(^|\n)[^\n]*Error: /.test(result) ? 1 : 0, output: result });
  }

  private finish(result: RunResult | undefined): void {
    const current = this.current;
    this.current = undefined;
    if (!current) return;
    if (result) current.resolve(result);
    else current.reject(this.exited!);
  }

  close(): void {
    if (this.alive) this.child.stdin.end();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- element writers

/** The elements of one batch that go to one set. */
interface SetBatch {
  ref: NftSetRef;
  family: 4 | 6;
  addresses: string[];
  timeoutsMs: number[];
}

/** Why a batch was not applied; `missing`: a table or set is gone, so the table is installed again. */
interface WriteFailure {
  missing: boolean;
  message: string;
}

/**
 * Applies one batch as one transaction, all or nothing. `add element` does not restart the timeout of an
 * element already there (checked on 6.18 with nft 1.0.6), so each element is added (so that it exists),
 * deleted and added again in the same transaction: its timeout restarts and no packet sees it missing.
 */
interface ElementWriter {
  /** default wait for more grants before a batch is applied (0: the end of the event-loop turn) */
  readonly coalesceMs: number;
  write(sets: SetBatch[]): Promise<WriteFailure | undefined>;
  close(): void;
}

/** The kernel's nftables API over NETLINK_NETFILTER, from the addon: microseconds per batch. */
class NetlinkWriter implements ElementWriter {
  // a transaction costs ~0.1 ms, so a batch is whatever arrived in the same turn: grants of one event batch
  readonly coalesceMs = 0;

  constructor(private readonly handle: NftElementsHandle) {}

  async write(sets: SetBatch[]): Promise<WriteFailure | undefined> {
    const native = sets.map(({ ref, family, addresses, timeoutsMs }) => {
      const width = family === 4 ? 4 : 16;
      const bytes = new Uint8Array(width * addresses.length);
      addresses.forEach((a, i) => bytes.set(parseAddress(a)!.bytes.subarray(0, width), i * width));
      return { family: ref.family, table: ref.table, set: ref.set, addresses: bytes, timeoutsMs: Float64Array.from(timeoutsMs) };
    });
    try {
      this.handle.refresh(native);
      return undefined;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return { missing: e.code === 'ENOENT', message: `netlink: ${e.message}` };
    }
  }

  close(): void {
    this.handle.close();
  }
}

/** `nft -i` fed the equivalent script: the fallback when the addon cannot load. */
class NftShellWriter implements ElementWriter {
  // each transaction is a round trip through another process: wait a little for more grants
  readonly coalesceMs = 2;
  private shell: NftShell | undefined;

  // started at once, so the first grant does not wait for nft to start
  constructor(private readonly runner: NftRunner) {
    this.shell = new NftShell(runner);
  }

  async write(sets: SetBatch[]): Promise<WriteFailure | undefined> {
    let script = '';
    for (const { ref, addresses, timeoutsMs } of sets) {
      const set = `${ref.family} ${ref.table} ${ref.set}`;
      const add = `add element ${set} { ${addresses.map((a, i) => `${a} timeout ${timeoutsMs[i]}ms`).join(', ')} }\n`;
      script += `${add}delete element ${set} { ${addresses.join(', ')} }\n${add}`;
    }
    if (!this.shell?.alive) {
      this.shell?.close();
      this.shell = new NftShell(this.runner);
    }
    try {
      const result = await this.shell.run(script);
      return result.code === 0 ? undefined : { missing: /No such file or directory/.test(result.output), message: result.output };
    } catch (err) {
      return { missing: false, message: (err as Error).message };
    }
  }

  close(): void {
    this.shell?.close();
    this.shell = undefined;
  }
}

// ---------------------------------------------------------------- status / uninstall

export interface NftElementStatus {
  address: string;
  timeoutS?: number;
  expiresS?: number;
}

export interface NftSetStatus {
  family: string;
  table: string;
  name: string;
  type: string;
  comment?: string;
  elements: NftElementStatus[];
}

export interface NftStatus {
  table: string;
  installed: boolean;
  chains: { name: string; hook?: string; priority?: number }[];
  sets: NftSetStatus[];
  /** NftSet doors' sets that could not be listed, with nft's message */
  errors: string[];
}

interface JsonSet {
  family: string;
  table: string;
  name: string;
  type: string | string[];
  comment?: string;
  flags?: string[];
  elem?: (string | { elem: { val: string; timeout?: number; expires?: number } })[];
}

function setStatus(s: JsonSet): NftSetStatus {
  return {
    family: s.family,
    table: s.table,
    name: s.name,
    type: Array.isArray(s.type) ? s.type.join(' . ') : s.type,
    comment: s.comment,
    elements: (s.elem ?? []).map((e) =>
      typeof e === 'string' ? { address: e } : { address: e.elem.val, timeoutS: e.elem.timeout, expiresS: e.elem.expires },
    ),
  };
}

async function listJson(runner: NftRunner, what: string[]): Promise<{ ok: true; items: object[] } | { ok: false; output: string }> {
  const { code, output } = await runNft(runner, ['-j', 'list', ...what]);
  if (code !== 0) return { ok: false, output: output.trim() };
  return { ok: true, items: (JSON.parse(output) as { nftables: object[] }).nftables };
}

/** The table knockd-fast owns (and the NftSet doors' sets, when doors are given), with elements and expiry. */
export async function nftStatus(opts: NftTableOptions & { doors?: readonly DoorConfig[] }): Promise<NftStatus> {
  const table = checkTableName(opts.table ?? 'knockd_fast');
  const status: NftStatus = { table, installed: false, chains: [], sets: [], errors: [] };
  const listed = await listJson(opts, ['table', 'inet', table]);
  if (listed.ok) {
    status.installed = true;
    for (const item of listed.items as { set?: JsonSet; chain?: { name: string; hook?: string; prio?: number } }[]) {
      if (item.set) status.sets.push(setStatus(item.set));
      if (item.chain) status.chains.push({ name: item.chain.name, hook: item.chain.hook, priority: item.chain.prio });
    }
  } else if (!/No such file or directory/.test(listed.output)) {
    throw new NftError(`nft list table inet ${table} failed: ${listed.output}`);
  }
  const seen = new Set<string>();
  for (const door of opts.doors ?? []) {
    const ref = door.nftSet;
    if (!ref) continue;
    const key = `${ref.family} ${ref.table} ${ref.set}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const one = await listJson(opts, ['set', ref.family, ref.table, ref.set]);
    if (!one.ok) status.errors.push(`door ${door.name}: NftSet ${key}: ${one.output}`);
    else for (const item of one.items as { set?: JsonSet }[]) if (item.set) status.sets.push(setStatus(item.set));
  }
  return status;
}

export function formatNftStatus(status: NftStatus): string {
  const lines: string[] = [];
  lines.push(status.installed ? `table inet ${status.table}` : `table inet ${status.table}: not installed`);
  for (const c of status.chains) lines.push(`  chain ${c.name}${c.hook ? ` (hook ${c.hook}, priority ${c.priority})` : ''}`);
  for (const s of status.sets) {
    const where = s.table === status.table && s.family === 'inet' ? '' : ` (${s.family} ${s.table})`;
    lines.push(`  set ${s.name}${where}: ${s.type}, ${s.elements.length} element(s)${s.comment ? ` — ${s.comment}` : ''}`);
    for (const e of s.elements) {
      const expiry = e.expiresS !== undefined ? `expires in ${e.expiresS}s of ${e.timeoutS}s` : 'no timeout';
      lines.push(`    ${e.address}  ${expiry}`);
    }
  }
  for (const e of status.errors) lines.push(`  error: ${e}`);
  return lines.join('\n') + '\n';
}

/** Removes the knockd-fast table (and so every open door). Returns false when it was not installed. */
export async function nftUninstall(opts: NftTableOptions): Promise<boolean> {
  const table = checkTableName(opts.table ?? 'knockd_fast');
  const { code, output } = await runNft(opts, ['delete', 'table', 'inet', table]);
  if (code === 0) return true;
  if (/No such file or directory/.test(output)) return false;
  throw new NftError(`nft delete table inet ${table} failed: ${output.trim()}`);
}

// ---------------------------------------------------------------- the backend

export interface NftBackendOptions extends NftTableOptions {
  doors: readonly DoorConfig[];
  log: LogFn;
  /** longest wait for more grants before a batch is applied; default 0 with netlink (the end of the
   * event-loop turn: the grants of one event batch go together), 2 ms with nft -i */
  coalesceMs?: number;
  /** a batch is applied at once when it reaches this many elements; default 1024 */
  maxBatch?: number;
  /** delay before retrying a failed batch; default 1000 ms */
  retryMs?: number;
  /** monotonic clock in ms (tests, benches); default performance.now */
  now?: () => number;
  /** called after each applied batch: elements and ms from the oldest grant to installed */
  onBatch?: (elements: number, latencyMs: number) => void;
  /** how set elements are written: netlink (default; falls back to nft when the addon cannot load) or nft -i */
  writer?: 'netlink' | 'nft';
}

interface PendingElement {
  set: DoorSet;
  address: string;
  grantedAt: number;
  timeoutMs: number;
  /** a batch holding it failed before */
  retried: boolean;
  done: ((installed: boolean) => void)[];
}

/** Operator's set (NftSet) as found at install: which family it holds. */
interface ExternalSet {
  family: 4 | 6 | undefined;
}

export class NftBackend {
  private readonly opts: NftBackendOptions;
  private readonly now: () => number;
  private plan: NftPlan;
  private doorIndex = new Map<DoorConfig, number>();
  private external = new Map<string, ExternalSet>();
  private writer: ElementWriter | undefined;
  private pending = new Map<string, PendingElement>();
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private inFlight: Promise<void> | undefined;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  /** set by close(): a failing batch is given up instead of retried */
  private closing = false;
  private started = false;

  constructor(opts: NftBackendOptions) {
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now());
    this.plan = planNft(opts.doors, opts.table);
    this.indexDoors(opts.doors);
  }

  /** The install script for the current doors (what `--test` prints). */
  get ruleset(): string {
    return nftInstallScript(this.plan);
  }

  /** Checks nft, opens the element writer and installs the table; throws NftError with nft's text on failure. */
  async start(): Promise<void> {
    await checkNft(this.opts);
    this.writer = this.openWriter();
    await this.install();
    this.started = true;
    this.schedule(0);
  }

  /** Installs the ruleset for a new config (SIGHUP); existing elements of kept doors stay. */
  async reload(doors: readonly DoorConfig[]): Promise<void> {
    const plan = planNft(doors, this.opts.table);
    await this.flush();
    const previous = this.plan;
    this.plan = plan;
    try {
      await this.install();
    } catch (err) {
      this.plan = previous;
      throw err;
    }
    this.indexDoors(doors);
  }

  private indexDoors(doors: readonly DoorConfig[]): void {
    this.doorIndex = new Map(doors.map((d, i) => [d, i]));
  }

  private async install(): Promise<void> {
    const t = `inet ${this.plan.table}`;
    let script = nftInstallScript(this.plan);
    // drop sets and chains of doors and hooks that are gone from the config
    const listed = await listJson(this.opts, ['table', 'inet', this.plan.table]);
    if (listed.ok) {
      const sets = new Set(this.plan.doorSets.flat().filter((s) => s.owned).map((s) => s.ref.set));
      const hooks = new Set<string>(this.plan.guards.map((g) => g.hook));
      const items = listed.items as { chain?: { name: string }; set?: { name: string } }[];
      // chains first: a set cannot be deleted while a rule still refers to it
      for (const { chain } of items) {
        if (chain && !hooks.has(chain.name)) script += `flush chain ${t} ${chain.name}\ndelete chain ${t} ${chain.name}\n`;
      }
      for (const { set } of items) if (set && !sets.has(set.name)) script += `delete set ${t} ${set.name}\n`;
    }
    const result = await runNft(this.opts, ['-f', '-'], script);
    if (result.code !== 0) {
      throw new NftError(`nft refused the knockd-fast ruleset:\n${result.output}\nruleset:\n${script}`);
    }
    this.external = new Map();
    for (const sets of this.plan.doorSets) {
      const s = sets[0];
      if (!s || s.owned) continue;
      const key = setKey(s.ref);
      if (this.external.has(key)) continue;
      this.external.set(key, { family: await this.externalFamily(s) });
    }
  }

  private async externalFamily(s: DoorSet): Promise<4 | 6> {
    const name = `NftSet = ${s.ref.family} ${s.ref.table} ${s.ref.set} (door ${s.door})`;
    const listed = await listJson(this.opts, ['set', s.ref.family, s.ref.table, s.ref.set]);
    if (!listed.ok) {
      throw new NftError(
        `${name}: ${listed.output}\ncreate the set first, e.g. nft add set ${s.ref.family} ${s.ref.table} ${s.ref.set} '{ type ipv4_addr; flags timeout; }'`,
      );
    }
    const set = (listed.items as { set?: JsonSet }[]).find((i) => i.set)!.set!;
    if (!(set.flags ?? []).includes('timeout')) {
      throw new NftError(`${name}: the set has no 'flags timeout', so doors could not close; recreate it with flags timeout`);
    }
    if (set.type === 'ipv4_addr') return 4;
    if (set.type === 'ipv6_addr') return 6;
    throw new NftError(`${name}: the set holds ${JSON.stringify(set.type)}; knockd-fast adds addresses (ipv4_addr or ipv6_addr)`);
  }

  private openWriter(): ElementWriter {
    if ((this.opts.writer ?? 'netlink') === 'nft') return new NftShellWriter(this.opts);
    let binding;
    try {
      binding = loadBinding();
    } catch (err) {
      this.opts.log(`nft: ${firstLine((err as Error).message)}; set elements go through nft -i instead (slower)`);
      return new NftShellWriter(this.opts);
    }
    try {
      return new NetlinkWriter(new binding.NftElements(this.opts.netns ? `/run/netns/${this.opts.netns}` : undefined));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const fix = e.code === 'EPERM' ? '; knockd-fast needs CAP_NET_ADMIN (see examples/knockd-fast.service)' : '';
      throw new NftError(`cannot open the netlink socket for nftables set elements: ${e.message}${fix}`);
    }
  }

  /**
   * Opens the door for the source for the door's Open_Timeout (refreshing an open one). Resolves true once
   * the element is installed, false if it was not (door without nft action, wrong family, window over).
   * Never rejects.
   */
  grant(g: Grant): Promise<boolean> {
    const index = this.doorIndex.get(g.door);
    const set = index === undefined ? undefined : this.plan.doorSets[index].find((s) => s.family === g.family);
    if (!set || this.closed) return Promise.resolve(false);
    if (!set.owned && this.external.get(setKey(set.ref))?.family !== g.family) {
      const r = set.ref;
      this.opts.log(`${g.door.name}: NftSet ${r.family} ${r.table} ${r.set} holds IPv${g.family === 4 ? 6 : 4} addresses; not adding ${g.source}`);
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      const key = `${setKey(set.ref)} ${g.source}`;
      const existing = this.pending.get(key);
      const element: PendingElement = {
        set,
        address: g.source,
        grantedAt: this.now(),
        timeoutMs: g.door.openTimeout * 1000,
        retried: false,
        done: existing ? [...existing.done, resolve] : [resolve],
      };
      this.pending.set(key, element);
      this.schedule(this.opts.coalesceMs ?? this.writer?.coalesceMs ?? 0);
    });
  }

  private schedule(delayMs: number): void {
    if (this.inFlight || this.timer || !this.started || this.pending.size === 0) return;
    if (this.pending.size >= (this.opts.maxBatch ?? 1024)) delayMs = 0;
    const apply = () => {
      this.timer = undefined;
      this.inFlight = this.applyBatch()
        .catch((err: Error) => this.opts.log(`nft: ${err.message}`))
        .finally(() => {
        this.inFlight = undefined;
        if (this.pending.size > 0) this.schedule(0);
        else for (const w of this.idleWaiters.splice(0)) w();
      });
    };
    // setTimeout(0) waits a millisecond; setImmediate runs once this turn's grants are in
    this.timer = delayMs > 0 ? setTimeout(apply, delayMs) : setImmediate(apply);
  }

  private async applyBatch(): Promise<void> {
    // at most maxBatch per transaction, oldest first, so a burst does not become one long commit
    const batch: PendingElement[] = [];
    const limit = this.opts.maxBatch ?? 1024;
    for (const [key, e] of this.pending) {
      if (batch.length >= limit) break;
      batch.push(e);
      this.pending.delete(key);
    }
    const now = this.now();
    const bySet = new Map<string, SetBatch>();
    const live: PendingElement[] = [];
    let oldest = now;
    for (const e of batch) {
      // a retried grant keeps only what is left of its window
      const remaining = e.retried ? Math.floor(e.timeoutMs - (now - e.grantedAt)) : e.timeoutMs;
      if (remaining < 1) {
        this.opts.log(`${e.set.door}: open window for ${e.address} ended before nftables accepted it`);
        for (const d of e.done) d(false);
        continue;
      }
      live.push(e);
      oldest = Math.min(oldest, e.grantedAt);
      const key = `${setKey(e.set.ref)} ${e.set.family}`;
      let group = bySet.get(key);
      if (!group) bySet.set(key, (group = { ref: e.set.ref, family: e.set.family, addresses: [], timeoutsMs: [] }));
      group.addresses.push(e.address);
      group.timeoutsMs.push(remaining);
    }
    if (live.length === 0) return;
    const failure = await this.writer!.write([...bySet.values()]);
    if (!failure) {
      this.opts.onBatch?.(live.length, this.now() - oldest);
      for (const e of live) for (const d of e.done) d(true);
      return;
    }
    if (this.closing) {
      this.opts.log(`nft: ${live.length} grant(s) not applied at shutdown: ${failure.message}`);
      for (const e of live) for (const d of e.done) d(false);
      return;
    }
    this.requeue(live);
    if (failure.missing) {
      this.opts.log(`nft: a set of knockd-fast is gone (${firstLine(failure.message)}); re-installing table inet ${this.plan.table}`);
      try {
        await this.install();
        return; // retried at once by the caller
      } catch (err) {
        this.opts.log(`nft: re-install failed: ${(err as Error).message}`);
      }
    } else {
      this.opts.log(`nft: applying ${live.length} grant(s) failed: ${failure.message}`);
    }
    await new Promise((r) => setTimeout(r, this.opts.retryMs ?? 1000));
  }

  private requeue(elements: PendingElement[]): void {
    for (const e of elements) {
      e.retried = true;
      const key = `${setKey(e.set.ref)} ${e.address}`;
      const newer = this.pending.get(key);
      if (newer) newer.done.push(...e.done);
      else this.pending.set(key, e);
    }
  }

  /** Resolves when no grant is pending or being applied. */
  flush(): Promise<void> {
    if (!this.inFlight && !this.timer && this.pending.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Applies pending grants and stops the nft process; the table stays (doors close by their timeouts). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    if (this.started) await this.flush();
    this.closed = true;
    this.writer?.close();
    this.writer = undefined;
  }
}

function setKey(ref: NftSetRef): string {
  return `${ref.family} ${ref.table} ${ref.set}`;
}

function firstLine(text: string): string {
  return text.split('\n').find((l) => l.includes('Error')) ?? text.split('\n')[0];
}
