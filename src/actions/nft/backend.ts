// nftables doors, the backend: installs the ruleset at start and reload and turns grants into set elements,
// coalesced into batches (src/actions/nft/writers.ts). Doors with `Open` get timeout sets and guard rules in
// a table owned by knockd-fast; doors with `NftSet` only get elements added to the operator's set.
import type { DoorConfig, NftSetRef } from '../../config/types.js';
import type { Grant, LogFn } from '../types.js';
import { NftError, checkNft, firstLine, listSet, listTable, runNft, type NftTableOptions } from './process.js';
import { nftInstallScript, planNft, plannedSets, type DoorSet, type NftPlan } from './ruleset.js';
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
  /** by name, for the copies of one-time doors that carry their current line (DoorController.withCurrentSequences) */
  private nameIndex = new Map<string, number>();
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
    this.writer = openWriter(this.opts.writer ?? 'netlink', this.opts, this.opts.log);
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
    this.nameIndex = new Map();
    doors.forEach((d, i) => this.nameIndex.has(d.name) || this.nameIndex.set(d.name, i));
  }

  private async install(): Promise<void> {
    const t = `inet ${this.plan.table}`;
    let script = nftInstallScript(this.plan);
    // drop sets and chains of doors and hooks that are gone from the config
    const listed = await listTable(this.opts, 'inet', this.plan.table);
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

  /**
   * Opens the door for the source for the grant's timeoutMs, by default the door's Open_Timeout (refreshing
   * an open one). Resolves true once
   * the element is installed, false if it was not (door without nft action, wrong family, window over).
   * Never rejects.
   */
  grant(g: Grant): Promise<boolean> {
    const index = this.doorIndex.get(g.door) ?? this.nameIndex.get(g.door.name);
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
        timeoutMs: g.timeoutMs ?? g.door.openTimeout * 1000,
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
    this.opts.onBatchFailure?.(live.length);
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
