// Timeouts: seq_timeout boundaries, expiry exact to the microsecond (deviation 2), the timer wheel's ticks
// and gaps longer than the wheel (deviation 3), time that never goes back (MATCHER.md §2).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS, config, door } from '../helpers/doors.js';
import { T0 } from '../helpers/env.js';
import { A, B, S, k, assertStats, OPEN3, type Suite } from './harness.js';

export function timeouts({ name, run }: Suite): void {
  describe(`${name}: timeouts`, () => {
    test('row 2: C1 last knock at 4.999 s opens', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 2), k(A, 9000, 4.999)), OPEN3('A', 'A'));
    });

    test('row 3: C1 last knock at 5.000 s -> S1, S2, timeout(2) at t=5, no OPEN', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 2), k(A, 9000, 5)), ['A@A S1', 'A@A S2', 'A@A timeout(2)']);
      assert.equal(r.lastTime(), 5);
      assertStats(r, { frames: 3, visible: 3, stages: 2, failedTimeout: 1 });
    });

    test('row 4: C1 7000@0.999 … 9000@5.000 opens (4.001 s elapsed, deviation 2)', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0.999), k(A, 8000, 2), k(A, 9000, 5)), OPEN3('A', 'A'));
    });

    test('row 5: C1 7000@0, 7000@6 -> S1; timeout(1) at t=5; then the sequence opens', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 6), k(A, 8000, 6.1), k(A, 9000, 6.2)), [
        'A@A S1',
        'A@A timeout(1)',
        ...OPEN3('A', 'A'),
      ]);
      assert.equal((r.events[1].timeUs - T0) / 1e6, 5);
      assertStats(r, { frames: 4, visible: 4, stages: 4, completed: 1, failedTimeout: 1 });
    });

    test('row 6: C1 A 7000@0 then idle -> timeout(1) reported by tick at t≈5 (deviation 3); B 8000@100 nothing', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0)), ['A@A S1']);
      assert.deepEqual(r.tick(4.99), []);
      assert.deepEqual(r.tick(5.1), ['A@A timeout(1)']);
      assert.equal(r.lastTime(), 5);
      assert.deepEqual(r.feed(k(B, 8000, 100)), []);
      assertStats(r, { frames: 2, visible: 2, stages: 1, failedTimeout: 1 });
    });

    test('row 40: C1 seq_timeout=0 -> S1, timeout(1); C9 command=exit 3 -> S1, OPEN', () => {
      const r = run(config([door('A', '7000,8000,9000', { seqTimeout: 0 })]));
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 1)), ['A@A S1', 'A@A timeout(1)']);
      assert.equal(r.lastTime(), 0, 'a zero timeout is due at the first knock');
      const r9 = run(config([door('A', '7000', { startCommand: 'exit 3' })]));
      assert.deepEqual(r9.feed(k(A, 7000, 0)), ['A@A S1', 'A@A OPEN']);
    });

    test('deviation 2: expiry is exact to the microsecond', () => {
      const r = run(CONFIGS.C1());
      const late = 5 - 1e-6;
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 1), k(A, 9000, late)), OPEN3('A', 'A'));
      const r2 = run(CONFIGS.C1());
      assert.deepEqual(r2.feed(k(A, 7000, 0.5), k(A, 8000, 1), k(A, 9000, 5.5)), ['A@A S1', 'A@A S2', 'A@A timeout(2)']);
      assert.equal(r2.lastTime(), 5.5);
    });

    test('deviation 3: a tick one wheel bucket (16.384 ms) past the deadline reports the timeout', () => {
      const r = run(CONFIGS.C1());
      r.feed(k(A, 7000, 0.3));
      assert.deepEqual(r.tick(5.3 - 1e-6), []);
      assert.deepEqual(r.tick(5.3 + 0.016384), ['A@A timeout(1)']);
      assert.equal(r.lastTime(), 5.3);
      assert.deepEqual(r.tick(60), [], 'reported once');
      assertStats(r, { frames: 1, visible: 1, stages: 1, failedTimeout: 1 });
    });

    test('deviation 3: a gap longer than the wheel (67 s) still fires every timeout once, in deadline order of their buckets', () => {
      const r = run(config([door('A', '7000,8000', { seqTimeout: 5 }), door('L', '5000,6000', { seqTimeout: 100 })]));
      r.feed(k(A, 7000, 0), k(B, 5000, 1), k(S, 7000, 2));
      assert.deepEqual(r.tick(500), ['A@A timeout(1)', 'A@S timeout(1)', 'L@B timeout(1)']);
      assert.deepEqual(
        r.events.slice(-3).map((e) => (e.timeUs - T0) / 1e6),
        [5, 7, 101],
      );
      assertStats(r, { frames: 3, visible: 3, stages: 3, failedTimeout: 3 });
    });

    test('time never goes back: a stepped-back timestamp is matched at the latest time seen', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 6), k(B, 7000, 0)), ['A@A S1', 'A@B S1']);
      assert.equal(r.lastTime(), 6, "B's knock is stamped with the matcher's time, not its own");
      assert.deepEqual(r.feed(k(B, 8000, 10.9), k(B, 9000, 3)), ['A@B S2', 'A@B S3', 'A@B OPEN'], 'B started at 6, not 0');
      assert.deepEqual(r.tick(1), []);
      assert.deepEqual(r.tick(11.1), ['A@A timeout(1)']);
      assert.equal(r.lastTime(), 11);
      assertStats(r, { frames: 4, visible: 4, stages: 4, completed: 1, failedTimeout: 1 });
    });
  });
}
