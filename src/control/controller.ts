// DoorController: matcher events -> knockd's log lines and grants. It owns the policy between a completed
// knock and the action backends: Cooldown and Dedupe per (source, door), the current sequence of each
// one-time door, and the command backend's stop timers, which live here and in the state file so a restart
// (even after kill -9) still runs every stop command (README.md deviation 8).
// The daemon and `--replay` both drive this class (replay with recording actions and the capture's clock),
// so replay decides what the daemon decides. It never compiles or swaps a program: it tells its owner that
// the doors changed (onDoorsChanged) and its owner compiles withCurrentSequences(config) and swaps.
import { Resolver } from 'node:dns/promises';
import type { CommandActions, Grant, NftActions, PendingStop } from '../actions/types.js';
import { markOneTimeSequenceUsed, oneTimeExhaustedMessage, oneTimeWriteFailedMessage, readNextOneTimeSequence } from '../config/onetime.js';
import { hasNftAction, type DoorConfig, type KnockdConfig, type Step } from '../config/types.js';
import { decodeEvents, type KnockEvent } from '../match/events.js';
import { eventText, knockerLabel, type LogFields } from '../report/log.js';
import type { Metrics } from '../report/metrics.js';
import type { CompiledProgram } from '../config/program.js';
import { loadState, moveStateAside, StateFileError, StateWriter } from './state.js';
import { doorWindowMs, lineDigest } from '../fleet/message.js';
import type { FleetLink, RemoteGrant } from '../fleet/link.js';
import { SpaGate, spaLine } from '../spa/gate.js';
import type { SpaDecision } from '../spa/decide.js';

/**
 * One-time sequences: marks the used line and returns the next sequence (empty when the file is exhausted);
 * throws an Error whose message is the line to log when the file cannot be rewritten (the door is disabled).
 */
export type RotateOneTime = (door: DoorConfig) => Step[];

/**
 * The rotation of the daemon and of --replay (which passes a private copy of the file as `path`): marks
 * `door.sequence` used in the file, logs the parse errors of skipped lines, returns the next sequence.
 */
export function rotateOneTimeFile(door: DoorConfig, path: string, log: (message: string) => void): Step[] {
  let marked: boolean;
  try {
    marked = markOneTimeSequenceUsed(path, door.sequence);
  } catch {
    marked = false;
  }
  if (!marked) throw new Error(oneTimeWriteFailedMessage(door.name));
  const next = readNextOneTimeSequence(path, door.name);
  for (const e of next.errors) log(e);
  return next.sequence;
}

export interface ControllerOptions {
  log: (message: string, fields?: LogFields) => void;
  /** runs `fn` with the lines it logs written to the log file together (Logger.batch) */
  logBatch?: (fn: () => void) => void;
  commands?: CommandActions;
  nft?: NftActions;
  metrics?: Metrics;
  fleet?: FleetLink;
  /** where pending stop commands are persisted; undefined = not persisted */
  stateFile?: string;
  /** -l: reverse DNS names in the lines */
  lookup?: boolean;
  reverse?: (address: string) => Promise<string[]>;
  rotateOneTime?: RotateOneTime;
  /** a one-time door's sequence changed or the door was disabled: the owner compiles and swaps the program */
  onDoorsChanged?: () => void;
  /** the clock of Cooldown, Dedupe and stop timers, ms; given the event's time (µs) when there is an event.
   * Default: the wall clock (--replay: the capture's clock) */
  now?: (eventTimeUs?: number) => number;
  /** ms after the first eviction of a second at which its summary line is written at the latest (default
   * 1000; 0 = only when a later event arrives or flushSummaries() is called, as --replay does) */
  summaryAfterMs?: number;
  /** also a `wrong_port` record for each attempt a wrong knock ended (knockd logs nothing; --replay --json) */
  wrongPortRecords?: boolean;
  /** decides SPA events (its replay cache persists across restarts); SPA events are dropped without it */
  spa?: SpaGate;
  /** a door opened (granted or extended) for a knock whose last packet the kernel stamped at timeUs */
  onOpen?: (timeUs: number) => void;
}

