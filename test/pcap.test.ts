// Capture files: classic pcap (both byte orders, µs and ns), pcapng (SHB in both byte orders, IDB link
// types and if_tsresol, EPB, SPB, unknown blocks), chunking, and errors naming file and byte offset.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { FrameBatch } from '../src/match/matcher-api.js';
import { LinkType } from '../src/match/matcher-api.js';
import { CaptureFileError, readCapture, readCaptureFile, writePcap } from '../src/capture/pcap.js';
import { knockFrame } from './helpers/packets.js';

const T = 1_700_000_123_456_789; // µs
const frames = [7000, 8000, 9000].map((dport, i) => ({
  data: knockFrame({ src: '198.51.100.1', dst: '192.0.2.2', dport }),
  timeUs: T + i * 1_000_001,
}));

/** Flattens batches back into frames. */
function unbatch(batches: Iterable<FrameBatch>): { data: number[]; timeUs: number; linkType: number }[] {
  const out = [];
  for (const b of batches) {
    for (let i = 0; i < b.timestampsUs.length; i++) {
      out.push({ data: [...b.data.subarray(b.offsets[i], b.offsets[i + 1])], timeUs: b.timestampsUs[i], linkType: b.linkTypes[i] });
    }
  }
  return out;
}

const expected = (linkType: number) => frames.map((f) => ({ data: [...f.data], timeUs: f.timeUs, linkType }));

for (const bigEndian of [false, true]) {
  for (const nanosecond of [false, true]) {
    test(`classic pcap, ${bigEndian ? 'big' : 'little'}-endian, ${nanosecond ? 'nanosecond' : 'microsecond'} timestamps`, () => {
      const file = writePcap(frames, LinkType.ETHERNET, { bigEndian, nanosecond });
      assert.deepEqual(unbatch(readCapture(file, 'x.pcap')), expected(LinkType.ETHERNET));
    });
  }
}

test('nanosecond timestamps are truncated to whole microseconds', () => {
  const file = writePcap([{ data: frames[0].data, timeUs: T }], LinkType.RAW, { nanosecond: true });
  new DataView(file.buffer).setUint32(24 + 4, (T % 1e6) * 1000 + 999, true);
  assert.equal(unbatch(readCapture(file, 'x.pcap'))[0].timeUs, T);
});

test('the link type comes from the file header, without its FCS bits', () => {
  const file = writePcap(frames, LinkType.LINUX_SLL);
  new DataView(file.buffer).setUint32(20, LinkType.LINUX_SLL | 0x14000000, true);
  assert.deepEqual(unbatch(readCapture(file, 'x.pcap')), expected(LinkType.LINUX_SLL));
});

test('batches hold at most chunkFrames frames', () => {
  const file = writePcap([...frames, ...frames], LinkType.ETHERNET);
  const sizes = [...readCapture(file, 'x.pcap', { chunkFrames: 4 })].map((b) => b.timestampsUs.length);
  assert.deepEqual(sizes, [4, 2]);
  assert.deepEqual([...readCapture(writePcap([], 1), 'empty.pcap')], []);
  assert.throws(() => [...readCapture(file, 'x.pcap', { chunkFrames: 0 })], /chunkFrames must be a positive integer/);
});

test('classic pcap errors name the file and the byte offset', () => {
  const file = writePcap(frames, LinkType.ETHERNET);
  const second = 24 + 16 + frames[0].data.length;
  assert.throws(() => [...readCapture(file.subarray(0, second + 10), 'cut.pcap')], {
    name: 'CaptureFileError',
    message: `cut.pcap: truncated packet record header (10 of 16 bytes) at byte ${second}`,
  });
  assert.throws(() => [...readCapture(file.subarray(0, second + 20), 'cut.pcap')], {
    message: `cut.pcap: truncated packet record (${frames[1].data.length} bytes announced, 4 left) at byte ${second}`,
  });
  assert.throws(() => [...readCapture(file.subarray(0, 20), 'short.pcap')], /short\.pcap: truncated pcap file header \(20 of 24 bytes\) at byte 0/);
  assert.throws(() => [...readCapture(new TextEncoder().encode('hello world'), 'notes.txt')], (err: unknown) => {
    assert.ok(err instanceof CaptureFileError);
    assert.equal(err.offset, 0);
    assert.match(err.message, /^notes\.txt: unknown file format \(magic 0x6c6c6568\): expected a pcap/);
    return true;
  });
  assert.throws(() => [...readCapture(new Uint8Array(2), 'tiny')], /tiny: 2-byte file is too short/);
});

// ---- pcapng ----

class Ng {
  private parts: Uint8Array[] = [];
  constructor(private little = true) {}

  private block(type: number, body: Uint8Array): this {
    const padded = Math.ceil(body.length / 4) * 4;
    const b = new Uint8Array(12 + padded);
    const v = new DataView(b.buffer);
    v.setUint32(0, type, this.little);
    v.setUint32(4, b.length, this.little);
    b.set(body, 8);
    v.setUint32(b.length - 4, b.length, this.little);
    this.parts.push(b);
    return this;
  }

  private words(...spec: [number, 2 | 4][]): Uint8Array {
    const b = new Uint8Array(spec.reduce((n, [, w]) => n + w, 0));
    const v = new DataView(b.buffer);
    let o = 0;
    for (const [value, width] of spec) {
      if (width === 2) v.setUint16(o, value, this.little);
      else v.setUint32(o, value, this.little);
      o += width;
    }
    return b;
  }

  shb(little = this.little): this {
    this.little = little;
    return this.block(0x0a0d0d0a, this.words([0x1a2b3c4d, 4], [1, 2], [0, 2], [0xffffffff, 4], [0xffffffff, 4]));
  }

