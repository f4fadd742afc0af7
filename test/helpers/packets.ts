// Frame builder for tests (Ethernet / VLAN / Linux SLL / SLL2 / raw, IPv4 with options and fragments,
// IPv6 with extension headers, TCP flags, UDP) and a seeded random trace generator for the
// differential test.
import { parseAddress } from '../../src/address.js';
import type { DoorConfig, StepProto } from '../../src/config/types.js';
import type { CapturedFrame } from '../../src/match/frame.js';
import { LinkType } from '../../src/match/matcher-api.js';
import { T0 } from './env.js';

export const TCP = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32 } as const;

export interface Knock {
  src: string;
  dst: string;
  dport: number;
  proto?: StepProto; // default tcp; icmp: an echo request with `dport` bytes of payload
  flags?: number; // TCP flags, default SYN
  sport?: number;
}

export interface IpShape {
  /** IPv4 option bytes (padded to a multiple of 4 with NOPs) */
  ipv4Options?: number;
  /** IPv4 fragment fields, or an IPv6 fragment header (inserted after `ipv6Extensions`) */
  fragment?: { offset: number; more: boolean };
  /** IPv6 extension headers in order: 0 hop-by-hop, 43 routing, 60 destination options (8 bytes each), 51 AH (12 bytes) */
  ipv6Extensions?: number[];
  /** IP protocol / final next header other than TCP/UDP (e.g. 1 ICMP, 58 ICMPv6); carries 8 zero bytes */
  otherProtocol?: number;
  /** payload bytes after the transport header */
  payload?: number;
  /** payload content (its length overrides `payload`) */
  data?: Uint8Array;
}

function address(text: string): { family: 4 | 6; bytes: Uint8Array } {
  const a = parseAddress(text);
  if (!a) throw new Error(`test helper: not an IP address: ${text}`);
  return a;
}

function transport(k: Knock, shape: IpShape, family: 4 | 6): { proto: number; bytes: Uint8Array } {
  const payload = shape.data?.length ?? shape.payload ?? 0;
  if (shape.otherProtocol !== undefined) return { proto: shape.otherProtocol, bytes: new Uint8Array(8 + payload) };
  if (k.proto === 'icmp') {
    const b = new Uint8Array(8 + k.dport).fill(0xa5, 8);
    b[0] = family === 4 ? 8 : 128; // echo request
    b[5] = 1; // identifier 1, sequence 0 (checksums are not checked by the matchers)
    return { proto: family === 4 ? 1 : 58, bytes: b };
  }
  const sport = k.sport ?? 40000;
  if ((k.proto ?? 'tcp') === 'udp') {
    const b = new Uint8Array(8 + payload);
    if (shape.data) b.set(shape.data, 8);
    b[0] = sport >> 8;
    b[1] = sport & 0xff;
    b[2] = k.dport >> 8;
    b[3] = k.dport & 0xff;
    b[4] = (8 + payload) >> 8;
    b[5] = (8 + payload) & 0xff;
    return { proto: 17, bytes: b };
  }
  const b = new Uint8Array(20 + payload);
  if (shape.data) b.set(shape.data, 20);
  b[0] = sport >> 8;
  b[1] = sport & 0xff;
  b[2] = k.dport >> 8;
  b[3] = k.dport & 0xff;
  b[12] = 5 << 4; // data offset
  b[13] = k.flags ?? TCP.SYN;
  b[14] = 0xff; // window
  return { proto: 6, bytes: b };
}

