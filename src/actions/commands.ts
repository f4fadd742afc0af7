// Command backend, knockd compatible: start_command / stop_command and their _6 variants,
// %IP% expansion, knockd's 4096-byte limit, `/bin/sh -c`, knockd's log texts. Unlike knockd, the work is
// bounded, so a flood of completions (spoofed sources completing a fixed sequence) cannot stall the daemon:
// at most maxConcurrent children run at once and at most startsPerSecond starts begin each second (forking
// is the costly part), doors take turns, and what waits is limited per door and overall. The drop policy
// (docs/HARDENING.md "Command work under a completion flood"):
// - stop commands are never dropped (a door that was opened is always closed) and run before any start;
// - a source holds at most one waiting start per door: a repeated completion while it waits is dropped;
// - a door's waiting starts run newest first, and when the door's or the total waiting limit is reached the
//   oldest waiting start is dropped: a knock that just arrived has a user waiting on it, and once a flood
//   stops a legitimate knock runs at once instead of after (or instead of) the flood's backlog;
// - a start beyond the door's or the total limit of doors open awaiting their stop is dropped.
// Children are forked by one small long-lived shell (the runner, below), not by the daemon: fork() of the
// daemon blocks its caller until the child has exec'd (tens of ms on a loaded host) and costs ms of CPU,
// so it happens once, and the children's SIGCHLDs go to the runner, not to the daemon's main loop.
// A dropped start runs no stop (the controller is told to forget it: onDropped); drops are counted (stats, metrics) and summed up in one log line per second.
// The stop timers belong to the DoorController (it persists them in the state file); it calls stop() when
// one is due, and this backend makes sure a stop never runs before its own start has finished.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { DoorConfig } from '../config/types.js';
import type { CommandActions, Grant, LogFn, PendingStop } from './types.js';

/** knockd's command buffer: an expanded command of this many bytes or more is not run. */
export const COMMAND_LIMIT_BYTES = 4096;

export interface CommandLimits {
  /** children running at once. Default 32. */
  maxConcurrent: number;
  /** start commands begun per second, on average (bursts up to maxConcurrent). Default 20. */
  startsPerSecond: number;
  /** starts waiting for a child, per door. Default 64. */
  maxWaitingPerDoor: number;
  /** starts waiting for a child, all doors together. Default 1024. */
  maxWaiting: number;
  /** started doors whose stop command has not run yet, per door. Default 4096. */
  maxOpenPerDoor: number;
  /** the same, all doors together (this bounds the state file). Default 16384. */
  maxOpen: number;
}

export const DEFAULT_COMMAND_LIMITS: CommandLimits = {
  maxConcurrent: 32,
  startsPerSecond: 20,
  maxWaitingPerDoor: 64,
  maxWaiting: 1024,
  maxOpenPerDoor: 4096,
  maxOpen: 16384,
};

/** At most one line about dropped starts per this many ms. */
const DROP_SUMMARY_MS = 1000;

export type DropReason = 'queued' | 'waiting' | 'open';

const DROP_TEXT: Record<DropReason, string> = {
  queued: 'the source already had a start waiting',
  waiting: 'too many starts waiting for a child',
  open: 'too many doors open awaiting their stop command',
};

export interface CommandBackendOptions {
  log: LogFn;
  /** children running at once; more wait. Default 32 (shorthand for limits.maxConcurrent). */
  maxConcurrent?: number;
  limits?: Partial<CommandLimits>;
  /** default /bin/sh, run as `sh -c command` like system(3) */
  shell?: string;
  /** wall clock in ms for the stops' due times; default Date.now */
  now?: () => number;
  /** the children's stdout/stderr: knockd's children inherit the daemon's. Default 'inherit'. */
  output?: 'inherit' | 'ignore';
  /** start the runner that forks the children now (the one fork of the daemon), so the first command does
   * not wait for it. Default true; false when no door has a command: it is then started at the first command. */
  prestart?: boolean;
}

/** A waiting start was dropped after its stop was handed out: the stop must not run (DoorController.forgetStop). */
export type OnStartDropped = (stop: PendingStop) => void;

/** Every exact, case-sensitive `%IP%` becomes the source address, unquoted, as knockd does. */
export function expandCommand(command: string, source: string): string {
  return command.split('%IP%').join(source);
}