interface OpenWindow {
  /** the source may not trigger this door again before this (Cooldown) */
  cooldownUntil: number;
  /** the door counts as open for Dedupe until this */
  openUntil: number;
}

const DNS_CACHE_SIZE = 4096;
const DNS_TIMEOUT_MS = 2000;
const PROGRAMS_KEPT = 4;
const EVICTION_SUMMARY_MS = 1000;
/** setTimeout's longest delay; a stop due later is re-armed in steps of at most this (cmd_timeout up to 2^31-1 s) */
const MAX_TIMER_MS = 0x7fffffff;

export class DoorController {
  private readonly programs = new Map<number, DoorConfig[]>();
  /** one-time doors whose sequence moved on since the config was read: door name -> current sequence */
  private readonly sequences = new Map<string, Step[]>();
  private readonly windows = new Map<string, OpenWindow>();
  private readonly stops = new Map<PendingStop, NodeJS.Timeout>();
  private readonly hostNames = new Map<string, Promise<string | undefined>>();
  private readonly opts: ControllerOptions;
  private readonly now: (eventTimeUs?: number) => number;
  private reverse: ((address: string) => Promise<string[]>) | undefined;
  /** with -l, lines wait for their source's name; this chain keeps them in event order */
  private lineChain: Promise<void> = Promise.resolve();
  private evicted = 0;
  /** capture second (floor of µs / 1e6) of the evictions being counted */
  private evictedSecond = 0;
  private evictedTimeUs = 0;
  private evictionTimer: NodeJS.Timeout | undefined;
  private readonly stateWriter: StateWriter | undefined;
  private closed = false;

  constructor(opts: ControllerOptions) {
    this.opts = opts;
    this.now = opts.now ?? (() => Date.now());
    this.reverse = opts.reverse;
    if (opts.stateFile) {
      const stateFile = opts.stateFile;
      this.stateWriter = new StateWriter(stateFile, () => [...this.pendingStops(), ...(this.opts.commands?.unrunStops?.() ?? [])], (m) =>
        this.opts.log(m, { event: 'state_file' }),
      );
    }
  }

  /**
   * The config as the matchers must see it now: each one-time door with its current sequence (an empty
   * one once the file is exhausted, which compileProgram leaves out). `config` itself is never changed.
   */
  withCurrentSequences(config: KnockdConfig): KnockdConfig {
    if (this.sequences.size === 0) return config;
    const doors = config.doors.map((d) => {
      const sequence = this.sequences.get(d.name);
      return sequence && d.oneTimeSequences ? { ...d, sequence } : d;
    });
    return { ...config, doors };
  }

  /** A new config was read (SIGHUP): its one-time doors start from their files' current lines again. */
  resetSequences(): void {
    this.sequences.clear();
  }

  /** Events carry the generation of the program that produced them; keep the door table of each. */
  setProgram(program: CompiledProgram): void {
    this.programs.set(program.generation, program.doors);
    while (this.programs.size > PROGRAMS_KEPT) this.programs.delete(this.programs.keys().next().value as number);
  }

  /** The nft backend, metrics, the fleet and the SPA gate may appear after construction (a reload adds the first nft door). */
  attach(parts: { nft?: NftActions; metrics?: Metrics; fleet?: FleetLink; spa?: SpaGate }): void {
    if ('nft' in parts) this.opts.nft = parts.nft;
    if ('spa' in parts) this.opts.spa = parts.spa;
    if ('metrics' in parts) this.opts.metrics = parts.metrics;
    if ('fleet' in parts) this.opts.fleet = parts.fleet;
  }

  /** A batch of event records as the matchers and the engine deliver them. */
  handleBatch(records: Uint8Array): void {
    this.handle(decodeEvents(records));
  }

