// nftables doors, the backend: installs the ruleset at start and reload and turns grants into set elements,
// coalesced into batches (src/actions/nft/writers.ts). Doors with `Open` get timeout sets and guard rules in
// a table owned by knockd-fast; doors with `NftSet` only get elements added to the operator's set. The guard
// watch (nft/guard.ts) restores the table, chains and sets when someone removes or changes them.
//
// Grants: `grant(g)` for the controller (the door's Open_Timeout), `openDoor(door, family, address,
// timeoutSeconds)` for any caller (e.g. a grant that arrives with a remaining time). A door is named by its
// DoorConfig from any config generation the backend was given, or by its name; it is found in the running
// config by a stable key (its set names), so a knock completed under the previous config during a SIGHUP
// still gets its element. Every grant that adds no element logs why.
import { parseAddress } from '../../address.js';
import type { DoorConfig, NftSetRef } from '../../config/types.js';
import type { Grant, LogFn } from '../types.js';
import { GuardWatch } from './guard.js';
import { NftError, firstLine, listSet, listTable, runNft, tableExists, type NftTableOptions } from './process.js';
import { nftInstallScript, planNft, plannedChains, plannedSets, type DoorSet, type NftPlan } from './ruleset.js';
import type { JsonSet } from './status.js';
import { openWriter, type ElementWriter, type SetBatch } from './writers.js';

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
  /** called after each batch the kernel or nft refused (its grants are retried) */
  onBatchFailure?: (elements: number) => void;
  /** how set elements are written: netlink (default; falls back to nft when the addon cannot load) or nft -i */
  writer?: 'netlink' | 'nft';
  /** watch the table and restore it when someone changes it (default true) */
  guard?: boolean;
  /** called each time a tampered table is restored, with what was found missing or changed */
  onGuardRestored?: (damage: string[]) => void;
}

