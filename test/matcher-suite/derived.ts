// Derived doors: sequences derived from a secret, the source and the time window.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DoorConfig } from '../../src/config/types.js';
import { windowOf } from '../../src/match/derive.js';
import { derivedDoor, OTHER_KEY, portSpecs, range, sequenceFor } from '../helpers/derived.js';
import { config, door } from '../helpers/doors.js';
import { TCP } from '../helpers/packets.js';
import { A, B, S, us, type PacketSpec, k, assertStats, type Suite } from './harness.js';

export function derived({ name, run }: Suite): void {
  describe(`${name}: derived doors (MATCHER.md §10)`, () => {
    // The test doors step every 10 s and T0 is a whole multiple of 10 s: window w(t) starts at t = 10·k.
    const D = derivedDoor('D');
    const w = (t: number): number => windowOf(us(t), 10);
    /** The knocks of `src` for door d's sequence of `window`, 0.1 s apart from t. */
    const knocks = (d: DoorConfig, src: string, window: number, t: number, from = src): PacketSpec[] =>
      portSpecs(sequenceFor(d, from, window)).map((port, i) => k(src, port, t + i / 10));
    const OPEN4 = (who: string, door = 'D') => [...[1, 2, 3, 4].map((n) => `${door}@${who} S${n}`), `${door}@${who} OPEN`];
    const opened = (lines: string[]) => lines.some((l) => l.endsWith(' OPEN'));

    test('the sequence derived for the source and the current window opens the door', () => {
      const r = run(config([D]));
      assert.deepEqual(r.feed(...knocks(D, A, w(1), 1)), OPEN4('A'));
      assert.deepEqual(r.feed(...knocks(D, S, w(2), 2)), OPEN4('S'), 'IPv6 sources too');
      assertStats(r, { frames: 8, visible: 8, stages: 8, completed: 2 });
    });

    test("a captured sequence replayed from another source fails", () => {
      const r = run(config([D]));
      assert.equal(opened(r.feed(...knocks(D, B, w(1), 1, A))), false);
      assert.deepEqual(r.feed(...knocks(D, A, w(2), 2)), OPEN4('A'), 'while the owner still opens');
    });

    test('a sequence that opened the door does not open it again in its window; the next window has a new one', () => {
      const r = run(config([D]));
      assert.deepEqual(r.feed(...knocks(D, A, w(1), 1)), OPEN4('A'));
      assert.equal(opened(r.feed(...knocks(D, A, w(1), 3))), false, 'replayed in the same window');
      assert.equal(opened(r.feed(...knocks(D, A, w(1), 11))), false, 'replayed in the next window (w−1 is used)');
      assert.deepEqual(r.feed(...knocks(D, A, w(12), 12)), OPEN4('A'));
    });

    test('a sequence replayed two windows later fails', () => {
      const r = run(config([D]));
      assert.equal(opened(r.feed(...knocks(D, A, w(1), 21))), false);
      assert.equal(r.stats().completed, 0);
    });

    test('clock skew: windows w−1 and w+1 are accepted, w−2 and w+2 are not', () => {
      const r = run(config([D]));
      const t = 15; // w(15) = w(0) + 1
      assert.deepEqual(r.feed(...knocks(D, A, w(t) - 1, t)), OPEN4('A'), 'w−1');
      assert.deepEqual(r.feed(...knocks(D, B, w(t) + 1, t)), OPEN4('B'), 'w+1');
      assert.equal(opened(r.feed(...knocks(D, '198.51.100.3', w(t) - 2, t))), false, 'w−2');
      assert.equal(opened(r.feed(...knocks(D, '198.51.100.4', w(t) + 2, t))), false, 'w+2');
      // the window is the one of the first knock: a sequence started at the last moment of w completes in w+1
      assert.deepEqual(r.feed(...knocks(D, S, w(19.9), 19.9)), OPEN4('S'), 'across a window edge');
    });

    test('a completion carries the window it used (the fleet decides that window once, MATCHER.md §7)', () => {
      const windows = (r: ReturnType<typeof run>) => r.events.flatMap((e) => (e.kind === 'completed' ? [e.window] : []));
      const t = 15;
      const r = run(config([D]));
      r.feed(...knocks(D, A, w(t) - 1, t), ...knocks(D, B, w(t) + 1, t + 1), ...knocks(D, S, w(19.9), 19.9));
      assert.deepEqual(windows(r), [w(t) - 1, w(t) + 1, w(19.9)], "w−1, w+1, and across an edge the first knock's window");
      const one = derivedDoor('O', { sequenceLength: 1 });
      const r1 = run(config([one]));
      r1.feed(...knocks(one, A, w(t) + 1, t));
      assert.deepEqual(windows(r1), [w(t) + 1], 'a one-step door');
      const fixed = run(config([door('P', '7000,8000', { seqTimeout: 5 })]));
      fixed.feed(k(B, 7000, 1), k(B, 8000, 1.1));
      assert.deepEqual(windows(fixed), [0], 'a fixed door: 0');
    });

    test('a sequence derived from another secret fails', () => {
      const r = run(config([D]));
      const wrong = portSpecs(sequenceFor(D, A, w(1), OTHER_KEY)).map((port, i) => k(A, port, 1 + i / 10));
      assert.equal(opened(r.feed(...wrong)), false);
    });

    test('a scan of the whole port range does not open the door', () => {
      const r = run(config([D]));
      const scan = range(40000, 40999).map((port, i) => k(A, port, 1 + i / 1000));
      assert.equal(opened(r.feed(...scan)), false);
      const st = r.stats();
      assert.equal(st.visible, 1000);
      assert.equal(st.completed, 0);
      assert.equal(st.stages, st.failedWrongPort + st.tracked, 'every attempt the scan started died at the next port');
    });

    test('ports outside the range, other protocols and refused TCP flags are invisible', () => {
      const r = run(config([derivedDoor('D', {}, { tcpflags: 'syn' })]));
      r.feed(k(A, 39999, 1), k(A, 41000, 1.1), k(A, 'udp/40500', 1.2), k(A, 40500, 1.3, { flags: TCP.ACK }), k(A, 40500, 1.4));
      assert.equal(r.stats().invisible, 4);
      assert.equal(r.stats().visible, 1);
    });

    test("only a client's SYN counts: the RST, RST+ACK or SYN+ACK answering a knock on this host is invisible", () => {
      // knocking 127.0.0.1 puts the kernel's answers to each knock on the same capture, addressed to the
      // client's ephemeral port, which may lie in the range; knockd-style doors still count them (knockd does)
      const r = run(config([D]));
      const [s0, s1, s2, s3] = knocks(D, A, w(1), 1);
      const reply = (t: number, flags: number) => k(A, 40500, t, { flags });
      assert.deepEqual(r.feed(s0, reply(1.05, TCP.RST | TCP.ACK), s1, reply(1.15, TCP.RST), s2, reply(1.25, TCP.SYN | TCP.ACK), s3), OPEN4('A'));
      assertStats(r, { frames: 7, invisible: 3, visible: 4, stages: 4, completed: 1 });
      const plain = run(config([door('P', '7000,40500', { seqTimeout: 5 })]));
      assert.deepEqual(plain.feed(k(A, 7000, 1), reply(1.1, TCP.RST | TCP.ACK)), ['P@A S1', 'P@A S2', 'P@A OPEN'], 'a knockd door counts any TCP packet');
    });

    test('Bind_Source = no: the sequence of the window opens from any source, once per source', () => {
      const free = derivedDoor('F', { bindSource: false });
      const r = run(config([free]));
      assert.deepEqual(r.feed(...knocks(free, B, w(1), 1, A)), OPEN4('B', 'F'));
      assert.deepEqual(r.feed(...knocks(free, S, w(1), 2, A)), OPEN4('S', 'F'));
      assert.equal(opened(r.feed(...knocks(free, B, w(1), 3, A))), false, 'used by B in this window');
    });

    test('two protocols and two HMAC blocks: Sequence_Length = 6 over tcp,udp', () => {
      const long = derivedDoor('L', { sequenceLength: 6, protocols: ['tcp', 'udp'] });
      const r = run(config([long]));
      const steps = sequenceFor(long, A, w(1));
      assert.deepEqual(new Set(steps.map((s) => s.proto)), new Set(['tcp', 'udp']), 'the test key mixes both protocols');
      const lines = r.feed(...knocks(long, A, w(1), 1));
      assert.deepEqual(lines, [...[1, 2, 3, 4, 5, 6].map((n) => `L@A S${n}`), 'L@A OPEN']);
    });

    test('Sequence_Length = 1 opens at the first knock, once per source and window', () => {
      const one = derivedDoor('O', { sequenceLength: 1 });
      const r = run(config([one]));
      assert.deepEqual(r.feed(...knocks(one, A, w(1), 1)), ['O@A S1', 'O@A OPEN']);
      assert.deepEqual(r.feed(...knocks(one, A, w(1), 2)), [], 'used');
      assertStats(r, { frames: 2, visible: 2, stages: 1, completed: 1 });
    });

    test('a derived attempt times out, fails on a wrong port, and survives a reload of the same config', () => {
      const cfg = config([D]);
      const r = run(cfg);
      const [s0, , s2] = knocks(D, A, w(1), 1);
      assert.deepEqual(r.feed(s0), ['D@A S1']);
      assert.deepEqual(r.tick(6.5), ['D@A timeout(1)']);
      assert.deepEqual(r.feed({ ...s0, t: 7 }, { ...s2, t: 7.1 }), ['D@A S1', 'D@A wrong(1)']);
      const again = knocks(D, A, w(8), 8);
      assert.deepEqual(r.feed(again[0], again[1]), ['D@A S1', 'D@A S2']);
      r.load(cfg);
      assert.deepEqual(r.feed(again[2], again[3]), ['D@A S3', 'D@A S4', 'D@A OPEN']);
    });

    test('a derived door and fixed doors share a destination: each source has one attempt at a time', () => {
      const fixed = door('X', '7000,8000', { seqTimeout: 5 });
      const r = run(config([fixed, D]));
      const [s0] = knocks(D, A, w(1), 1);
      assert.deepEqual(r.feed(s0), ['D@A S1']);
      assert.deepEqual(r.feed(k(A, 7000, 1.1)), ['D@A wrong(1)'], "X's first knock goes to the live derived attempt");
      assert.deepEqual(r.feed(k(A, 7000, 1.2), k(A, 8000, 1.3)), ['X@A S1', 'X@A S2', 'X@A OPEN']);
      assert.deepEqual(r.feed(...knocks(D, A, w(2), 2)), OPEN4('A'));
      assertStats(r, { frames: 8, visible: 8, stages: 7, completed: 2, failedWrongPort: 1 });
    });
  });
}
