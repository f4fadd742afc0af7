// The shared matcher conformance suite (the conformance table: rows 1-40, deviations, extensions, counters,
// malformed frames). Both matchers run it: test/matcher.ts.test.ts and test/matcher.native.test.ts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DoorConfig, KnockdConfig, StepProto } from '../src/config/types.js';
import { decodeEvents, type KnockEvent } from '../src/match/events.js';
import { batchFromFrames, type CapturedFrame } from '../src/match/frame.js';
import { LinkType, type Matcher, type MatcherStats } from '../src/match/matcher-api.js';
import type { CompiledProgram, CompileOptions } from '../src/config/program.js';
import { windowOf } from '../src/match/derive.js';
import { derivedDoor, OTHER_KEY, portSpecs, range, sequenceFor } from './helpers/derived.js';
import { CONFIGS, compile, config, door } from './helpers/doors.js';
import { keyGen, payloadPool, spaDoor } from './helpers/spa.js';
import { knockFrame, TCP, type IpShape, type LinkShape } from './helpers/packets.js';
import { T0 } from './helpers/env.js';

const A = '198.51.100.1';
const B = '198.51.100.2';
const S = '2001:db8::5';
const ALIAS: Record<string, string> = { [A]: 'A', [B]: 'B', [S]: 'S', '198.51.100.3': 'C', '198.51.100.4': 'D', '198.51.100.5': 'E', '198.51.100.6': 'F' };
const LOCAL4 = '192.0.2.2';
const LOCAL6 = 'fd00::2';
/** A whole second, so budget windows and knockd's seconds line up with the table's times. */
const us = (seconds: number): number => T0 + Math.round(seconds * 1e6);

export interface PacketSpec {
  src: string;
  /** 7000 (tcp) or 'udp/7000' / 'tcp/7000' / 'icmp/1200' (an echo request with 1200 bytes of payload) */
  port: number | string;
  t: number; // seconds after T0
  flags?: number;
  dst?: string;
  shape?: IpShape & LinkShape;
}

/** `k(A, 7000, 0.5)`, `k(A, 'udp/7000', 1, { flags: TCP.ACK })` */
function k(src: string, port: number | string, t: number, more: Partial<PacketSpec> = {}): PacketSpec {
  return { src, port, t, ...more };
}

/** Packets at t = 0, 0.1, 0.2, … for `knocks(A, 7000, 8000, 'udp/9000')`. */
function seq(src: string, ...ports: (number | string)[]): PacketSpec[] {
  return ports.map((port, i) => k(src, port, i / 10));
}

function frameOf(p: PacketSpec): CapturedFrame {
  const [proto, port] = typeof p.port === 'number' ? ['tcp', p.port] : (p.port.split('/') as [string, string]);
  const dst = p.dst ?? (p.src.includes(':') ? LOCAL6 : LOCAL4);
  const link = p.shape?.link ?? LinkType.ETHERNET;
  return {
    data: knockFrame({ src: p.src, dst, dport: Number(port), proto: proto as StepProto, flags: p.flags ?? TCP.SYN }, p.shape),
    timeUs: us(p.t),
    linkType: link,
  };
}

/** One matcher under test plus the programs it loaded, with events rendered as short lines. */
class Run {
  readonly programs = new Map<number, CompiledProgram>();
  readonly events: KnockEvent[] = [];
  program!: CompiledProgram;

  constructor(
    readonly matcher: Matcher,
    cfg: KnockdConfig,
    opts: Partial<CompileOptions> = {},
  ) {
    this.load(cfg, opts);
  }

  load(cfg: KnockdConfig, opts: Partial<CompileOptions> = {}): this {
    this.program = compile(cfg, opts);
    this.programs.set(this.program.generation, this.program);
    this.matcher.load(this.program.words);
    return this;
  }

  /** Feeds the packets as one batch and returns the lines of the events they caused. */
  feed(...packets: PacketSpec[]): string[] {
    return this.take(this.matcher.feed(batchFromFrames(packets.map(frameOf))));
  }

