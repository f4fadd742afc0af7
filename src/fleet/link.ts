// The fleet link: this member's side of a fleet (docs/FLEET.md). It shares the grants the controller makes
// (signed, written with their absolute expiry and published), applies the other members' grants through
// the controller with the time they have left, answers single-use questions with one atomic script in the
// store, catches up on every open grant at start, reconnect and reload, and keeps heartbeats for
// `knockd-fast fleet status`. Nothing here is on the matching or local-grant path: a local door opens
// before the store is asked anything, except for single-use doors, whose decision waits at most
// DECIDE_TIMEOUT_MS and then follows Fleet_Offline.
import { createHash } from 'node:crypto';
import type { Grant } from '../actions/types.js';
import type { DoorConfig, FleetConfig, Step } from '../config/types.js';
import type { LogFields } from '../report/log.js';
import type { Metrics } from '../report/metrics.js';
import { CLOCK_SKEW_MS, checkGrant, type CheckedGrant, decodeMessage, doorWindowMs, encodeMessage, lineDigest, MessageRefused, newNonce, REFUSAL_REASONS, type FleetMessage, type RefusalReason } from './message.js';
import { FleetStore, type SingleUse } from './store.js';
import { describeStore, parseStoreUrl } from '../config/store-url.js';
import { windowOf } from '../match/derive.js';

/** A single-use decision of the fleet (FleetLinkImpl below): the store's answer, or what Fleet_Offline says
 * when it could not answer (local: decide as a single box; deny: do not open). */
export type FleetDecision =
  | { outcome: 'granted' | 'extended' | 'local' | 'deny' }
  | { outcome: 'cooldown'; leftMs: number }
  | { outcome: 'used'; by: string };

/** A completed knock as the fleet decides it. */
export interface Completion {
  source: string;
  family: 4 | 6;
  /** the sequence that completed (a one-time door: its current line) */
  sequence: readonly Step[];
  /** a derived door: the time window of the sequence, low 32 bits (MATCHER.md §7) */
  window: number;
  /** when the knock completed, µs */
  timeUs: number;
}

/** The fleet as the controller drives it: single-use decisions before opening, grants shared after. */
export interface FleetLink {
  /** true when this door's completions are decided fleet-wide (Cooldown, Dedupe, one-time lines, derived windows) */
  decides(door: DoorConfig): boolean;
  /** the fleet-wide decision for a completion; never rejects, bounded in time */
  decide(door: DoorConfig, completion: Completion): Promise<FleetDecision>;
  /** a grant made here, open for openForMs: shared with the other members (never waits) */
  share(grant: Grant, openForMs: number): void;
}

/** a single-use decision waits this long for the store, then follows Fleet_Offline */
export const DECIDE_TIMEOUT_MS = 250;
/** grants made while the store is unreachable, kept to publish on reconnect (newest per door and source) */
export const QUEUE_LIMIT = 10_000;
/** this member's open grants remembered for a store that comes back empty */
export const MINE_LIMIT = 100_000;
/** a catch-up reads at most this many grants and stops after this long (then says so) */
export const CATCH_UP_LIMIT = 1_000_000;
export const CATCH_UP_TIME_MS = 30_000;
/** a catch-up logs its first this many grants one by one, then only counts them in its summary line */
export const CATCH_UP_LINES = 20;
/** this member's published messages awaiting their echo (~300 bytes each); more in flight than this is a
 * connection that lost them */
const ECHOES_LIMIT = 16_384;
const HEARTBEAT_MS = 5000;
const HEARTBEAT_TTL_MS = 3 * HEARTBEAT_MS;
/** refused messages: one summary line per reason per this period */
const REFUSAL_LOG_MS = 10_000;

/** Another member's grant, verified and checked, as the controller installs it. */
export interface RemoteGrant {
  door: DoorConfig;
  source: string;
  family: 4 | 6;
  /** the source parsed once by checkGrant (16 bytes), handed to the nft writer as is */
  address: Uint8Array;
  remainingMs: number;
  /** Fleet_Commands = all: run this member's start command */
  runCommands: boolean;
  from: string;
  /** write its `opened by fleet member` line (a catch-up writes it for its first CATCH_UP_LINES grants only) */
  logged: boolean;
}