/** The start and stop commands for the family: `_6` when the directive is present ('' = nothing). */
export function selectCommands(door: DoorConfig, family: 4 | 6): { start?: string; stop?: string } {
  if (family === 6) {
    return {
      start: door.startCommand6 ?? door.startCommand,
      stop: door.stopCommand6 ?? door.stopCommand,
    };
  }
  return { start: door.startCommand, stop: door.stopCommand };
}

interface Job {
  door: string;
  command: string;
  /** a start's (door, source) key while it waits; undefined for a stop */
  waitingKey?: string;
  /** a start's stop, handed out when the start was accepted */
  stop?: PendingStop;
  /** resolves when the command has finished */
  done: () => void;
}

export class CommandBackend implements CommandActions {
  private readonly opts: CommandBackendOptions;
  private readonly limits: CommandLimits;
  private readonly now: () => number;
  /** due stop commands, oldest first; they run before any start */
  private readonly stopQueue: Job[] = [];
  private stopHead = 0;
  /** per door, its waiting starts (taken from the end: newest first) */
  private readonly startQueues = new Map<string, Job[]>();
  /** doors with waiting starts, in the order they take turns */
  private readonly turns: string[] = [];
  private waitingStarts = 0;
  /** (door, source) of every waiting start */
  private readonly waitingSources = new Set<string>();
  /** stops handed out and not yet run, by their key, and their number per door and in total */
  private readonly openStops = new Map<string, number>();
  private readonly openPerDoor = new Map<string, number>();
  private openTotal = 0;
  /** stops due while their start still runs (kept for the state file until they are queued) */
  private readonly stopsAwaitingStart = new Set<PendingStop>();
  private readonly queuedStopRecords = new Map<Job, PendingStop>();
  private running = 0;
  private idleWaiters: (() => void)[] = [];
  /** per (door, source, stop command): the last start still queued or running */
  private readonly starting = new Map<string, Promise<void>>();
  private runs = 0;
  private failures = 0;
  private dropped = 0;
  private readonly dropsToReport = new Map<string, Map<DropReason, number>>();
  private dropTimer: NodeJS.Timeout | undefined;
  /** token bucket of the start rate; monotonic time of its last refill */
  private startTokens: number;
  private tokensAtMs = performance.now();
  private rateTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** stops of dropped starts, by key, when no onDropped hook forgets them: stop() skips them */
  private readonly cancelled = new Map<string, number>();
  /** set by the daemon: the controller forgets the stop of a dropped start */
  onDropped: OnStartDropped | undefined;

