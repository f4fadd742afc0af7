// Steps of one door: progress, a wrong knock, restarts, a port repeated in the sequence, Allow_Duplicates,
// no de-duplication of completions.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS, config, door } from '../helpers/doors.js';
import { A, k, seq, assertStats, OPEN3, type Suite } from './harness.js';

export function sequences({ name, run }: Suite): void {
  describe(`${name}: sequences`, () => {
    test('row 1: C1 A 7000@0, 8000@1, 9000@2 -> S1, S2, S3, OPEN once', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 1), k(A, 9000, 2)), OPEN3('A', 'A'));
      assertStats(r, { frames: 3, visible: 3, stages: 3, completed: 1 });
    });

    test('row 7: C1 7000, 9000, 8000, 9000 -> S1 only (9000 invalidates, 8000 does not start)', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 9000, 1), k(A, 8000, 2), k(A, 9000, 3)), ['A@A S1', 'A@A wrong(1)']);
      assertStats(r, { frames: 4, visible: 4, stages: 1, failedWrongPort: 1 });
    });

    test('row 10: C1 7000, 7000, 8000, 9000 -> S1 only (no restart on the invalidating packet)', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(...seq(A, 7000, 7000, 8000, 9000)), ['A@A S1', 'A@A wrong(1)']);
      assertStats(r, { frames: 4, visible: 4, stages: 1, failedWrongPort: 1 });
    });

    test('row 11: C1 7000 ×3, 8000, 9000 -> S1, S1, S2, S3, OPEN (third 7000 restarts)', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(...seq(A, 7000, 7000, 7000, 8000, 9000)), ['A@A S1', 'A@A wrong(1)', ...OPEN3('A', 'A')]);
    });

    test('row 12: C1 duplicate mid-sequence invalidates -> S1, S2 only', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 8000, 9000)), ['A@A S1', 'A@A S2', 'A@A wrong(2)']);
      assertStats(r, { frames: 4, visible: 4, stages: 2, failedWrongPort: 1 });
    });

    test('row 13: C8 7000, 7000, 8000 -> S1, S2, S3, OPEN', () => {
      const r = run(CONFIGS.C8());
      assert.deepEqual(r.feed(...seq(A, 7000, 7000, 8000)), OPEN3('A', 'A'));
    });

    test('row 14: C9 twice and C1 twice -> a completion per knock, no de-duplication', () => {
      const r9 = run(CONFIGS.C9());
      assert.deepEqual(r9.feed(k(A, 7000, 0), k(A, 7000, 0.1)), ['A@A S1', 'A@A OPEN', 'A@A S1', 'A@A OPEN']);
      assertStats(r9, { frames: 2, visible: 2, stages: 2, completed: 2 });
      const r1 = run(CONFIGS.C1());
      const twice = [...seq(A, 7000, 8000, 9000), ...seq(A, 7000, 8000, 9000).map((p) => ({ ...p, t: p.t + 1 }))];
      assert.deepEqual(r1.feed(...twice), [...OPEN3('A', 'A'), ...OPEN3('A', 'A')]);
      assertStats(r1, { frames: 6, visible: 6, stages: 6, completed: 2 });
    });

    test('row 39: C13 two single-knock successes 0.5 s apart -> 2× (S1, OPEN)', () => {
      const r = run(CONFIGS.C13());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.5)), ['A@A S1', 'A@A OPEN', 'A@A S1', 'A@A OPEN']);
      assertStats(r, { frames: 2, visible: 2, stages: 2, completed: 2 });
    });

    test('Allow_Duplicates: a repeat of the step just matched is ignored', () => {
      const dup = config([door('A', '7000,8000,9000', { seqTimeout: 5, allowDuplicates: true })]);
      const r = run(dup);
      assert.deepEqual(r.feed(...seq(A, 7000, 7000, 8000, 8000, 8000, 9000)), OPEN3('A', 'A'));
      assertStats(r, { frames: 6, visible: 6, stages: 3, completed: 1 });
      assert.deepEqual(run(dup).feed(...seq(A, 7000, 8000, 7000)), ['A@A S1', 'A@A S2', 'A@A wrong(2)'], 'an older step is still wrong');
    });

    test('Allow_Duplicates: a repeated port in the sequence advances before it counts as a duplicate', () => {
      const r = run(config([door('A', '7000,7000,8000', { allowDuplicates: true })]));
      assert.deepEqual(r.feed(...seq(A, 7000, 7000, 7000, 8000)), OPEN3('A', 'A'));
    });
  });
}
