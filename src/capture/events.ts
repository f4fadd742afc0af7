// Event batches from either matcher (or the capture engine) -> typed events. Layout: docs/MATCHER.md §7.
import { formatAddress } from '../address.js';

export const EVENT_RECORD_SIZE = 40;

export const EventKind = { STAGE: 1, COMPLETED: 2, FAILED: 3, SUPPRESSED: 4, ERROR: 5 } as const;
export const FailReason = { TIMEOUT: 1, WRONG_PORT: 2, EVICTED: 3 } as const;

export type KnockEvent =
  | { kind: 'stage' | 'completed'; door: number; generation: number; shard: number; family: 4 | 6; source: string; stage: number; timeUs: number }
  | {
      kind: 'failed';
      reason: 'timeout' | 'wrong_port' | 'evicted';
      door: number;
      generation: number;
      shard: number;
      family: 4 | 6;
      source: string;
      stage: number;
      timeUs: number;
    }
  | { kind: 'suppressed'; count: number; shard: number; generation: number; timeUs: number }
  | { kind: 'error'; code: number; errno: number; shard: number; generation: number; timeUs: number };

const REASONS = ['', 'timeout', 'wrong_port', 'evicted'] as const;

export function decodeEvents(batch: Uint8Array): KnockEvent[] {
  if (batch.byteLength % EVENT_RECORD_SIZE !== 0) {
    throw new RangeError(`event batch of ${batch.byteLength} bytes is not a multiple of ${EVENT_RECORD_SIZE}`);
  }
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const out: KnockEvent[] = [];
  for (let o = 0; o < batch.byteLength; o += EVENT_RECORD_SIZE) {
    const kind = view.getUint8(o);
    const reason = view.getUint8(o + 1);
    const family = view.getUint8(o + 2) as 4 | 6;
    const stage = view.getUint8(o + 3);
    const door = view.getUint16(o + 4, true);
    const shard = view.getUint16(o + 6, true);
    const generation = view.getUint32(o + 8, true);
    const count = view.getUint32(o + 12, true);
    const timeUs = Number(view.getBigInt64(o + 16, true));
    switch (kind) {
      case EventKind.STAGE:
      case EventKind.COMPLETED:
        out.push({
          kind: kind === EventKind.STAGE ? 'stage' : 'completed',
          door,
          generation,
          shard,
          family,
          source: formatAddress(family, batch, o + 24),
          stage,
          timeUs,
        });
        break;
      case EventKind.FAILED:
        out.push({
          kind: 'failed',
          reason: REASONS[reason] === '' || REASONS[reason] === undefined ? 'timeout' : REASONS[reason],
          door,
          generation,
          shard,
          family,
          source: formatAddress(family, batch, o + 24),
          stage,
          timeUs,
        });
        break;
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
    if (this.len + EVENT_RECORD_SIZE > this.buf.byteLength) {
      const next = new Uint8Array(this.buf.byteLength * 2);
      next.set(this.buf);
      this.buf = next;
      this.view = new DataView(next.buffer);
      this.words = new Uint32Array(next.buffer);
    }
    const o = this.len;
    const v = this.view;
    v.setUint8(o, kind);
    v.setUint8(o + 1, reason);
    v.setUint8(o + 2, family);
    v.setUint8(o + 3, stage);
    v.setUint16(o + 4, door, true);
    v.setUint16(o + 6, 0, true);
    v.setUint32(o + 8, generation, true);
    v.setUint32(o + 12, count, true);
    // two 32-bit halves: exact for |timeUs| < 2^53 and no BigInt per event
    v.setUint32(o + 16, timeUs >>> 0, true);
    v.setInt32(o + 20, Math.floor(timeUs / 4294967296), true);
    const words = this.words;
    const at = (o + 24) >> 2;
    if (src) for (let k = 0; k < 4; k++) words[at + k] = src[srcWord + k];
    else for (let k = 0; k < 4; k++) words[at + k] = 0;
    this.len += EVENT_RECORD_SIZE;
  }

  /** Returns the events written since the last take() (a copy) and resets. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.len);
    this.len = 0;
    return out;
  }
}
