// Event batches from either matcher (or the capture engine) -> typed events. Layout: docs/MATCHER.md §7.
import { formatAddress } from '../address.js';

export const EVENT_RECORD_SIZE = 40;
/** Byte offsets of the record's fields (native/core/event.h EventRecord; little-endian). */
export const EventField = { KIND: 0, REASON: 1, FAMILY: 2, STAGE: 3, DOOR: 4, SHARD: 6, GENERATION: 8, COUNT: 12, TIME_US: 16, ADDRESS: 24 } as const;
const { KIND, REASON, FAMILY, STAGE, DOOR, SHARD, GENERATION, COUNT, TIME_US, ADDRESS } = EventField;

export const EventKind = { STAGE: 1, COMPLETED: 2, FAILED: 3, SUPPRESSED: 4, ERROR: 5, SPA: 6 } as const;
export const FailReason = { TIMEOUT: 1, WRONG_PORT: 2, EVICTED: 3, SPA_AUTH: 4 } as const;

/** Records an event takes: an SPA record (count = payload bytes) is followed by its payload, zero-padded
 * to whole records; every other kind is one record. */
export function recordsOf(batch: Uint8Array, o: number): number {
  if (batch[o + KIND] !== EventKind.SPA) return 1;
  const c = o + COUNT;
  const count = batch[c] | (batch[c + 1] << 8) | (batch[c + 2] << 16) | (batch[c + 3] << 24);
  return 1 + Math.ceil((count >>> 0) / EVENT_RECORD_SIZE);
}

export type KnockEvent =
  | { kind: 'stage'; door: number; generation: number; shard: number; family: 4 | 6; source: string; stage: number; timeUs: number }
  /** window: a derived door's used time window, low 32 bits (MATCHER.md §7); 0 for other doors */
  | { kind: 'completed'; door: number; generation: number; shard: number; family: 4 | 6; source: string; stage: number; timeUs: number; window: number }
  | {
      kind: 'failed';
      reason: 'timeout' | 'wrong_port' | 'evicted' | 'spa_auth';
      door: number;
      generation: number;
      shard: number;
      family: 4 | 6;
      source: string;
      stage: number;
      timeUs: number;
    }
  | { kind: 'spa'; door: number; generation: number; shard: number; family: 4 | 6; source: string; payload: Uint8Array; timeUs: number }
  | { kind: 'suppressed'; count: number; shard: number; generation: number; timeUs: number }
  | { kind: 'error'; code: number; errno: number; shard: number; generation: number; timeUs: number };

const REASONS = ['', 'timeout', 'wrong_port', 'evicted', 'spa_auth'] as const;

export function decodeEvents(batch: Uint8Array): KnockEvent[] {
  if (batch.byteLength % EVENT_RECORD_SIZE !== 0) {
    throw new RangeError(`event batch of ${batch.byteLength} bytes is not a multiple of ${EVENT_RECORD_SIZE}`);
  }
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const out: KnockEvent[] = [];
  for (let o = 0; o < batch.byteLength; o += recordsOf(batch, o) * EVENT_RECORD_SIZE) {
    const kind = view.getUint8(o + KIND);
    const reason = view.getUint8(o + REASON);
    const family = view.getUint8(o + FAMILY) as 4 | 6;
    const stage = view.getUint8(o + STAGE);
    const door = view.getUint16(o + DOOR, true);
    const shard = view.getUint16(o + SHARD, true);
    const generation = view.getUint32(o + GENERATION, true);
    const count = view.getUint32(o + COUNT, true);
    const timeUs = Number(view.getBigInt64(o + TIME_US, true));
    switch (kind) {
      case EventKind.STAGE:
        out.push({ kind: 'stage', door, generation, shard, family, source: formatAddress(family, batch, o + ADDRESS), stage, timeUs });
        break;
      case EventKind.COMPLETED:
        out.push({ kind: 'completed', door, generation, shard, family, source: formatAddress(family, batch, o + ADDRESS), stage, timeUs, window: count });
        break;
      case EventKind.FAILED:
        out.push({
          kind: 'failed',
          reason: REASONS[reason] === '' || REASONS[reason] === undefined ? 'timeout' : REASONS[reason],
          door,
          generation,
          shard,
          family,
          source: formatAddress(family, batch, o + ADDRESS),
          stage,
          timeUs,
        });
        break;
      case EventKind.SPA: {
        const end = o + EVENT_RECORD_SIZE + count;
        if (count > 0xffff || end > batch.byteLength) throw new RangeError(`SPA event at byte ${o} claims ${count} payload bytes past the batch`);
        const payload = batch.slice(o + EVENT_RECORD_SIZE, end);
        out.push({ kind: 'spa', door, generation, shard, family, source: formatAddress(family, batch, o + ADDRESS), payload, timeUs });
        break;
      }
      case EventKind.SUPPRESSED:
        out.push({ kind: 'suppressed', count, shard, generation, timeUs });
        break;
      case EventKind.ERROR:
        out.push({ kind: 'error', code: reason, errno: count, shard, generation, timeUs });
        break;
      default:
        throw new RangeError(`unknown event kind ${kind} at byte ${o}`);
    }
  }
  return out;
}