/** What the link needs from the controller: remote grants and one-time lines used elsewhere. */
export interface FleetTarget {
  /** installs other members' grants with the time each has left; resolves once every element is in */
  applyRemoteGrants(grants: readonly RemoteGrant[]): Promise<unknown>;
  /** another member used this one-time line: advance past it if it is this door's current one */
  applyLineUsed(door: DoorConfig, digest: string, from: string): void;
  /** a one-time door's current line on this member */
  currentSequence(door: DoorConfig): Step[];
}

export interface FleetLinkOptions {
  config: FleetConfig;
  doors: readonly DoorConfig[];
  version: string;
  log: (message: string, fields?: LogFields) => void;
  target: FleetTarget;
  metrics?: Metrics;
  /** wall clock, ms */
  now?: () => number;
}

export interface FleetStats {
  connected: boolean;
  published: number;
  applied: number;
  queued: number;
  queueOverflow: number;
  refused: Record<RefusalReason, number>;
  lastCatchUp?: { grants: number; ms: number; complete: boolean };
}

/** A door's fingerprint: what must be equal on every member for the door to behave as one. */
export function doorFingerprint(door: DoorConfig): string {
  const shape = {
    open: door.open,
    openTimeout: door.openTimeout,
    nftSet: door.nftSet,
    hook: door.hook,
    cooldown: door.cooldown,
    dedupe: door.dedupe,
    oneTime: door.oneTimeSequences !== undefined,
    derived: door.derived ? { ...door.derived, key: createHash('sha256').update(door.derived.key).digest('hex'), secretFile: undefined } : undefined,
    sequence: door.oneTimeSequences || door.derived ? undefined : door.sequence,
    commands: [door.startCommand, door.stopCommand, door.cmdTimeout],
  };
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 12);
}

/**
 * A derived door's window as the store records it: the full window (the event carries its low 32 bits;
 * the one nearest the completion's own window), kept until every member's matcher would refuse it anyway:
 * the matchers accept windows w−1..w+1, so until (window + 2) × timeStep, plus the clock-skew bound.
 */
export function derivedUse(timeStep: number, c: Completion): SingleUse {
  const near = windowOf(c.timeUs, timeStep);
  let diff = (c.window - near) % 2 ** 32;
  if (diff < 0) diff += 2 ** 32;
  if (diff >= 2 ** 31) diff -= 2 ** 32;
  const window = near + diff;
  return { family: c.family, window, ttlMs: (window + 2) * timeStep * 1000 - c.timeUs / 1000 + CLOCK_SKEW_MS };
}

interface QueuedGrant {
  key: string;
  raw: string;
  expiryMs: number;
}

export class FleetLinkImpl implements FleetLink {
  readonly stats: FleetStats;
  private readonly store: FleetStore;
  private cfg: FleetConfig;
  private readonly now: () => number;
  private doors: readonly DoorConfig[];
  private readonly queue = new Map<string, QueuedGrant>();
  /** this member's grants already in the store, while open: written back (if missing) after a reconnect,
   * so a store that restarted empty learns them again */
  private readonly mine = new Map<string, QueuedGrant>();
  /** nonces of grants already applied, until their expiry: a grant seen by pub/sub and catch-up, or
   * re-published by someone with write access, is applied once */
  private readonly seen = new Map<string, number>();
  private seq = 0;
  private seenSweepAt = 100_000;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private catchUpRunning: Promise<void> | undefined;
  private catchUpAgain = false;
  private refusalTimer: NodeJS.Timeout | undefined;
  /** an outage is logged once, not at every reconnection attempt */
  private downLogged = false;
  private readonly refusalsUnlogged = new Map<RefusalReason, { count: number; example: string }>();
  private readonly startedMs: number;
  private closed = false;
  /** grants published by other members that arrived in this turn: installed together (onPublished) */
  private arrived: RemoteGrant[] = [];
  /** this member's messages as published, until the channel brings them back: an echo is dropped by one
   * string comparison instead of being parsed and verified (only byte-identical copies of what this member
   * signed; anything else claiming to be from it is verified and refused or dropped as before) */
  private readonly echoes = new Set<string>();