  idb(linkType: number, tsresol?: number): this {
    const head = this.words([linkType, 2], [0, 2], [65535, 4]);
    const opts = tsresol === undefined ? new Uint8Array(0) : Uint8Array.of(...this.words([9, 2], [1, 2]), tsresol, 0, 0, 0, ...this.words([0, 2], [0, 2]));
    return this.block(1, Uint8Array.of(...head, ...opts));
  }

  epb(ifid: number, ticks: bigint, data: Uint8Array): this {
    const head = this.words([ifid, 4], [Number(ticks >> 32n), 4], [Number(ticks & 0xffffffffn), 4], [data.length, 4], [data.length, 4]);
    return this.block(6, Uint8Array.of(...head, ...data));
  }

  spb(data: Uint8Array): this {
    return this.block(3, Uint8Array.of(...this.words([data.length, 4]), ...data));
  }

  other(type: number, body = new Uint8Array(8)): this {
    return this.block(type, body);
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.parts.flatMap((p) => [...p]));
  }
}

for (const little of [true, false]) {
  test(`pcapng ${little ? 'little' : 'big'}-endian: IDB link types, if_tsresol, EPB, SPB, unknown blocks skipped`, () => {
    const [f0, f1, f2] = frames.map((f) => f.data);
    const file = new Ng(little)
      .shb()
      .idb(LinkType.ETHERNET) // default resolution: µs
      .other(4) // name resolution block
      .idb(LinkType.RAW, 9) // ns
      .idb(LinkType.LINUX_SLL, 0x80 | 10) // 2^-10 s
      .epb(0, BigInt(T), f0)
      .other(0x0bad0bad)
      .epb(1, BigInt(T) * 1000n + 999n, f1)
      .epb(2, 1024n * 5n + 512n, f2)
      .spb(f0)
      .bytes();
    assert.deepEqual(unbatch(readCapture(file, 'x.pcapng')), [
      { data: [...f0], timeUs: T, linkType: LinkType.ETHERNET },
      { data: [...f1], timeUs: T, linkType: LinkType.RAW },
      { data: [...f2], timeUs: 5_500_000, linkType: LinkType.LINUX_SLL },
      { data: [...f0], timeUs: 5_500_000, linkType: LinkType.ETHERNET }, // SPB: interface 0, previous time
    ]);
  });
}

test('pcapng: a new section may switch byte order and starts a new interface list', () => {
  const file = Uint8Array.from([
    ...new Ng(true).shb().idb(LinkType.ETHERNET).epb(0, 1n, frames[0].data).bytes(),
    ...new Ng(false).shb().idb(LinkType.RAW).epb(0, 2n, frames[1].data).bytes(),
  ]);
  assert.deepEqual(
    unbatch(readCapture(file, 'two.pcapng')).map((f) => [f.timeUs, f.linkType]),
    [
      [1, LinkType.ETHERNET],
      [2, LinkType.RAW],
    ],
  );
});

test('pcapng errors name the file and the byte offset', () => {
  const ok = new Ng().shb().idb(1).epb(0, 1n, frames[0].data).bytes();
  const epbAt = 28 + 20;
  assert.throws(() => [...readCapture(ok.subarray(0, ok.length - 4), 'cut.pcapng')], {
    message: `cut.pcapng: truncated pcapng block (${ok.length - epbAt} bytes announced, ${ok.length - epbAt - 4} left) at byte ${epbAt}`,
  });
  assert.throws(() => [...readCapture(ok.subarray(0, epbAt + 6), 'cut.pcapng')], new RegExp(`truncated pcapng block header \\(6 of 12 bytes\\) at byte ${epbAt}`));
  const noIdb = new Ng().shb().epb(0, 1n, frames[0].data).bytes();
  assert.throws(() => [...readCapture(noIdb, 'noidb.pcapng')], /noidb\.pcapng: packet block names interface 0, but 0 interfaces are described before it at byte 28/);
  const badOrder = new Ng().shb().bytes();
  badOrder[8] = 0;
  assert.throws(() => [...readCapture(badOrder, 'bo.pcapng')], /bo\.pcapng: bad pcapng byte-order magic \(expected 0x1a2b3c4d\) at byte 8/);
  const badLen = ok.slice();
  new DataView(badLen.buffer).setUint32(epbAt + 4, 13, true);
  assert.throws(() => [...readCapture(badLen, 'len.pcapng')], /len\.pcapng: bad pcapng block length 13 .* at byte 48/);
});

test('readCaptureFile reads from disk and reports unreadable paths', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-pcap-'));
  try {
    const path = join(dir, 'k.pcap');
    writeFileSync(path, writePcap(frames, LinkType.ETHERNET));
    assert.deepEqual(unbatch(readCaptureFile(path)), expected(LinkType.ETHERNET));
    assert.throws(() => [...readCaptureFile(join(dir, 'missing.pcap'))], /cannot read capture file .*missing\.pcap: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pcapng: a timestamp of 2^53 µs or more is an error naming the file and offset, not a RangeError (issue 14 finding 9)', () => {
  for (const ticks of [2n ** 53n, 2n ** 64n - 1n]) {
    const file = new Ng().shb().idb(1).epb(0, ticks, new Uint8Array(60)).bytes();
    assert.throws(() => [...readCapture(file, 'late.pcapng')], (err: Error) => err instanceof CaptureFileError && /^late\.pcapng: packet timestamp of \d+ µs is beyond 2\^53 µs \(year 2255\) at byte 48$/.test(err.message));
  }
});
