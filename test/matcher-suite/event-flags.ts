// Program flags about events: the per-second event budget and its SUPPRESSED record, STAGE_EVENTS off.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS } from '../helpers/doors.js';
import { A, B, us, k, seq, assertStats, type Suite } from './harness.js';

export function eventFlags({ name, run }: Suite): void {
  describe(`${name}: event budget and stage events`, () => {
    test('event budget: STAGE/FAILED beyond the per-second budget fold into one SUPPRESSED record; OPEN is never dropped', () => {
      const r = run(CONFIGS.C1(), { eventBudget: 2 });
      assert.deepEqual(r.feed(k(A, 7000, 0.1), k(A, 8000, 0.2), k(A, 9000, 0.3), k(B, 7000, 0.4), k(B, 9000, 0.5)), [
        'A@A S1',
        'A@A S2',
        'A@A OPEN',
      ]);
      assert.deepEqual(r.tick(1.2), ['suppressed 3']);
      const sup = r.events[r.events.length - 1];
      assert.equal(sup.timeUs, us(1), 'stamped at the end of the window it summarises');
      assert.deepEqual(r.feed(k(B, 7000, 1.3)), ['A@B S1'], 'a new second has a fresh budget');
      assert.deepEqual(r.tick(3), [], 'nothing suppressed in that window');
      assertStats(r, { frames: 6, visible: 6, stages: 5, completed: 1, failedWrongPort: 1, suppressed: 3, tracked: 1 });
    });

    test('STAGE_EVENTS off: no stage records (and no stage count); completions and failures remain', () => {
      const r = run(CONFIGS.C1(), { stageEvents: false });
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 9000), k(B, 7000, 1), k(B, 9000, 1.1)), ['A@A OPEN', 'A@B wrong(1)']);
      assertStats(r, { frames: 5, visible: 5, completed: 1, failedWrongPort: 1 });
    });
  });
}