  constructor(opts: CommandBackendOptions) {
    this.opts = opts;
    this.limits = { ...DEFAULT_COMMAND_LIMITS, ...opts.limits };
    if (opts.maxConcurrent !== undefined) this.limits.maxConcurrent = opts.maxConcurrent;
    for (const [name, value] of Object.entries(this.limits)) {
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`command limit ${name} must be a whole number >= 1, not ${value}`);
    }
    this.now = opts.now ?? Date.now;
    this.startTokens = this.limits.maxConcurrent;
    if (opts.prestart ?? true) spawnerFor(opts.shell ?? '/bin/sh', opts.output ?? 'inherit');
  }

  /**
   * Runs the door's start command for the grant (it waits when every child slot is busy) and returns the
   * stop command to schedule, due cmd_timeout from now; undefined when no start command runs: none is
   * configured, it is too long (as in knockd), or it is dropped under load (see the policy above).
   */
  start(grant: Grant): PendingStop | undefined {
    const { door, source, family } = grant;
    const selected = selectCommands(door, family);
    if (!selected.start) return undefined;
    const start = expandCommand(selected.start, source);
    const stop = selected.stop ? expandCommand(selected.stop, source) : undefined;
    if (Buffer.byteLength(start) >= COMMAND_LIMIT_BYTES) {
      this.opts.log(`error: parsed start command has been truncated! --> won't execute it`);
      return undefined;
    }
    if (stop !== undefined && Buffer.byteLength(stop) >= COMMAND_LIMIT_BYTES) {
      this.opts.log(`error: parsed stop command has been truncated! --> won't execute start command`);
      return undefined;
    }
    const reason = this.refusal(door.name, source, stop !== undefined);
    if (reason) {
      this.drop(door.name, reason);
      return undefined;
    }
    const pending: PendingStop | undefined = stop === undefined ? undefined : { door: door.name, source, family, dueMs: this.now() + (grant.timeoutMs ?? door.cmdTimeout * 1000), command: stop };
    if (pending) this.countOpen(pending, 1);
    const finished = this.enqueueStart(door.name, source, start, pending);
    if (!pending) return undefined;
    const key = stopKey(pending.door, source, pending.command);
    this.starting.set(key, finished);
    void finished.then(() => {
      if (this.starting.get(key) === finished) this.starting.delete(key);
    });
    return pending;
  }

  private countOpen(stop: PendingStop, delta: 1 | -1): void {
    const key = stopKey(stop.door, stop.source, stop.command);
    const n = (this.openStops.get(key) ?? 0) + delta;
    if (n > 0) this.openStops.set(key, n);
    else this.openStops.delete(key);
    this.openPerDoor.set(stop.door, (this.openPerDoor.get(stop.door) ?? 0) + delta);
    this.openTotal += delta;
  }

  /** Runs a due stop command, after its start command if that is still queued or running. Never dropped. */
  stop(stop: PendingStop): void {
    const key = stopKey(stop.door, stop.source, stop.command);
    const cancelled = this.cancelled.get(key);
    if (cancelled) {
      // its start was dropped before it ran: nothing to undo
      if (cancelled === 1) this.cancelled.delete(key);
      else this.cancelled.set(key, cancelled - 1);
      return;
    }
    if (this.openStops.has(key)) this.countOpen(stop, -1);
    const pendingStart = this.starting.get(key);
    if (pendingStart) {
      this.stopsAwaitingStart.add(stop);
      void pendingStart.then(() => {
        this.stopsAwaitingStart.delete(stop);
        this.enqueueStop(stop);
      });
    } else this.enqueueStop(stop);
  }

  /** Due stop commands that have not started yet: the daemon keeps them in the state file at shutdown. */
  unrunStops(): PendingStop[] {
    return [...this.stopsAwaitingStart, ...this.queuedStopRecords.values()];
  }

  /** Shutdown: nothing new starts; waiting starts are given up (they never ran, so nothing to undo). */
  close(): void {
    this.closed = true;
    if (this.dropTimer) clearTimeout(this.dropTimer);
    if (this.rateTimer) clearTimeout(this.rateTimer);
    this.reportDrops();
  }

  /** Commands started, failed and dropped so far, and the children running and waiting now (metrics). */
  stats(): { runs: number; failures: number; dropped: number; running: number; queued: number } {
    return { runs: this.runs, failures: this.failures, dropped: this.dropped, running: this.running, queued: this.waitingStarts + this.stopQueue.length - this.stopHead };
  }

  /** Resolves when no command is running or waiting. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private isIdle(): boolean {
    return this.running === 0 && this.waitingStarts === 0 && this.stopHead === this.stopQueue.length && this.stopsAwaitingStart.size === 0;
  }

  /** Why a start is not accepted now, if it is not. */
  private refusal(door: string, source: string, hasStop: boolean): DropReason | undefined {
    if (this.waitingSources.has(`${door}\u0000${source}`)) return 'queued';
    const l = this.limits;
    if (hasStop && ((this.openPerDoor.get(door) ?? 0) >= l.maxOpenPerDoor || this.openTotal >= l.maxOpen)) return 'open';
    return undefined;
  }

  /** Makes room for a new start of `door`: the oldest waiting start of that door (or of the longest queue) goes. */
  private dropOldestIfFull(door: string): void {
    const l = this.limits;
    let victim: string | undefined;
    if ((this.startQueues.get(door)?.length ?? 0) >= l.maxWaitingPerDoor) victim = door;
    else if (this.waitingStarts >= l.maxWaiting) {
      let longest = 0;
      for (const [name, q] of this.startQueues) if (q.length > longest) [victim, longest] = [name, q.length];
    }
    if (victim === undefined) return;
    const queue = this.startQueues.get(victim) as Job[];
    const job = queue.shift() as Job;
    if (queue.length === 0) {
      this.startQueues.delete(victim);
      this.turns.splice(this.turns.indexOf(victim), 1);
    }
    this.waitingStarts--;
    this.waitingSources.delete(job.waitingKey as string);
    this.drop(victim, 'waiting');
    if (job.stop) {
      this.countOpen(job.stop, -1);
      if (this.onDropped) this.onDropped(job.stop);
      else {
        const key = stopKey(job.stop.door, job.stop.source, job.stop.command);
        this.cancelled.set(key, (this.cancelled.get(key) ?? 0) + 1);
      }
    }
    job.done();
  }

  private drop(door: string, reason: DropReason): void {
    this.dropped++;
    let byReason = this.dropsToReport.get(door);
    if (!byReason) this.dropsToReport.set(door, (byReason = new Map()));
    byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    if (!this.dropTimer && !this.closed) {
      this.dropTimer = setTimeout(() => {
        this.dropTimer = undefined;
        this.reportDrops();
      }, DROP_SUMMARY_MS);
      this.dropTimer.unref();
    }
  }

  private reportDrops(): void {
    for (const [door, byReason] of this.dropsToReport) {
      const total = [...byReason.values()].reduce((a, b) => a + b, 0);
      const why = [...byReason].map(([reason, n]) => `${n}: ${DROP_TEXT[reason]}`).join('; ');
      this.opts.log(`warning: ${door}: ${total} start command(s) not run under load (${why})`);
    }
    this.dropsToReport.clear();
  }

  private enqueueStart(door: string, source: string, command: string, stop: PendingStop | undefined): Promise<void> {
    this.dropOldestIfFull(door);
    return new Promise((done) => {
      const waitingKey = `${door}\u0000${source}`;
      let queue = this.startQueues.get(door);
      if (!queue) this.startQueues.set(door, (queue = []));
      if (queue.length === 0) this.turns.push(door);
      queue.push({ door, command, waitingKey, stop, done });
      this.waitingSources.add(waitingKey);
      this.waitingStarts++;
      this.pump();
    });
  }

  private enqueueStop(stop: PendingStop): void {
    const job: Job = { door: stop.door, command: stop.command, done: () => undefined };
    this.queuedStopRecords.set(job, stop);
    this.stopQueue.push(job);
    this.pump();
  }

  /** The next job: the oldest due stop, else the newest start of the door whose turn it is. */
  private next(): Job | undefined {
    if (this.closed) return undefined; // due stops stay queued: the state file keeps them for the next run
    if (this.stopHead < this.stopQueue.length) {
      const job = this.stopQueue[this.stopHead];
      this.stopQueue[this.stopHead++] = undefined as unknown as Job;
      if (this.stopHead > 1024 && this.stopHead * 2 > this.stopQueue.length) {
        this.stopQueue.splice(0, this.stopHead);
        this.stopHead = 0;
      }
      this.queuedStopRecords.delete(job);
      return job;
    }
    if (this.turns.length === 0 || !this.takeStartToken()) return undefined;
    const door = this.turns.shift() as string;
    const queue = this.startQueues.get(door) as Job[];
    const job = queue.pop() as Job;
    if (queue.length > 0) this.turns.push(door);
    else this.startQueues.delete(door);
    this.waitingStarts--;
    this.waitingSources.delete(job.waitingKey as string);
    return job;
  }

  /** The start rate: true when a start may begin now; otherwise the pump runs again when one may. */
  private takeStartToken(): boolean {
    const now = performance.now();
    const l = this.limits;
    this.startTokens = Math.min(l.maxConcurrent, this.startTokens + ((now - this.tokensAtMs) * l.startsPerSecond) / 1000);
    this.tokensAtMs = now;
    if (this.startTokens >= 1) {
      this.startTokens--;
      return true;
    }
    if (!this.rateTimer) {
      this.rateTimer = setTimeout(() => {
        this.rateTimer = undefined;
        this.pump();
      }, Math.ceil(((1 - this.startTokens) * 1000) / l.startsPerSecond));
    }
    return false;
  }

  private pump(): void {
    while (this.running < this.limits.maxConcurrent) {
      const job = this.next();
      if (!job) break;
      this.run(job);
    }
    if (this.isIdle()) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private run(job: Job): void {
    this.running++;
    this.runs++;
    this.opts.log(`${job.door}: running command: ${job.command}`);
    spawnerFor(this.opts.shell ?? '/bin/sh', this.opts.output ?? 'inherit').run(job.command, (outcome) => {
      if (outcome.failed) this.failures++;
      if (outcome.failed === 'fork') this.opts.log('error: command fork failed!');
      else if (outcome.failed) this.opts.log(`${job.door}: command returned non-zero status code (${outcome.status})`);
      this.running--;
      // the start's waiters (a stop due meanwhile) run before the queue moves on
      job.done();
      queueMicrotask(() => this.pump());
    });
  }
}

