// The daemon's state file: the command backend's pending stop commands, so a restart (even after kill -9)
// still closes every door it opened (SEMANTICS.md deviation 8). Written atomically: temp file, fsync, rename.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { PendingStop } from '../actions/types.js';

export const STATE_VERSION = 1;
export const DEFAULT_STATE_FILE = '/var/lib/knockd-fast/state.json';

export interface DaemonState {
  version: number;
  stops: PendingStop[];
}

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

/** A missing file is an empty state; an unreadable or corrupt one is an error naming the file and the fix. */
export function readState(path: string): DaemonState {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: STATE_VERSION, stops: [] };
    throw new StateFileError(`cannot read state file ${path}: ${(err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new StateFileError(
      `state file ${path} is not valid JSON (${(err as Error).message}); move it aside to start without pending stop commands`,
    );
  }
  const d = data as DaemonState;
  if (typeof d !== 'object' || d === null || d.version !== STATE_VERSION || !Array.isArray(d.stops) || !d.stops.every(isStop)) {
    throw new StateFileError(
      `state file ${path} is not a knockd-fast state file of version ${STATE_VERSION}; move it aside to start without pending stop commands`,
    );
  }
  return { version: STATE_VERSION, stops: d.stops };
}

/** Replaces the file atomically: readers see the old or the new content, never a torn write. */
export function writeState(path: string, state: DaemonState): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(state)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}