  handle(events: KnockEvent[]): void {
    for (const ev of events) {
      const timeUs = ev.timeUs;
      // the evictions of an earlier second are summed up before anything later is written
      if (this.evicted > 0 && Math.floor(timeUs / 1e6) !== this.evictedSecond) this.flushSummaries();
      switch (ev.kind) {
        case 'stage': {
          const door = this.door(ev.generation, ev.door);
          if (door) this.line(ev.source, (who) => eventText.stage(who, door.name, ev.stage), { event: 'stage', timeUs, door: door.name, stage: ev.stage });
          break;
        }
        case 'completed': {
          const door = this.door(ev.generation, ev.door);
          if (door) this.completed(door, ev.source, ev.family, timeUs, ev.window);
          break;
        }
        case 'spa': {
          const doors = this.programs.get(ev.generation);
          const decision = doors && this.opts.spa?.decide(doors, ev);
          if (decision) this.spaDecided(decision, ev.source, timeUs);
          break;
        }
        case 'failed': {
          if (ev.reason === 'spa_auth') {
            const door = this.door(ev.generation, ev.door);
            if (door) this.spaDecided(SpaGate.unauthenticated(door), ev.source, timeUs);
            break;
          }
          if (ev.reason === 'evicted') {
            this.countEviction(timeUs);
            break;
          }
          const door = this.door(ev.generation, ev.door);
          if (!door) break;
          if (ev.reason === 'timeout') {
            this.line(ev.source, (who) => eventText.timeout(who, door.name, ev.stage), { event: 'timeout', timeUs, door: door.name, stage: ev.stage });
          } else if (this.opts.wrongPortRecords) {
            // silent in knockd: only --replay --json asks for these
            this.line(ev.source, (who) => eventText.wrongPort(who, door.name, ev.stage), { event: 'wrong_port', timeUs, door: door.name, stage: ev.stage });
          }
          break;
        }
        case 'suppressed':
          this.opts.log(eventText.suppressed(ev.count), { event: 'suppressed', timeUs, count: ev.count });
          break;
        case 'error':
          this.opts.log(eventText.captureError(ev.shard, ev.code, ev.errno), { event: 'capture_error', timeUs, code: ev.code, errno: ev.errno });
          break;
      }
    }
  }

  /**
   * Resumes the stop commands of a previous run: those already due run now, the others at their time. Only
   * from here on is the state file written. A corrupt file is moved aside with a log line, never replaced.
   */
  restoreState(): void {
    if (!this.opts.stateFile || !this.stateWriter) return;
    const state = loadState(this.opts.stateFile);
    if (state.corrupt) {
      try {
        this.opts.log(moveStateAside(this.opts.stateFile, state.corrupt), { event: 'state_file' });
      } catch (err) {
        throw new StateFileError(`state file ${this.opts.stateFile} ${state.corrupt} and cannot be moved aside (${(err as Error).message}); move it aside by hand`);
      }
    }
    for (const stop of state.stops) this.schedule(stop);
    this.stateWriter.enable();
  }

  /** The command backend dropped the start of this stop before it ran (a completion flood): nothing to undo. */
  forgetStop(stop: PendingStop): void {
    let key: PendingStop | undefined = this.stops.has(stop) ? stop : undefined;
    // Dedupe may have replaced it by a copy: the latest stop of the same door, source and command
    for (const s of this.stops.keys()) {
      if (!key && s.door === stop.door && s.source === stop.source && s.command === stop.command) key = s;
      else if (key && key !== stop && s.door === stop.door && s.source === stop.source && s.command === stop.command && s.dueMs > key.dueMs) key = s;
    }
    if (!key) return;
    clearTimeout(this.stops.get(key));
    this.stops.delete(key);
    this.persist();
  }

  /** Pending stop commands (for status and tests), soonest first. */
  pendingStops(): PendingStop[] {
    return [...this.stops.keys()].sort((a, b) => a.dueMs - b.dueMs);
  }

  /** Flushes the nft batch and writes the state; stop timers stay in the state file for the next run. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.stops.values()) clearTimeout(t);
    this.flushSummaries();
    this.stateWriter?.close();
    await this.opts.nft?.flush();
    await this.lineChain;
  }

  /** Waits until every queued line (-l lookups) has been written. */
  async drainLines(): Promise<void> {
    await this.lineChain;
  }

