// Sources: each source's attempt is its own (deviation 1); IPv6 sources.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIGS, config, door } from '../helpers/doors.js';
import { T0 } from '../helpers/env.js';
import { A, B, S, k, seq, assertStats, OPEN3, type Suite } from './harness.js';

export function sources({ name, run }: Suite): void {
  describe(`${name}: sources`, () => {
    test('row 15: C1 interleaved A and B both open (deviation 1)', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(B, 7000, 0.1), k(A, 8000, 0.2), k(B, 8000, 0.3), k(A, 9000, 0.4), k(B, 9000, 0.5)), [
        'A@A S1',
        'A@B S1',
        'A@A S2',
        'A@B S2',
        'A@A S3',
        'A@A OPEN',
        'A@B S3',
        'A@B OPEN',
      ]);
      assertStats(r, { frames: 6, visible: 6, stages: 6, completed: 2 });
    });

    test('row 16: C1 interleaved, B finishes first -> both open', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(B, 7000, 0.1), k(A, 8000, 0.2), k(B, 8000, 0.3), k(B, 9000, 0.4), k(A, 9000, 0.5)), [
        'A@A S1',
        'A@B S1',
        'A@A S2',
        'A@B S2',
        'A@B S3',
        'A@B OPEN',
        'A@A S3',
        'A@A OPEN',
      ]);
    });

    test("row 17: C1 A's timeout does not disturb B (deviation 1)", () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(B, 7000, 4), k(B, 8000, 5.5), k(B, 9000, 6)), [
        'A@A S1',
        'A@B S1',
        'A@A timeout(1)',
        'A@B S2',
        'A@B S3',
        'A@B OPEN',
      ]);
      assert.equal((r.events[2].timeUs - T0) / 1e6, 5);
    });

    test("row 18: C1 A's invalidation does not wipe B (deviation 1)", () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(B, 7000, 0.1), k(A, 9000, 0.2), k(B, 8000, 0.3), k(B, 9000, 0.4)), [
        'A@A S1',
        'A@B S1',
        'A@A wrong(1)',
        'A@B S2',
        'A@B S3',
        'A@B OPEN',
      ]);
    });

    test("row 19: C1 B's invalidation leaves A -> A opens, B S1 only", () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(B, 7000, 0.1), k(B, 9000, 0.2), k(A, 8000, 0.3), k(A, 9000, 0.4)), [
        'A@A S1',
        'A@B S1',
        'A@B wrong(1)',
        'A@A S2',
        'A@A S3',
        'A@A OPEN',
      ]);
    });

    test('row 32: C10 IPv6 source S to fd00::2 opens with source 2001:db8::5', () => {
      const r = run(CONFIGS.C10());
      assert.deepEqual(r.feed(...seq(S, 7000, 8000, 9000)), OPEN3('A', 'S'));
      const open = r.events[3];
      assert.equal(open.kind, 'completed');
      if (open.kind === 'completed') {
        assert.equal(open.family, 6);
        assert.equal(open.source, '2001:db8::5');
      }
    });

    test('row 33: C1 and C1 + empty start_command_6 -> S opens in both (commands are the controller’s)', () => {
      for (const cfg of [CONFIGS.C1(), config([door('A', '7000,8000,9000', { seqTimeout: 5, startCommand6: '' })])]) {
        const r = run(cfg);
        assert.deepEqual(r.feed(...seq(S, 7000, 8000, 9000)), OPEN3('A', 'S'));
        assert.equal(r.events[3].kind === 'completed' && r.events[3].family, 6);
      }
    });

    test('row 34: C1 an IPv6 packet is a different source', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(S, 8000, 0.1), k(A, 8000, 0.2), k(A, 9000, 0.3)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, visible: 4, stages: 3, completed: 1 });
    });
  });
}
