// The kernel filter (native/core/bpf.cc) against the matcher: run in a cBPF interpreter on the
// conformance configs and a large corpus of frames (every link type, VLAN tags, IPv4 options,
// IPv6 extension headers, fragments, truncations, other destinations), the filter must admit exactly
// the frames the matcher counts `visible` — in pcap layouts and in the live socket layout.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAddress } from '../src/address.js';
import { TsMatcher } from '../src/match/matcher.js';
import { LinkType } from '../src/match/matcher-api.js';
import { loadBinding } from '../src/native.js';
import type { KnockdConfig } from '../src/config/types.js';
import { checkFilter, decodeFilter, runFilter, type Insn, type PacketMeta } from './helpers/cbpf.js';
import { portRanges } from '../src/config/program.js';
import { derivedDoor, range } from './helpers/derived.js';
import { CONFIGS, compile, config, door } from './helpers/doors.js';
import { knockFrame, randomTrace, TCP, type IpShape, type Knock, type LinkShape } from './helpers/packets.js';
import type { CapturedFrame } from '../src/match/frame.js';
import { T0 } from './helpers/env.js';

const binding = loadBinding();
const LIVE = 0; // Engine.compileFilter's live socket layout
const PACKET_OUTGOING = 4;

function filterFor(words: Uint32Array, link: number): Insn[] {
  const { code, coarse } = binding.Engine.compileFilter(words, link);
  assert.equal(coarse, false, 'small configs get the exact filter');
  const prog = decodeFilter(code);
  checkFilter(prog);
  return prog;
}

/** Whether the matcher counts each frame visible (visibility depends only on program and frame). */
function visibility(words: Uint32Array, frames: CapturedFrame[]): boolean[] {
  const m = new TsMatcher();
  m.load(words);
  let seen = 0;
  return frames.map((frame) => {
    const data = frame.data;
    m.feed({ data, offsets: Uint32Array.of(0, data.length), timestampsUs: Float64Array.of(frame.timeUs), linkTypes: Uint16Array.of(frame.linkType) });
    const now = m.stats().visible;
    const was = seen;
    seen = now;
    return now === was + 1;
  });
}

/** The same Ethernet frame as an AF_PACKET SOCK_DGRAM socket sees it: the first VLAN tag in metadata. */
function liveView(frame: Uint8Array): { data: Uint8Array; meta: PacketMeta } | undefined {
  if (frame.length < 18) return undefined;
  const type = (frame[12] << 8) | frame[13];
  if (type === 0x8100 || type === 0x88a8 || type === 0x9100) {
    return { data: frame.subarray(18), meta: { protocol: (frame[16] << 8) | frame[17], vlanTagPresent: true } };
  }
  return { data: frame.subarray(14), meta: { protocol: type } };
}

const DSTS4 = ['192.0.2.2', '192.0.2.77', '203.0.113.9'];
const DSTS6 = ['fd00::2', '2001:db8:ffff::9'];
const LINKS = [LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.LINUX_SLL2, LinkType.RAW, 12, 14];