interface PendingElement {
  set: DoorSet;
  address: string;
  /** 16 bytes (src/address.ts) */
  bytes: Uint8Array;
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
  /** the key (NftPlan.doorKeys) of every door object of every config given, so old generations resolve */
  private readonly doorKeys = new WeakMap<DoorConfig, string>();
  /** door key and door name -> index in the current plan */
  private byKey = new Map<string, number>();
  private byName = new Map<string, number>();
  private guard: GuardWatch | undefined;
  /** install, reload and guard checks run one at a time, so a check never sees a half-made change */
  private exclusive: Promise<unknown> = Promise.resolve();
  private guardCheck: Promise<void> | undefined;
  private guardRecheck = false;
  /** start() created the table (it did not exist before): a failed first start removes it again */
  private createdTable = false;
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
    this.indexDoors(opts.doors, this.plan);
  }

  /** The install script for the current doors (what `--test` prints). */
  get ruleset(): string {
    return nftInstallScript(this.plan);
  }

  private get owns(): boolean {
    return plannedSets(this.plan).size > 0;
  }

  /**
   * Checks nft, opens the element writer, installs the table and starts the guard watch; throws NftError
   * with nft's text on failure.
   */
  async start(): Promise<void> {
    // no separate `nft --version`: the first listing fails with the same clear error when nft is missing
    this.writer = openWriter(this.opts.writer ?? 'netlink', this.opts, this.opts.log);
    await this.locked(async () => {
      const items = await listTable(this.opts, 'inet', this.plan.table);
      this.createdTable = this.owns && !items;
      await this.install({ items });
    });
    this.started = true;
    this.watchGuard();
    this.schedule(0);
  }

  /**
   * Removes the table if start() created it (a first start that failed later, e.g. capture could not open,
   * leaves no rule behind); a table that was there before, with its open doors, stays. Returns true when
   * the table was removed.
   */
  async removeIfCreated(): Promise<boolean> {
    if (!this.createdTable) return false;
    this.guard?.close();
    this.guard = undefined;
    const removed = await this.locked(async () => {
      const { code, output } = await runNft(this.opts, ['delete', 'table', 'inet', this.plan.table]);
      if (code !== 0 && (await tableExists(this.opts, 'inet', this.plan.table))) {
        throw new NftError(`could not remove table inet ${this.plan.table} after the failed start: ${output.trim()}`);
      }
      return code === 0;
    });
    this.createdTable = false;
    return removed;
  }

  /** Installs the ruleset for a new config (SIGHUP); existing elements of kept doors stay. */
  async reload(doors: readonly DoorConfig[]): Promise<void> {
    const plan = planNft(doors, this.opts.table);
    await this.flush();
    await this.locked(async () => {
      const previous = this.plan;
      this.plan = plan;
      try {
        await this.install();
      } catch (err) {
        this.plan = previous;
        throw err;
      }
    });
    this.indexDoors(doors, plan);
    this.watchGuard();
  }

  /** Runs `fn` after every install or check before it, and before any after it. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusive.then(fn, fn);
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  private indexDoors(doors: readonly DoorConfig[], plan: NftPlan): void {
    this.byKey = new Map();
    this.byName = new Map();
    doors.forEach((door, i) => {
      const key = plan.doorKeys[i];
      this.doorKeys.set(door, key);
      if (!this.byKey.has(key)) this.byKey.set(key, i);
      if (!this.byName.has(door.name)) this.byName.set(door.name, i);
    });
  }

  /** The door's sets in the running config: by its key when the object came from a config given to the
   * backend (any generation), else by name (a name, or a copy such as the controller's one-time doors that
   * carry their current line). */
  private setsOf(door: DoorConfig | string): DoorSet[] | undefined {
    const key = typeof door === 'string' ? undefined : this.doorKeys.get(door);
    const index = key !== undefined ? this.byKey.get(key) : this.byName.get(typeof door === 'string' ? door : door.name);
    return index === undefined ? undefined : this.plan.doorSets[index];
  }

  // ------------------------------------------------------------ guard watch

  private watchGuard(): void {
    if (this.opts.guard === false || this.closed) return;
    if (!this.owns) {
      this.guard?.close();
      this.guard = undefined;
      return;
    }
    if (this.guard) return;
    this.guard = new GuardWatch({ ...this.opts, table: this.plan.table, log: this.opts.log, onChange: () => void this.checkGuard() });
  }

  /** Compares the table with the plan and restores it when something is missing or changed; coalesced. */
  private checkGuard(): Promise<void> {
    if (this.guardCheck) {
      this.guardRecheck = true;
      return this.guardCheck;
    }
    this.guardCheck = (async () => {
      do {
        this.guardRecheck = false;
        try {
          await this.locked(async () => {
            // the watch was stopped meanwhile (close, or a failed first start removing the table)
            if (this.closed || !this.guard || !this.owns) return;
            const { damage, items } = await this.guardDamage();
            if (damage.length === 0) return;
            this.opts.log(`nft: WARNING: the knockd-fast guard was tampered with (${damage.join('; ')}); restoring table inet ${this.plan.table}`);
            this.opts.onGuardRestored?.(damage);
            await this.install({ items });
            this.opts.log(`nft: table inet ${this.plan.table} restored; sources whose elements were deleted must knock again`);
          });
        } catch (err) {
          this.opts.log(`nft: WARNING: checking or restoring table inet ${this.plan.table} failed: ${(err as Error).message}`);
        }
      } while (this.guardRecheck && !this.closed);
      this.guardCheck = undefined;
    })();
    return this.guardCheck;
  }

  /** What differs between the table in the kernel and the plan: missing table, sets, chains, rule counts. */
  private async guardDamage(): Promise<{ damage: string[]; items: object[] | undefined }> {
    const t = this.plan.table;
    const items = await listTable(this.opts, 'inet', t);
    if (!items) return { damage: [`table inet ${t} deleted`], items };
    const sets = new Set<string>();
    const rules = new Map<string, number>();
    for (const item of items as { set?: { name: string }; chain?: { name: string }; rule?: { chain: string } }[]) {
      if (item.set) sets.add(item.set.name);
      if (item.chain) rules.set(item.chain.name, rules.get(item.chain.name) ?? 0);
      if (item.rule) rules.set(item.rule.chain, (rules.get(item.rule.chain) ?? 0) + 1);
    }
    const damage: string[] = [];
    for (const set of plannedSets(this.plan)) if (!sets.has(set)) damage.push(`set ${set} deleted`);
    for (const [chain, count] of plannedChains(this.plan)) {
      const found = rules.get(chain);
      if (found === undefined) damage.push(`chain ${chain} deleted`);
      else if (found !== count) damage.push(`chain ${chain} has ${found} rule(s) instead of ${count}`);
    }
    return { damage, items };
  }

  // ------------------------------------------------------------ ruleset

  /** Installs the plan; `known`: the table as just listed (items undefined: it does not exist), saving a listing. */
  private async install(known?: { items: object[] | undefined }): Promise<void> {
    const t = `inet ${this.plan.table}`;
    let script = nftInstallScript(this.plan);
    // drop sets and chains of doors and hooks that are gone from the config
    const listed = known ? known.items : await listTable(this.opts, 'inet', this.plan.table);
    if (listed) {
      const sets = plannedSets(this.plan);
      const hooks = new Set<string>(this.plan.guards.map((g) => g.hook));
      const items = listed as { chain?: { name: string }; set?: { name: string } }[];
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
    const listed = await listSet(this.opts, s.ref);
    if (!listed) {
      throw new NftError(
        `${name}: the set does not exist; create the set first, e.g. nft add set ${s.ref.family} ${s.ref.table} ${s.ref.set} '{ type ipv4_addr; flags timeout; }'`,
      );
    }
    const set = (listed as { set?: JsonSet }[]).find((i) => i.set)!.set!;
    if (!(set.flags ?? []).includes('timeout')) {
      throw new NftError(`${name}: the set has no 'flags timeout', so doors could not close; recreate it with flags timeout`);
    }
    if (set.type === 'ipv4_addr') return 4;
    if (set.type === 'ipv6_addr') return 6;
    throw new NftError(`${name}: the set holds ${JSON.stringify(set.type)}; knockd-fast adds addresses (ipv4_addr or ipv6_addr)`);
  }

  // ------------------------------------------------------------ grants

  /** Opens the door for the source for the grant's timeoutMs, by default the door's Open_Timeout (refreshing
   * an open one); see openDoor. */
  grant(g: Grant): Promise<boolean> {
    return new Promise((resolve) => this.add(g.door, g.family, g.source, g.address, g.timeoutMs ?? g.door.openTimeout * 1000, resolve));
  }

  /** Many grants (a fleet catch-up page, the grants of one turn): one promise for all, resolved once every
   * element is installed or refused (each refusal logged as by openDoor). */
  grantAll(grants: readonly Grant[]): Promise<void> {
    return new Promise((resolve) => {
      let left = grants.length + 1;
      const done = () => {
        if (--left === 0) resolve();
      };
      for (const g of grants) this.add(g.door, g.family, g.source, g.address, g.timeoutMs ?? g.door.openTimeout * 1000, done);
      done();
    });
  }

  /**
   * Adds `address` to the door's set for `timeoutSeconds` (an element already there gets the new timeout).
   * `door` is a DoorConfig of any config given to the backend, or a door name of the running config.
   * Resolves true once the element is in the kernel, false (with a log line saying why) if it is not: no
   * such door, a door without Open/NftSet, an operator set of the other family, not an address, the window
   * over before nftables accepted it, the backend closed. Never rejects.
   */
  openDoor(door: DoorConfig | string, family: 4 | 6, address: string, timeoutSeconds: number): Promise<boolean> {
    return new Promise((resolve) => this.add(door, family, address, undefined, timeoutSeconds * 1000, resolve));
  }

  /** openDoor's work; `done` is called once, with whether the element went in. `bytes`: the address parsed. */
  private add(door: DoorConfig | string, family: 4 | 6, address: string, bytes: Uint8Array | undefined, timeoutMs: number, done: (installed: boolean) => void): void {
    const name = typeof door === 'string' ? door : door.name;
    const not = (why: string) => {
      this.opts.log(`${name}: no nftables element for ${address}: ${why}`);
      done(false);
    };
    if (this.closed) return not('the nftables backend is shut down');
    const sets = this.setsOf(door);
    if (!sets) return not('the door is not in the running config (it was removed or renamed by a reload)');
    const set = sets.find((s) => s.family === family);
    if (!set) return not('the door has no Open or NftSet in the running config');
    if (!set.owned && this.external.get(setKey(set.ref))?.family !== family) {
      const r = set.ref;
      this.opts.log(`${name}: NftSet ${r.family} ${r.table} ${r.set} holds IPv${family === 4 ? 6 : 4} addresses; not adding ${address}`);
      return done(false);
    }
    if (!(timeoutMs > 0)) return not(`the timeout ${timeoutMs / 1000} s is not positive`);
    const parsed = bytes ?? parseAddress(address)?.bytes;
    if (!parsed) return not('not an IP address');
    const key = `${setKey(set.ref)} ${address}`;
    const existing = this.pending.get(key);
    if (existing) existing.done.push(done);
    this.pending.set(key, {
      set,
      address,
      bytes: parsed,
      grantedAt: this.now(),
      timeoutMs: Math.round(timeoutMs),
      retried: false,
      done: existing ? existing.done : [done],
    });
    this.schedule(this.opts.coalesceMs ?? this.writer?.coalesceMs ?? 0);
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
      if (!group) bySet.set(key, (group = { ref: e.set.ref, family: e.set.family, addresses: [], bytes: [], timeoutsMs: [] }));
      group.addresses.push(e.address);
      group.bytes.push(e.bytes);
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
    this.opts.onBatchFailure?.(live.length);
    if (failure.missing) {
      this.opts.log(`nft: a set of knockd-fast is gone (${firstLine(failure.message)}); re-installing table inet ${this.plan.table}`);
      try {
        await this.locked(() => this.install());
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
    this.guard?.close();
    this.guard = undefined;
    this.writer?.close();
    this.writer = undefined;
  }
}

function setKey(ref: NftSetRef): string {
  return `${ref.family} ${ref.table} ${ref.set}`;
}
