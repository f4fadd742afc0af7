// The frame parser (docs/MATCHER.md §3) field by field, and batchFromFrames.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatAddress } from '../src/address.js';
import { batchFromFrames, ParsedPacket, ParseResult, parseFrame, type ParseResultCode } from '../src/match/frame.js';
import { LinkType } from '../src/match/matcher-api.js';
import { knockFrame, TCP, type IpShape, type Knock, type LinkShape } from './helpers/packets.js';

const out = new ParsedPacket();
const parse = (f: Uint8Array, link: number = LinkType.ETHERNET): ParseResultCode => parseFrame(f, 0, f.length, link, out);
const v4: Knock = { src: '198.51.100.7', dst: '192.0.2.2', dport: 7000, flags: TCP.SYN | TCP.PSH | 0xc0 };
const v6: Knock = { src: '2001:db8::5', dst: 'fd00::2', dport: 9000, proto: 'udp' };

function fields() {
  return { family: out.family, src: formatAddress(out.family, out.src), dst: formatAddress(out.family, out.dst), proto: out.proto, dport: out.dport, flags: out.tcpFlags };
}

test('IPv4 TCP on every link type: addresses, port and flags (ECN bits masked off)', () => {
  const links: (IpShape & LinkShape)[] = [
    { link: LinkType.ETHERNET },
    { link: LinkType.ETHERNET, vlan: [0x8100] },
    { link: LinkType.ETHERNET, vlan: [0x88a8, 0x8100] },
    { link: LinkType.LINUX_SLL, vlan: [0x9100] },
    { link: LinkType.LINUX_SLL2 },
    { link: LinkType.RAW },
    { link: 12 },
    { link: 14 },
    { link: LinkType.IPV4, ipv4Options: 12 },
  ];
  for (const shape of links) {
    assert.equal(parse(knockFrame(v4, shape), shape.link), ParseResult.KNOCK, JSON.stringify(shape));
    assert.deepEqual(fields(), { family: 4, src: '198.51.100.7', dst: '192.0.2.2', proto: 6, dport: 7000, flags: TCP.SYN | TCP.PSH });
    assert.deepEqual([...out.src.subarray(4)], new Array(12).fill(0), 'IPv4 leaves bytes 4-15 zero');
  }
});

test('IPv6 UDP behind extension headers, including an atomic fragment header', () => {
  for (const shape of [{}, { ipv6Extensions: [0, 43, 60, 51] }, { ipv6Extensions: [0], fragment: { offset: 0, more: false } }, { link: LinkType.IPV6 }] as (IpShape & LinkShape)[]) {
    assert.equal(parse(knockFrame(v6, shape), shape.link), ParseResult.KNOCK, JSON.stringify(shape));
    assert.deepEqual(fields(), { family: 6, src: '2001:db8::5', dst: 'fd00::2', proto: 17, dport: 9000, flags: 0 });
  }
});

test('a frame parsed inside a larger buffer reads only its own bytes', () => {
  const f = knockFrame(v4);
  const buf = new Uint8Array(f.length + 20).fill(0xee);
  buf.set(f, 10);
  assert.equal(parseFrame(buf, 10, 10 + f.length, LinkType.ETHERNET, out), ParseResult.KNOCK);
  assert.equal(out.dport, 7000);
  assert.equal(parseFrame(buf, 10, 10 + f.length - 1, LinkType.ETHERNET, out), ParseResult.MALFORMED, 'one byte short of the TCP header');
});

test('IPv6 limits: 8 extension headers parse, a 9th is malformed; unknown next header is not a knock', () => {
  assert.equal(parse(knockFrame(v6, { ipv6Extensions: [0, 60, 60, 60, 60, 60, 60, 60] })), ParseResult.KNOCK);
  assert.equal(parse(knockFrame(v6, { ipv6Extensions: [0, 60, 60, 60, 60, 60, 60, 60, 60] })), ParseResult.MALFORMED);
  assert.equal(parse(knockFrame(v6, { ipv6Extensions: [0, 60, 60, 60, 60, 60, 60], fragment: { offset: 0, more: false } })), ParseResult.KNOCK);
  assert.equal(parse(knockFrame(v6, { otherProtocol: 58 })), ParseResult.NOT_KNOCK);
  assert.equal(parse(knockFrame(v6, { fragment: { offset: 0, more: true } })), ParseResult.NOT_KNOCK);
  assert.equal(parse(knockFrame(v6, { fragment: { offset: 1, more: false } })), ParseResult.NOT_KNOCK);
  const cut = knockFrame(v6, { fragment: { offset: 1, more: false } }).subarray(0, 14 + 40 + 7);
  assert.equal(parse(cut), ParseResult.MALFORMED, 'a fragment header that does not fit is malformed before its offset is read');
});

