// MaxTracked: which attempt is evicted when the table is full (deviation 4, MATCHER.md §4.1).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS, config, door } from '../helpers/doors.js';
import { A, B, type PacketSpec, k, assertStats, type Suite } from './harness.js';

export function eviction({ name, run }: Suite): void {
  describe(`${name}: eviction`, () => {
    test('deviation 4: MaxTracked evicts the oldest stage-1 attempt and keeps progressed ones', () => {
      const r = run(CONFIGS.C1(), { maxTracked: 2 });
      const C = '198.51.100.3';
      const D = '198.51.100.4';
      assert.deepEqual(r.feed(k(A, 7000, 0), k(B, 7000, 0.1), k(A, 8000, 0.2)), ['A@A S1', 'A@B S1', 'A@A S2']);
      assert.deepEqual(r.feed(k(C, 7000, 0.3)), ['A@B evicted(1)', 'A@C S1']);
      assert.deepEqual(r.feed(k(D, 7000, 0.4)), ['A@C evicted(1)', 'A@D S1']);
      assert.deepEqual(r.feed(k(A, 9000, 0.5)), ['A@A S3', 'A@A OPEN']);
      assertStats(r, { frames: 6, visible: 6, stages: 6, completed: 1, evicted: 2, tracked: 1 });
    });

    test('deviation 4: with nothing on the stage-1 list the oldest progressed attempt is evicted; single-knock doors still open', () => {
      const r = run(config([door('X', '7000'), door('Y', '7000,8000,9000')]), { maxTracked: 1 });
      assert.deepEqual(r.feed(k(A, 7000, 0)), ['X@A S1', 'X@A OPEN', 'Y@A S1']);
      assert.deepEqual(r.feed(k(A, 8000, 0.1)), ['Y@A S2']);
      assert.deepEqual(r.feed(k(B, 7000, 0.2)), ['Y@A evicted(2)', 'X@B S1', 'X@B OPEN', 'Y@B S1']);
      assert.deepEqual(r.feed(k(A, 9000, 0.3)), [], 'A was evicted: its last knock starts nothing');
      assert.deepEqual(r.feed(k(B, 8000, 0.4), k(B, 9000, 0.5)), ['Y@B S2', 'Y@B S3', 'Y@B OPEN']);
      assertStats(r, { frames: 6, visible: 6, stages: 7, completed: 3, evicted: 1, evictedProgressed: 1, tracked: 0 });
    });

    test('deviation 4 (§4.1): stage-1 attempts keep half the table; progressed ones leave in order of last progress', () => {
      const C = '198.51.100.3';
      const D = '198.51.100.4';
      const E = '198.51.100.5';
      const F = '198.51.100.6';
      const r = run(config([door('L', '7000,8000,9000,10000')]), { maxTracked: 4 });
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 0.1), k(B, 7000, 0.2), k(B, 8000, 0.3)), ['L@A S1', 'L@A S2', 'L@B S1', 'L@B S2']);
      assert.deepEqual(r.feed(k(A, 9000, 0.4)), ['L@A S3'], 'A progressed last: the progressed list is B, A');
      assert.deepEqual(r.feed(k(C, 7000, 0.5), k(D, 7000, 0.6)), ['L@C S1', 'L@D S1']);
      // Full, and the stage-1 list holds half the table: its oldest goes.
      assert.deepEqual(r.feed(k(E, 7000, 0.7)), ['L@C evicted(1)', 'L@E S1']);
      assert.deepEqual(r.feed(k(D, 8000, 0.8)), ['L@D S2'], 'stage-1 list: E; progressed: B, A, D');
      // Under half: the least recently progressed attempt goes (B, not A, which started first).
      assert.deepEqual(r.feed(k(F, 7000, 0.9)), ['L@B evicted(2)', 'L@F S1']);
      assert.deepEqual(r.feed(k(A, 10000, 1.0)), ['L@A S4', 'L@A OPEN']);
      assertStats(r, { frames: 11, visible: 11, stages: 11, completed: 1, evicted: 2, evictedProgressed: 1, tracked: 3 });
    });

    test('deviation 4 (§4.1): spoofed sources that know two steps of one door deny no door (issue 14, finding 5)', () => {
      const cfg = config([door('P', '7000,8000,9000'), door('Q', '7100,8100,9100')]);
      const r = run(cfg, { maxTracked: 1000 });
      const attack: PacketSpec[] = [];
      for (let i = 0; i < 5000; i++) {
        const src = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
        attack.push(k(src, 7000, i * 1e-5), k(src, 8000, i * 1e-5 + 5e-6));
      }
      r.feed(...attack);
      const more: PacketSpec[] = [];
      for (let i = 5000; i < 5100; i++) {
        const src = `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`;
        more.push(k(src, 7000, 0.06 + (i - 5000) * 1e-4), k(src, 8000, 0.06 + (i - 5000) * 1e-4 + 5e-6));
      }
      // The attack goes on between the legitimate knocks, fewer than MaxTracked / 2 starts apart.
      const lines = r.feed(k(A, 7000, 0.05), k(B, 7100, 0.05), k(A, 8000, 0.055), k(B, 8100, 0.055), ...more, k(A, 9000, 0.08), k(B, 9100, 0.08));
      assert.deepEqual(
        lines.filter((l) => /@[AB] /.test(l)),
        ['P@A S1', 'Q@B S1', 'P@A S2', 'Q@B S2', 'P@A S3', 'P@A OPEN', 'Q@B S3', 'Q@B OPEN'],
      );
      const s = r.stats();
      assert.equal(s.completed, 2);
      assert.equal(s.tracked, 998, 'full, less the two that opened');
      assert.equal(s.evictedProgressed, s.evicted, 'only the attackers’ progressed attempts were evicted');
      assert.equal(s.evicted, 5100 + 2 - 1000, 'every start past MaxTracked evicted one attacker');
    });
  });
}
