// The byte-level pieces of knockd 0.8's config reader that both knockd.conf and one-time sequence files
// use: fgets chunking, C isspace trimming, atoi, and the sequence syntax (knockd 0.8's parser, byte for byte).
//
// knockd works on bytes, so text is handled as "byte strings" (latin1: one char per byte). That keeps the
// 4095-byte chunking, ASCII-only upper-casing and name truncation exact for non-ASCII input; values
// leave this layer as UTF-8 again through fromBytes().
import { getSystemErrorMap } from 'node:util';
import { MAX_ICMP_PAYLOAD, type StepProto, type Step } from './types.js';

/** A config error: `message` is exactly the stderr line knockd prints; `line` when one is known. */
export class ConfigError extends Error {
  readonly line?: number;
  constructor(message: string, line?: number) {
    super(message);
    this.name = 'ConfigError';
    this.line = line;
  }
}

export const toBytes = (data: Buffer | string): string =>
  (typeof data === 'string' ? Buffer.from(data, 'utf8') : data).toString('latin1');
export const fromBytes = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8');

/** fgets(line, PATH_MAX, fp) returns at most PATH_MAX - 1 bytes per call. */
export const CHUNK_BYTES = 4095;
export const MAX_SEQUENCE_STEPS = 32;

export interface Chunk {
  /** the chunk as fgets returned it, cut at a NUL byte as strlen would */
  raw: string;
  /** byte offset of the chunk in the file */
  offset: number;
  /** 1-based "line" number: knockd counts chunks, so a long line counts more than once */
  number: number;
}

/** Splits file bytes the way repeated fgets calls with a 4096-byte buffer do. */
export function chunks(bytes: string): Chunk[] {
  const out: Chunk[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const nl = bytes.indexOf('\n', pos);
    const end = Math.min(nl < 0 ? bytes.length : nl + 1, pos + CHUNK_BYTES);
    const text = bytes.slice(pos, end);
    const nul = text.indexOf('\0');
    out.push({ raw: nul < 0 ? text : text.slice(0, nul), offset: pos, number: out.length + 1 });
    pos = end;
  }
  return out;
}

/** C isspace in the C locale: space, \t, \n, \v, \f, \r. */
export const trimC = (s: string): string => s.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '');

/** toupper in the C locale changes a-z only. */
export const upperC = (s: string): string => s.replace(/[a-z]+/g, (m) => m.toUpperCase());

const LONG_MAX = (1n << 63n) - 1n;
const LONG_MIN = -(1n << 63n);

/** glibc atoi = (int) strtol(s, NULL, 10): blanks, sign, digits; clamped to long, then cut to 32 bits. */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d*)/.exec(s)!;
  if (m[2] === '') return 0;
  let v = BigInt(m[2]);
  if (m[1] === '-') v = -v;
  if (v > LONG_MAX) v = LONG_MAX;
  if (v < LONG_MIN) v = LONG_MIN;
  return Number(BigInt.asIntN(32, v));
}

/**
 * `parse_port_sequence`: comma-separated `PORT[:PROTO]` items. `value` is a byte string, `door` the door
 * name as printed. Throws ConfigError with knockd's stderr text (no line number: knockd prints none).
 */
export function parseSequence(value: string, door: string): Step[] {
  const steps: Step[] = [];
  for (const item of value.split(',')) {
    if (steps.length >= MAX_SEQUENCE_STEPS) {
      throw new ConfigError(`config: section ${door}: too many ports in knock sequence`);
    }
    const parts = item.split(':');
    const port = atoi(parts[0]);
    if (port > 65535) throw new ConfigError(`config: section ${door}: port ${fromBytes(parts[0])} is invalid`);
    let proto: StepProto = 'tcp';
    if (parts.length > 1) {
      const p = upperC(trimC(parts[1]));
      if (p === 'UDP') proto = 'udp';
      else if (p === 'ICMP') proto = 'icmp'; // extension: knockd 0.8 refuses it
      else if (p !== 'TCP') throw new ConfigError(`config: section ${door}: unknown protocol in knock sequence`);
    }
    if (proto === 'icmp' && (port < 0 || port > MAX_ICMP_PAYLOAD)) {
      throw new ConfigError(
        `config: section ${door}: ICMP payload length ${fromBytes(parts[0])} is invalid; ` +
          `expected LEN:icmp with LEN 0 to ${MAX_ICMP_PAYLOAD} (65507 over IPv4), the size given to ping -s`,
      );
    }
    steps.push({ port: port & 0xffff, proto });
  }
  return steps;
}

export const sameSequence = (a: readonly Step[], b: readonly Step[]): boolean =>
  a.length === b.length && a.every((s, i) => s.port === b[i].port && s.proto === b[i].proto);

// strerror texts for what opening a config, one-time or key file can fail with; libuv's own wording
// (lower case, sometimes different) is the fallback.
const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  EROFS: 'Read-only file system',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  ETXTBSY: 'Text file busy',
  EMFILE: 'Too many open files',
  ENFILE: 'Too many open files in system',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  ENODEV: 'No such device',
  EBUSY: 'Device or resource busy',
  EINVAL: 'Invalid argument',
  ENOMEM: 'Cannot allocate memory',
};

export function strerror(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code && STRERROR[e.code]) return STRERROR[e.code];
  const uv = typeof e.errno === 'number' ? getSystemErrorMap().get(e.errno) : undefined;
  if (uv) return uv[1].charAt(0).toUpperCase() + uv[1].slice(1);
  return e.message;
}

/** perror(path): `path: strerror`, or only the error text when the path is empty. */
export const perror = (path: string, err: unknown): string => (path ? `${path}: ${strerror(err)}` : strerror(err));
