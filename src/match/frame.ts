// Frame bytes -> the few fields a knock needs (docs/MATCHER.md §3), and the one way to build a FrameBatch.
// Every length is checked before it is read; the parser writes into a caller-owned ParsedPacket so the
// hot path allocates nothing.
import type { FrameBatch } from './matcher-api.js';

export const ParseResult = { KNOCK: 0, MALFORMED: 1, NOT_KNOCK: 2 } as const;
export type ParseResultCode = (typeof ParseResult)[keyof typeof ParseResult];

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const MAX_VLAN_TAGS = 2;
const MAX_IPV6_EXTENSIONS = 8;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
/** ParsedPacket.proto of an ICMP echo request of either family: the step protocol "icmp" (PROTO_ICMP). */
const ICMP_ECHO = 1;

/** The parser's output; reused for every frame. IPv4 addresses occupy bytes 0-3, the rest is zero. */
export class ParsedPacket {
  family: 4 | 6 = 4;
  proto = 0; // 6 TCP, 17 UDP, 1 ICMP echo request (ICMPv4 type 8 or ICMPv6 type 128)
  dport = 0; // ICMP: bytes of echo payload (what `ping -s` sets)
  tcpFlags = 0; // byte 13 & 0x3f; 0 for UDP and ICMP
  /** the transport payload: data[payloadStart, payloadEnd) of the frame parsed last */
  payloadStart = 0;
  payloadEnd = 0;
  readonly src = new Uint8Array(16);
  readonly dst = new Uint8Array(16);
  // the same bytes as four words each, for comparing and hashing addresses a word at a time
  readonly srcWords = new Uint32Array(this.src.buffer);
  readonly dstWords = new Uint32Array(this.dst.buffer);
}

const isVlanTag = (type: number): boolean => type === 0x8100 || type === 0x88a8 || type === 0x9100;

const HOST_LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/**
 * The 4 bytes at data[at] as a word whose bytes in memory are those bytes in that order. Addresses are
 * stored a word at a time because the matcher reads them as words: a word load from four byte stores
 * cannot be forwarded from the store buffer and waits for them to reach the cache.
 */
function addressWord(data: Uint8Array, at: number): number {
  return HOST_LITTLE_ENDIAN
    ? data[at] | (data[at + 1] << 8) | (data[at + 2] << 16) | (data[at + 3] << 24)
    : (data[at] << 24) | (data[at + 1] << 16) | (data[at + 2] << 8) | data[at + 3];
}

/** Parses data[start, end) captured on a link of type linkType (pcap LINKTYPE_*). */
export function parseFrame(data: Uint8Array, start: number, end: number, linkType: number, out: ParsedPacket): ParseResultCode {
  switch (linkType) {
    case 1: // Ethernet
      if (end - start < 14) return ParseResult.MALFORMED;
      return parseEthertype(data, start + 14, end, (data[start + 12] << 8) | data[start + 13], true, out);
    case 113: // Linux SLL
      if (end - start < 16) return ParseResult.MALFORMED;
      return parseEthertype(data, start + 16, end, (data[start + 14] << 8) | data[start + 15], true, out);
    case 276: // Linux SLL2: protocol first, no VLAN tags in MATCHER.md §3
      if (end - start < 20) return ParseResult.MALFORMED;
      return parseEthertype(data, start + 20, end, (data[start] << 8) | data[start + 1], false, out);
    case 101:
    case 12:
    case 14: {
      // raw IP: the version nibble decides; any other version is an unknown protocol, like an unknown
      // ethertype (MATCHER.md §3 leaves this open; native/core/packet.cc reads it the same way)
      if (end - start < 1) return ParseResult.MALFORMED;
      const version = data[start] >> 4;
      if (version === 4) return parseIpv4(data, start, end, out);
      if (version === 6) return parseIpv6(data, start, end, out);
      return ParseResult.NOT_KNOCK;
    }
    case 228:
      return parseIpv4(data, start, end, out);
    case 229:
      return parseIpv6(data, start, end, out);
    default:
      return ParseResult.NOT_KNOCK;
  }
}

function parseEthertype(data: Uint8Array, at: number, end: number, type: number, vlan: boolean, out: ParsedPacket): ParseResultCode {
  let tags = 0;
  while (vlan && isVlanTag(type)) {
    if (++tags > MAX_VLAN_TAGS) return ParseResult.NOT_KNOCK;
    if (end - at < 4) return ParseResult.MALFORMED;
    type = (data[at + 2] << 8) | data[at + 3];
    at += 4;
  }
  if (type === ETH_IPV4) return parseIpv4(data, at, end, out);
  if (type === ETH_IPV6) return parseIpv6(data, at, end, out);
  return ParseResult.NOT_KNOCK;
}

