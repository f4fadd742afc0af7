// Reloads: attempts of unchanged doors survive with their first-knock time, changed doors' attempts go, a
// smaller MaxTracked frees the oldest (MATCHER.md §5).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS, config, door } from '../helpers/doors.js';
import { A, B, k, assertStats, type Suite } from './harness.js';

export function reload({ name, run }: Suite): void {
  describe(`${name}: reload`, () => {
    test('reload keeps attempts of unchanged doors and drops those of changed doors', () => {
      const before = config([door('A', '7000,8000,9000'), door('B', '5000,6000,7000')]);
      const r = run(before);
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 0.1), k(B, 5000, 0.2)), ['A@A S1', 'A@A S2', 'B@B S1']);
      // B changes (its timeout), a new door comes first: A's attempt survives under its new index
      r.load(config([door('N', '1000,2000'), door('A', '7000,8000,9000'), door('B', '5000,6000,7000', { seqTimeout: 9 })]));
      assert.equal(r.stats().tracked, 1);
      assert.deepEqual(r.feed(k(A, 9000, 1), k(B, 6000, 1.1)), ['A@A S3', 'A@A OPEN']);
      const open = r.events[r.events.length - 1];
      assert.equal(open.kind === 'completed' && open.door, 1, 'A is door 1 of the new program');
      assertStats(r, { frames: 5, visible: 5, stages: 4, completed: 1 });
    });

    test('reload keeps t_first: the surviving attempt still times out from its first knock', () => {
      const r = run(CONFIGS.C1());
      r.feed(k(A, 7000, 0), k(A, 8000, 1));
      r.load(config([door('A', '7000,8000,9000', { seqTimeout: 5 }), door('Z', '1,2')]));
      assert.deepEqual(r.tick(6), ['A@A timeout(2)']);
      assert.equal(r.lastTime(), 5);
    });

    test('reload: a cohort member that changed is dropped, the others keep their stage', () => {
      const r = run(CONFIGS.C4());
      r.feed(k(A, 7000, 0), k(A, 8000, 0.1));
      r.load(config([door('A', '7000,8000,9000'), door('B', '7000,8000,10001')]));
      assert.deepEqual(r.feed(k(A, 10001, 0.2), k(A, 10000, 0.3)), ['A@A wrong(2)']);
      const r2 = run(CONFIGS.C4());
      r2.feed(k(A, 7000, 0), k(A, 8000, 0.1));
      r2.load(config([door('A', '7000,8000,9000'), door('B', '7000,8000,10001')]));
      assert.deepEqual(r2.feed(k(A, 9000, 0.2)), ['A@A S3', 'A@A OPEN']);
    });

    test('reload to a smaller MaxTracked frees the oldest stage-1 attempts first, silently', () => {
      const r = run(CONFIGS.C1());
      const C = '198.51.100.3';
      r.feed(k(A, 7000, 0), k(B, 7000, 0.1), k(C, 7000, 0.2), k(A, 8000, 0.3));
      r.load(CONFIGS.C1(), { maxTracked: 2 });
      assert.equal(r.stats().tracked, 2);
      assert.deepEqual(r.feed(k(B, 8000, 0.4), k(C, 8000, 0.5), k(A, 9000, 0.6)), ['A@C S2', 'A@A S3', 'A@A OPEN']);
    });
  });
}
