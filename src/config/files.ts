// Files the daemon trusts or replaces, in one place: the state file (its commands run as root), one-time
// sequence files and key files are refused when someone other than root or the daemon's user could change
// them (sshd's StrictModes); files are read only when they are regular files of a bounded size; files are
// replaced atomically through a temporary file that nobody can guess or plant; the log file is opened
// without following a symbolic link. See docs/HARDENING.md "Files the daemon trusts".
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

/** A file refused for its owner, mode, type or size; the message says what is wrong and how to fix it. */
export class FileSafetyError extends Error {}

const STICKY = 0o1000;

const modeText = (st: Stats) => (st.mode & 0o7777).toString(8).padStart(4, '0');

function kindOf(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * StrictModes: `path` (when it exists) and each directory above it must be owned by root or by the daemon's
 * user and writable by nobody else. A directory writable by others is accepted only with the sticky bit
 * (like /tmp: others may add entries there but cannot replace ours, and each entry we use is checked itself).
 * Both the path as given and the file a symbolic link leads to are checked. `what` names the file in errors.
 */
export function checkTrusted(path: string, what: string): void {
  const abs = resolve(path);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch {
    real = join(realpathOrSelf(dirname(abs)), basename(abs));
  }
  checkChain(real, what, path);
  if (real !== abs) checkChain(dirname(abs), what, path);
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function checkChain(start: string, what: string, given: string): void {
  const uid = process.getuid?.() ?? 0;
  const owner = uid === 0 ? 'root' : `root or uid ${uid} (the daemon's user)`;
  for (let p = start; ; p = dirname(p)) {
    let st: Stats;
    try {
      st = statSync(p);
    } catch {
      if (p === dirname(p)) return;
      continue; // not there yet (a state file or its directory is created later)
    }
    const where = p === given ? `${what} ${given}` : `${what} ${given}: ${st.isDirectory() ? 'directory' : 'file'} ${p}`;
    if (st.uid !== 0 && st.uid !== uid) {
      throw new FileSafetyError(`${where} is owned by uid ${st.uid}, not by ${owner}; others could change what the daemon runs or trusts. Fix: chown ${uid === 0 ? 'root' : uid} ${p}`);
    }
    const othersWrite = st.mode & 0o022;
    if (othersWrite && !(st.isDirectory() && st.mode & STICKY)) {
      const who = othersWrite === 0o022 ? 'its group and by others' : othersWrite & 0o020 ? 'its group' : 'others';
      throw new FileSafetyError(`${where} is writable by ${who} (mode ${modeText(st)}); others could change what the daemon runs or trusts. Fix: chmod go-w ${p}`);
    }
    if (p === dirname(p)) return;
  }
}

export interface ReadLimitedOptions {
  /** refuse files larger than this */
  maxBytes: number;
  /** what the file is, for messages ("one-time sequences file") */
  what: string;
  /** open read-write (knockd opens one-time files with "r+") */
  writable?: boolean;
  /** the fix to suggest for a file that is too large */
  tooLargeFix?: string;
}

/**
 * Reads a whole file that must be a regular file of at most maxBytes. Never blocks on a FIFO, never reads
 * a device that does not end (/dev/zero). Errors from open() are thrown as they are (callers word them).
 */
export function readRegularFile(path: string, opts: ReadLimitedOptions): Buffer {
  const fd = openSync(path, (opts.writable ? constants.O_RDWR : constants.O_RDONLY) | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FileSafetyError(`${opts.what} ${path} is ${kindOf(st)}; give the path of a regular file`);
    if (st.size > opts.maxBytes) throw tooLarge(path, st.size, opts);
    // read what is there, but never more than the limit even if the file grows meanwhile
    const buf = Buffer.alloc(Math.min(st.size, opts.maxBytes) + 1);
    let got = 0;
    for (let n; got < buf.length && (n = readSync(fd, buf, got, buf.length - got, null)) > 0; ) got += n;
    if (got > opts.maxBytes) throw tooLarge(path, got, opts);
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

function tooLarge(path: string, size: number, opts: ReadLimitedOptions): FileSafetyError {
  return new FileSafetyError(`${opts.what} ${path} is ${size} bytes; at most ${opts.maxBytes} bytes are accepted${opts.tooLargeFix ? `; ${opts.tooLargeFix}` : ''}`);
}

export interface ReplaceOptions {
  /** mode of the new file; default 0600 */
  mode?: number;
  /** owner of the new file (kept from the old one when rewriting another's file) */
  owner?: { uid: number; gid: number };
}

/**
 * Replaces `path` atomically: readers see the old or the new content, never a torn one, and after a crash
 * one of the two. The temporary file is created in the same directory with an unpredictable name,
 * O_EXCL and O_NOFOLLOW (nothing planted there is opened or followed); on any failure (a full disk) it is
 * removed again. The rename replaces a symbolic link at `path` itself, never its target.
 */
export function replaceFile(path: string, data: string | Uint8Array, opts: ReplaceOptions = {}): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(9).toString('base64url')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, opts.mode ?? 0o600);
  try {
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      if (opts.owner) fchownSync(fd, opts.owner.uid, opts.owner.gid);
      fchmodSync(fd, opts.mode ?? 0o600); // the umask must not narrow or widen it
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed or never created
    }
    throw err;
  }
  const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(dirFd); // make the rename itself durable
  } finally {
    closeSync(dirFd);
  }
}

/**
 * Opens a log file for appending without following a symbolic link at its name (a link planted in a
 * writable directory would otherwise redirect root's writes). Regular files and character devices only.
 */
export function openAppendNoFollow(path: string, mode: number): number {
  const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
  const st = fstatSync(fd);
  if (!st.isFile() && !st.isCharacterDevice()) {
    closeSync(fd);
    throw new FileSafetyError(`${path} is ${kindOf(st)}; give the path of a regular file`);
  }
  return fd;
}
