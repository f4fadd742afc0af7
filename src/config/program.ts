// Config -> the flat, versioned door program that both matchers load (layout: docs/MATCHER.md §6).
// "TS validates, native trusts": everything the matchers rely on is checked here.
import { createHash } from 'node:crypto';
import { addressWords, type Address } from '../address.js';
import { DERIVED_TCP_FLAGS, type DoorConfig, type KnockdConfig, type SpaDoor, type Step } from './types.js';

export const PROGRAM_MAGIC = 0x3150464b; // "KFP1"
export const PROGRAM_VERSION = 1;
export const HEADER_WORDS = 16;
export const ADDRESS_WORDS = 5;
export const DOOR_HEADER_WORDS = 7;
/** a derived door's words after its header: timeStep, protocols, bindSource, keyBytes (MATCHER.md §10) */
export const DERIVED_WORDS = 4;
export const MAX_STEPS = 32;
export const MAX_COHORT = 8;
export const MAX_TARGETS = 255;
/** door numbers are 16 bits in event records */
export const MAX_DOORS = 65535;

export const ProgramFlag = { STAGE_EVENTS: 1, ALL_LOCAL: 2, IGNORE_IPV6: 4 } as const;
export const DoorOption = { ALLOW_DUPLICATES: 1, DERIVED: 2, SPA: 4 } as const;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
/** An ICMP/ICMPv6 echo request step; its port is the echo payload length (docs/MATCHER.md §3, §6). */
export const PROTO_ICMP = 1;
const STEP_PROTO = { tcp: PROTO_TCP, udp: PROTO_UDP, icmp: PROTO_ICMP } as const;

export const Header = {
  MAGIC: 0,
  VERSION: 1,
  GENERATION: 2,
  FLAGS: 3,
  MAX_TRACKED: 4,
  EVENT_BUDGET: 5,
  N_LOCAL: 6,
  N_TARGETS: 7,
  N_DOORS: 8,
  TOTAL_WORDS: 9,
} as const;

export const DEFAULT_EVENT_BUDGET = 2000;

export interface CompileOptions {
  /** the capture host's addresses (the visibility set's default destinations) */
  localAddresses: Address[];
  /** every destination counts as local (replay without an interface or --local-address) */
  allLocal?: boolean;
  /** -4: IPv6 packets are invisible */
  ignoreIpv6?: boolean;
  /** emit STAGE events (the daemon's logs want them) */
  stageEvents?: boolean;
  /** STAGE+FAILED events per second per matcher shard before folding into SUPPRESSED; 0 = unlimited */
  eventBudget?: number;
  /** overrides config.options.maxTracked (a capture engine divides it among its shards) */
  maxTracked?: number;
  generation?: number;
}

export interface CompiledProgram {
  words: Uint32Array;
  /** door index in the program -> the config door it came from */
  doors: DoorConfig[];
  generation: number;
}

export class ProgramError extends Error {}

export const stepWord = (s: Step): number => (s.port | (STEP_PROTO[s.proto] << 16)) >>> 0;

/** A hash of everything that defines a door's matching, so a reload can keep its attempts (MATCHER.md §5). */
export function doorFingerprint(d: DoorConfig): number {
  const h = createHash('sha256');
  h.update(
    JSON.stringify([
      d.name,
      d.target ?? null,
      d.sequence.map(stepWord),
      d.seqTimeout,
      d.tcpFlags.mustSet,
      d.tcpFlags.mustClear,
      d.allowDuplicates,
      d.derived
        ? [
            d.derived.ports,
            d.derived.protocols,
            d.derived.sequenceLength,
            d.derived.timeStep,
            d.derived.bindSource,
            createHash('sha256').update(d.derived.key).digest('hex'),
          ]
        : null,
      d.spa ? [d.spa.port, createHash('sha256').update(d.spa.hmacKey).digest('hex')] : null,
    ]),
  );
  return h.digest().readUInt32LE(0);
}

let nextGeneration = 1;

