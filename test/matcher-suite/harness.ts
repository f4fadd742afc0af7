// What every group of the conformance suite uses: the table's sources and addresses, packets written as
// `k(A, 7000, 0.5)`, and a Run (one matcher and the programs it loaded) that renders events as short lines.
import assert from 'node:assert/strict';
import type { KnockdConfig, StepProto } from '../../src/config/types.js';
import { decodeEvents, type KnockEvent } from '../../src/match/events.js';
import { batchFromFrames, type CapturedFrame } from '../../src/match/frame.js';
import { LinkType, type Matcher, type MatcherStats } from '../../src/match/matcher-api.js';
import type { CompiledProgram, CompileOptions } from '../../src/config/program.js';
import { compile } from '../helpers/doors.js';
import { knockFrame, TCP, type IpShape, type LinkShape } from '../helpers/packets.js';
import { T0 } from '../helpers/env.js';

export const A = '198.51.100.1';
export const B = '198.51.100.2';
export const S = '2001:db8::5';
const ALIAS: Record<string, string> = { [A]: 'A', [B]: 'B', [S]: 'S', '198.51.100.3': 'C', '198.51.100.4': 'D', '198.51.100.5': 'E', '198.51.100.6': 'F' };
export const LOCAL4 = '192.0.2.2';
export const LOCAL6 = 'fd00::2';
/** A whole second, so budget windows and knockd's seconds line up with the table's times. */
export const us = (seconds: number): number => T0 + Math.round(seconds * 1e6);

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
export function k(src: string, port: number | string, t: number, more: Partial<PacketSpec> = {}): PacketSpec {
  return { src, port, t, ...more };
}

/** Packets at t = 0, 0.1, 0.2, … for `knocks(A, 7000, 8000, 'udp/9000')`. */
export function seq(src: string, ...ports: (number | string)[]): PacketSpec[] {
  return ports.map((port, i) => k(src, port, i / 10));
}

export function frameOf(p: PacketSpec): CapturedFrame {
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
export class Run {
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

export function assertStats(run: Run, expected: Partial<MatcherStats>): void {
  assert.deepEqual(run.stats(), { ...ZERO, ...expected });
}

/** The lines of a three-step door opening for a source. */
export const OPEN3 = (d: string, who: string) => [`${d}@${who} S1`, `${d}@${who} S2`, `${d}@${who} S3`, `${d}@${who} OPEN`];

/** What a group gets: the matcher's name, a fresh matcher, and a Run on a fresh matcher. */
export interface Suite {
  name: string;
  make: () => Matcher;
  run: (cfg: KnockdConfig, opts?: Partial<CompileOptions>) => Run;
}