test('IPv4 lengths: options, padding, total length and fragments', () => {
  const f = knockFrame(v4, { ipv4Options: 4 });
  assert.equal(parse(f), ParseResult.KNOCK);
  const ihl6 = f.slice();
  ihl6[14] = 0x47; // IHL 7 = 28 bytes, so TCP starts 4 bytes late and is cut short
  assert.equal(parse(ihl6), ParseResult.MALFORMED);
  assert.equal(parse(knockFrame(v4, { fragment: { offset: 0, more: true } })), ParseResult.NOT_KNOCK);
  assert.equal(parse(knockFrame(v4, { fragment: { offset: 1, more: false } })), ParseResult.NOT_KNOCK);
  const df = knockFrame(v4);
  df[14 + 6] = 0x40; // DF alone is fine
  assert.equal(parse(df), ParseResult.KNOCK);
  const udp = knockFrame({ ...v4, proto: 'udp' });
  assert.equal(parse(udp), ParseResult.KNOCK);
  assert.equal(out.tcpFlags, 0);
  assert.equal(parse(udp.subarray(0, udp.length - 1)), ParseResult.MALFORMED);
});

test('link layer: short headers are malformed, unknown ethertypes and link types are not knocks', () => {
  assert.equal(parse(new Uint8Array(0)), ParseResult.MALFORMED);
  assert.equal(parse(new Uint8Array(13)), ParseResult.MALFORMED);
  assert.equal(parse(new Uint8Array(15), LinkType.LINUX_SLL), ParseResult.MALFORMED);
  assert.equal(parse(new Uint8Array(19), LinkType.LINUX_SLL2), ParseResult.MALFORMED);
  assert.equal(parse(new Uint8Array(0), LinkType.RAW), ParseResult.MALFORMED);
  assert.equal(parse(new Uint8Array(14)), ParseResult.NOT_KNOCK, 'ethertype 0');
  assert.equal(parse(knockFrame(v4), 105), ParseResult.NOT_KNOCK);
  assert.equal(parse(knockFrame(v4, { vlan: [0x8100, 0x8100, 0x8100] })), ParseResult.NOT_KNOCK);
  assert.equal(parse(Uint8Array.of(0x50, 0, 0, 0), LinkType.RAW), ParseResult.NOT_KNOCK, 'raw IP of version 5');
  assert.equal(parse(knockFrame(v6), LinkType.IPV4), ParseResult.MALFORMED, 'an IPv6 packet on the IPv4-only link type');
  assert.equal(parse(knockFrame(v4), LinkType.IPV6), ParseResult.MALFORMED);
});

test('batchFromFrames concatenates frames with offsets, times and link types', () => {
  const a = Uint8Array.of(1, 2, 3);
  const b = Uint8Array.of(4);
  const batch = batchFromFrames([
    { data: a, timeUs: 10, linkType: 1 },
    { data: new Uint8Array(0), timeUs: 11, linkType: 101 },
    { data: b, timeUs: 12, linkType: 276 },
  ]);
  assert.deepEqual([...batch.data], [1, 2, 3, 4]);
  assert.deepEqual([...batch.offsets], [0, 3, 3, 4]);
  assert.deepEqual([...batch.timestampsUs], [10, 11, 12]);
  assert.deepEqual([...batch.linkTypes], [1, 101, 276]);
  assert.throws(() => batchFromFrames([{ data: a, timeUs: 1.5, linkType: 1 }]), /frame 0: timeUs must be an integer number of microseconds \(got 1\.5\)/);
});