/** Doors that can match: a door without a sequence (exhausted one-time file) is left out. */
export function compileProgram(config: KnockdConfig, opts: CompileOptions): CompiledProgram {
  const doors = config.doors.filter((d) => (d.sequence.length > 0 || d.derived || d.spa) && (d.target === undefined || d.targetAddress));
  if (doors.length > MAX_DOORS) throw new ProgramError(`at most ${MAX_DOORS} doors are supported (the configuration has ${doors.length})`);
  const generation = opts.generation ?? nextGeneration++;
  const maxTracked = opts.maxTracked ?? config.options.maxTracked;
  if (!Number.isInteger(maxTracked) || maxTracked < 1 || maxTracked > 0x7fffffff) {
    throw new ProgramError(`MaxTracked must be a whole number from 1 to 2147483647 (got ${maxTracked})`);
  }
  const budget = opts.eventBudget ?? DEFAULT_EVENT_BUDGET;

  // groups: 0 = local addresses, 1.. = distinct targets in order of first use
  const targets: { key: string; family: 4 | 6; words: number[] }[] = [];
  const groupOf = (d: DoorConfig): number => {
    if (!d.targetAddress) return 0;
    const words = addressWords(d.targetAddress.bytes);
    const key = `${d.targetAddress.family}/${words.join('.')}`;
    let i = targets.findIndex((t) => t.key === key);
    if (i < 0) {
      if (targets.length >= MAX_TARGETS) throw new ProgramError(`at most ${MAX_TARGETS} distinct Target addresses are supported`);
      targets.push({ key, family: d.targetAddress.family, words });
      i = targets.length - 1;
    }
    return i + 1;
  };
  const groups = doors.map(groupOf);

  // cohorts: doors of one group sharing a first step progress together; the record holds 8 members
  const cohorts = new Map<string, string[]>();
  doors.forEach((d, i) => {
    if (d.derived || d.spa) return; // a derived door is a cohort of its own (MATCHER.md §10); an SPA door has none
    const key = `${groups[i]}/${stepWord(d.sequence[0])}`;
    const members = cohorts.get(key) ?? [];
    members.push(d.name);
    cohorts.set(key, members);
    if (members.length > MAX_COHORT) {
      const s = d.sequence[0];
      throw new ProgramError(
        `at most ${MAX_COHORT} doors may start with the same knock (${s.port}:${s.proto}) for the same destination; ` +
          `doors: ${members.join(', ')}`,
      );
    }
  });

  const locals = opts.localAddresses;
  let total = HEADER_WORDS + (locals.length + targets.length) * ADDRESS_WORDS;
  const doorWords = doors.map((d) => {
    if (d.derived) return derivedDoorWords(d);
    if (d.spa) return DOOR_HEADER_WORDS + SPA_DOOR_WORDS + Math.ceil(d.spa.hmacKey.length / 4);
    if (d.sequence.length > MAX_STEPS) throw new ProgramError(`door ${d.name}: more than ${MAX_STEPS} steps`);
    return DOOR_HEADER_WORDS + d.sequence.length;
  });
  total += doorWords.reduce((a, b) => a + b, 0);
  const w = new Uint32Array(total);
  w[Header.MAGIC] = PROGRAM_MAGIC;
  w[Header.VERSION] = PROGRAM_VERSION;
  w[Header.GENERATION] = generation;
  w[Header.FLAGS] =
    (opts.stageEvents ? ProgramFlag.STAGE_EVENTS : 0) |
    (opts.allLocal ? ProgramFlag.ALL_LOCAL : 0) |
    (opts.ignoreIpv6 ? ProgramFlag.IGNORE_IPV6 : 0);
  w[Header.MAX_TRACKED] = maxTracked;
  w[Header.EVENT_BUDGET] = budget;
  w[Header.N_LOCAL] = locals.length;
  w[Header.N_TARGETS] = targets.length;
  w[Header.N_DOORS] = doors.length;
  w[Header.TOTAL_WORDS] = total;
  let o = HEADER_WORDS;
  for (const a of locals) {
    w[o] = a.family;
    w.set(addressWords(a.bytes), o + 1);
    o += ADDRESS_WORDS;
  }
  for (const t of targets) {
    w[o] = t.family;
    w.set(t.words, o + 1);
    o += ADDRESS_WORDS;
  }
  doors.forEach((d, i) => {
    w[o] = doorWords[i];
    w[o + 1] = groups[i];
    w[o + 2] = doorFingerprint(d);
    w[o + 3] = d.seqTimeout | 0;
    const extra = d.derived ? DERIVED_TCP_FLAGS : { mustSet: 0, mustClear: 0 };
    w[o + 4] = ((d.tcpFlags.mustSet | extra.mustSet) & 0x3f) | (((d.tcpFlags.mustClear | extra.mustClear) & 0x3f) << 8);
    w[o + 5] = (d.allowDuplicates ? DoorOption.ALLOW_DUPLICATES : 0) | (d.derived ? DoorOption.DERIVED : 0) | (d.spa ? DoorOption.SPA : 0);
    if (d.derived) writeDerived(w, o, d.derived);
    else if (d.spa) writeSpa(w, o, d.spa);
    else {
      w[o + 6] = d.sequence.length;
      d.sequence.forEach((s, k) => (w[o + DOOR_HEADER_WORDS + k] = stepWord(s)));
    }
    o += w[o];
  });
  return { words: w, doors, generation };
}

