// Derived doors for tests (docs/MATCHER.md §10): a door config with a fixed test key, and the sequence a
// source must knock in a window, computed by src/match/derive.ts (node:crypto), independent of both matchers.
import { parseAddress } from '../../src/address.js';
import type { DerivedDoor, DoorConfig, StepProto } from '../../src/config/types.js';
import { deriveSequence, windowOf, type DerivedStep } from '../../src/match/derive.js';
import type { CapturedFrame } from '../../src/match/frame.js';
import { LinkType } from '../../src/match/matcher-api.js';
import { portRanges } from '../../src/config/program.js';
import { door, type DoorShape } from './doors.js';
import { knockFrame, rng, TCP } from './packets.js';
import { T0 } from './env.js';

export const TEST_KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + 1) & 0xff);
export const OTHER_KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 11 + 3) & 0xff);

export const range = (lo: number, hi: number): number[] => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);

/** A derived door: 4 TCP steps from 40000-40999, a 10 s time step, bound to the source, 5 s timeout. */
export function derivedDoor(name: string, derived: Partial<DerivedDoor> = {}, shape: DoorShape = {}): DoorConfig {
  return door(name, '', {
    seqTimeout: 5,
    ...shape,
    derived: {
      secretFile: '/test/derived.key',
      key: TEST_KEY,
      sequenceLength: 4,
      ports: range(40000, 40999),
      protocols: ['tcp'],
      timeStep: 10,
      bindSource: true,
      ...derived,
    },
  });
}

/** The sequence `src` must knock for door d in `window` (with another key if given). */
export function sequenceFor(d: DoorConfig, src: string, window: number, key?: Uint8Array): DerivedStep[] {
  const x = d.derived!;
  const a = parseAddress(src);
  if (!a) throw new Error(`test helper: bad address ${src}`);
  return deriveSequence(
    {
      key: key ?? x.key,
      sequenceLength: x.sequenceLength,
      ranges: portRanges(x.ports),
      protocols: x.protocols,
      timeStep: x.timeStep,
      bindSource: x.bindSource,
    },
    window,
    a.family,
    a.bytes,
  );
}

/** 'tcp/40123' style port specs of a derived sequence. */
export const portSpecs = (steps: DerivedStep[]): string[] => steps.map((s) => `${s.proto}/${s.port}`);

// ---- seeded traces with derived doors (the differential test) ----

export interface DerivedTraceOptions {
  seed: number;
  packets: number;
  /** the config's doors: derived ones are knocked per source and window, fixed ones by their steps */
  doors: DoorConfig[];
  sources: number;
  startUs?: number;
}

/**
 * A trace that exercises derived doors' corners: right sequences for windows w−2..w+2, replays of other
 * sources' sequences, repeats (duplicates and reuse after opening), random ports in and next to the
 * ranges, refused TCP flags, knocks on fixed doors, time steps across window edges, small steps back,
 * and gaps longer than the timer wheel.
 */
export function derivedTrace(opts: DerivedTraceOptions): CapturedFrame[] {
  const rand = rng(opts.seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)];
  const derived = opts.doors.filter((d) => d.derived);
  const fixed = opts.doors.filter((d) => d.sequence.length > 0);
  if (derived.length === 0) throw new Error('derivedTrace needs a derived door');
  const sources = Array.from({ length: opts.sources }, (_, i) => {
    const n = (i >> 1) + 1;
    return i % 2 === 0 ? `198.51.100.${n}` : i % 6 === 1 ? `::ffff:198.51.100.${n}` : `2001:db8::${n.toString(16)}`;
  });
  const cache = new Map<string, DerivedStep[]>();
  const sequence = (d: DoorConfig, src: string, window: number): DerivedStep[] => {
    const key = `${d.name}/${src}/${window}`;
    let steps = cache.get(key);
    if (!steps) cache.set(key, (steps = sequenceFor(d, src, window)));
    return steps;
  };
  const progress = new Map<string, { steps: DerivedStep[]; next: number }>();
  const last = new Map<string, { dport: number; proto: StepProto; flags: number; dst: string }>();
  const links = [LinkType.ETHERNET, LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.RAW];
  const frames: CapturedFrame[] = [];
  let now = (opts.startUs ?? T0) + Math.floor(rand() * 5_000_000);

  while (frames.length < opts.packets) {
    const t = rand();
    if (t < 0.75) now += Math.floor(rand() * 300_000);
    else if (t < 0.85) {
      const stepUs = pick(derived).derived!.timeStep * 1e6;
      now = Math.max(now, (Math.floor(now / stepUs) + 1) * stepUs + pick([-1, 0, 1, -100_000]));
    } else if (t < 0.9) now -= Math.floor(rand() * 1_000_000);
    else if (t < 0.92) now += 70_000_000 + Math.floor(rand() * 30_000_000);
    else now += Math.floor(rand() * 8_000_000);

    const src = pick(sources);
    const roll = rand();
    let dport: number;
    let proto: StepProto;
    let flags: number = rand() < 0.05 ? TCP.ACK : TCP.SYN;
    let door = pick(derived);
    if (roll < 0.45) {
      // the source's own sequence, started for a window near now
      let p = progress.get(src);
      if (!p || p.next >= p.steps.length || rand() < 0.05) {
        const window = windowOf(now, door.derived!.timeStep) + pick([-2, -1, 0, 0, 0, 0, 1, 2]);
        p = { steps: sequence(door, src, window), next: 0 };
        progress.set(src, p);
      }
      ({ port: dport, proto } = p.steps[p.next++]);
    } else if (roll < 0.6) {
      // a replay: another source's sequence step
      const other = progress.get(pick(sources));
      if (!other) continue;
      ({ port: dport, proto } = other.steps[Math.floor(rand() * other.steps.length)]);
    } else if (roll < 0.75) {
      const ports = door.derived!.ports;
      dport = rand() < 0.9 ? pick(ports) : pick([ports[0] - 1, ports[ports.length - 1] + 1]);
      proto = rand() < 0.7 ? 'tcp' : 'udp';
    } else if (roll < 0.88) {
      const previous = last.get(src);
      if (!previous) continue;
      ({ dport, proto, flags } = previous);
    } else if (fixed.length > 0) {
      door = pick(fixed);
      ({ port: dport, proto } = pick(door.sequence));
    } else continue;
    const six = src.includes(':');
    const dst = door.target ?? (six ? 'fd00::2' : '192.0.2.2');
    if (dst.includes(':') !== six) continue;
    const link = pick(links);
    frames.push({ data: knockFrame({ src, dst, dport, proto, flags }, { link }), timeUs: now, linkType: link });
    last.set(src, { dport, proto, flags, dst });
  }
  return frames;
}
