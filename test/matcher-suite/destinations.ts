// Destinations: Target (IPv4 and IPv6), ALL_LOCAL, IGNORE_IPV6.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS, config, door } from '../helpers/doors.js';
import { A, S, k, seq, assertStats, OPEN3, type Suite } from './harness.js';

export function destinations({ name, run }: Suite): void {
  describe(`${name}: destinations`, () => {
    test('row 35: C11 (target 192.0.2.77) a knock to the local address is invisible; to the target opens', () => {
      const r = run(CONFIGS.C11());
      const to77 = { dst: '192.0.2.77' };
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.1, to77), k(A, 8000, 0.2, to77), k(A, 9000, 0.3, to77)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

    test('IGNORE_IPV6: IPv6 knocks are invisible', () => {
      const r = run(CONFIGS.C1(), { ignoreIpv6: true });
      assert.deepEqual(r.feed(...seq(S, 7000, 8000, 9000)), []);
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 9000).map((p) => ({ ...p, t: p.t + 1 }))), OPEN3('A', 'A'));
      assertStats(r, { frames: 6, invisible: 3, visible: 3, stages: 3, completed: 1 });
    });

    test('ALL_LOCAL: every destination is local', () => {
      const other = { dst: '203.0.113.9' };
      const r = run(CONFIGS.C1(), { allLocal: true });
      assert.deepEqual(r.feed(k(A, 7000, 0, other), k(A, 8000, 0.1, other), k(A, 9000, 0.2, other)), OPEN3('A', 'A'));
      const strict = run(CONFIGS.C1());
      assert.deepEqual(strict.feed(k(A, 7000, 0, other)), []);
      assertStats(strict, { frames: 1, invisible: 1 });
    });

    test('targets: a target door and a local door are independent attempts of one source', () => {
      const r = run(config([door('L', '7000,8000,9000'), door('T', '7000,8000,9000', { target: '192.0.2.77' })]));
      const to77 = { dst: '192.0.2.77' };
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.1, to77), k(A, 8000, 0.2, to77), k(A, 8000, 0.3)), [
        'L@A S1',
        'T@A S1',
        'T@A S2',
        'L@A S2',
      ]);
      assert.equal(r.stats().tracked, 2);
      assert.deepEqual(r.feed(k(A, 1234, 0.4, to77), k(A, 9000, 0.5, to77), k(A, 9000, 0.6)), ['T@A S3', 'T@A OPEN', 'L@A S3', 'L@A OPEN']);
    });

    test('targets: an IPv6 target', () => {
      const r = run(config([door('T', '7000,8000', { target: 'fd00::77' })]));
      const to = { dst: 'fd00::77' };
      assert.deepEqual(r.feed(k(S, 7000, 0, to), k(S, 8000, 0.1, to)), ['T@S S1', 'T@S S2', 'T@S OPEN']);
      assert.deepEqual(r.feed(k(S, 7000, 1)), [], 'not to the local address');
    });
  });
}