// SPA door record (docs/SPA.md §4): after the 7-word header (0 steps), port | UDP << 16, HMAC key bytes,
// key words (big-endian, zero-padded).
export const SPA_DOOR_WORDS = 2;

function writeSpa(w: Uint32Array, o: number, spa: SpaDoor): void {
  let k = o + DOOR_HEADER_WORDS;
  w[o + 6] = 0;
  w[k++] = (spa.port | (PROTO_UDP << 16)) >>> 0;
  w[k++] = spa.hmacKey.length;
  writeKey(w, k, spa.hmacKey);
}

function writeKey(w: Uint32Array, k: number, key: Uint8Array): number {
  for (let i = 0; i < key.length; i += 4) {
    w[k++] = ((key[i] << 24) | ((key[i + 1] ?? 0) << 16) | ((key[i + 2] ?? 0) << 8) | (key[i + 3] ?? 0)) >>> 0;
  }
  return k;
}

/** Sorted ports -> inclusive [lo, hi] runs. */
export function portRanges(ports: number[]): [number, number][] {
  const sorted = [...new Set(ports)].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && p === last[1] + 1) last[1] = p;
    else out.push([p, p]);
  }
  return out;
}

// Derived door record (MATCHER.md §10): after the 7-word header, timeStep, protocols, bindSource,
// keyBytes, key words, nRanges, ranges.
function derivedDoorWords(d: DoorConfig): number {
  const x = d.derived!;
  if (x.sequenceLength < 1 || x.sequenceLength > MAX_STEPS) throw new ProgramError(`door ${d.name}: Sequence_Length must be 1..${MAX_STEPS}`);
  if (x.key.length < 16 || x.key.length > 64) throw new ProgramError(`door ${d.name}: the secret must be 16..64 bytes`);
  if (x.ports.length === 0 || x.protocols.length === 0) throw new ProgramError(`door ${d.name}: Port_Range and Protocols must not be empty`);
  return DOOR_HEADER_WORDS + DERIVED_WORDS + Math.ceil(x.key.length / 4) + 1 + portRanges(x.ports).length;
}

function writeDerived(w: Uint32Array, o: number, x: NonNullable<DoorConfig['derived']>): void {
  w[o + 6] = x.sequenceLength;
  let k = o + DOOR_HEADER_WORDS;
  w[k++] = x.timeStep;
  w[k++] = (x.protocols.includes('tcp') ? 1 : 0) | (x.protocols.includes('udp') ? 2 : 0);
  w[k++] = x.bindSource ? 1 : 0;
  w[k++] = x.key.length;
  k = writeKey(w, k, x.key);
  const ranges = portRanges(x.ports);
  w[k++] = ranges.length;
  for (const [lo, hi] of ranges) w[k++] = (lo | (hi << 16)) >>> 0;
}
