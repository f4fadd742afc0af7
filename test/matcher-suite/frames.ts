// Frames: malformed ones, valid non-knocks, every link type, VLAN tags, IPv4 options, IPv6 extension
// headers (MATCHER.md §3).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CapturedFrame } from '../../src/match/frame.js';
import { LinkType } from '../../src/match/matcher-api.js';
import { CONFIGS } from '../helpers/doors.js';
import type { IpShape, LinkShape } from '../helpers/packets.js';
import { A, S, us, k, frameOf, assertStats, OPEN3, type Suite } from './harness.js';

export function frames({ name, run }: Suite): void {
  describe(`${name}: frames`, () => {
    const good = (port: number, t: number, shape: IpShape & LinkShape = {}) => frameOf(k(A, port, t, { shape }));
    const damaged = (t: number, edit: (f: Uint8Array) => Uint8Array, shape: IpShape & LinkShape = {}): CapturedFrame => {
      const f = good(7000, t, shape);
      return { ...f, data: edit(f.data.slice()) };
    };
    const ETH = 14;

    test('malformed frames are counted and skipped', () => {
      const r = run(CONFIGS.C1());
      const frames = [
        damaged(0, () => new Uint8Array(0)), // zero length
        damaged(0, (f) => f.subarray(0, 10)), // truncated Ethernet header
        damaged(0, (f) => f.subarray(0, ETH + 19)), // truncated IPv4 header
        damaged(0, (f) => ((f[ETH] = 0x44), f)), // IHL 4
        damaged(0, (f) => ((f[ETH] = 0x4f), f)), // IHL 15: 60 bytes > captured
        damaged(0, (f) => ((f[ETH + 2] = 0), (f[ETH + 3] = 19), f)), // total length < header
        damaged(0, (f) => ((f[ETH] = 0x55), f)), // version 5 in an IPv4 ethertype
        damaged(0, (f) => f.subarray(0, ETH + 20 + 19)), // truncated TCP
        damaged(0, (f) => ((f[ETH + 20 + 12] = 0x40), f)), // TCP data offset 4
        damaged(0, (f) => ((f[ETH + 2] = 0), (f[ETH + 3] = 30), f)), // total length cuts TCP short
        frameOf(k(A, 'udp/7000', 0, { shape: {} })).data.subarray(0, ETH + 20 + 7),
      ].map((x) => (x instanceof Uint8Array ? { data: x.slice(), timeUs: us(0), linkType: LinkType.ETHERNET } : x));
      const six = (edit: (f: Uint8Array) => Uint8Array, shape: IpShape = {}): CapturedFrame => {
        const f = frameOf(k(S, 7000, 0, { shape }));
        return { ...f, data: edit(f.data.slice()) };
      };
      frames.push(
        six((f) => f.subarray(0, ETH + 39)), // truncated IPv6 header
        six((f) => ((f[ETH] = 0x40), f)), // version 4 in an IPv6 ethertype
        six((f) => f, { ipv6Extensions: [0, 60, 43, 60, 0, 60, 43, 60, 60] }), // 9 extension headers
        six((f) => f.subarray(0, ETH + 40 + 5), { ipv6Extensions: [60] }), // extension header cut off
        six((f) => ((f[ETH + 41] = 9), f), { ipv6Extensions: [60] }), // extension length past the end
        six((f) => f.subarray(0, ETH + 40 + 19)), // truncated TCP after IPv6
      );
      frames.push({ ...good(7000, 0, { link: LinkType.LINUX_SLL }), data: new Uint8Array(15) });
      frames.push({ ...good(7000, 0, { link: LinkType.LINUX_SLL2 }), data: new Uint8Array(19) });
      frames.push({ ...good(7000, 0, { link: LinkType.RAW }), data: new Uint8Array(0) });
      frames.push({ ...good(7000, 0, { link: LinkType.ETHERNET, vlan: [0x8100] }), data: good(7000, 0, { vlan: [0x8100] }).data.subarray(0, 16) });
      assert.deepEqual(r.feedFrames(frames), []);
      assert.deepEqual(r.feed(k(A, 7000, 1), k(A, 8000, 1.1), k(A, 9000, 1.2)), OPEN3('A', 'A'), 'the matcher is unharmed');
      assertStats(r, { frames: frames.length + 3, malformed: frames.length, visible: 3, stages: 3, completed: 1 });
    });

    test('valid frames that are not knocks are counted as such', () => {
      const r = run(CONFIGS.C1());
      const notKnocks = [
        good(7000, 0, { fragment: { offset: 0, more: true } }),
        good(7000, 0, { fragment: { offset: 10, more: false } }),
        good(7000, 0, { otherProtocol: 1 }),
        good(7000, 0, { vlan: [0x88a8, 0x8100, 0x8100] }), // a third tag
        { ...good(7000, 0), linkType: 147 }, // unknown link type
        damaged(0, (f) => ((f[12] = 0x08), (f[13] = 0x06), f)), // ARP ethertype
        damaged(0, (f) => ((f[0] = 0x81), (f[1] = 0x00), f), { link: LinkType.LINUX_SLL2 }), // SLL2 has no VLAN tags
        frameOf(k(S, 7000, 0, { shape: { fragment: { offset: 0, more: true } } })),
        frameOf(k(S, 7000, 0, { shape: { fragment: { offset: 8, more: false } } })),
        frameOf(k(S, 7000, 0, { shape: { otherProtocol: 58 } })),
        frameOf(k(S, 7000, 0, { shape: { ipv6Extensions: [0], otherProtocol: 59 } })),
        { ...good(7000, 0, { link: LinkType.RAW }), data: Uint8Array.of(0x50, ...new Uint8Array(39)) }, // raw, version 5
      ];
      assert.deepEqual(r.feedFrames(notKnocks), []);
      assertStats(r, { frames: notKnocks.length, notKnock: notKnocks.length });
    });

    test('every link type, VLAN tags, IPv4 options and IPv6 extension headers carry knocks', () => {
      const r = run(CONFIGS.C1());
      const frames = [
        good(7000, 0, { vlan: [0x8100] }),
        good(8000, 0.1, { vlan: [0x88a8, 0x8100] }),
        good(9000, 0.2, { link: LinkType.LINUX_SLL, ipv4Options: 8 }),
        good(7000, 1, { link: LinkType.LINUX_SLL2 }),
        good(8000, 1.1, { link: LinkType.RAW }),
        good(9000, 1.2, { link: LinkType.IPV4, ipv4Options: 40 }),
        frameOf(k(S, 7000, 2, { shape: { ipv6Extensions: [0, 43, 60, 51, 60, 60, 43], fragment: { offset: 0, more: false } } })),
        frameOf(k(S, 8000, 2.1, { shape: { link: LinkType.IPV6 } })),
        frameOf(k(S, 9000, 2.2, { shape: { link: LinkType.LINUX_SLL, vlan: [0x9100] } })),
      ];
      assert.deepEqual(r.feedFrames(frames), [...OPEN3('A', 'A'), ...OPEN3('A', 'A'), ...OPEN3('A', 'S')]);
      assertStats(r, { frames: 9, visible: 9, stages: 9, completed: 3 });
    });

    test('IPv4 total length shorter than the capture (Ethernet padding) still parses; a payload length of 0 means the capture', () => {
      const r = run(CONFIGS.C9());
      const padded = good(7000, 0);
      const data = new Uint8Array(padded.data.length + 6);
      data.set(padded.data);
      const jumbo = frameOf(k(S, 7000, 0.1));
      jumbo.data[ETH + 4] = 0;
      jumbo.data[ETH + 5] = 0;
      assert.deepEqual(r.feedFrames([{ ...padded, data }, jumbo]), ['A@A S1', 'A@A OPEN', 'A@S S1', 'A@S OPEN']);
    });

    test('an empty batch does nothing', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feedFrames([]), []);
      assertStats(r, {});
    });
  });
}