  private door(generation: number, index: number): DoorConfig | undefined {
    return this.programs.get(generation)?.[index];
  }

  private completed(door: DoorConfig, source: string, family: 4 | 6, timeUs: number, window: number): void {
    // a one-time sequence that was used up while this knock was matched by the old program: not valid any more
    const current = this.sequences.get(door.name);
    if (door.oneTimeSequences && current && current !== door.sequence) return;
    const fleet = this.opts.fleet;
    if (!fleet?.decides(door)) {
      this.decideLocally(door, source, family, timeUs);
      return;
    }
    // single use is decided once for the whole fleet (`door` holds the line that completed)
    void fleet.decide(door, { source, family, sequence: door.sequence, window, timeUs }).then((d) => {
      if (this.closed) return;
      const fields = { timeUs, door: door.name };
      switch (d.outcome) {
        case 'local':
          return this.decideLocally(door, source, family, timeUs);
        case 'deny':
          this.line(source, (who) => `${who}: ${door.name}: fleet store unreachable and Fleet_Offline = deny, not opening`, { event: 'fleet_offline_deny', ...fields });
          this.opts.metrics?.grants.inc({ door: door.name, outcome: 'fleet_offline' });
          return;
        case 'cooldown':
          return this.refuseCooldown(door, source, d.leftMs, timeUs);
        case 'used':
          this.line(source, (who) => `${who}: ${door.name}: ${door.derived ? "this time window's derived sequence" : 'one-time sequence'} already used on fleet member ${d.by}, not opening`, { event: 'used_elsewhere', member: d.by, ...fields });
          this.opts.metrics?.grants.inc({ door: door.name, outcome: 'used_elsewhere' });
          if (door.oneTimeSequences && this.opts.rotateOneTime && (this.sequences.get(door.name) ?? door.sequence) === door.sequence) this.rotate(door, timeUs);
          return;
        default:
          return this.open(door, source, family, d.outcome, timeUs);
      }
    });
  }

  /** Cooldown and Dedupe from this member's own windows (no fleet, or the fleet's store unreachable). */
  private decideLocally(door: DoorConfig, source: string, family: 4 | 6, timeUs: number): void {
    const now = this.now(timeUs);
    const win = this.windows.get(`${door.name}\u0000${source}`);
    if (win && now < win.cooldownUntil) return this.refuseCooldown(door, source, win.cooldownUntil - now, timeUs);
    this.open(door, source, family, door.dedupe && win && now < win.openUntil ? 'extended' : 'granted', timeUs, now);
  }

  private refuseCooldown(door: DoorConfig, source: string, leftMs: number, timeUs: number): void {
    const left = Math.ceil(leftMs / 1000);
    this.line(source, (who) => eventText.cooldown(who, door.name, left), { event: 'cooldown', timeUs, door: door.name });
    this.opts.metrics?.grants.inc({ door: door.name, outcome: 'cooldown' });
  }

  private open(door: DoorConfig, source: string, family: 4 | 6, outcome: 'granted' | 'extended', timeUs: number, now = this.now(timeUs)): void {
    const fields = { timeUs, door: door.name };
    this.line(source, (who) => eventText.open(who, door.name), { event: 'open', ...fields });
    this.opts.onOpen?.(timeUs);
    const grant: Grant = { door, source, family };
    const openFor = Math.max(hasNftAction(door) ? door.openTimeout : 0, door.cmdTimeout) * 1000;
    if (outcome === 'extended') {
      this.extend(grant, now);
      this.line(source, (who) => eventText.extended(who, door.name), { event: 'extended', ...fields });
    } else {
      if (hasNftAction(door)) this.opts.nft?.grant(grant);
      const stop = this.opts.commands?.start(grant);
      if (stop) this.schedule(stop);
    }
    if (door.dedupe || door.cooldown > 0) this.windows.set(`${door.name}\u0000${source}`, { openUntil: now + openFor, cooldownUntil: now + door.cooldown * 1000 });
    this.opts.metrics?.grants.inc({ door: door.name, outcome });
    this.opts.fleet?.share(grant, doorWindowMs(door));
    if (door.oneTimeSequences && this.opts.rotateOneTime) this.rotate(door, timeUs);
    this.pruneWindows(now);
  }