function corpus(cfg: KnockdConfig, seed: number, lite = false): CapturedFrame[] {
  const frames: CapturedFrame[] = [];
  const ports = new Set<number>([1234]);
  for (const d of cfg.doors) for (const s of d.sequence) [s.port - 1, s.port, s.port + 1].forEach((p) => ports.add(p & 0xffff));
  for (const d of cfg.doors) {
    for (const [lo, hi] of portRanges(d.derived?.ports ?? [])) [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1].forEach((p) => ports.add(p & 0xffff));
  }
  const shapes: (IpShape & LinkShape)[] = [
    {},
    { vlan: [0x8100] },
    { vlan: [0x88a8, 0x8100] },
    { vlan: [0x88a8, 0x8100, 0x8100] },
    { ipv4Options: 8 },
    { ipv6Extensions: [0] },
    { ipv6Extensions: [0, 43, 60, 51] },
    { ipv6Extensions: [0, 60, 60, 60, 60, 60, 60, 43] },
    { ipv6Extensions: [0, 60, 60, 60, 60, 60, 60, 60, 43] },
    { fragment: { offset: 0, more: false } },
    { fragment: { offset: 0, more: true } },
    { fragment: { offset: 5, more: false } },
    { otherProtocol: 1 },
    { otherProtocol: 58 },
    { payload: 3 },
  ];
  for (const port of ports) {
    // ICMP echo requests carry `port` bytes: lengths up to 10,000 keep the corpus small
    for (const proto of port <= 10_000 ? (['tcp', 'udp', 'icmp'] as const) : (['tcp', 'udp'] as const)) {
      const allFlags = lite ? [TCP.SYN, TCP.SYN | TCP.ACK] : [TCP.SYN, TCP.ACK, TCP.SYN | TCP.ACK, TCP.RST, TCP.FIN | TCP.PSH | TCP.URG];
      for (const flags of proto === 'tcp' ? allFlags : [0]) {
        for (const [src, dsts] of [['198.51.100.1', DSTS4], ['2001:db8::5', DSTS6]] as const) {
          for (const dst of dsts) {
            const k: Knock = { src, dst, dport: port, proto, flags };
            frames.push({ data: knockFrame(k), timeUs: T0, linkType: LinkType.ETHERNET });
            if (!lite) for (const link of LINKS.slice(1)) frames.push({ data: knockFrame(k, { link }), timeUs: T0, linkType: link });
          }
        }
      }
    }
  }
  // every shape on the first step of each door, to the local and another address
  const fixed = cfg.doors.filter((d) => d.sequence.length > 0);
  for (const d of lite ? fixed.slice(0, 2) : fixed) {
    const s = d.sequence[0];
    for (const shape of shapes) {
      for (const [src, dst] of [['198.51.100.1', '192.0.2.2'], ['2001:db8::5', 'fd00::2'], ['2001:db8::5', '2001:db8:ffff::9']]) {
        const k: Knock = { src, dst, dport: s.port, proto: s.proto, flags: TCP.SYN };
        for (const link of [LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.RAW]) {
          if (shape.vlan && link === LinkType.RAW) continue;
          const full = knockFrame(k, { ...shape, link });
          frames.push({ data: full, timeUs: T0, linkType: link });
          // truncated at every length, and with a lying IP length field
          for (let n = 0; n < full.length; n++) frames.push({ data: full.slice(0, n), timeUs: T0, linkType: link });
          for (const delta of [-1, 1, 7]) {
            const lying = full.slice();
            const ipAt = link === LinkType.ETHERNET ? 14 + (shape.vlan?.length ?? 0) * 4 : link === LinkType.LINUX_SLL ? 16 + (shape.vlan?.length ?? 0) * 4 : 0;
            const lenAt = src.includes(':') ? ipAt + 4 : ipAt + 2;
            if (lenAt + 1 >= lying.length) continue;
            const v = Math.max(0, ((lying[lenAt] << 8) | lying[lenAt + 1]) + (src.includes(':') ? delta : -Math.abs(delta) * 4));
            lying[lenAt] = v >> 8;
            lying[lenAt + 1] = v & 0xff;
            frames.push({ data: lying, timeUs: T0, linkType: link });
          }
        }
      }
    }
  }
  frames.push(...randomTrace({ seed, packets: 3000, doors: cfg.doors }));
  return frames;
}

function agree(name: string, cfg: KnockdConfig, opts: Parameters<typeof compile>[1] = {}, seed = 1, lite = false): { checked: number; admitted: number } {
  const words = compile(cfg, opts).words;
  const filters = new Map<number, Insn[]>();
  const live = filterFor(words, LIVE);
  let checked = 0;
  let admitted = 0;
  const frames = corpus(cfg, seed, lite);
  const wants = visibility(words, frames);
  for (const [i, frame] of frames.entries()) {
    let prog = filters.get(frame.linkType);
    if (!prog) filters.set(frame.linkType, (prog = filterFor(words, frame.linkType)));
    const want = wants[i];
    const got = runFilter(prog, frame.data) > 0;
    if (got !== want) {
      assert.fail(`${name}: filter ${got ? 'admits' : 'rejects'} a frame the matcher counts ${want ? 'visible' : 'not visible'}: link ${frame.linkType} ${Buffer.from(frame.data).toString('hex')}`);
    }
    checked++;
    if (got) admitted++;
    if (frame.linkType === LinkType.ETHERNET) {
      const view = liveView(frame.data);
      if (!view) continue;
      const liveGot = runFilter(live, view.data, view.meta) > 0;
      if (liveGot !== want) {
        assert.fail(`${name}: live filter ${liveGot ? 'admits' : 'rejects'} a frame the matcher counts ${want ? 'visible' : 'not visible'}: ${Buffer.from(frame.data).toString('hex')}`);
      }
      if (want) assert.equal(runFilter(live, view.data, { ...view.meta, pktType: PACKET_OUTGOING }), 0, 'outgoing copies are rejected');
    }
  }
  return { checked, admitted };
}

for (const name of ['C1', 'C2', 'C3', 'C4', 'C5', 'C6', 'C7', 'C7b', 'C8', 'C9', 'C10', 'C11', 'C13', 'C15'] as const) {
  test(`filter admits exactly the matcher's visible frames: ${name}`, () => {
    const { checked, admitted } = agree(name, CONFIGS[name]());
    assert.ok(admitted > 50 && admitted < checked - 1000, `a real mix of admitted (${admitted}) and rejected frames (${checked})`);
  });
}

test('filter agrees with ALL_LOCAL (every destination local) and with -4 (IPv6 invisible)', () => {
  agree('C4 allLocal', CONFIGS.C4(), { allLocal: true }, 2);
  agree('C7b ignoreIpv6', CONFIGS.C7b(), { ignoreIpv6: true }, 3);
  agree('C11 IPv6 target', config([door('A', '7000,8000:udp', { target: 'fd00::2' }), door('B', '7000,9000', { target: '192.0.2.77' })]), {}, 4);
});

