// Capture files -> FrameBatch chunks (classic pcap in both byte orders with micro- or nanosecond
// timestamps; pcapng with SHB in either byte order, IDB link types and if_tsresol, EPB and SPB), and a
// small classic-pcap writer for tests and replays. Timestamps become integer microseconds.
import { FileSafetyError, readRegularFile } from '../config/files.js';
import { batchFromFrames, type CapturedFrame } from '../match/frame.js';
import type { FrameBatch } from '../match/matcher-api.js';

/** A capture file that cannot be read: the message names the file and the byte offset. */
export class CaptureFileError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    what: string,
  ) {
    super(`${file}: ${what} at byte ${offset}`);
    this.name = 'CaptureFileError';
  }
}

export interface ReadCaptureOptions {
  /** frames per yielded batch (default 4096) */
  chunkFrames?: number;
}

const PCAP_MICRO = 0xa1b2c3d4;
const PCAP_NANO = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER = 0x1a2b3c4d;
const PCAPNG_IDB = 1;
const PCAPNG_SPB = 3;
const PCAPNG_EPB = 6;
const OPT_IF_TSRESOL = 9;

/** The largest capture file read (it is held in memory whole): 1 GiB. */
export const CAPTURE_MAX_BYTES = 1 << 30;

/** Reads a whole capture file (a regular file of at most CAPTURE_MAX_BYTES) and yields its frames in batches. */
export function* readCaptureFile(path: string, opts: ReadCaptureOptions = {}): Generator<FrameBatch> {
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(path, { what: 'capture file', maxBytes: CAPTURE_MAX_BYTES, tooLargeFix: 'split it, e.g. editcap -c 1000000 in.pcap part.pcap' });
  } catch (err) {
    if (err instanceof FileSafetyError) throw new CaptureFileError(path, 0, err.message.replace(`capture file ${path} `, ''));
    throw new Error(`cannot read capture file ${path}: ${(err as Error).message}`);
  }
  yield* readCapture(bytes, path, opts);
}

/** Parses a capture held in memory; `name` appears in error messages. */
export function* readCapture(bytes: Uint8Array, name: string, opts: ReadCaptureOptions = {}): Generator<FrameBatch> {
  const chunk = opts.chunkFrames ?? 4096;
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`chunkFrames must be a positive integer (got ${chunk})`);
  let pending: CapturedFrame[] = [];
  for (const frame of frames(bytes, name)) {
    pending.push(frame);
    if (pending.length === chunk) {
      yield batchFromFrames(pending);
      pending = [];
    }
  }
  if (pending.length > 0) yield batchFromFrames(pending);
}

function frames(bytes: Uint8Array, name: string): Generator<CapturedFrame> {
  if (bytes.byteLength < 4) throw new CaptureFileError(name, 0, `${bytes.byteLength}-byte file is too short to be a pcap or pcapng capture`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, true);
  if (magic === PCAPNG_SHB) return pcapng(bytes, view, name);
  for (const little of [true, false]) {
    const m = view.getUint32(0, little);
    if (m === PCAP_MICRO || m === PCAP_NANO) return pcap(bytes, view, name, little, m === PCAP_NANO);
  }
  throw new CaptureFileError(
    name,
    0,
    `unknown file format (magic 0x${magic.toString(16).padStart(8, '0')}): expected a pcap (0xa1b2c3d4 / 0xa1b23c4d) or pcapng (0x0a0d0d0a) capture`,
  );
}

function* pcap(bytes: Uint8Array, view: DataView, name: string, little: boolean, nano: boolean): Generator<CapturedFrame> {
  if (bytes.byteLength < 24) throw new CaptureFileError(name, 0, `truncated pcap file header (${bytes.byteLength} of 24 bytes)`);
  const linkType = view.getUint32(20, little) & 0xffff; // the upper bits carry FCS information
  let o = 24;
  while (o < bytes.byteLength) {
    if (bytes.byteLength - o < 16) throw new CaptureFileError(name, o, `truncated packet record header (${bytes.byteLength - o} of 16 bytes)`);
    const sec = view.getUint32(o, little);
    const frac = view.getUint32(o + 4, little);
    const caplen = view.getUint32(o + 8, little);
    if (bytes.byteLength - o - 16 < caplen) {
      throw new CaptureFileError(name, o, `truncated packet record (${caplen} bytes announced, ${bytes.byteLength - o - 16} left)`);
    }
    yield { data: bytes.subarray(o + 16, o + 16 + caplen), timeUs: sec * 1e6 + (nano ? Math.floor(frac / 1000) : frac), linkType };
    o += 16 + caplen;
  }
}

interface Interface {
  linkType: number;
  unitsPerSecond: number;
}

