// SPA doors: the HMAC check in the matcher and its events.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { config, door } from '../helpers/doors.js';
import { keyGen, payloadPool, spaDoor } from '../helpers/spa.js';
import { A, B, S, type PacketSpec, k, assertStats, type Suite } from './harness.js';

export function spa({ name, run }: Suite): void {
  describe(`${name}: SPA doors (docs/SPA.md §4)`, () => {
    const keys = [keyGen(), keyGen()];
    const [[good, good2], [other]] = payloadPool(keys, 2);
    const text = (p: Uint8Array) => Buffer.from(p).toString('latin1');
    const spa = (src: string, payload: Uint8Array, t: number, more: Partial<PacketSpec> = {}): PacketSpec =>
      k(src, 'udp/62201', t, { ...more, shape: { data: payload, ...more.shape } });

    test('an authentic packet becomes one SPA event carrying its payload; nothing is tracked', () => {
      const r = run(config([spaDoor('P', keys[0]), door('K', '7000,8000')]));
      assert.deepEqual(r.feed(spa(A, good, 0), spa(S, good2, 1)), [`P@A SPA ${text(good)}`, `P@S SPA ${text(good2)}`]);
      assertStats(r, { frames: 2, spaAccepted: 2 });
      assert.deepEqual(r.feed(k(A, 7000, 2), k(A, 8000, 3)), ['K@A S1', 'K@A S2', 'K@A OPEN'], 'knock doors still match');
    });

    test('a wrong HMAC key or a forged packet is one budgeted FAILED spa_auth, never an SPA event', () => {
      const r = run(config([spaDoor('P', keys[0])]), { eventBudget: 2 });
      const flipped = new Uint8Array(good);
      flipped[10] ^= 1;
      assert.deepEqual(r.feed(spa(A, other, 0), spa(B, flipped, 0.1), spa(A, good.subarray(0, good.length - 1), 0.2)), [
        'P@A spa_auth(0)',
        'P@B spa_auth(0)',
      ]);
      assertStats(r, { frames: 3, spaRejected: 3, suppressed: 1 });
      assert.deepEqual(r.tick(1.5), ['suppressed 1']);
    });

    test('doors on one port: the first door whose key verifies gets the event', () => {
      const r = run(config([spaDoor('P', keys[1]), spaDoor('Q', keys[0]), spaDoor('R', keys[0])]));
      assert.deepEqual(r.feed(spa(A, good, 0)), [`Q@A SPA ${text(good)}`]);
    });

    test('no SPA candidate: short payloads, other ports, other destinations, TCP go on to knock matching', () => {
      const r = run(config([spaDoor('P', keys[0]), door('K', '62201:udp')]));
      assert.deepEqual(r.feed(spa(A, good.subarray(0, 139), 0)), ['K@A S1', 'K@A OPEN'], 'a 139-byte payload is a knock');
      assert.deepEqual(r.feed(spa(B, good, 1, { port: 'udp/62202' })), []);
      assert.deepEqual(r.feed(spa(B, good, 2, { dst: '192.0.2.99' })), []);
      assert.deepEqual(r.feed(spa(B, good, 3, { port: 'tcp/62201' })), []);
      assertStats(r, { frames: 4, visible: 1, invisible: 3, stages: 1, completed: 1 });
    });

    test('Target and -4 apply to SPA doors too', () => {
      const r = run(config([spaDoor('P', keys[0], {}, undefined, { target: '192.0.2.7', targetAddress: { family: 4, bytes: Uint8Array.of(192, 0, 2, 7, ...new Array(12).fill(0)) } })]));
      assert.deepEqual(r.feed(spa(A, good, 0), spa(A, good, 1, { dst: '192.0.2.7' })), [`P@A SPA ${text(good)}`]);
      const v4 = run(config([spaDoor('P', keys[0])]), { ignoreIpv6: true });
      assert.deepEqual(v4.feed(spa(S, good, 0)), []);
    });
  });
}
