// One_Time_Sequences: after a success the controller loads a program with the next sequence (rows 36-38).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS } from '../helpers/doors.js';
import { A, S, type PacketSpec, k, seq, assertStats, OPEN3, type Suite } from './harness.js';

export function oneTime({ name, run }: Suite): void {
  describe(`${name}: one-time sequences`, () => {
    test('row 36: C12 one-time sequences: after a success the next program has the next sequence', () => {
      const r = run(CONFIGS.C12('7000,8000,9000'));
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 9000)), OPEN3('A', 'A'));
      r.load(CONFIGS.C12('1000:udp,2000'));
      const later = (ps: PacketSpec[], dt: number) => ps.map((p) => ({ ...p, t: p.t + dt }));
      assert.deepEqual(r.feed(...later(seq(A, 7000, 8000, 9000), 1)), [], 'the used sequence no longer works');
      assert.deepEqual(r.feed(...later(seq(A, 'udp/1000', 'tcp/2000'), 2)), ['A@A S1', 'A@A S2', 'A@A OPEN']);
      assertStats(r, { frames: 8, invisible: 3, visible: 5, stages: 5, completed: 2 });
    });

    test('row 37: C12 exhausted: OPEN, then the door is gone from the next program and the matcher keeps working', () => {
      const r = run(CONFIGS.C12('7000,8000'));
      assert.deepEqual(r.feed(...seq(A, 7000, 8000)), ['A@A S1', 'A@A S2', 'A@A OPEN']);
      r.load(CONFIGS.C12(''));
      assert.equal(r.program.doors.length, 0);
      assert.deepEqual(r.feed(k(A, 7000, 1), k(A, 8000, 1.1)), []);
      assertStats(r, { frames: 4, invisible: 2, visible: 2, stages: 2, completed: 1 });
    });

    test('row 38: C12 the new sequence works for IPv6 too (deviation 6)', () => {
      const r = run(CONFIGS.C12('7000,8000'));
      assert.deepEqual(r.feed(...seq(S, 7000, 8000)), ['A@S S1', 'A@S S2', 'A@S OPEN']);
      r.load(CONFIGS.C12('1000,2000'));
      assert.deepEqual(r.feed(k(S, 1000, 1), k(S, 2000, 1.1)), ['A@S S1', 'A@S S2', 'A@S OPEN']);
    });
  });
}
