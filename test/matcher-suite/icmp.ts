// ICMP echo steps: the payload length is the step's "port".
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LinkType } from '../../src/match/matcher-api.js';
import { derivedDoor } from '../helpers/derived.js';
import { compile, config, door } from '../helpers/doors.js';
import { knockFrame, TCP } from '../helpers/packets.js';
import { A, B, S, LOCAL4, LOCAL6, us, k, assertStats, OPEN3, type Suite } from './harness.js';

export function icmp({ name, make, run }: Suite): void {
  describe(`${name}: ICMP echo steps (extension, MATCHER.md §3)`, () => {
    // 'icmp/1200' = an echo request with 1200 bytes of payload (ping -s 1200), the step 1200:icmp
    const I = () => config([door('I', '7000,1200:icmp,9000', { seqTimeout: 5, tcpflags: 'syn,!ack' })]);

    test('7000, 1200:icmp, 9000 opens from IPv4 and IPv6 sources; TCPFlags do not apply to ICMP', () => {
      const r = run(I());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 'icmp/1200', 0.1), k(A, 9000, 0.2)), OPEN3('I', 'A'));
      assert.deepEqual(r.feed(k(S, 7000, 1), k(S, 'icmp/1200', 1.1, { flags: TCP.ACK }), k(S, 9000, 1.2)), OPEN3('I', 'S'));
      assertStats(r, { frames: 6, visible: 6, stages: 6, completed: 2 });
    });

    test('another length is a wrong knock; a length no door uses is invisible, even one equal to a TCP step', () => {
      const r = run(config([door('I', '7000,1200:icmp,9000', { seqTimeout: 5 }), door('U', '5000,1201:icmp')]));
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 'icmp/9000', 0.05), k(A, 'icmp/1201', 0.1)), ['I@A S1', 'I@A wrong(1)']);
      assert.deepEqual(r.feed(k(B, 7000, 1), k(B, 'udp/1200', 1.05), k(B, 'tcp/1200', 1.06), k(B, 'icmp/1200', 1.1), k(B, 9000, 1.2)), OPEN3('I', 'B'));
      assertStats(r, { frames: 8, invisible: 3, visible: 5, stages: 4, completed: 1, failedWrongPort: 1 });
    });

    test('a door may start with an ICMP step and repeat it; duplicates and timeouts work as for ports', () => {
      const r = run(config([door('P', '56:icmp,56:icmp,8000:udp', { seqTimeout: 2, allowDuplicates: true })]));
      assert.deepEqual(r.feed(k(A, 'icmp/56', 0), k(A, 'icmp/56', 0.1), k(A, 'icmp/56', 0.2), k(A, 'udp/8000', 0.3)), [
        'P@A S1',
        'P@A S2',
        'P@A S3',
        'P@A OPEN',
      ]);
      assert.deepEqual(r.feed(k(B, 'icmp/56', 1)), ['P@B S1']);
      assert.deepEqual(r.tick(3.1), ['P@B timeout(1)']);
    });

    test('only echo requests knock: replies and other ICMP types are not knocks; the length is the IP header\'s', () => {
      const r = run(config([door('P', '0:icmp,8:icmp', { seqTimeout: 5 })]));
      const echo = (src: string, len: number, t: number) => ({
        data: knockFrame({ src, dst: src.includes(':') ? LOCAL6 : LOCAL4, dport: len, proto: 'icmp' }),
        timeUs: us(t),
        linkType: LinkType.ETHERNET,
      });
      const reply = echo(A, 0, 0);
      reply.data[14 + 20] = 0; // echo reply
      const solicitation = echo(S, 0, 0.1);
      solicitation.data[14 + 40] = 135;
      assert.deepEqual(r.feedFrames([reply, solicitation]), []);
      const first = echo(A, 0, 0.2);
      const cut = echo(A, 8, 0.3);
      cut.data = cut.data.subarray(0, 14 + 20 + 8); // the capture kept the headers only
      assert.deepEqual(r.feedFrames([first, cut]), ['P@A S1', 'P@A S2', 'P@A OPEN']);
      assertStats(r, { frames: 4, notKnock: 2, visible: 2, stages: 2, completed: 1 });
    });

    test("a derived door's range does not take ICMP lengths", () => {
      const r = run(config([derivedDoor('D', { protocols: ['tcp', 'udp'] })]));
      r.feed(k(A, 'icmp/40500', 1));
      assertStats(r, { frames: 1, invisible: 1 });
    });

    test('a program step with a protocol other than 6, 17 or 1 is refused', () => {
      const words = compile(I()).words.slice();
      const step = 16 + 2 * 5 + 7 + 1; // header, two local addresses, door header: the second step
      assert.equal(words[step], 1200 | (1 << 16));
      make().load(words);
      words[step] = 1200 | (2 << 16);
      assert.throws(() => make().load(words), TypeError);
    });
  });
}
