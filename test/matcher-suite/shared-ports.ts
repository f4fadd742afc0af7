// Doors that share ports: a common prefix, a prefix door listed first, one door's port inside another's
// sequence (MATCHER.md §4: cohorts and candidates).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS } from '../helpers/doors.js';
import { A, seq, assertStats, type Suite } from './harness.js';

export function sharedPorts({ name, run }: Suite): void {
  describe(`${name}: doors sharing ports`, () => {
    test('row 26: C7b udp/8000 visible through B invalidates A and does not start B', () => {
      const r = run(CONFIGS.C7b());
      assert.deepEqual(r.feed(...seq(A, 'udp/7000', 'udp/8000', 'tcp/8000', 'udp/9000')), ['A@A S1', 'A@A wrong(1)']);
      assertStats(r, { frames: 4, visible: 4, stages: 1, failedWrongPort: 1 });
    });

    test('row 27: C4 shared prefix 7000,8000 then 10000 -> B opens, A fails', () => {
      const r = run(CONFIGS.C4());
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 10000)), [
        'A@A S1',
        'B@A S1',
        'A@A S2',
        'B@A S2',
        'A@A wrong(2)',
        'B@A S3',
        'B@A OPEN',
      ]);
    });

    test('row 28: C5 prefix door listed first does not make the longer door unreachable (deviation 1)', () => {
      const r = run(CONFIGS.C5());
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 9000)), ['A@A S1', 'B@A S1', 'A@A S2', 'A@A OPEN', 'B@A S2', 'B@A S3', 'B@A OPEN']);
    });

    test('row 29: C5r longer door listed first -> both open', () => {
      const r = run(CONFIGS.C5r());
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 9000)), ['B@A S1', 'A@A S1', 'B@A S2', 'A@A S2', 'A@A OPEN', 'B@A S3', 'B@A OPEN']);
    });

    test("row 30: C6 B's first port invalidates A and does not start B", () => {
      const r = run(CONFIGS.C6());
      assert.deepEqual(r.feed(...seq(A, 7000, 5000, 6000)), ['A@A S1', 'A@A wrong(1)']);
    });

    test('row 31: C6 the next B first port starts B', () => {
      const r = run(CONFIGS.C6());
      assert.deepEqual(r.feed(...seq(A, 7000, 5000, 5000, 6000)), ['A@A S1', 'A@A wrong(1)', 'B@A S1', 'B@A S2', 'B@A OPEN']);
    });
  });
}