type Outcome = { failed: undefined } | { failed: 'fork' } | { failed: 'status'; status: number };

// The runner: one small `sh` (the configured shell, started at the first command in its own session, as
// knockd's setsid(): a signal to the daemon's group spares the commands) reads "id" and "command" lines on
// its stdin, runs each as `shell -c command` in the background, and writes "id status" to fd 3 when it ends
// (status as system(3) + WEXITSTATUS through sh: a signal shows as 128 + its number). A command so costs a
// fork of a small shell, not of the daemon: forking the daemon copied the page tables of ~100 MB of
// mappings and made the pages it wrote next fault again (about 10 ms of CPU per command, with the worker
// thread that forked them; under a CPU budget of 5 % of a core, half of it at 2.4 opens a second). `jobs`
// reaps and forgets the commands that ended, so the runner keeps no zombies or job entries. Commands come
// from single config lines with %IP% expanded, so a line holds one whole command.
const RUNNER = `while IFS= read -r id && IFS= read -r command; do
  jobs >/dev/null
  { "$0" -c "$command" </dev/null 3>&-; echo "$id $?" >&3; } &
done`;

const spawners = new Map<string, Spawner>();

/** One runner per shell and output for the whole process. */
function spawnerFor(shell: string, output: 'inherit' | 'ignore'): Spawner {
  const key = `${output} ${shell}`;
  let spawner = spawners.get(key);
  if (!spawner || spawner.broken) spawners.set(key, (spawner = new Spawner(shell, output)));
  return spawner;
}