function* pcapng(bytes: Uint8Array, view: DataView, name: string): Generator<CapturedFrame> {
  let little = true;
  let interfaces: Interface[] = [];
  let lastUs = 0; // SPBs carry no timestamp: they repeat the previous one
  let o = 0;
  while (o < bytes.byteLength) {
    if (bytes.byteLength - o < 12) throw new CaptureFileError(name, o, `truncated pcapng block header (${bytes.byteLength - o} of 12 bytes)`);
    const type = view.getUint32(o, little);
    if (type === PCAPNG_SHB) {
      // a section may switch byte order: read it from the byte-order magic
      if (view.getUint32(o + 8, true) === PCAPNG_BYTE_ORDER) little = true;
      else if (view.getUint32(o + 8, false) === PCAPNG_BYTE_ORDER) little = false;
      else throw new CaptureFileError(name, o + 8, 'bad pcapng byte-order magic (expected 0x1a2b3c4d)');
      interfaces = [];
    }
    const len = view.getUint32(o + 4, little);
    if (len < 12 || len % 4 !== 0) throw new CaptureFileError(name, o, `bad pcapng block length ${len} (a multiple of 4, at least 12)`);
    if (bytes.byteLength - o < len) throw new CaptureFileError(name, o, `truncated pcapng block (${len} bytes announced, ${bytes.byteLength - o} left)`);
    const body = o + 8;
    const end = o + len - 4;
    if (type === PCAPNG_IDB) {
      if (end - body < 8) throw new CaptureFileError(name, o, 'interface description block shorter than 20 bytes');
      interfaces.push({ linkType: view.getUint16(body, little), unitsPerSecond: tsresol(bytes, view, name, body + 8, end, little) });
    } else if (type === PCAPNG_EPB || type === PCAPNG_SPB) {
      const epb = type === PCAPNG_EPB;
      const head = epb ? 20 : 4;
      if (end - body < head) throw new CaptureFileError(name, o, `${epb ? 'enhanced' : 'simple'} packet block shorter than ${head + 12} bytes`);
      const ifid = epb ? view.getUint32(body, little) : 0;
      const iface = interfaces[ifid];
      if (!iface) throw new CaptureFileError(name, o, `packet block names interface ${ifid}, but ${interfaces.length} interfaces are described before it`);
      let caplen: number;
      if (epb) {
        lastUs = toMicros(view.getUint32(body + 4, little), view.getUint32(body + 8, little), iface.unitsPerSecond);
        if (!Number.isSafeInteger(lastUs)) throw new CaptureFileError(name, o, `packet timestamp of ${lastUs} µs is beyond 2^53 µs (year 2255)`);
        caplen = view.getUint32(body + 12, little);
      } else {
        caplen = Math.min(view.getUint32(body, little), end - body - head);
      }
      if (caplen > end - body - head) throw new CaptureFileError(name, o, `packet block announces ${caplen} captured bytes but holds ${end - body - head}`);
      yield { data: bytes.subarray(body + head, body + head + caplen), timeUs: lastUs, linkType: iface.linkType };
    }
    o += len;
  }
}

/** Units per second from an IDB's options (if_tsresol; default microseconds). */
function tsresol(bytes: Uint8Array, view: DataView, name: string, o: number, end: number, little: boolean): number {
  while (end - o >= 4) {
    const code = view.getUint16(o, little);
    const len = view.getUint16(o + 2, little);
    if (code === 0) break;
    if (end - o - 4 < len) throw new CaptureFileError(name, o, `interface option ${code} of ${len} bytes runs past its block`);
    if (code === OPT_IF_TSRESOL && len >= 1) {
      const v = bytes[o + 4];
      const units = v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
      if (!Number.isFinite(units) || units < 1) throw new CaptureFileError(name, o, `unsupported if_tsresol 0x${v.toString(16)}`);
      return units;
    }
    o += 4 + Math.ceil(len / 4) * 4;
  }
  return 1e6;
}

function toMicros(high: number, low: number, unitsPerSecond: number): number {
  if (unitsPerSecond === 1e6) return high * 4294967296 + low;
  const ticks = (BigInt(high) << 32n) | BigInt(low);
  return Number((ticks * 1_000_000n) / BigInt(unitsPerSecond));
}

export interface PcapWriteOptions {
  nanosecond?: boolean;
  bigEndian?: boolean;
  snaplen?: number;
}

/** A classic pcap file holding the frames (all of one link type). */
export function writePcap(frames: readonly { data: Uint8Array; timeUs: number }[], linkType: number, opts: PcapWriteOptions = {}): Uint8Array {
  const little = !opts.bigEndian;
  const size = 24 + frames.reduce((n, f) => n + 16 + f.data.byteLength, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, opts.nanosecond ? PCAP_NANO : PCAP_MICRO, little);
  view.setUint16(4, 2, little);
  view.setUint16(6, 4, little);
  view.setUint32(16, opts.snaplen ?? 262144, little);
  view.setUint32(20, linkType, little);
  let o = 24;
  for (const f of frames) {
    if (!Number.isSafeInteger(f.timeUs) || f.timeUs < 0) throw new RangeError(`frame time must be a non-negative integer of microseconds (got ${f.timeUs})`);
    const sec = Math.floor(f.timeUs / 1e6);
    const micros = f.timeUs - sec * 1e6;
    view.setUint32(o, sec, little);
    view.setUint32(o + 4, opts.nanosecond ? micros * 1000 : micros, little);
    view.setUint32(o + 8, f.data.byteLength, little);
    view.setUint32(o + 12, f.data.byteLength, little);
    out.set(f.data, o + 16);
    o += 16 + f.data.byteLength;
  }
  return out;
}
