// What a door sees: TCPFlags, the protocol of each step, ports no door uses (the visibility set).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS } from '../helpers/doors.js';
import { TCP } from '../helpers/packets.js';
import { A, k, seq, assertStats, OPEN3, type Suite } from './harness.js';

export function visibility({ name, run }: Suite): void {
  describe(`${name}: flags and protocols`, () => {
    test('row 8: C1 tcp/1234 is invisible and harmless', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 1234, 0.5), k(A, 8000, 1), k(A, 9000, 2)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

    test('row 9: C1 udp/8000 is invisible', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(...seq(A, 'tcp/7000', 'udp/8000', 'tcp/8000', 'tcp/9000')), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

    test('row 20: C2 (tcpflags=syn) the ACK to 8000 is invisible', () => {
      const r = run(CONFIGS.C2());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 0.1, { flags: TCP.ACK }), k(A, 8000, 0.2), k(A, 9000, 0.3)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

    test("row 21: C3 an ACK visible through B is ignored by A's flag check; B never starts", () => {
      const r = run(CONFIGS.C3());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 0.1, { flags: TCP.ACK }), k(A, 8000, 0.2), k(A, 9000, 0.3)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, visible: 4, stages: 3, completed: 1 });
    });

    test('row 22: C1 (no tcpflags) an ACK is a wrong knock -> S1 only', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.1, { flags: TCP.ACK }), k(A, 8000, 0.2), k(A, 9000, 0.3)), ['A@A S1', 'A@A wrong(1)']);
    });

    test('row 23: C15 (syn,!ack) SYN+ACK packets are never seen', () => {
      const r = run(CONFIGS.C15());
      const SA = TCP.SYN | TCP.ACK;
      assert.deepEqual(
        r.feed(k(A, 7000, 0, { flags: SA }), k(A, 7000, 0.1), k(A, 8000, 0.2, { flags: SA }), k(A, 8000, 0.3), k(A, 9000, 0.4)),
        OPEN3('A', 'A'),
      );
      assertStats(r, { frames: 5, invisible: 2, visible: 3, stages: 3, completed: 1 });
    });

    test('row 24: C7 udp/7000, tcp/8000, udp/9000 opens', () => {
      const r = run(CONFIGS.C7());
      assert.deepEqual(r.feed(...seq(A, 'udp/7000', 'tcp/8000', 'udp/9000')), OPEN3('A', 'A'));
    });

    test('row 25: C7 wrong-protocol packets are invisible', () => {
      const r = run(CONFIGS.C7());
      assert.deepEqual(r.feed(...seq(A, 'udp/7000', 'udp/8000', 'tcp/9000', 'tcp/8000', 'udp/9000')), OPEN3('A', 'A'));
      assertStats(r, { frames: 5, invisible: 2, visible: 3, stages: 3, completed: 1 });
    });
  });
}