/** Encodes one record; the TS matcher writes its events with this layout too. */
export class EventWriter {
  private buf = new Uint8Array(EVENT_RECORD_SIZE * 64);
  private view = new DataView(this.buf.buffer);
  private words = new Uint32Array(this.buf.buffer); // the address is copied as words: no byte order
  private len = 0;

  /** `src` holds the address as 4 words from `srcWord` on; without it the address is zero. */
  push(kind: number, reason: number, family: number, stage: number, door: number, generation: number, count: number, timeUs: number, src?: Uint32Array, srcWord = 0): void {
    if (this.len + EVENT_RECORD_SIZE > this.buf.byteLength) this.grow(EVENT_RECORD_SIZE);
    const o = this.len;
    const v = this.view;
    v.setUint8(o + KIND, kind);
    v.setUint8(o + REASON, reason);
    v.setUint8(o + FAMILY, family);
    v.setUint8(o + STAGE, stage);
    v.setUint16(o + DOOR, door, true);
    v.setUint16(o + SHARD, 0, true);
    v.setUint32(o + GENERATION, generation, true);
    v.setUint32(o + COUNT, count, true);
    // two 32-bit halves: exact for |timeUs| < 2^53 and no BigInt per event
    v.setUint32(o + TIME_US, timeUs >>> 0, true);
    v.setInt32(o + TIME_US + 4, Math.floor(timeUs / 4294967296), true);
    const words = this.words;
    const at = (o + ADDRESS) >> 2;
    if (src) for (let k = 0; k < 4; k++) words[at + k] = src[srcWord + k];
    else for (let k = 0; k < 4; k++) words[at + k] = 0;
    this.len += EVENT_RECORD_SIZE;
  }

  /** Appends an SPA event's payload after its record, zero-padded to whole records. */
  pushPayload(payload: Uint8Array): void {
    const bytes = Math.ceil(payload.byteLength / EVENT_RECORD_SIZE) * EVENT_RECORD_SIZE;
    if (this.len + bytes > this.buf.byteLength) this.grow(bytes);
    this.buf.set(payload, this.len);
    this.buf.fill(0, this.len + payload.byteLength, this.len + bytes);
    this.len += bytes;
  }

  /** Doubles the buffer until `bytes` more fit. */
  private grow(bytes: number): void {
    let size = this.buf.byteLength * 2;
    while (this.len + bytes > size) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf);
    this.buf = next;
    this.view = new DataView(next.buffer);
    this.words = new Uint32Array(next.buffer);
  }

  /** Returns the events written since the last take() (a copy) and resets. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.len);
    this.len = 0;
    return out;
  }
}