  feedFrames(frames: CapturedFrame[]): string[] {
    return this.take(this.matcher.feed(batchFromFrames(frames)));
  }

  tick(t: number): string[] {
    return this.take(this.matcher.tick(us(t)));
  }

  stats(): MatcherStats {
    return this.matcher.stats();
  }

  private take(batch: Uint8Array): string[] {
    const evs = decodeEvents(batch);
    this.events.push(...evs);
    return evs.map((e) => this.line(e));
  }

  /** e.g. `A@A S1`, `A@A OPEN`, `A@B timeout(2)`, `B@S wrong(1)`, `suppressed 3` */
  line(e: KnockEvent): string {
    if (e.kind === 'suppressed') return `suppressed ${e.count}`;
    if (e.kind === 'error') return `error ${e.code}`;
    const name = this.programs.get(e.generation)?.doors[e.door]?.name ?? `door${e.door}`;
    const who = `${name}@${ALIAS[e.source] ?? e.source}`;
    if (e.kind === 'stage') return `${who} S${e.stage}`;
    if (e.kind === 'completed') return `${who} OPEN`;
    if (e.kind === 'spa') return `${who} SPA ${Buffer.from(e.payload).toString('latin1')}`;
    if (e.kind !== 'failed') return `${who} ?`;
    return `${who} ${e.reason === 'wrong_port' ? 'wrong' : e.reason}(${e.stage})`;
  }

  /** The time of the last event in seconds after T0. */
  lastTime(): number {
    const e = this.events[this.events.length - 1];
    return (e.timeUs - T0) / 1e6;
  }
}

const ZERO: MatcherStats = {
  frames: 0,
  malformed: 0,
  notKnock: 0,
  invisible: 0,
  visible: 0,
  stages: 0,
  completed: 0,
  failedTimeout: 0,
  failedWrongPort: 0,
  evicted: 0,
  suppressed: 0,
  evictedProgressed: 0,
  tracked: 0,
  spaAccepted: 0,
  spaRejected: 0,
};

function assertStats(run: Run, expected: Partial<MatcherStats>): void {
  assert.deepEqual(run.stats(), { ...ZERO, ...expected });
}

const OPEN3 = (d: string, who: string) => [`${d}@${who} S1`, `${d}@${who} S2`, `${d}@${who} S3`, `${d}@${who} OPEN`];