/** The runner process; it keeps the daemon's event loop alive only while a command runs. */
class Spawner {
  private readonly runner: ChildProcess;
  private readonly results: Readable;
  private readonly pending = new Map<number, (o: Outcome) => void>();
  private nextId = 0;

  constructor(shell: string, output: 'inherit' | 'ignore') {
    const out = output === 'inherit' ? [1, 2] : ['ignore', 'ignore'];
    // forked once, from the main thread: one short stall at the first command instead of one per command
    this.runner = spawn(shell, ['-c', RUNNER, shell], { stdio: ['pipe', ...out, 'pipe'] as StdioOptions, detached: true });
    this.results = this.runner.stdio[3] as Readable;
    createInterface({ input: this.results }).on('line', (line) => {
      const [id, status] = line.split(' ').map(Number);
      const done = this.pending.get(id);
      if (!done) return;
      this.pending.delete(id);
      if (this.pending.size === 0) this.unref();
      done(status === 0 ? { failed: undefined } : { failed: 'status', status });
    });
    const fail = () => {
      // the shell could not start, or the runner died: what it held counts as not run; the next run starts a new one
      this.broken = true;
      for (const done of this.pending.values()) done({ failed: 'fork' });
      this.pending.clear();
    };
    this.runner.on('error', fail);
    this.runner.on('exit', fail);
    this.runner.stdin!.on('error', fail);
    this.unref();
  }

  /** the runner died; a new Spawner is needed */
  broken = false;

  run(command: string, done: (o: Outcome) => void): void {
    const id = this.nextId++;
    this.pending.set(id, done);
    if (this.pending.size === 1) this.ref();
    this.runner.stdin!.write(`${id}\n${command}\n`);
  }

  private ref(): void {
    this.runner.ref();
    (this.results as Socket).ref();
  }

  private unref(): void {
    this.runner.unref();
    (this.results as Socket).unref();
    (this.runner.stdin as Socket).unref();
  }
}

function stopKey(door: string, source: string, command: string): string {
  return `${door}\u0000${source}\u0000${command}`;
}