function parseIpv4(data: Uint8Array, at: number, end: number, out: ParsedPacket): ParseResultCode {
  const captured = end - at;
  if (captured < 20 || data[at] >> 4 !== 4) return ParseResult.MALFORMED;
  const headerLen = (data[at] & 0x0f) * 4;
  if (headerLen < 20 || headerLen > captured) return ParseResult.MALFORMED;
  const totalLen = (data[at + 2] << 8) | data[at + 3];
  if (totalLen < headerLen) return ParseResult.MALFORMED;
  const ipEnd = at + Math.min(totalLen, captured);
  const frag = (data[at + 6] << 8) | data[at + 7];
  if ((frag & 0x3fff) !== 0) return ParseResult.NOT_KNOCK; // MF set or offset != 0
  const proto = data[at + 9];
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && proto !== IPPROTO_ICMP) return ParseResult.NOT_KNOCK;
  const src = out.srcWords;
  const dst = out.dstWords;
  src[0] = addressWord(data, at + 12);
  dst[0] = addressWord(data, at + 16);
  src[1] = src[2] = src[3] = 0;
  dst[1] = dst[2] = dst[3] = 0;
  out.family = 4;
  return parseTransport(data, at + headerLen, ipEnd, at + totalLen, proto, out);
}

function parseIpv6(data: Uint8Array, at: number, end: number, out: ParsedPacket): ParseResultCode {
  const captured = end - at;
  if (captured < 40 || data[at] >> 4 !== 6) return ParseResult.MALFORMED;
  const payloadLen = (data[at + 4] << 8) | data[at + 5];
  const ipEnd = payloadLen === 0 ? end : at + Math.min(40 + payloadLen, captured);
  const declaredEnd = payloadLen === 0 ? end : at + 40 + payloadLen; // a jumbogram's length is not in this header
  let next = data[at + 6];
  let h = at + 40;
  let extensions = 0;
  while (next !== IPPROTO_TCP && next !== IPPROTO_UDP && next !== IPPROTO_ICMPV6) {
    let len: number;
    if (next === 0 || next === 43 || next === 60 || next === 51) {
      if (++extensions > MAX_IPV6_EXTENSIONS) return ParseResult.MALFORMED;
      if (ipEnd - h < 2) return ParseResult.MALFORMED;
      len = next === 51 ? (data[h + 1] + 2) * 4 : (data[h + 1] + 1) * 8;
      if (ipEnd - h < len) return ParseResult.MALFORMED;
    } else if (next === 44) {
      if (++extensions > MAX_IPV6_EXTENSIONS) return ParseResult.MALFORMED;
      len = 8;
      if (ipEnd - h < len) return ParseResult.MALFORMED;
      const off = (data[h + 2] << 8) | data[h + 3];
      if ((off & 0xfff9) !== 0) return ParseResult.NOT_KNOCK; // fragment offset (bits 15..3) or M (bit 0)
    } else {
      return ParseResult.NOT_KNOCK;
    }
    next = data[h];
    h += len;
  }
  const src = out.srcWords;
  const dst = out.dstWords;
  for (let k = 0; k < 4; k++) {
    src[k] = addressWord(data, at + 8 + 4 * k);
    dst[k] = addressWord(data, at + 24 + 4 * k);
  }
  out.family = 6;
  return parseTransport(data, h, ipEnd, declaredEnd, next, out);
}

/**
 * The transport header at data[at, end) (the captured part of the IP packet); declaredEnd is where the IP
 * header says the packet ends. An ICMP echo's length is the declared one: what the sender chose, whatever
 * the capture kept.
 */
function parseTransport(data: Uint8Array, at: number, end: number, declaredEnd: number, proto: number, out: ParsedPacket): ParseResultCode {
  if (proto === IPPROTO_TCP) {
    if (end - at < 20 || data[at + 12] >> 4 < 5) return ParseResult.MALFORMED;
    out.tcpFlags = data[at + 13] & 0x3f;
    out.payloadStart = Math.min(at + (data[at + 12] >> 4) * 4, end);
  } else if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) {
    if (end - at < 8) return ParseResult.MALFORMED;
    if (data[at] !== (out.family === 4 ? 8 : 128)) return ParseResult.NOT_KNOCK; // only echo requests knock
    const length = declaredEnd - at - 8;
    if (length > 0xffff) return ParseResult.NOT_KNOCK; // an IPv6 jumbogram's
    out.tcpFlags = 0;
    out.proto = ICMP_ECHO;
    out.dport = length;
    return ParseResult.KNOCK;
  } else {
    if (end - at < 8) return ParseResult.MALFORMED;
    out.tcpFlags = 0;
    out.payloadStart = at + 8;
  }
  out.payloadEnd = end;
  out.proto = proto;
  out.dport = (data[at + 2] << 8) | data[at + 3];
  return ParseResult.KNOCK;
}

export interface CapturedFrame {
  data: Uint8Array;
  timeUs: number; // integer microseconds since the epoch
  linkType: number; // pcap LINKTYPE_*
}

/** Concatenates frames into one FrameBatch (the layout Matcher.feed takes). */
export function batchFromFrames(frames: readonly CapturedFrame[]): FrameBatch {
  let total = 0;
  for (const f of frames) total += f.data.byteLength;
  const data = new Uint8Array(total);
  const offsets = new Uint32Array(frames.length + 1);
  const timestampsUs = new Float64Array(frames.length);
  const linkTypes = new Uint16Array(frames.length);
  let o = 0;
  frames.forEach((f, i) => {
    if (!Number.isSafeInteger(f.timeUs)) throw new RangeError(`frame ${i}: timeUs must be an integer number of microseconds (got ${f.timeUs})`);
    data.set(f.data, o);
    offsets[i] = o;
    timestampsUs[i] = f.timeUs;
    linkTypes[i] = f.linkType;
    o += f.data.byteLength;
  });
  offsets[frames.length] = o;
  return { data, offsets, timestampsUs, linkTypes };
}
