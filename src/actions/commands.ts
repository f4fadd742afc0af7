// Command backend, knockd compatible (knockd-0.8.md §5): start_command / stop_command and their _6 variants,
// %IP% expansion, knockd's 4096-byte limit, `/bin/sh -c`, knockd's log texts. Unlike knockd, children are
// not forked per success without bound: at most maxConcurrent run at once and the rest wait in a queue.
// The stop timers belong to the DoorController (it persists them in the state file); it calls stop() when
// one is due, and this backend makes sure a stop never runs before its own start has finished.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { DoorConfig } from '../config/types.js';
import type { CommandActions } from '../control/controller.js';
import type { Grant, LogFn, PendingStop } from './types.js';

/** knockd's command buffer: an expanded command of this many bytes or more is not run. */
export const COMMAND_LIMIT_BYTES = 4096;

export interface CommandBackendOptions {
  log: LogFn;
  /** children running at once; more wait in a FIFO queue. Default 32. */
  maxConcurrent?: number;
  /** default /bin/sh, run as `sh -c command` like system(3) */
  shell?: string;
  /** wall clock in ms for the stops' due times; default Date.now */
  now?: () => number;
  /** the children's stdout/stderr: knockd's children inherit the daemon's. Default 'inherit'. */
  output?: 'inherit' | 'ignore';
}

/** Every exact, case-sensitive `%IP%` becomes the source address, unquoted (knockd-0.8.md §5.2). */
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
  /** resolves when the command has finished */
  done: () => void;
}

export class CommandBackend implements CommandActions {
  private readonly opts: CommandBackendOptions;
  private readonly max: number;
  private readonly now: () => number;
  private readonly queue: Job[] = [];
  private head = 0;
  private running = 0;
  private idleWaiters: (() => void)[] = [];
  /** per (door, source, stop command): the last start still queued or running */
  private readonly starting = new Map<string, Promise<void>>();
  private runs = 0;
  private failures = 0;

  constructor(opts: CommandBackendOptions) {
    this.opts = opts;
    this.max = opts.maxConcurrent ?? 32;
    if (!Number.isInteger(this.max) || this.max < 1) {
      throw new RangeError(`command concurrency limit must be a whole number >= 1, not ${opts.maxConcurrent}`);
    }
    this.now = opts.now ?? Date.now;
  }

  /**
   * Runs the door's start command for the grant (queued when the limit is reached) and returns the stop
   * command to schedule, due cmd_timeout from now; undefined when no start command runs, as in knockd.
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
    const finished = this.enqueue(door.name, start);
    if (stop === undefined) return undefined;
    const key = stopKey(door.name, source, stop);
    this.starting.set(key, finished);
    void finished.then(() => {
      if (this.starting.get(key) === finished) this.starting.delete(key);
    });
    return { door: door.name, source, family, dueMs: this.now() + door.cmdTimeout * 1000, command: stop };
  }

  /** Runs a due stop command, after its start command if that is still queued or running. */
  stop(stop: PendingStop): void {
    const pendingStart = this.starting.get(stopKey(stop.door, stop.source, stop.command));
    if (pendingStart) void pendingStart.then(() => this.enqueue(stop.door, stop.command));
    else void this.enqueue(stop.door, stop.command);
  }

  /** Commands started and failed so far, and the children running and waiting now (metrics). */
  stats(): { runs: number; failures: number; running: number; queued: number } {
    return { runs: this.runs, failures: this.failures, running: this.running, queued: this.queue.length - this.head };
  }

  /** Resolves when no command is running or waiting. */
  idle(): Promise<void> {
    if (this.running === 0 && this.head === this.queue.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private enqueue(door: string, command: string): Promise<void> {
    return new Promise((done) => {
      this.queue.push({ door, command, done });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.max && this.head < this.queue.length) {
      const job = this.queue[this.head];
      this.queue[this.head++] = undefined as unknown as Job;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.run(job);
    }
    if (this.running === 0 && this.head === this.queue.length) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private run(job: Job): void {
    this.running++;
    this.runs++;
    this.opts.log(`${job.door}: running command: ${job.command}`);
    const child = spawn(this.opts.shell ?? '/bin/sh', ['-c', job.command], {
      stdio: ['ignore', this.opts.output ?? 'inherit', this.opts.output ?? 'inherit'],
      detached: true, // its own session, as knockd's setsid(): a signal to the daemon's group spares it
    });
    let settled = false;
    const finish = (message: string | undefined) => {
      if (settled) return;
      settled = true;
      if (message) {
        this.failures++;
        this.opts.log(message);
      }
      this.running--;
      // the start's waiters (a stop due meanwhile) run before the queue moves on
      job.done();
      queueMicrotask(() => this.pump());
    };
    child.on('error', () => finish('error: command fork failed!'));
    child.on('close', (code, signal) => {
      // like system(3) + WEXITSTATUS through sh: a signal shows as 128 + its number
      const status = code ?? 128 + (signal ? constants.signals[signal] : 0);
      finish(status === 0 ? undefined : `${job.door}: command returned non-zero status code (${status})`);
    });
  }
}

function stopKey(door: string, source: string, command: string): string {
  return `${door}\u0000${source}\u0000${command}`;
}