test('derived doors: the filter admits their protocols × port ranges with their flags', () => {
  const cfg = config([
    door('A', '7000,8000:udp'),
    derivedDoor('D', { ports: [...range(40000, 40999), 41500, 50000, 50001] }, { tcpflags: 'syn,!ack' }),
    derivedDoor('U', { ports: range(20000, 20099), protocols: ['udp'] }, { target: 'fd00::2' }),
  ]);
  const { checked, admitted } = agree('derived', cfg, {}, 6);
  assert.ok(admitted > 50 && admitted < checked - 1000, `a real mix of admitted (${admitted}) and rejected frames (${checked})`);
});

test('ICMP echo steps: the filter admits echo requests of the steps\' payload lengths, by the IP header\'s length', () => {
  // first steps that are ICMP get every shape: truncated in the payload (the declared length still
  // counts), lying length fields, extension headers, fragments; other ICMP types and families' mix-ups
  const cfg = config([
    door('I', '1200:icmp,7000,9000:icmp', { tcpflags: 'syn,!ack' }),
    door('J', '56:icmp,8000:udp', { target: 'fd00::2' }),
    door('K', '0:icmp', { target: '192.0.2.77' }),
    door('T', '7000,56'),
    derivedDoor('D', { ports: range(1100, 1300), protocols: ['tcp', 'udp'] }),
  ]);
  const { checked, admitted } = agree('icmp', cfg, {}, 7);
  assert.ok(admitted > 50 && admitted < checked - 1000, `a real mix of admitted (${admitted}) and rejected frames (${checked})`);
  const words = compile(cfg).words;
  const echo = (dport: number, shape: IpShape = {}) => knockFrame({ src: '198.51.100.1', dst: '192.0.2.2', dport, proto: 'icmp' }, shape);
  const admits = (frame: Uint8Array) => runFilter(filterFor(words, LinkType.ETHERNET), frame) > 0;
  assert.equal(admits(echo(1200)), true, 'ping -s 1200');
  assert.equal(admits(echo(1200).subarray(0, 14 + 20 + 8)), true, 'captured without its payload: the IP header says 1200');
  assert.equal(admits(echo(1201)), false);
  assert.equal(admits(echo(1150)), false, "a length in a derived door's range is not one of its knocks");
  assert.deepEqual(visibility(words, [{ data: echo(1200).subarray(0, 14 + 20 + 8), timeUs: T0, linkType: LinkType.ETHERNET }]), [true]);
});

test('many ports and many local addresses still agree (binary search trees, wide jumps)', () => {
  const seq = Array.from({ length: 32 }, (_, i) => 2000 + i * 37).join(',');
  const doors = Array.from({ length: 12 }, (_, i) => door(`D${i}`, seq.replace('2000', String(3000 + i)), { tcpflags: i % 3 === 0 ? 'syn' : i % 3 === 1 ? 'syn,!ack' : '' }));
  const cfg = config([...doors, door('U', '7000:udp,8000:udp')]);
  const locals = [...Array.from({ length: 40 }, (_, i) => `192.0.2.${i + 1}`), ...Array.from({ length: 6 }, (_, i) => `fd00::${i + 1}`)].map(
    (t) => parseAddress(t)!,
  );
  const words = compile(cfg, { localAddresses: locals }).words;
  const prog = decodeFilter(binding.Engine.compileFilter(words, LinkType.ETHERNET).code);
  checkFilter(prog);
  assert.ok(prog.length > 256, `long enough to need wide jumps (${prog.length} instructions)`);
  agree('many', cfg, { localAddresses: locals }, 5, true);
});

test('fanout program hashes the source address only', () => {
  const prog = decodeFilter(binding.Engine.fanoutFilter());
  checkFilter(prog);
  const hashOf = (k: Knock) => {
    const ip = knockFrame(k, { link: LinkType.RAW });
    return runFilter(prog, ip, { protocol: k.src.includes(':') ? 0x86dd : 0x0800 });
  };
  const shards = new Set<number>();
  for (let i = 0; i < 64; i++) {
    for (const src of [`127.0.${i}.${i * 3}`, `2001:db8::${i.toString(16)}`]) {
      const dst = src.includes(':') ? 'fd00::2' : '127.0.0.1';
      const h = hashOf({ src, dst, dport: 7000 });
      assert.equal(hashOf({ src, dst, dport: 9000, proto: 'udp', sport: 1234 }), h, 'ports do not change the shard');
      assert.equal(hashOf({ src, dst: src.includes(':') ? 'fd00::9' : '127.0.0.9', dport: 8000 }), h, 'destinations do not change the shard');
      shards.add(h % 2);
    }
  }
  assert.deepEqual([...shards].sort(), [0, 1], 'sources spread over both shards of a 2-socket group');
  assert.equal(runFilter(prog, new Uint8Array(40), { protocol: 0x0806 }), 0, 'ARP goes to socket 0');
});

test('compileFilter refuses a bad program and a link type without knocks', () => {
  assert.throws(() => binding.Engine.compileFilter(new Uint32Array(4), LinkType.ETHERNET), /invalid door program/);
  const words = compile(CONFIGS.C1()).words;
  assert.throws(() => binding.Engine.compileFilter(words, 105), /never carries a knock/);
});