  constructor(private readonly opts: FleetLinkOptions) {
    this.cfg = opts.config;
    this.doors = opts.doors;
    this.now = opts.now ?? Date.now;
    this.startedMs = this.now();
    this.stats = { connected: false, published: 0, applied: 0, queued: 0, queueOverflow: 0, refused: Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as FleetStats['refused'] };
    this.store = new FleetStore(this.cfg, {
      ready: () => this.onReady(),
      down: (m) => this.onDown(m),
      message: (raw) => this.onPublished(raw),
    });
  }

  get storeName(): string {
    return describeStore(parseStoreUrl(this.cfg.url));
  }

  /** Starts connecting; the daemon runs local-only until the store answers. */
  start(): void {
    this.opts.log(`fleet: member ${this.cfg.member} of fleet ${this.cfg.name}, store ${this.storeName}: connecting`, { event: 'fleet_connecting' });
    this.store.start();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.heartbeatTimer.unref();
  }

  attachMetrics(metrics: Metrics | undefined): void {
    this.opts.metrics = metrics;
    metrics?.fleetConnected.set(this.stats.connected ? 1 : 0);
  }

  /** Whether a reloaded config names the same store, fleet and member (then the connection is kept). */
  sameStore(next: FleetConfig): boolean {
    const c = this.cfg;
    return next.url === c.url && next.name === c.name && next.member === c.member && next.password === c.password;
  }

  /** A reload: the new key, policies and doors, then a catch-up (grants of doors that appeared are installed). */
  reload(config: FleetConfig, doors: readonly DoorConfig[]): void {
    this.cfg = config;
    this.doors = doors;
    if (this.store.ready) void this.catchUp('reload');
  }

  // ------------------------------------------------------------------ the controller's side

  decides(door: DoorConfig): boolean {
    return door.cooldown > 0 || door.dedupe || door.oneTimeSequences !== undefined || door.derived !== undefined;
  }