  /** Other members' grants (src/fleet/link.ts), a batch at once: the nft elements with the time each has
   * left, and with Fleet_Commands = all this member's own start command (once: not while its stop is
   * pending). Resolves once every element is in (one promise for the batch, not one per grant). */
  applyRemoteGrants(grants: readonly RemoteGrant[]): Promise<unknown> {
    const elements: Grant[] = [];
    const perDoor = new Map<string, number>();
    const each = (): void => {
      for (const g of grants) {
        const { door, source, remainingMs, from } = g;
        const grant: Grant = { door, source, family: g.family, address: g.address, timeoutMs: Math.min(remainingMs, door.openTimeout * 1000) };
        if (g.logged) this.line(source, (who) => `${who}: ${door.name}: opened by fleet member ${from} (${Math.ceil(remainingMs / 1000)}s left)`, { event: 'fleet_open', door: door.name, member: from });
        perDoor.set(door.name, (perDoor.get(door.name) ?? 0) + 1);
        if (g.runCommands && door.startCommand && !this.pendingStops().some((s) => s.door === door.name && s.source === source)) {
          const stop = this.opts.commands?.start(grant);
          if (stop) this.schedule(stop);
        }
        if (hasNftAction(door)) elements.push(grant);
      }
    };
    if (this.opts.logBatch) this.opts.logBatch(each);
    else each();
    for (const [door, n] of perDoor) this.opts.metrics?.grants.inc({ door, outcome: 'fleet' }, n);
    return elements.length > 0 && this.opts.nft ? this.opts.nft.grantAll(elements) : Promise.resolve();
  }

  /** A one-time door's current line here (it moves on as lines are used, here or on other members). */
  currentSequence(door: DoorConfig): Step[] {
    return this.sequences.get(door.name) ?? door.sequence;
  }

  /** Another member used this one-time line: this member moves past it too, if it is still current here. */
  applyLineUsed(door: DoorConfig, digest: string, from: string): void {
    const current = this.currentSequence(door);
    if (!door.oneTimeSequences || current.length === 0 || lineDigest(current) !== digest || !this.opts.rotateOneTime) return;
    this.opts.log(`${door.name}: one-time sequence used on fleet member ${from}; moving to the next line`, { event: 'used_elsewhere', door: door.name, member: from });
    this.rotate({ ...door, sequence: current }, Date.now() * 1000);
  }

  /** An SPA packet's outcome: its line, and for a grant the nft element and commands for the asked time. */
  private spaDecided(d: SpaDecision, source: string, timeUs: number): void {
    this.line(source, (who) => spaLine(who, d).text, { ...spaLine(source, d).fields, timeUs });
    if (!d.ok) {
      this.opts.metrics?.grants.inc({ door: d.door.name, outcome: `spa_${d.code}` });
      return;
    }
    const grant: Grant = { door: d.door, source: d.address, family: d.family, timeoutMs: d.timeoutS * 1000 };
    if (hasNftAction(d.door)) void this.opts.nft?.grant(grant);
    const stop = this.opts.commands?.start(grant);
    if (stop) this.schedule(stop);
    this.opts.metrics?.grants.inc({ door: d.door.name, outcome: 'granted' });
  }

  /** Dedupe: refresh the nft element and push this source's pending stop of the door to a full window. */
  private extend(grant: Grant, now: number): void {
    if (hasNftAction(grant.door)) this.opts.nft?.grant(grant);
    const mine = [...this.stops].filter(([stop]) => stop.door === grant.door.name && stop.source === grant.source);
    for (const [stop, timer] of mine) {
      clearTimeout(timer);
      this.stops.delete(stop);
      this.schedule({ ...stop, dueMs: now + grant.door.cmdTimeout * 1000 });
    }
  }

