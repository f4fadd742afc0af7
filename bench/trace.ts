// Synthetic capture traces for the matcher benchmarks: Ethernet/IPv4/TCP frames from one template.
import { LinkType, type FrameBatch } from '../src/match/matcher-api.js';
import { knockFrame, TCP } from '../test/helpers/packets.js';
import { T0 } from '../test/helpers/env.js';

export { T0 };
export const BATCH = 4096; // frames per feed() call, as a capture ring block delivers them

const SRC_OFFSET = 14 + 12; // Ethernet + IPv4 source address
const DPORT_OFFSET = 14 + 20 + 2;

/** Frames from one Ethernet/IPv4/TCP template with the source and port patched in place. */
export class TraceBuilder {
  private readonly template: Uint8Array;
  private readonly data: Uint8Array;
  private readonly offsets: Uint32Array;
  private readonly times: Float64Array;
  private n = 0;

  constructor(readonly capacity: number) {
    this.template = knockFrame({ src: '10.0.0.1', dst: '192.0.2.2', dport: 7000, proto: 'tcp', flags: TCP.SYN });
    this.data = new Uint8Array(capacity * this.template.length);
    this.offsets = new Uint32Array(capacity + 1);
    this.times = new Float64Array(capacity);
  }

  /** A frame from `source` to `port`, captured at `timeUs` (default: 1 µs after the previous frame). */
  push(source: number, port: number, flags: number, timeUs = T0 + this.n): void {
    const o = this.n * this.template.length;
    this.data.set(this.template, o);
    this.data[o + SRC_OFFSET] = 10 + ((source >>> 24) & 0x3f);
    this.data[o + SRC_OFFSET + 1] = (source >>> 16) & 255;
    this.data[o + SRC_OFFSET + 2] = (source >>> 8) & 255;
    this.data[o + SRC_OFFSET + 3] = source & 255;
    this.data[o + DPORT_OFFSET] = port >>> 8;
    this.data[o + DPORT_OFFSET + 1] = port & 255;
    this.data[o + 14 + 20 + 13] = flags;
    this.times[this.n] = timeUs;
    this.n++;
    this.offsets[this.n] = this.n * this.template.length;
  }

  /** The trace cut into feed()-sized batches. */
  batches(): FrameBatch[] {
    const out: FrameBatch[] = [];
    const links = new Uint16Array(this.n).fill(LinkType.ETHERNET);
    for (let i = 0; i < this.n; i += BATCH) {
      const end = Math.min(this.n, i + BATCH);
      out.push({ data: this.data, offsets: this.offsets.subarray(i, end + 1), timestampsUs: this.times.subarray(i, end), linkTypes: links.subarray(i, end) });
    }
    return out;
  }

  get length(): number {
    return this.n;
  }
}