/** The IP packet (no link header) carrying knock k. */
export function ipPacket(k: Knock, shape: IpShape = {}): Uint8Array {
  const src = address(k.src);
  const dst = address(k.dst);
  if (src.family !== dst.family) throw new Error(`test helper: ${k.src} and ${k.dst} are of different families`);
  const l4 = transport(k, shape, src.family);
  if (src.family === 4) {
    const optLen = Math.ceil((shape.ipv4Options ?? 0) / 4) * 4;
    const hl = 20 + optLen;
    const p = new Uint8Array(hl + l4.bytes.length);
    p[0] = 0x40 | (hl / 4);
    const total = p.length;
    p[2] = total >> 8;
    p[3] = total & 0xff;
    if (shape.fragment) {
      const f = (shape.fragment.more ? 0x2000 : 0) | (shape.fragment.offset & 0x1fff);
      p[6] = f >> 8;
      p[7] = f & 0xff;
    }
    p[8] = 64;
    p[9] = l4.proto;
    p.set(src.bytes.subarray(0, 4), 12);
    p.set(dst.bytes.subarray(0, 4), 16);
    p.fill(1, 20, hl); // NOP options
    p.set(l4.bytes, hl);
    return p;
  }
  // IPv6: extension headers, then an optional fragment header, then the transport
  const chain = [...(shape.ipv6Extensions ?? [])];
  if (shape.fragment) chain.push(44);
  const sizes = chain.map((t) => (t === 51 ? 12 : 8));
  const extLen = sizes.reduce((a, b) => a + b, 0);
  const p = new Uint8Array(40 + extLen + l4.bytes.length);
  p[0] = 0x60;
  const plen = extLen + l4.bytes.length;
  p[4] = plen >> 8;
  p[5] = plen & 0xff;
  p[6] = chain.length > 0 ? chain[0] : l4.proto;
  p[7] = 64;
  p.set(src.bytes, 8);
  p.set(dst.bytes, 24);
  let o = 40;
  chain.forEach((t, i) => {
    p[o] = i + 1 < chain.length ? chain[i + 1] : l4.proto;
    if (t === 51) p[o + 1] = 1; // (1 + 2) * 4 = 12 bytes
    else if (t === 44) {
      const f = ((shape.fragment!.offset & 0x1fff) << 3) | (shape.fragment!.more ? 1 : 0);
      p[o + 2] = f >> 8;
      p[o + 3] = f & 0xff;
    } else p[o + 1] = 0; // (0 + 1) * 8 = 8 bytes
    o += sizes[i];
  });
  p.set(l4.bytes, o);
  return p;
}

export interface LinkShape {
  link?: number; // LINKTYPE_*, default Ethernet
  /** VLAN tag protocol ids (0x8100, 0x88a8, 0x9100), outermost first; Ethernet and SLL only */
  vlan?: number[];
}

