// The daemon's state file: the command backend's pending stop commands, so a restart (even after kill -9)
// still closes every door it opened (README.md deviation 8). Its commands run as root, so it is trusted
// only when nobody else could have written it (src/config/files.ts checkTrusted). It is written only once
// the daemon has read it (a failed start-up never replaces it), atomically, and at most every
// STATE_WRITE_INTERVAL_MS however many doors open and close (a completion flood cannot make it lag).
import { mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PendingStop } from '../actions/types.js';
import { checkTrusted, FileSafetyError, readRegularFile, replaceFile } from '../config/files.js';
import { strerror } from '../config/lexical.js';

export const STATE_VERSION = 1;
export const DEFAULT_STATE_FILE = '/var/lib/knockd-fast/state.json';
/** Far above what the command backend's open-door limit can produce (16384 stops of two 4 KiB commands). */
export const STATE_MAX_BYTES = 256 * 1024 * 1024;
export const STATE_WRITE_INTERVAL_MS = 100;
/** After a failed write (full disk) the next attempt waits this long. */
export const STATE_RETRY_MS = 1000;

export interface DaemonState {
  version: number;
  stops: PendingStop[];
}

/** The state file cannot be used: unsafe owner or mode, unreadable, not a regular file. Start-up stops. */
export class StateFileError extends Error {}

const isStop = (s: unknown): s is PendingStop => {
  const o = s as PendingStop;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.door === 'string' &&
    typeof o.source === 'string' &&
    (o.family === 4 || o.family === 6) &&
    typeof o.command === 'string' &&
    typeof o.dueMs === 'number' &&
    Number.isFinite(o.dueMs)
  );
};

/** What the file holds: its stops, or why its content is not a state file (then `stops` is empty). */
export interface LoadedState extends DaemonState {
  corrupt?: string;
}

/**
 * Reads the state file without changing it. A missing file is an empty state; content that is not a
 * state file is reported in `corrupt`; a file others could have written, or one that cannot be read, throws.
 */
export function loadState(path: string): LoadedState {
  let text: string;
  try {
    text = readRegularFile(path, { what: 'state file', maxBytes: STATE_MAX_BYTES }).toString('utf8');
    checkTrusted(path, 'state file');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      try {
        checkTrusted(path, 'state file'); // the directories it will be written to
      } catch (unsafe) {
        throw new StateFileError((unsafe as Error).message);
      }
      return { version: STATE_VERSION, stops: [] };
    }
    if (err instanceof FileSafetyError) throw new StateFileError(err.message);
    throw new StateFileError(`cannot read state file ${path}: ${strerror(err)}; fix its permissions or remove it`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { version: STATE_VERSION, stops: [], corrupt: `is not valid JSON (${(err as Error).message})` };
  }
  const d = data as DaemonState;
  if (typeof d !== 'object' || d === null || d.version !== STATE_VERSION || !Array.isArray(d.stops) || !d.stops.every(isStop)) {
    return { version: STATE_VERSION, stops: [], corrupt: `is not a knockd-fast state file of version ${STATE_VERSION}` };
  }
  return { version: STATE_VERSION, stops: d.stops };
}

/** loadState for callers that want an error for a corrupt file (tools, tests). */
export function readState(path: string): DaemonState {
  const loaded = loadState(path);
  if (loaded.corrupt) throw new StateFileError(`state file ${path} ${loaded.corrupt}`);
  return { version: loaded.version, stops: loaded.stops };
}

/**
 * Keeps a corrupt state file for the operator: renames it to `<path>.unreadable-<time>` and returns the
 * line to log. The stop commands it may hold are not run (they cannot be read); the line says so.
 */
export function moveStateAside(path: string, why: string, now = new Date()): string {
  const aside = `${path}.unreadable-${now.toISOString().replace(/[:.]/g, '-')}`;
  renameSync(path, aside);
  return `error: state file ${path} ${why}; moved it aside to ${aside} and started without it: stop commands it may hold were not run, check it and run them by hand`;
}

/** Replaces the file atomically (src/config/files.ts replaceFile); its directory is created 0700 if missing. */
export function writeState(path: string, state: DaemonState): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  replaceFile(path, `${JSON.stringify(state)}\n`, { mode: 0o600 });
}

/**
 * Coalesced, bounded-time writes of the state file: a change is written at the next turn of the event loop,
 * or STATE_WRITE_INTERVAL_MS after the previous write if that was more recent. Nothing is written until
 * enable() (the daemon has read the old file and started). A failing write (full disk) is logged once per
 * failure episode, retried every STATE_RETRY_MS, and its end is logged with the number of failed attempts.
 */
export class StateWriter {
  private enabled = false;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private lastWriteMs = -Infinity;
  private failures = 0;

  constructor(
    private readonly path: string,
    private readonly snapshot: () => PendingStop[],
    private readonly log: (message: string) => void,
  ) {}

  /** The old state has been read: from now on changes are written. */
  enable(): void {
    this.enabled = true;
    this.changed();
  }

  changed(): void {
    this.dirty = true;
    if (!this.enabled || this.timer) return;
    const wait = this.failures > 0 ? STATE_RETRY_MS : Math.max(0, this.lastWriteMs + STATE_WRITE_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.write();
    }, wait);
    this.timer.unref();
  }

  /**
   * Shutdown: writes what changed (if enabled) and stops writing. A start-up that failed after a knock
   * already ran a start command adds that stop to the file's own stops instead of replacing them.
   */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.enabled) {
      const mine = this.snapshot();
      if (mine.length === 0) return;
      try {
        const old = loadState(this.path);
        if (old.corrupt) throw new Error(`the file ${old.corrupt}`);
        writeState(this.path, { version: STATE_VERSION, stops: [...old.stops, ...mine] });
      } catch (err) {
        this.log(`error: cannot add ${mine.length} pending stop command(s) to state file ${this.path}: ${(err as Error).message}; run them by hand: ${mine.map((s) => s.command).join('; ')}`);
      }
      return;
    }
    if (this.enabled && this.dirty) this.write(false);
    if (this.enabled && this.failures > 0) this.log(`error: state file ${this.path} could not be written (${this.failures} failed attempt(s)); the pending stop commands of this run are lost`);
    this.enabled = false;
  }

  private write(retry = true): void {
    this.dirty = false;
    this.lastWriteMs = Date.now();
    try {
      writeState(this.path, { version: STATE_VERSION, stops: this.snapshot() });
    } catch (err) {
      if (this.failures++ === 0) this.log(`error: cannot write state file ${this.path}: ${strerror(err)}; retrying every ${STATE_RETRY_MS / 1000} s`);
      if (retry) this.changed();
      else this.dirty = true;
      return;
    }
    if (this.failures > 0) this.log(`state file ${this.path} written again after ${this.failures} failed attempt(s)`);
    this.failures = 0;
  }
}
