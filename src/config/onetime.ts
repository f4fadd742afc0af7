// One-time sequence files (as knockd 0.8 reads and rewrites them; README.md deviation 6): one sequence per line in
// `Sequence` syntax; blank lines, `#` lines and lines that fail to parse are skipped. The first valid
// line is the door's sequence; after a success its line is disabled by turning its first byte into `#`.
import { realpathSync, statSync } from 'node:fs';
import { checkTrusted, FileSafetyError, readRegularFile, replaceFile } from './files.js';
import { ConfigError, chunks, parseSequence, perror, sameSequence, toBytes, trimC, type Chunk } from './lexical.js';
import type { Step } from './types.js';

export interface OneTimeRead {
  /** the first valid sequence of the file; empty when there is none left (the door is exhausted) */
  sequence: Step[];
  /** knockd's stderr text for each skipped line that failed to parse, in file order */
  errors: string[];
}

export const oneTimeExhaustedMessage = (door: string): string =>
  `no more sequences left in the one time sequences file for door ${door} --> disabling the door`;

export const oneTimeWriteFailedMessage = (door: string): string =>
  `error while disabling used one time sequence for door ${door} --> disabling the door`;

/** A one-time file holds lines of sequences: far below this. /dev/zero or a huge file is refused. */
export const ONE_TIME_MAX_BYTES = 16 * 1024 * 1024;

/**
 * knockd opens the file with fopen(path, "r+"): it must exist and be writable. It must also be a regular
 * file of at most ONE_TIME_MAX_BYTES that only root or the daemon's user can change (its lines open doors).
 */
function readWritable(path: string): string {
  try {
    const bytes = readRegularFile(path, { what: 'one-time sequences file', maxBytes: ONE_TIME_MAX_BYTES, writable: true });
    checkTrusted(path, 'one-time sequences file');
    return toBytes(bytes);
  } catch (err) {
    if (err instanceof FileSafetyError) throw new ConfigError(err.message);
    throw new ConfigError(perror(path, err));
  }
}

/** Calls `found` for each valid sequence line until it returns true; parse errors go to `errors`. */
function scan(bytes: string, door: string, errors: string[], found: (steps: Step[], chunk: Chunk) => boolean): void {
  for (const chunk of chunks(bytes)) {
    const text = trimC(chunk.raw);
    if (text === '' || text[0] === '#') continue;
    let steps: Step[];
    try {
      steps = parseSequence(text, door);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(err.message);
      continue;
    }
    if (found(steps, chunk)) return;
  }
}

/**
 * The sequence a one-time door uses now: the file's first valid line. `door` names the door in the
 * parse-error texts. Throws ConfigError (`<path>: <strerror>`) when the file cannot be opened for writing.
 */
export function readNextOneTimeSequence(path: string, door = ''): OneTimeRead {
  const errors: string[] = [];
  let sequence: Step[] = [];
  scan(readWritable(path), door, errors, (steps) => {
    sequence = steps;
    return true;
  });
  return { sequence, errors };
}

/**
 * Disables the first line whose sequence has the same port/protocol values as `sequence` by overwriting
 * its first byte with `#` (a leading blank protects the first digit, as in knockd). The file is replaced
 * atomically (temp file + rename) with its mode and owner kept. Returns false when no line matches.
 */
export function markOneTimeSequenceUsed(path: string, sequence: readonly Step[]): boolean {
  const real = realpathSync(path); // replace the file a symlink points to, not the link
  const bytes = readWritable(real);
  let offset = -1;
  scan(bytes, '', [], (steps, chunk) => {
    if (!sameSequence(steps, sequence)) return false;
    offset = chunk.offset;
    return true;
  });
  if (offset < 0) return false;
  const data = Buffer.from(bytes, 'latin1');
  data[offset] = 0x23; // '#'
  const st = statSync(real);
  replaceFile(real, data, { mode: st.mode & 0o7777, owner: { uid: st.uid, gid: st.gid } });
  return true;
}
