// Derived doors: the expected knock sequence for a source and a time window, computed from a shared
// secret (docs/MATCHER.md §10). Used by the TS matcher, the knock client and the tests; the C++ twin is
// native/core/derive.cc.
import { createHmac } from 'node:crypto';
import { statSync } from 'node:fs';
import { checkTrusted, FileSafetyError, readRegularFile } from '../config/files.js';

export interface DerivedParams {
  key: Uint8Array; // 16..64 bytes
  sequenceLength: number; // 1..32
  /** sorted, disjoint inclusive port ranges */
  ranges: [number, number][];
  protocols: ('tcp' | 'udp')[]; // tcp before udp
  timeStep: number; // seconds
  bindSource: boolean;
}

export interface DerivedStep {
  port: number;
  proto: 'tcp' | 'udp';
}

const MAGIC = Buffer.from('KFD1', 'ascii');

export function windowOf(timeUs: number, timeStep: number): number {
  return Math.floor(timeUs / (timeStep * 1e6));
}

export function rangeSize(ranges: [number, number][]): number {
  return ranges.reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
}

function nthPort(ranges: [number, number][], index: number): number {
  for (const [lo, hi] of ranges) {
    const n = hi - lo + 1;
    if (index < n) return lo + index;
    index -= n;
  }
  throw new RangeError('port index beyond the ranges');
}

export function derivationBlock(p: DerivedParams, window: number, family: 4 | 6, src: Uint8Array, k: number): Buffer {
  const msg = Buffer.alloc(4 + 8 + 1 + 16 + 1);
  MAGIC.copy(msg, 0);
  msg.writeBigUInt64BE(BigInt(window), 4);
  if (p.bindSource) {
    msg[12] = family;
    msg.set(src.subarray(0, 16), 13);
  }
  msg[29] = k;
  return createHmac('sha256', p.key).update(msg).digest();
}

/** The whole expected sequence of a source in a window. */
export function deriveSequence(p: DerivedParams, window: number, family: 4 | 6, src: Uint8Array): DerivedStep[] {
  const total = rangeSize(p.ranges);
  const steps: DerivedStep[] = [];
  let block: Buffer | undefined;
  for (let i = 0; i < p.sequenceLength; i++) {
    if ((i & 3) === 0) block = derivationBlock(p, window, family, src, i >> 2);
    const j = (i & 3) * 8;
    const portIndex = block!.readUInt32BE(j) % total;
    const protoIndex = block!.readUInt32BE(j + 4) % p.protocols.length;
    steps.push({ port: nthPort(p.ranges, portIndex), proto: p.protocols[protoIndex] });
  }
  return steps;
}

export class SecretFileError extends Error {}

/**
 * Reads a key file that must not be readable by group or others, like an ssh private key (derived doors'
 * Secret_File, SPA doors' SPA_Key_File). Throws SecretFileError naming the file and the fix.
 */
/** A key file holds at most 64 bytes, or their hex text: anything much longer is not a key file. */
const SECRET_FILE_MAX_BYTES = 4096;

export function readPrivateFile(path: string, opts: { requirePrivate?: boolean; maxBytes?: number } = {}): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new SecretFileError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if ((opts.requirePrivate ?? true) && (st.mode & 0o077) !== 0) {
    throw new SecretFileError(
      `${path}: the secret file is readable by other users (mode ${(st.mode & 0o777).toString(8)}); fix with: chmod 600 ${path}`,
    );
  }
  try {
    // owned by root or this user, and nobody else can change it or its directories (StrictModes)
    const raw = readRegularFile(path, { what: 'secret file', maxBytes: opts.maxBytes ?? SECRET_FILE_MAX_BYTES });
    checkTrusted(path, 'secret file');
    return raw;
  } catch (err) {
    if (err instanceof FileSafetyError) throw new SecretFileError(err.message);
    throw new SecretFileError(`${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads a derived door's key: hex text (at least 32 hex digits, as `knockd-fast secret` writes) or raw
 * bytes (at least 16), from a private file (readPrivateFile).
 */
export function readSecretFile(path: string, opts: { requirePrivate?: boolean } = {}): Uint8Array {
  const raw = readPrivateFile(path, opts);
  const text = raw.toString('latin1').trim();
  const key = /^([0-9a-fA-F]{2}){16,}$/.test(text) ? Buffer.from(text, 'hex') : raw;
  if (key.length < 16) {
    throw new SecretFileError(`${path}: the key is ${key.length} bytes; at least 16 bytes (128 bits) are needed — generate one with: knockd-fast secret --out ${path} (after removing this one)`);
  }
  if (key.length > 64) {
    throw new SecretFileError(`${path}: the key is ${key.length} bytes; at most 64 bytes are supported`);
  }
  return new Uint8Array(key);
}
