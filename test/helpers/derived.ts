// Derived doors for tests (docs/MATCHER.md §10): a door config with a fixed test key, and the sequence a
// source must knock in a window, computed by src/derive.ts (node:crypto), independent of both matchers.
import { parseAddress } from '../../src/address.js';
import type { DerivedDoor, DoorConfig } from '../../src/config/types.js';
import { deriveSequence, type DerivedStep } from '../../src/derive.js';
import { portRanges } from '../../src/program.js';
import { door, type DoorShape } from './doors.js';

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