/** Wraps an IP packet in a link-layer header. */
export function linkFrame(ip: Uint8Array, shape: LinkShape = {}): Uint8Array {
  const link = shape.link ?? LinkType.ETHERNET;
  const ethertype = ip[0] >> 4 === 6 ? 0x86dd : 0x0800;
  const tags = shape.vlan ?? [];
  const tagBytes = (): Uint8Array => {
    const b = new Uint8Array(tags.length * 4 + 2);
    tags.forEach((tpid, i) => {
      b[i * 4 + 2] = 0x00; // VLAN id 7 in the TCI
      b[i * 4 + 3] = 7;
      const nextType = i + 1 < tags.length ? tags[i + 1] : ethertype;
      b[i * 4 + 4] = nextType >> 8;
      b[i * 4 + 5] = nextType & 0xff;
    });
    const first = tags.length > 0 ? tags[0] : ethertype;
    b[0] = first >> 8;
    b[1] = first & 0xff;
    return b; // [first type][tci, type]...
  };
  switch (link) {
    case LinkType.ETHERNET: {
      const t = tagBytes();
      const f = new Uint8Array(12 + t.length + ip.length);
      f.set([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
      f.set(t, 12);
      f.set(ip, 12 + t.length);
      return f;
    }
    case LinkType.LINUX_SLL: {
      const t = tagBytes();
      const f = new Uint8Array(14 + t.length + ip.length);
      f[1] = 0; // packet type: to us
      f[3] = 1; // ARPHRD_ETHER
      f[5] = 6; // address length
      f.set(t, 14);
      f.set(ip, 14 + t.length);
      return f;
    }
    case LinkType.LINUX_SLL2: {
      const f = new Uint8Array(20 + ip.length);
      f[0] = ethertype >> 8;
      f[1] = ethertype & 0xff;
      f[7] = 1; // interface index
      f[9] = 1; // ARPHRD_ETHER
      f[11] = 6;
      f.set(ip, 20);
      return f;
    }
    case LinkType.RAW:
    case 12:
    case 14:
    case LinkType.IPV4:
    case LinkType.IPV6:
      return ip.slice();
    default:
      throw new Error(`test helper: cannot build frames for link type ${link}`);
  }
}

/** One captured knock frame. */
export function knockFrame(k: Knock, shape: IpShape & LinkShape = {}): Uint8Array {
  return linkFrame(ipPacket(k, shape), shape);
}

// ---- seeded random traces ----

/** mulberry32: small, fast, and identical everywhere, so a seed reproduces a trace. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface TraceOptions {
  seed: number;
  packets: number;
  /** the doors the trace aims at (their steps, flags and timeouts) */
  doors: DoorConfig[];
  /** destination addresses that the program treats as local: [IPv4, IPv6] */
  locals?: [string, string];
  /** number of distinct knocking sources (half IPv4, half IPv6, sharing prefixes) */
  sources?: number;
  startUs?: number;
  /** probability that a packet starts a flood burst of new first-knock sources */
  floodChance?: number;
  floodSize?: number;
}

interface SourceState {
  addr: string;
  door: number;
  next: number; // index of the next step to send
  firstUs: number;
  last?: { dport: number; proto: StepProto; flags: number; dst: string };
}

/**
 * A trace that exercises the matcher's corners: interleaved IPv4/IPv6 sources with shared prefixes,
 * correct progress, duplicates, wrong flags, wrong protocols, ports of other doors, invisible ports,
 * several link types and VLAN tags, malformed and non-knock frames, timestamps exactly at and next to
 * timeout boundaries, small steps back in time, gaps longer than the timer wheel, and floods of first
 * knocks from fresh sources (past a small MaxTracked).
 */
export function randomTrace(opts: TraceOptions): CapturedFrame[] {
  const rand = rng(opts.seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)];
  const [local4, local6] = opts.locals ?? ['192.0.2.2', 'fd00::2'];
  const doors = opts.doors.filter((d) => d.sequence.length > 0);
  if (doors.length === 0) throw new Error('randomTrace needs at least one door with a sequence');
  const nSources = opts.sources ?? 24;
  if (nSources < 1 || nSources > 60_000) throw new Error(`randomTrace: sources must be 1..60000 (got ${nSources})`);
  const pool: SourceState[] = [];
  for (let i = 0; i < nSources; i++) {
    // shared prefixes: 198.51.100.x and 2001:db8::x, plus the IPv4-mapped twin of some IPv4 sources
    const n = (i >> 1) + 1;
    const v4 = `198.51.${100 + (n >> 8)}.${n & 0xff}`;
    const addr = i % 2 === 0 ? v4 : i % 6 === 1 ? `::ffff:${v4}` : `2001:db8::${n.toString(16)}`;
    pool.push({ addr, door: 0, next: 0, firstUs: 0 });
  }
  const allPorts = [...new Set(doors.flatMap((d) => d.sequence.map((s) => `${s.port}/${s.proto}`)))];
  const frames: CapturedFrame[] = [];
  let now = opts.startUs ?? T0;
  let floodNo = 0;
  const links = [LinkType.ETHERNET, LinkType.ETHERNET, LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.LINUX_SLL2, LinkType.RAW];

  const emit = (s: SourceState, dport: number, proto: StepProto, flags: number, dst?: string) => {
    const six = s.addr.includes(':') && !s.addr.startsWith('::ffff:');
    const mapped = s.addr.startsWith('::ffff:');
    const to = dst ?? (six || mapped ? local6 : local4);
    const link = pick(links);
    const vlan = link === LinkType.ETHERNET && rand() < 0.1 ? [0x8100] : undefined;
    const data = knockFrame({ src: s.addr, dst: to, dport, proto, flags }, { link, vlan, ipv4Options: rand() < 0.05 ? 4 : 0 });
    frames.push({ data, timeUs: now, linkType: link });
    s.last = { dport, proto, flags, dst: to };
  };

  while (frames.length < opts.packets) {
    const roll = rand();
    // time: mostly small steps, sometimes right at a timeout boundary, rarely back or far ahead
    const t = rand();
    if (t < 0.8) now += Math.floor(rand() * 200_000);
    else if (t < 0.9) {
      const s = pick(pool);
      const timeout = doors[s.door].seqTimeout * 1e6;
      now = Math.max(now, s.firstUs + timeout + pick([-1, 0, 1, -16_384, 16_384]));
    } else if (t < 0.95) now -= Math.floor(rand() * 2_000_000);
    else if (t < 0.97) now += 70_000_000 + Math.floor(rand() * 30_000_000);
    else now += Math.floor(rand() * 6_000_000);

    if (opts.floodChance && rand() < opts.floodChance) {
      const size = opts.floodSize ?? 64;
      const d = pick(doors);
      const first = d.sequence[0];
      for (let k = 0; k < size && frames.length < opts.packets; k++, floodNo++) {
        const a = `10.${(floodNo >> 16) & 0xff}.${(floodNo >> 8) & 0xff}.${floodNo & 0xff}`;
        emit({ addr: a, door: 0, next: 0, firstUs: now }, first.port, first.proto, TCP.SYN);
      }
      continue;
    }
    const s = pick(pool);
    const door = doors[s.door];
    if (roll < 0.45) {
      // the right next step (or a fresh start on a random door)
      if (s.next === 0 || s.next >= door.sequence.length) {
        s.door = doors.indexOf(pick(doors));
        s.next = 0;
        s.firstUs = now;
      }
      const step = doors[s.door].sequence[s.next++];
      emit(s, step.port, step.proto, TCP.SYN);
    } else if (roll < 0.55 && s.last) {
      emit(s, s.last.dport, s.last.proto, s.last.flags, s.last.dst); // duplicate
    } else if (roll < 0.62) {
      const step = door.sequence[Math.min(s.next, door.sequence.length - 1)];
      emit(s, step.port, step.proto, pick([TCP.ACK, TCP.SYN | TCP.ACK, TCP.RST, TCP.FIN | TCP.ACK]));
    } else if (roll < 0.69) {
      const step = door.sequence[Math.min(s.next, door.sequence.length - 1)];
      emit(s, step.port, pick((['tcp', 'udp', 'icmp'] as const).filter((p) => p !== step.proto)), TCP.SYN); // wrong protocol
    } else if (roll < 0.8) {
      const [port, proto] = pick(allPorts).split('/');
      emit(s, Number(port), proto as StepProto, TCP.SYN); // a port of some door
    } else if (roll < 0.86) {
      emit(s, 1 + Math.floor(rand() * 65000), rand() < 0.8 ? 'tcp' : 'icmp', TCP.SYN); // most likely invisible
    } else if (roll < 0.9) {
      const step = door.sequence[0];
      const other = s.addr.includes(':') ? '2001:db8:ffff::9' : '203.0.113.9';
      emit(s, step.port, step.proto, TCP.SYN, other); // not to us
    } else if (roll < 0.95) {
      // damaged frames: truncated copies of a knock (an ICMP echo cut in its payload still knocks with the
      // length its IP header declares), an IPv4 fragment, an ICMP packet that is no echo request
      const k: Knock = { src: s.addr, dst: s.addr.includes(':') ? local6 : local4, dport: door.sequence[0].port, proto: door.sequence[0].proto };
      const kind = rand();
      let data: Uint8Array;
      if (kind < 0.5) {
        const full = knockFrame(k);
        data = full.subarray(0, Math.floor(rand() * full.length)).slice();
      } else if (kind < 0.75) data = knockFrame(k, { fragment: { offset: rand() < 0.5 ? 0 : 3, more: true } });
      else data = knockFrame(k, { otherProtocol: s.addr.includes(':') ? 58 : 1 });
      frames.push({ data, timeUs: now, linkType: LinkType.ETHERNET });
    } else {
      // a restart from a random step of the current door (out of order)
      const step = pick(door.sequence);
      emit(s, step.port, step.proto, TCP.SYN);
    }
  }
  return frames;
}