  /** `door` is the program's copy, holding the sequence just used; the next one becomes current. */
  private rotate(door: DoorConfig, timeUs: number): void {
    let next: Step[] = [];
    let failure = oneTimeExhaustedMessage(door.name);
    try {
      next = this.opts.rotateOneTime?.(door) ?? [];
    } catch (err) {
      failure = (err as Error).message;
    }
    this.sequences.set(door.name, next);
    if (next.length === 0) {
      this.opts.log(failure, { event: 'door_disabled', timeUs, door: door.name });
      this.opts.metrics?.grants.inc({ door: door.name, outcome: 'disabled' });
    }
    this.opts.onDoorsChanged?.();
  }

  private schedule(stop: PendingStop): void {
    const fire = () => {
      this.stops.delete(stop);
      this.line(stop.source, (who) => eventText.commandTimeout(who, stop.door), { event: 'command_timeout', door: stop.door });
      this.opts.commands?.stop(stop);
      this.persist();
    };
    this.arm(stop, fire);
    this.persist();
  }

  private arm(stop: PendingStop, fire: () => void): void {
    const wait = stop.dueMs - this.now();
    const timer = setTimeout(() => (wait > MAX_TIMER_MS ? this.arm(stop, fire) : fire()), Math.min(Math.max(0, wait), MAX_TIMER_MS));
    timer.unref();
    this.stops.set(stop, timer);
  }

  /** The state file follows (coalesced: src/control/state.ts StateWriter). */
  private persist(): void {
    if (!this.closed) this.stateWriter?.changed();
  }

  private pruneWindows(now: number): void {
    if (this.windows.size < 65536) return;
    for (const [k, w] of this.windows) if (w.openUntil <= now && w.cooldownUntil <= now) this.windows.delete(k);
  }

  /** Evictions are summed per second of event time: one line per second at most, in both daemon and replay. */
  private countEviction(timeUs: number): void {
    this.evictedSecond = Math.floor(timeUs / 1e6);
    this.evictedTimeUs = timeUs;
    this.evicted++;
    const after = this.opts.summaryAfterMs ?? EVICTION_SUMMARY_MS;
    if (!this.evictionTimer && after > 0) {
      this.evictionTimer = setTimeout(() => {
        this.evictionTimer = undefined;
        this.flushSummaries();
      }, after);
      this.evictionTimer.unref();
    }
  }

  /** Writes the eviction summary still being counted (--replay at the end of the capture, close()). */
  flushSummaries(): void {
    if (this.evictionTimer) clearTimeout(this.evictionTimer);
    this.evictionTimer = undefined;
    if (this.evicted === 0) return;
    this.opts.log(eventText.evicted(this.evicted), { event: 'evicted', timeUs: this.evictedTimeUs, count: this.evicted });
    this.evicted = 0;
  }

  /** Writes a line about `source`; with -l it waits (off the matching path) for the source's host name. */
  private line(source: string, text: (who: string) => string, fields: LogFields): void {
    if (!this.opts.lookup) {
      this.opts.log(text(source), { source, ...fields });
      return;
    }
    const host = this.hostName(source);
    this.lineChain = this.lineChain.then(async () => {
      const name = await host;
      this.opts.log(text(knockerLabel(source, name)), { source, host: name, ...fields });
    });
  }

  private hostName(source: string): Promise<string | undefined> {
    let p = this.hostNames.get(source);
    if (!p) {
      if (!this.reverse) {
        const resolver = new Resolver({ timeout: DNS_TIMEOUT_MS, tries: 1 });
        this.reverse = (a) => resolver.reverse(a);
      }
      p = this.reverse(source).then(
        (names) => names[0],
        () => undefined,
      );
      if (this.hostNames.size >= DNS_CACHE_SIZE) this.hostNames.delete(this.hostNames.keys().next().value as string);
      this.hostNames.set(source, p);
    }
    return p;
  }
}