  async decide(door: DoorConfig, c: Completion): Promise<FleetDecision> {
    const { source } = c;
    const offline: FleetDecision = { outcome: this.cfg.offline === 'deny' ? 'deny' : 'local' };
    if (!this.store.ready) return offline;
    const digest = door.oneTimeSequences !== undefined ? lineDigest(c.sequence) : undefined;
    const once: SingleUse | undefined = digest !== undefined ? { lineDigest: digest } : door.derived ? derivedUse(door.derived.timeStep, c) : undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), DECIDE_TIMEOUT_MS)));
    try {
      const decision = await Promise.race([
        this.store.decide({
          door: door.name,
          source,
          member: this.cfg.member,
          once,
          cooldownMs: door.cooldown * 1000,
          openMs: doorWindowMs(door),
          dedupe: door.dedupe,
        }),
        timeout,
      ]);
      if (!decision) {
        this.opts.log(`fleet: the store did not decide ${door.name} for ${source} within ${DECIDE_TIMEOUT_MS} ms; Fleet_Offline = ${this.cfg.offline} applies`, { event: 'fleet_decide_timeout', door: door.name, source });
        return offline;
      }
      if (decision.outcome === 'granted' && digest !== undefined) this.publishLineUsed(door, digest);
      return decision;
    } catch (err) {
      this.opts.log(`fleet: the store could not decide ${door.name} for ${source} (${(err as Error).message}); Fleet_Offline = ${this.cfg.offline} applies`, { event: 'fleet_decide_failed', door: door.name, source });
      return offline;
    } finally {
      clearTimeout(timer);
    }
  }

  share(grant: Grant, openForMs: number): void {
    if (openForMs <= 0 || this.closed) return;
    const expiryMs = this.now() + openForMs;
    const m: FleetMessage = { type: 'grant', member: this.cfg.member, door: grant.door.name, family: grant.family, subject: grant.source, expiryMs, nonce: newNonce(), seq: ++this.seq };
    const q: QueuedGrant = { key: this.store.grantKey(m.door, m.family, m.subject), raw: encodeMessage(this.cfg.key, this.cfg.name, m), expiryMs };
    if (this.store.ready) this.put(q);
    else this.enqueue(q);
  }

  private put(q: QueuedGrant): void {
    const t = performance.now();
    this.expectEcho(q.raw);
    this.store.putGrant(q.key, q.raw, q.expiryMs).then(
      () => {
        this.remember(q);
        this.stats.published++;
        this.opts.metrics?.fleetPublishSeconds.observe((performance.now() - t) / 1000);
      },
      () => this.enqueue(q), // lost with the connection: published again on reconnect
    );
  }

  private remember(q: QueuedGrant): void {
    this.mine.delete(q.key);
    if (this.mine.size >= MINE_LIMIT) {
      // oldest first: drop ended grants from the front, and if none has ended, the oldest one
      const now = this.now();
      for (const [k, old] of this.mine) {
        if (old.expiryMs > now) break;
        this.mine.delete(k);
      }
      if (this.mine.size >= MINE_LIMIT) this.mine.delete(this.mine.keys().next().value as string);
    }
    this.mine.set(q.key, q);
  }

  private enqueue(q: QueuedGrant): void {
    if (this.queue.has(q.key)) this.queue.delete(q.key);
    else if (this.queue.size >= QUEUE_LIMIT) {
      // the oldest queued grant is dropped: it is the nearest to closing anyway
      const oldest = this.queue.keys().next().value as string;
      this.queue.delete(oldest);
      this.stats.queueOverflow++;
      this.opts.metrics?.fleetQueueOverflow.inc();
      if (this.stats.queueOverflow === 1 || this.stats.queueOverflow % 1000 === 0) {
        this.opts.log(`fleet: outage queue full (${QUEUE_LIMIT} grants): ${this.stats.queueOverflow} grant(s) dropped so far; they stay open on this member only`, { event: 'fleet_queue_overflow' });
      }
    }
    this.queue.set(q.key, q);
    this.stats.queued = this.queue.size;
    this.opts.metrics?.fleetQueueDepth.set(this.queue.size);
  }

  private publishLineUsed(door: DoorConfig, digest: string): void {
    const m: FleetMessage = { type: 'used', member: this.cfg.member, door: door.name, family: 0, subject: digest, expiryMs: this.now(), nonce: newNonce(), seq: ++this.seq };
    const raw = encodeMessage(this.cfg.key, this.cfg.name, m);
    this.expectEcho(raw);
    this.store.publish(raw).catch(() => undefined); // members that miss it check at catch-up
  }

  /** Echoes lost with a connection would pile up: past the bound the set starts over (the echoes still due
   * are then verified and dropped as this member's own, as any message is). */
  private expectEcho(raw: string): void {
    if (this.echoes.size >= ECHOES_LIMIT) this.echoes.clear();
    this.echoes.add(raw);
  }

  // ------------------------------------------------------------------ the store's side

  private onReady(): void {
    if (this.closed) return;
    this.stats.connected = true;
    this.downLogged = false;
    this.opts.metrics?.fleetConnected.set(1);
    this.opts.log(`fleet: connected to ${this.storeName}`, { event: 'fleet_connected' });
    const queued = [...this.queue.values()];
    this.queue.clear();
    this.stats.queued = 0;
    this.opts.metrics?.fleetQueueDepth.set(0);
    const now = this.now();
    const live = queued.filter((q) => q.expiryMs > now);
    if (queued.length > 0) {
      this.opts.log(`fleet: publishing ${live.length} grant(s) made during the outage${queued.length > live.length ? ` (${queued.length - live.length} already closed)` : ''}`, { event: 'fleet_queue_flush', count: live.length });
    }
    for (const q of live) this.put(q);
    // a store that restarted empty (or failed over to a replica that lagged) gets this member's open grants back
    let restored = 0;
    for (const [k, q] of this.mine) {
      if (q.expiryMs <= now) this.mine.delete(k);
      else {
        restored++;
        this.store.restoreGrant(q.key, q.raw, q.expiryMs).catch(() => undefined);
      }
    }
    if (restored > 0) this.opts.log(`fleet: ${restored} open grant(s) of this member written back to the store where missing`, { event: 'fleet_restore', count: restored });
    void this.heartbeat();
    void this.catchUp('connect');
  }

  private onDown(message: string): void {
    if (this.closed) return;
    const was = this.stats.connected;
    this.stats.connected = false;
    this.echoes.clear(); // what was in flight is lost with the connection
    this.opts.metrics?.fleetConnected.set(0);
    // one line per outage, not one per reconnection attempt
    if (was || !this.downLogged) {
      this.opts.log(`fleet: store ${this.storeName} unreachable (${message}); doors keep opening on this member, grants are queued and the link retries`, { event: 'fleet_disconnected' });
    }
    this.downLogged = true;
  }

  /** Reads every open grant from the store and applies it; one at a time (a request meanwhile runs after). */
  catchUp(why: string): Promise<void> {
    if (this.catchUpRunning) {
      this.catchUpAgain = true;
      return this.catchUpRunning;
    }
    this.catchUpRunning = this.runCatchUp(why).finally(() => {
      this.catchUpRunning = undefined;
      if (this.catchUpAgain && !this.closed) {
        this.catchUpAgain = false;
        void this.catchUp(why);
      }
    });
    return this.catchUpRunning;
  }

  private async runCatchUp(why: string): Promise<void> {
    const t = performance.now();
    let grants = 0;
    let installed = 0;
    let complete = true;
    // one promise per page, not per grant: a page's grants are verified and handed to nft together
    const applying: Promise<void>[] = [];
    try {
      for await (const page of this.store.grantPages()) {
        const batch: RemoteGrant[] = [];
        for (const raw of page) {
          const g = this.accept(raw, 'catch-up', this.now());
          if (!g) continue;
          g.logged = installed++ < CATCH_UP_LINES;
          batch.push(g);
        }
        if (batch.length > 0) applying.push(this.apply(batch));
        grants += page.length;
        if (grants >= CATCH_UP_LIMIT || performance.now() - t > CATCH_UP_TIME_MS) {
          complete = false;
          break;
        }
      }
      await this.catchUpOneTime();
    } catch (err) {
      complete = false;
      this.opts.log(`fleet: catch-up (${why}) stopped: ${(err as Error).message}`, { event: 'fleet_catch_up_failed' });
    }
    await Promise.all(applying);
    const ms = performance.now() - t;
    this.stats.lastCatchUp = { grants, ms, complete };
    this.opts.metrics?.fleetCatchUpGrants.set(grants);
    this.opts.metrics?.fleetCatchUpSeconds.set(ms / 1000);
    const lines = installed > CATCH_UP_LINES ? ` (the first ${CATCH_UP_LINES} logged one by one)` : '';
    this.opts.log(`fleet: catch-up (${why}): ${grants} open grant(s) read in ${Math.round(ms)} ms, ${installed} installed${lines}${complete ? '' : ' (incomplete: limit reached or store lost)'}`, {
      event: 'fleet_catch_up',
      count: grants,
      installed,
    });
  }

  /** One-time doors: a line another member used while this one was away is skipped. */
  private async catchUpOneTime(): Promise<void> {
    for (const door of this.doors) {
      if (door.oneTimeSequences === undefined) continue;
      // bounded: each step advances the door's file by one line
      for (let i = 0; i < 10_000; i++) {
        const current = this.opts.target.currentSequence(door);
        if (current.length === 0) break;
        const digest = lineDigest(current);
        const by = await this.store.lineUsedBy(door.name, digest);
        if (by === undefined) break;
        this.opts.target.applyLineUsed(door, digest, by);
      }
    }
  }

  /** A message on the channel: a grant is installed with the others that arrived in the same turn (node-redis
   * delivers a socket read's messages in one go), so a burst costs one promise and one nft batch. */
  private onPublished(raw: string): void {
    if (this.echoes.delete(raw)) return;
    const g = this.accept(raw, 'published', this.now());
    if (!g) return;
    if (this.arrived.push(g) > 1) return;
    queueMicrotask(() => {
      const batch = this.arrived;
      this.arrived = [];
      void this.apply(batch);
    });
  }

  /** A message from the channel or the catch-up, verified and checked (parsed once): a grant to install,
   * or undefined (refused and counted, applied already, this member's own, or a one-time line used, which
   * is applied here). Never throws. */
  private accept(raw: string, via: 'published' | 'catch-up', now: number): RemoteGrant | undefined {
    let m: FleetMessage;
    let checked: CheckedGrant;
    try {
      m = decodeMessage(this.cfg.key, this.cfg.name, raw);
      // our own grants are installed already, unless this member restarted since (then the catch-up has them)
      if (m.member === this.cfg.member) {
        if (via === 'published') return undefined;
        const key = this.store.grantKey(m.door, m.family, m.subject);
        if (this.mine.has(key) || this.queue.has(key)) return undefined;
      }
      checked = checkGrant(m, this.doors, now);
    } catch (err) {
      if (err instanceof MessageRefused) this.refuse(err.reason, err.message);
      else this.refuse('unparsable', (err as Error).message);
      return undefined;
    }
    const { door, address } = checked;
    if (m.type === 'used') {
      this.opts.target.applyLineUsed(door, m.subject, m.member);
      return undefined;
    }
    if (this.seen.has(m.nonce)) return undefined;
    this.seen.set(m.nonce, m.expiryMs);
    this.pruneSeen(now);
    return {
      door,
      source: m.subject,
      family: m.family as 4 | 6,
      address: address!,
      remainingMs: m.expiryMs - now,
      runCommands: this.cfg.commands === 'all' && m.member !== this.cfg.member,
      from: m.member,
      logged: true,
    };
  }

  /** Installs a batch; counts it and observes each grant's time from receipt to installed. */
  private apply(batch: RemoteGrant[]): Promise<void> {
    const t = performance.now();
    return this.opts.target.applyRemoteGrants(batch).then(() => {
      this.stats.applied += batch.length;
      const histogram = this.opts.metrics?.fleetApplySeconds;
      if (!histogram) return;
      const seconds = (performance.now() - t) / 1000;
      for (let i = 0; i < batch.length; i++) histogram.observe(seconds);
    });
  }

  /** Sweeps ended nonces once the map has doubled since the last sweep: amortised O(1) per message. */
  private pruneSeen(now: number): void {
    if (this.seen.size < this.seenSweepAt) return;
    for (const [nonce, expiry] of this.seen) if (expiry + CLOCK_SKEW_MS < now) this.seen.delete(nonce);
    this.seenSweepAt = Math.max(100_000, 2 * this.seen.size);
  }

  /** Counted always; logged once per reason per REFUSAL_LOG_MS with the count and one example. */
  private refuse(reason: RefusalReason, detail: string): void {
    this.stats.refused[reason]++;
    this.opts.metrics?.fleetRefused.inc({ reason });
    const pending = this.refusalsUnlogged.get(reason);
    if (pending) pending.count++;
    else this.refusalsUnlogged.set(reason, { count: 1, example: detail });
    if (this.refusalTimer) return;
    this.flushRefusals();
    this.refusalTimer = setTimeout(() => {
      this.refusalTimer = undefined;
      this.flushRefusals();
    }, REFUSAL_LOG_MS);
    this.refusalTimer.unref();
  }

  private flushRefusals(): void {
    for (const [reason, { count, example }] of this.refusalsUnlogged) {
      this.opts.log(`fleet: refused ${count} message(s) from the store: ${reason} (${example})`, { event: 'fleet_refused', reason, count });
    }
    this.refusalsUnlogged.clear();
  }

  // ------------------------------------------------------------------ status

  private async heartbeat(): Promise<void> {
    if (!this.store.ready || this.closed) return;
    const record: MemberRecord = {
      member: this.cfg.member,
      version: this.opts.version,
      pid: process.pid,
      startedMs: this.startedMs,
      seenMs: this.now(),
      doors: Object.fromEntries(this.doors.map((d) => [d.name, doorFingerprint(d)])),
      queued: this.queue.size,
    };
    await this.store.heartbeat(this.cfg.member, JSON.stringify(record), HEARTBEAT_TTL_MS).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.refusalTimer) clearTimeout(this.refusalTimer);
    this.flushRefusals();
    await this.catchUpRunning?.catch(() => undefined);
    await this.store.close();
  }
}

/** A member's heartbeat, as `fleet status` reads it. */
export interface MemberRecord {
  member: string;
  version: string;
  pid: number;
  startedMs: number;
  seenMs: number;
  /** door name -> doorFingerprint */
  doors: Record<string, string>;
  queued: number;
}