export function runMatcherSuite(name: string, make: () => Matcher): void {
  const run = (cfg: KnockdConfig, opts: Partial<CompileOptions> = {}) => new Run(make(), cfg, opts);

  describe(`${name}: conformance table`, () => {
    test('row 1: C1 A 7000@0, 8000@1, 9000@2 -> S1, S2, S3, OPEN once', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 1), k(A, 9000, 2)), OPEN3('A', 'A'));
      assertStats(r, { frames: 3, visible: 3, stages: 3, completed: 1 });
    });

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

    test('row 7: C1 7000, 9000, 8000, 9000 -> S1 only (9000 invalidates, 8000 does not start)', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 9000, 1), k(A, 8000, 2), k(A, 9000, 3)), ['A@A S1', 'A@A wrong(1)']);
      assertStats(r, { frames: 4, visible: 4, stages: 1, failedWrongPort: 1 });
    });

    test('row 8: C1 tcp/1234 is invisible and harmless', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 1234, 0.5), k(A, 8000, 1), k(A, 9000, 2)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

    test('row 9: C1 udp/8000 is invisible', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(...seq(A, 'tcp/7000', 'udp/8000', 'tcp/8000', 'tcp/9000')), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
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

    test('row 20: C2 (tcpflags=syn) the ACK to 8000 is invisible', () => {
      const r = run(CONFIGS.C2());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 0.1, { flags: TCP.ACK }), k(A, 8000, 0.2), k(A, 9000, 0.3)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

    test("row 21: C3 an ACK visible through B is ignored by A's flag check; B never starts", () => {
      const r = run(CONFIGS.C3());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 0.1, { flags: TCP.ACK }), k(A, 8000, 0.2), k(A, 9000, 0.3)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, visible: 4, stages: 3, completed: 1 });
    });

    test('row 22: C1 (no tcpflags) an ACK is a wrong knock -> S1 only', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.1, { flags: TCP.ACK }), k(A, 8000, 0.2), k(A, 9000, 0.3)), ['A@A S1', 'A@A wrong(1)']);
    });

    test('row 23: C15 (syn,!ack) SYN+ACK packets are never seen', () => {
      const r = run(CONFIGS.C15());
      const SA = TCP.SYN | TCP.ACK;
      assert.deepEqual(
        r.feed(k(A, 7000, 0, { flags: SA }), k(A, 7000, 0.1), k(A, 8000, 0.2, { flags: SA }), k(A, 8000, 0.3), k(A, 9000, 0.4)),
        OPEN3('A', 'A'),
      );
      assertStats(r, { frames: 5, invisible: 2, visible: 3, stages: 3, completed: 1 });
    });

    test('row 24: C7 udp/7000, tcp/8000, udp/9000 opens', () => {
      const r = run(CONFIGS.C7());
      assert.deepEqual(r.feed(...seq(A, 'udp/7000', 'tcp/8000', 'udp/9000')), OPEN3('A', 'A'));
    });

    test('row 25: C7 wrong-protocol packets are invisible', () => {
      const r = run(CONFIGS.C7());
      assert.deepEqual(r.feed(...seq(A, 'udp/7000', 'udp/8000', 'tcp/9000', 'tcp/8000', 'udp/9000')), OPEN3('A', 'A'));
      assertStats(r, { frames: 5, invisible: 2, visible: 3, stages: 3, completed: 1 });
    });

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

    test('row 35: C11 (target 192.0.2.77) a knock to the local address is invisible; to the target opens', () => {
      const r = run(CONFIGS.C11());
      const to77 = { dst: '192.0.2.77' };
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.1, to77), k(A, 8000, 0.2, to77), k(A, 9000, 0.3, to77)), OPEN3('A', 'A'));
      assertStats(r, { frames: 4, invisible: 1, visible: 3, stages: 3, completed: 1 });
    });

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

    test('row 39: C13 two single-knock successes 0.5 s apart -> 2× (S1, OPEN)', () => {
      const r = run(CONFIGS.C13());
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.5)), ['A@A S1', 'A@A OPEN', 'A@A S1', 'A@A OPEN']);
      assertStats(r, { frames: 2, visible: 2, stages: 2, completed: 2 });
    });

    test('row 40: C1 seq_timeout=0 -> S1, timeout(1); C9 command=exit 3 -> S1, OPEN', () => {
      const r = run(config([door('A', '7000,8000,9000', { seqTimeout: 0 })]));
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 8000, 1)), ['A@A S1', 'A@A timeout(1)']);
      assert.equal(r.lastTime(), 0, 'a zero timeout is due at the first knock');
      const r9 = run(config([door('A', '7000', { startCommand: 'exit 3' })]));
      assert.deepEqual(r9.feed(k(A, 7000, 0)), ['A@A S1', 'A@A OPEN']);
    });
  });

  describe(`${name}: deviations`, () => {
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

  describe(`${name}: extensions and program flags`, () => {
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

    test('IGNORE_IPV6: IPv6 knocks are invisible', () => {
      const r = run(CONFIGS.C1(), { ignoreIpv6: true });
      assert.deepEqual(r.feed(...seq(S, 7000, 8000, 9000)), []);
      assert.deepEqual(r.feed(...seq(A, 7000, 8000, 9000).map((p) => ({ ...p, t: p.t + 1 }))), OPEN3('A', 'A'));
      assertStats(r, { frames: 6, invisible: 3, visible: 3, stages: 3, completed: 1 });
    });

    test('ALL_LOCAL: every destination is local', () => {
      const other = { dst: '203.0.113.9' };
      const r = run(CONFIGS.C1(), { allLocal: true });
      assert.deepEqual(r.feed(k(A, 7000, 0, other), k(A, 8000, 0.1, other), k(A, 9000, 0.2, other)), OPEN3('A', 'A'));
      const strict = run(CONFIGS.C1());
      assert.deepEqual(strict.feed(k(A, 7000, 0, other)), []);
      assertStats(strict, { frames: 1, invisible: 1 });
    });

    test('targets: a target door and a local door are independent attempts of one source', () => {
      const r = run(config([door('L', '7000,8000,9000'), door('T', '7000,8000,9000', { target: '192.0.2.77' })]));
      const to77 = { dst: '192.0.2.77' };
      assert.deepEqual(r.feed(k(A, 7000, 0), k(A, 7000, 0.1, to77), k(A, 8000, 0.2, to77), k(A, 8000, 0.3)), [
        'L@A S1',
        'T@A S1',
        'T@A S2',
        'L@A S2',
      ]);
      assert.equal(r.stats().tracked, 2);
      assert.deepEqual(r.feed(k(A, 1234, 0.4, to77), k(A, 9000, 0.5, to77), k(A, 9000, 0.6)), ['T@A S3', 'T@A OPEN', 'L@A S3', 'L@A OPEN']);
    });

    test('targets: an IPv6 target', () => {
      const r = run(config([door('T', '7000,8000', { target: 'fd00::77' })]));
      const to = { dst: 'fd00::77' };
      assert.deepEqual(r.feed(k(S, 7000, 0, to), k(S, 8000, 0.1, to)), ['T@S S1', 'T@S S2', 'T@S OPEN']);
      assert.deepEqual(r.feed(k(S, 7000, 1)), [], 'not to the local address');
    });

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

  describe(`${name}: frames`, () => {
    const good = (port: number, t: number, shape: IpShape & LinkShape = {}) => frameOf(k(A, port, t, { shape }));
    const damaged = (t: number, edit: (f: Uint8Array) => Uint8Array, shape: IpShape & LinkShape = {}): CapturedFrame => {
      const f = good(7000, t, shape);
      return { ...f, data: edit(f.data.slice()) };
    };
    const ETH = 14;

    test('malformed frames are counted and skipped', () => {
      const r = run(CONFIGS.C1());
      const frames = [
        damaged(0, () => new Uint8Array(0)), // zero length
        damaged(0, (f) => f.subarray(0, 10)), // truncated Ethernet header
        damaged(0, (f) => f.subarray(0, ETH + 19)), // truncated IPv4 header
        damaged(0, (f) => ((f[ETH] = 0x44), f)), // IHL 4
        damaged(0, (f) => ((f[ETH] = 0x4f), f)), // IHL 15: 60 bytes > captured
        damaged(0, (f) => ((f[ETH + 2] = 0), (f[ETH + 3] = 19), f)), // total length < header
        damaged(0, (f) => ((f[ETH] = 0x55), f)), // version 5 in an IPv4 ethertype
        damaged(0, (f) => f.subarray(0, ETH + 20 + 19)), // truncated TCP
        damaged(0, (f) => ((f[ETH + 20 + 12] = 0x40), f)), // TCP data offset 4
        damaged(0, (f) => ((f[ETH + 2] = 0), (f[ETH + 3] = 30), f)), // total length cuts TCP short
        frameOf(k(A, 'udp/7000', 0, { shape: {} })).data.subarray(0, ETH + 20 + 7),
      ].map((x) => (x instanceof Uint8Array ? { data: x.slice(), timeUs: us(0), linkType: LinkType.ETHERNET } : x));
      const six = (edit: (f: Uint8Array) => Uint8Array, shape: IpShape = {}): CapturedFrame => {
        const f = frameOf(k(S, 7000, 0, { shape }));
        return { ...f, data: edit(f.data.slice()) };
      };
      frames.push(
        six((f) => f.subarray(0, ETH + 39)), // truncated IPv6 header
        six((f) => ((f[ETH] = 0x40), f)), // version 4 in an IPv6 ethertype
        six((f) => f, { ipv6Extensions: [0, 60, 43, 60, 0, 60, 43, 60, 60] }), // 9 extension headers
        six((f) => f.subarray(0, ETH + 40 + 5), { ipv6Extensions: [60] }), // extension header cut off
        six((f) => ((f[ETH + 41] = 9), f), { ipv6Extensions: [60] }), // extension length past the end
        six((f) => f.subarray(0, ETH + 40 + 19)), // truncated TCP after IPv6
      );
      frames.push({ ...good(7000, 0, { link: LinkType.LINUX_SLL }), data: new Uint8Array(15) });
      frames.push({ ...good(7000, 0, { link: LinkType.LINUX_SLL2 }), data: new Uint8Array(19) });
      frames.push({ ...good(7000, 0, { link: LinkType.RAW }), data: new Uint8Array(0) });
      frames.push({ ...good(7000, 0, { link: LinkType.ETHERNET, vlan: [0x8100] }), data: good(7000, 0, { vlan: [0x8100] }).data.subarray(0, 16) });
      assert.deepEqual(r.feedFrames(frames), []);
      assert.deepEqual(r.feed(k(A, 7000, 1), k(A, 8000, 1.1), k(A, 9000, 1.2)), OPEN3('A', 'A'), 'the matcher is unharmed');
      assertStats(r, { frames: frames.length + 3, malformed: frames.length, visible: 3, stages: 3, completed: 1 });
    });

    test('valid frames that are not knocks are counted as such', () => {
      const r = run(CONFIGS.C1());
      const notKnocks = [
        good(7000, 0, { fragment: { offset: 0, more: true } }),
        good(7000, 0, { fragment: { offset: 10, more: false } }),
        good(7000, 0, { otherProtocol: 1 }),
        good(7000, 0, { vlan: [0x88a8, 0x8100, 0x8100] }), // a third tag
        { ...good(7000, 0), linkType: 147 }, // unknown link type
        damaged(0, (f) => ((f[12] = 0x08), (f[13] = 0x06), f)), // ARP ethertype
        damaged(0, (f) => ((f[0] = 0x81), (f[1] = 0x00), f), { link: LinkType.LINUX_SLL2 }), // SLL2 has no VLAN tags
        frameOf(k(S, 7000, 0, { shape: { fragment: { offset: 0, more: true } } })),
        frameOf(k(S, 7000, 0, { shape: { fragment: { offset: 8, more: false } } })),
        frameOf(k(S, 7000, 0, { shape: { otherProtocol: 58 } })),
        frameOf(k(S, 7000, 0, { shape: { ipv6Extensions: [0], otherProtocol: 59 } })),
        { ...good(7000, 0, { link: LinkType.RAW }), data: Uint8Array.of(0x50, ...new Uint8Array(39)) }, // raw, version 5
      ];
      assert.deepEqual(r.feedFrames(notKnocks), []);
      assertStats(r, { frames: notKnocks.length, notKnock: notKnocks.length });
    });

    test('every link type, VLAN tags, IPv4 options and IPv6 extension headers carry knocks', () => {
      const r = run(CONFIGS.C1());
      const frames = [
        good(7000, 0, { vlan: [0x8100] }),
        good(8000, 0.1, { vlan: [0x88a8, 0x8100] }),
        good(9000, 0.2, { link: LinkType.LINUX_SLL, ipv4Options: 8 }),
        good(7000, 1, { link: LinkType.LINUX_SLL2 }),
        good(8000, 1.1, { link: LinkType.RAW }),
        good(9000, 1.2, { link: LinkType.IPV4, ipv4Options: 40 }),
        frameOf(k(S, 7000, 2, { shape: { ipv6Extensions: [0, 43, 60, 51, 60, 60, 43], fragment: { offset: 0, more: false } } })),
        frameOf(k(S, 8000, 2.1, { shape: { link: LinkType.IPV6 } })),
        frameOf(k(S, 9000, 2.2, { shape: { link: LinkType.LINUX_SLL, vlan: [0x9100] } })),
      ];
      assert.deepEqual(r.feedFrames(frames), [...OPEN3('A', 'A'), ...OPEN3('A', 'A'), ...OPEN3('A', 'S')]);
      assertStats(r, { frames: 9, visible: 9, stages: 9, completed: 3 });
    });

    test('IPv4 total length shorter than the capture (Ethernet padding) still parses; a payload length of 0 means the capture', () => {
      const r = run(CONFIGS.C9());
      const padded = good(7000, 0);
      const data = new Uint8Array(padded.data.length + 6);
      data.set(padded.data);
      const jumbo = frameOf(k(S, 7000, 0.1));
      jumbo.data[ETH + 4] = 0;
      jumbo.data[ETH + 5] = 0;
      assert.deepEqual(r.feedFrames([{ ...padded, data }, jumbo]), ['A@A S1', 'A@A OPEN', 'A@S S1', 'A@S OPEN']);
    });

    test('an empty batch does nothing', () => {
      const r = run(CONFIGS.C1());
      assert.deepEqual(r.feedFrames([]), []);
      assertStats(r, {});
    });
  });

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

  describe(`${name}: derived doors (MATCHER.md §10)`, () => {
    // The test doors step every 10 s and T0 is a whole multiple of 10 s: window w(t) starts at t = 10·k.
    const D = derivedDoor('D');
    const w = (t: number): number => windowOf(us(t), 10);
    /** The knocks of `src` for door d's sequence of `window`, 0.1 s apart from t. */
    const knocks = (d: DoorConfig, src: string, window: number, t: number, from = src): PacketSpec[] =>
      portSpecs(sequenceFor(d, from, window)).map((port, i) => k(src, port, t + i / 10));
    const OPEN4 = (who: string, door = 'D') => [...[1, 2, 3, 4].map((n) => `${door}@${who} S${n}`), `${door}@${who} OPEN`];
    const opened = (lines: string[]) => lines.some((l) => l.endsWith(' OPEN'));

    test('the sequence derived for the source and the current window opens the door', () => {
      const r = run(config([D]));
      assert.deepEqual(r.feed(...knocks(D, A, w(1), 1)), OPEN4('A'));
      assert.deepEqual(r.feed(...knocks(D, S, w(2), 2)), OPEN4('S'), 'IPv6 sources too');
      assertStats(r, { frames: 8, visible: 8, stages: 8, completed: 2 });
    });

    test("a captured sequence replayed from another source fails", () => {
      const r = run(config([D]));
      assert.equal(opened(r.feed(...knocks(D, B, w(1), 1, A))), false);
      assert.deepEqual(r.feed(...knocks(D, A, w(2), 2)), OPEN4('A'), 'while the owner still opens');
    });

    test('a sequence that opened the door does not open it again in its window; the next window has a new one', () => {
      const r = run(config([D]));
      assert.deepEqual(r.feed(...knocks(D, A, w(1), 1)), OPEN4('A'));
      assert.equal(opened(r.feed(...knocks(D, A, w(1), 3))), false, 'replayed in the same window');
      assert.equal(opened(r.feed(...knocks(D, A, w(1), 11))), false, 'replayed in the next window (w−1 is used)');
      assert.deepEqual(r.feed(...knocks(D, A, w(12), 12)), OPEN4('A'));
    });

    test('a sequence replayed two windows later fails', () => {
      const r = run(config([D]));
      assert.equal(opened(r.feed(...knocks(D, A, w(1), 21))), false);
      assert.equal(r.stats().completed, 0);
    });

    test('clock skew: windows w−1 and w+1 are accepted, w−2 and w+2 are not', () => {
      const r = run(config([D]));
      const t = 15; // w(15) = w(0) + 1
      assert.deepEqual(r.feed(...knocks(D, A, w(t) - 1, t)), OPEN4('A'), 'w−1');
      assert.deepEqual(r.feed(...knocks(D, B, w(t) + 1, t)), OPEN4('B'), 'w+1');
      assert.equal(opened(r.feed(...knocks(D, '198.51.100.3', w(t) - 2, t))), false, 'w−2');
      assert.equal(opened(r.feed(...knocks(D, '198.51.100.4', w(t) + 2, t))), false, 'w+2');
      // the window is the one of the first knock: a sequence started at the last moment of w completes in w+1
      assert.deepEqual(r.feed(...knocks(D, S, w(19.9), 19.9)), OPEN4('S'), 'across a window edge');
    });

    test('a completion carries the window it used (the fleet decides that window once, MATCHER.md §7)', () => {
      const windows = (r: ReturnType<typeof run>) => r.events.flatMap((e) => (e.kind === 'completed' ? [e.window] : []));
      const t = 15;
      const r = run(config([D]));
      r.feed(...knocks(D, A, w(t) - 1, t), ...knocks(D, B, w(t) + 1, t + 1), ...knocks(D, S, w(19.9), 19.9));
      assert.deepEqual(windows(r), [w(t) - 1, w(t) + 1, w(19.9)], "w−1, w+1, and across an edge the first knock's window");
      const one = derivedDoor('O', { sequenceLength: 1 });
      const r1 = run(config([one]));
      r1.feed(...knocks(one, A, w(t) + 1, t));
      assert.deepEqual(windows(r1), [w(t) + 1], 'a one-step door');
      const fixed = run(config([door('P', '7000,8000', { seqTimeout: 5 })]));
      fixed.feed(k(B, 7000, 1), k(B, 8000, 1.1));
      assert.deepEqual(windows(fixed), [0], 'a fixed door: 0');
    });

    test('a sequence derived from another secret fails', () => {
      const r = run(config([D]));
      const wrong = portSpecs(sequenceFor(D, A, w(1), OTHER_KEY)).map((port, i) => k(A, port, 1 + i / 10));
      assert.equal(opened(r.feed(...wrong)), false);
    });

    test('a scan of the whole port range does not open the door', () => {
      const r = run(config([D]));
      const scan = range(40000, 40999).map((port, i) => k(A, port, 1 + i / 1000));
      assert.equal(opened(r.feed(...scan)), false);
      const st = r.stats();
      assert.equal(st.visible, 1000);
      assert.equal(st.completed, 0);
      assert.equal(st.stages, st.failedWrongPort + st.tracked, 'every attempt the scan started died at the next port');
    });

    test('ports outside the range, other protocols and refused TCP flags are invisible', () => {
      const r = run(config([derivedDoor('D', {}, { tcpflags: 'syn' })]));
      r.feed(k(A, 39999, 1), k(A, 41000, 1.1), k(A, 'udp/40500', 1.2), k(A, 40500, 1.3, { flags: TCP.ACK }), k(A, 40500, 1.4));
      assert.equal(r.stats().invisible, 4);
      assert.equal(r.stats().visible, 1);
    });

    test("only a client's SYN counts: the RST, RST+ACK or SYN+ACK answering a knock on this host is invisible", () => {
      // knocking 127.0.0.1 puts the kernel's answers to each knock on the same capture, addressed to the
      // client's ephemeral port, which may lie in the range; knockd-style doors still count them (knockd does)
      const r = run(config([D]));
      const [s0, s1, s2, s3] = knocks(D, A, w(1), 1);
      const reply = (t: number, flags: number) => k(A, 40500, t, { flags });
      assert.deepEqual(r.feed(s0, reply(1.05, TCP.RST | TCP.ACK), s1, reply(1.15, TCP.RST), s2, reply(1.25, TCP.SYN | TCP.ACK), s3), OPEN4('A'));
      assertStats(r, { frames: 7, invisible: 3, visible: 4, stages: 4, completed: 1 });
      const plain = run(config([door('P', '7000,40500', { seqTimeout: 5 })]));
      assert.deepEqual(plain.feed(k(A, 7000, 1), reply(1.1, TCP.RST | TCP.ACK)), ['P@A S1', 'P@A S2', 'P@A OPEN'], 'a knockd door counts any TCP packet');
    });

    test('Bind_Source = no: the sequence of the window opens from any source, once per source', () => {
      const free = derivedDoor('F', { bindSource: false });
      const r = run(config([free]));
      assert.deepEqual(r.feed(...knocks(free, B, w(1), 1, A)), OPEN4('B', 'F'));
      assert.deepEqual(r.feed(...knocks(free, S, w(1), 2, A)), OPEN4('S', 'F'));
      assert.equal(opened(r.feed(...knocks(free, B, w(1), 3, A))), false, 'used by B in this window');
    });

    test('two protocols and two HMAC blocks: Sequence_Length = 6 over tcp,udp', () => {
      const long = derivedDoor('L', { sequenceLength: 6, protocols: ['tcp', 'udp'] });
      const r = run(config([long]));
      const steps = sequenceFor(long, A, w(1));
      assert.deepEqual(new Set(steps.map((s) => s.proto)), new Set(['tcp', 'udp']), 'the test key mixes both protocols');
      const lines = r.feed(...knocks(long, A, w(1), 1));
      assert.deepEqual(lines, [...[1, 2, 3, 4, 5, 6].map((n) => `L@A S${n}`), 'L@A OPEN']);
    });

    test('Sequence_Length = 1 opens at the first knock, once per source and window', () => {
      const one = derivedDoor('O', { sequenceLength: 1 });
      const r = run(config([one]));
      assert.deepEqual(r.feed(...knocks(one, A, w(1), 1)), ['O@A S1', 'O@A OPEN']);
      assert.deepEqual(r.feed(...knocks(one, A, w(1), 2)), [], 'used');
      assertStats(r, { frames: 2, visible: 2, stages: 1, completed: 1 });
    });

    test('a derived attempt times out, fails on a wrong port, and survives a reload of the same config', () => {
      const cfg = config([D]);
      const r = run(cfg);
      const [s0, , s2] = knocks(D, A, w(1), 1);
      assert.deepEqual(r.feed(s0), ['D@A S1']);
      assert.deepEqual(r.tick(6.5), ['D@A timeout(1)']);
      assert.deepEqual(r.feed({ ...s0, t: 7 }, { ...s2, t: 7.1 }), ['D@A S1', 'D@A wrong(1)']);
      const again = knocks(D, A, w(8), 8);
      assert.deepEqual(r.feed(again[0], again[1]), ['D@A S1', 'D@A S2']);
      r.load(cfg);
      assert.deepEqual(r.feed(again[2], again[3]), ['D@A S3', 'D@A S4', 'D@A OPEN']);
    });

    test('a derived door and fixed doors share a destination: each source has one attempt at a time', () => {
      const fixed = door('X', '7000,8000', { seqTimeout: 5 });
      const r = run(config([fixed, D]));
      const [s0] = knocks(D, A, w(1), 1);
      assert.deepEqual(r.feed(s0), ['D@A S1']);
      assert.deepEqual(r.feed(k(A, 7000, 1.1)), ['D@A wrong(1)'], "X's first knock goes to the live derived attempt");
      assert.deepEqual(r.feed(k(A, 7000, 1.2), k(A, 8000, 1.3)), ['X@A S1', 'X@A S2', 'X@A OPEN']);
      assert.deepEqual(r.feed(...knocks(D, A, w(2), 2)), OPEN4('A'));
      assertStats(r, { frames: 8, visible: 8, stages: 7, completed: 2, failedWrongPort: 1 });
    });
  });
}
