// The pure-TypeScript matcher: docs/MATCHER.md to the letter, the twin of native/core/matcher.cc.
// State is in typed arrays: a 64-byte record per tracked source in one buffer, an open-addressing index,
// an intrusive timer wheel and the two age lists (stage-1 and progressed, §4.1) with int32 links; the per-frame path allocates no objects
// and builds no strings.
//
// Readings of the page where it leaves room (also listed in the report to the team):
// - With STAGE_EVENTS off, stage events are "neither written nor counted" (§2.2): `stats.stages` stays
//   0 as well, although §8 says counters count what happened (native/core/matcher.cc agrees).
// - "oldest records of any kind" (§5, maxTracked shrink) = smallest t_first, ties in creation order.
// - Reload maps duplicate fingerprints (identical doors) by rank: the k-th old door with a fingerprint
//   maps to the k-th new door with it.
import { EventKind, EventWriter, FailReason } from './events.js';
import { ParsedPacket, ParseResult, parseFrame } from './frame.js';
import { HmacSha256Key } from './hmac.js';
import { NO_SPA_DOOR, readSpaDoor, spaAuthenticDoor, spaCandidateLength, type SpaDoorEntry } from './spa-check.js';
import { STAT_NAMES, type FrameBatch, type Matcher, type MatcherStats } from './matcher-api.js';
import {
  ADDRESS_WORDS,
  DERIVED_WORDS,
  DOOR_HEADER_WORDS,
  DoorOption,
  HEADER_WORDS,
  Header,
  MAX_COHORT,
  MAX_STEPS,
  PROGRAM_MAGIC,
  PROGRAM_VERSION,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  ProgramFlag,
} from '../config/program.js';

export { batchFromFrames } from './frame.js';

// Module-local copies of the imported constants used per packet: under tsx (the test and bench runner)
// every use of an imported binding is a getter call, which costs as much as the matching itself.
const COHORT = MAX_COHORT;
const STEPS = MAX_STEPS;
const TCP = PROTO_TCP;
const UDP = PROTO_UDP;
const ICMP = PROTO_ICMP;
const FLAG_STAGE_EVENTS = ProgramFlag.STAGE_EVENTS;
const FLAG_ALL_LOCAL = ProgramFlag.ALL_LOCAL;
const FLAG_IGNORE_IPV6 = ProgramFlag.IGNORE_IPV6;
const OPT_ALLOW_DUPLICATES = DoorOption.ALLOW_DUPLICATES;
const OPT_DERIVED = DoorOption.DERIVED;
const OPT_SPA = DoorOption.SPA;
const EV_SPA = EventKind.SPA;
const FAIL_SPA_AUTH = FailReason.SPA_AUTH;
const EV_STAGE = EventKind.STAGE;
const EV_COMPLETED = EventKind.COMPLETED;
const EV_FAILED = EventKind.FAILED;
const EV_SUPPRESSED = EventKind.SUPPRESSED;
const FAIL_TIMEOUT = FailReason.TIMEOUT;
const FAIL_WRONG_PORT = FailReason.WRONG_PORT;
const FAIL_EVICTED = FailReason.EVICTED;
const PARSED_KNOCK = ParseResult.KNOCK;
const PARSED_MALFORMED = ParseResult.MALFORMED;
const parse = parseFrame;

const BUCKET_US = 16_384; // G
const WHEEL_BUCKETS = 4_096; // W
// Bucket numbers are beyond int32 (µs since the epoch / G), so `%` on them is a floating-point fmod
// call; their bucket in the wheel is their low bits instead: `& BUCKET_MASK` converts an integral double
// exactly modulo 2^32 (a multiple of W), also for negative ones.
const BUCKET_MASK = WHEEL_BUCKETS - 1;
const NONE = -1;
const INITIAL_RECORDS = 1_024;
const USED_WINDOWS = 65_536; // the used-table's entries (MATCHER.md §10)

// A record is one RECORD_BYTES slot of one buffer, read through views of several widths, so finding a
// source and matching its packet touch one cache line: with a typed array per field, each field of a
// source was a cache miss of its own once 100k sources outgrow the caches. Offsets are in the unit of
// the view they are named for.
const RECORD_BYTES = 64;
const RECORD_WORDS = RECORD_BYTES / 4; // Int32Array and Uint32Array views
const RECORD_DOUBLES = RECORD_BYTES / 8; // Float64Array view
const RECORD_HALVES = RECORD_BYTES / 2; // Uint16Array view
const SRC_WORD = 0; // 4 words: the source address, bytes as the packet has them (Uint32Array view)
const T_FIRST_DOUBLE = 2;
const DEADLINE_DOUBLE = 3;
const STAGE_BYTE = 32; // COHORT (8) bytes, a stage per cohort member, 0 = dead
const WHEEL_NEXT_WORD = 10;
const WHEEL_PREV_WORD = 11;
const AGE_NEXT_WORD = 12; // links of the age list the record is on (§4.1)
const AGE_PREV_WORD = 13; // UNLISTED while the record is on none
const COHORT_WORD = 14; // NONE while the slot is free; the record's group is its cohort's
const BUCKET_HALF = 30; // the wheel bucket holding the record, DETACHED while it is in none
const FAMILY_BYTE = 62;
const MISC_BYTE = 63; // WINDOW_OFFSET bits: derived record's window − the window of t_first + 1; IN_STAGE1
const WINDOW_OFFSET = 3;
const IN_STAGE1 = 0x80; // on the stage-1 list, else on the progressed list
const UNLISTED = -2;
const DETACHED = 0xffff;

/** Counter indices, in STAT_NAMES order (MATCHER.md §8); `tracked` is read from the pool. */
const enum Stat {
  frames,
  malformed,
  notKnock,
  invisible,
  visible,
  stages,
  completed,
  failedTimeout,
  failedWrongPort,
  evicted,
  suppressed,
  evictedProgressed,
  tracked,
  spaAccepted,
  spaRejected,
}

/** The decoded program: flat typed arrays indexed by door, cohort and lookup slot. */
class Program {
  readonly generation: number;
  readonly flags: number;
  readonly maxTracked: number;
  readonly budget: number;
  readonly localFamily: Uint8Array;
  readonly localWords: Uint32Array; // 4 host-order words per address, same view as the packet's
  readonly targetFamily: Uint8Array;
  readonly targetWords: Uint32Array;
  readonly nDoors: number;
  readonly doorFingerprint: Uint32Array;
  readonly doorTimeoutUs: Float64Array;
  readonly doorMustSet: Uint8Array;
  readonly doorMustClear: Uint8Array;
  readonly doorOptions: Uint32Array;
  readonly doorLength: Uint8Array;
  readonly doorSteps: Uint32Array; // STEPS per door
  readonly doorCohort: Int32Array;
  readonly doorMember: Uint8Array;
  // derived doors (MATCHER.md §10), indexed by door; unused entries for fixed doors
  readonly hasDerived: boolean;
  readonly doorDerived: Uint8Array;
  readonly derivedStepUs: Float64Array;
  readonly derivedProtoMask: Uint8Array; // 1 tcp, 2 udp
  readonly derivedBind: Uint8Array;
  readonly derivedKey: (HmacSha256Key | undefined)[];
  readonly derivedRangeStart: Int32Array; // into derivedRanges, RANGE_FIELDS words per range
  readonly derivedRangeCount: Int32Array;
  readonly derivedRangeSize: Uint32Array; // ports in all ranges (R)
  readonly derivedRanges: Uint32Array; // lo, hi, ports before this range
  // group -> its derived doors in program order
  readonly groupDerivedStart: Int32Array;
  readonly groupDerivedCount: Int32Array;
  readonly groupDerived: Int32Array;
  // SPA doors (docs/SPA.md §4) in program order
  readonly spaDoors: SpaDoorEntry[] = [];
  readonly cohortGroup: Int32Array;
  readonly cohortSize: Uint8Array;
  readonly cohortDoors: Int32Array; // COHORT per cohort
  // (group, step) -> the doors having that step anywhere (visibility) and the cohort starting with it
  private readonly slotKey: Int32Array;
  readonly slotDoorsStart: Int32Array;
  readonly slotDoorsCount: Int32Array;
  readonly slotCohort: Int32Array;
  readonly slotDoors: Int32Array;
  private readonly slotMask: number;

  constructor(w: Uint32Array) {
    const fail = (what: string): never => {
      throw new TypeError(`invalid matcher program: ${what} (compile it with compileProgram from src/config/program.ts)`);
    };
    if (!(w instanceof Uint32Array)) fail('expected a Uint32Array');
    if (w.length < HEADER_WORDS) fail(`${w.length} words is shorter than the ${HEADER_WORDS}-word header`);
    if (w[Header.MAGIC] !== PROGRAM_MAGIC) fail(`bad magic 0x${w[Header.MAGIC].toString(16)}`);
    if (w[Header.VERSION] !== PROGRAM_VERSION) fail(`version ${w[Header.VERSION]}, this matcher reads version ${PROGRAM_VERSION}`);
    if (w[Header.TOTAL_WORDS] !== w.length) fail(`header says ${w[Header.TOTAL_WORDS]} words, array has ${w.length}`);
    this.generation = w[Header.GENERATION];
    this.flags = w[Header.FLAGS];
    this.maxTracked = w[Header.MAX_TRACKED];
    if (this.maxTracked < 1) fail('maxTracked is 0');
    this.budget = w[Header.EVENT_BUDGET];
    const nLocal = w[Header.N_LOCAL];
    const nTargets = w[Header.N_TARGETS];
    const nDoors = w[Header.N_DOORS];
    let o = HEADER_WORDS;
    if (o + (nLocal + nTargets) * ADDRESS_WORDS > w.length) fail('address table runs past the end');
    const readAddresses = (n: number): [Uint8Array, Uint32Array] => {
      const family = new Uint8Array(n);
      const bytes = new Uint8Array(n * 16);
      for (let i = 0; i < n; i++, o += ADDRESS_WORDS) {
        family[i] = w[o];
        if (w[o] !== 4 && w[o] !== 6) fail(`address ${i} has family ${w[o]}`);
        for (let k = 0; k < 4; k++) {
          const v = w[o + 1 + k];
          bytes[i * 16 + k * 4] = v >>> 24;
          bytes[i * 16 + k * 4 + 1] = (v >>> 16) & 0xff;
          bytes[i * 16 + k * 4 + 2] = (v >>> 8) & 0xff;
          bytes[i * 16 + k * 4 + 3] = v & 0xff;
        }
      }
      return [family, new Uint32Array(bytes.buffer)];
    };
    [this.localFamily, this.localWords] = readAddresses(nLocal);
    [this.targetFamily, this.targetWords] = readAddresses(nTargets);

    this.nDoors = nDoors;
    this.doorFingerprint = new Uint32Array(nDoors);
    this.doorTimeoutUs = new Float64Array(nDoors);
    this.doorMustSet = new Uint8Array(nDoors);
    this.doorMustClear = new Uint8Array(nDoors);
    this.doorOptions = new Uint32Array(nDoors);
    this.doorLength = new Uint8Array(nDoors);
    this.doorSteps = new Uint32Array(nDoors * STEPS);
    this.doorCohort = new Int32Array(nDoors);
    this.doorMember = new Uint8Array(nDoors);
    const doorGroup = new Int32Array(nDoors);
    this.doorDerived = new Uint8Array(nDoors);
    this.derivedStepUs = new Float64Array(nDoors);
    this.derivedProtoMask = new Uint8Array(nDoors);
    this.derivedBind = new Uint8Array(nDoors);
    this.derivedKey = new Array<HmacSha256Key | undefined>(nDoors).fill(undefined);
    this.derivedRangeStart = new Int32Array(nDoors);
    this.derivedRangeCount = new Int32Array(nDoors);
    this.derivedRangeSize = new Uint32Array(nDoors);
    const ranges: number[] = [];
    const cohortOf = new Map<number, number>(); // group * 2^17 + first step key -> cohort
    const cohortGroup: number[] = [];
    const cohortDoors: number[][] = [];
    for (let d = 0; d < nDoors; d++) {
      if (o + DOOR_HEADER_WORDS > w.length) fail(`door ${d} runs past the end`);
      const words = w[o];
      if ((w[o + 5] & OPT_SPA) !== 0) {
        // an SPA door has no steps and no cohort; the SPA step (src/match/spa-check.ts) handles it
        if (w[o + 1] > nTargets) fail(`door ${d} names group ${w[o + 1]} of ${nTargets}`);
        this.spaDoors.push(readSpaDoor(w, o, d, w[o + 1], fail));
        doorGroup[d] = w[o + 1];
        this.doorFingerprint[d] = w[o + 2];
        this.doorOptions[d] = w[o + 5];
        this.doorCohort[d] = NONE;
        o += words;
        continue;
      }
      const nSteps = w[o + 6];
      if (nSteps < 1 || nSteps > STEPS) fail(`door ${d} has ${nSteps} steps`);
      const derived = (w[o + 5] & OPT_DERIVED) !== 0;
      if (derived) this.readDerived(w, o, d, ranges, fail);
      else if (words !== DOOR_HEADER_WORDS + nSteps || o + words > w.length) fail(`door ${d} has a bad word count`);
      const group = w[o + 1];
      if (group > nTargets) fail(`door ${d} names group ${group} of ${nTargets}`);
      doorGroup[d] = group;
      this.doorFingerprint[d] = w[o + 2];
      this.doorTimeoutUs[d] = (w[o + 3] | 0) * 1e6;
      this.doorMustSet[d] = w[o + 4] & 0x3f;
      this.doorMustClear[d] = (w[o + 4] >>> 8) & 0x3f;
      this.doorOptions[d] = w[o + 5];
      this.doorLength[d] = nSteps;
      for (let k = 0; k < nSteps && !derived; k++) {
        const s = w[o + DOOR_HEADER_WORDS + k];
        const proto = s >>> 16;
        if (proto !== TCP && proto !== UDP && proto !== ICMP) fail(`door ${d} step ${k} has protocol ${proto}`);
        this.doorSteps[d * STEPS + k] = s;
      }
      // a derived door is a cohort of its own and has no first step to be found by
      const key = group * STEP_KEYS + stepKey(this.doorSteps[d * STEPS]);
      let c = derived ? undefined : cohortOf.get(key);
      if (c === undefined) {
        c = cohortDoors.length;
        if (!derived) cohortOf.set(key, c);
        cohortGroup.push(group);
        cohortDoors.push([]);
      }
      if (cohortDoors[c].length >= COHORT) fail(`more than ${COHORT} doors share a first step`);
      this.doorCohort[d] = c;
      this.doorMember[d] = cohortDoors[c].length;
      cohortDoors[c].push(d);
      o += words;
    }
    if (o !== w.length) fail(`${w.length - o} words after the last door`);
    this.derivedRanges = Uint32Array.from(ranges);
    this.hasDerived = this.doorDerived.includes(1);
    const byGroup: number[][] = Array.from({ length: nTargets + 1 }, () => []);
    for (let d = 0; d < nDoors; d++) if (this.doorDerived[d]) byGroup[doorGroup[d]].push(d);
    this.groupDerivedStart = Int32Array.from(byGroup.map((_, g) => byGroup.slice(0, g).reduce((n, l) => n + l.length, 0)));
    this.groupDerivedCount = Int32Array.from(byGroup.map((l) => l.length));
    this.groupDerived = Int32Array.from(byGroup.flat());
    this.cohortGroup = Int32Array.from(cohortGroup);
    this.cohortSize = Uint8Array.from(cohortDoors.map((m) => m.length));
    this.cohortDoors = new Int32Array(cohortDoors.length * COHORT).fill(NONE);
    cohortDoors.forEach((m, c) => this.cohortDoors.set(m, c * COHORT));

    // (group, step) lookup; built once per load, so Maps are fine here
    const doorsOf = new Map<number, number[]>();
    for (let d = 0; d < nDoors; d++) {
      for (let k = 0; k < this.doorLength[d] && !this.doorDerived[d]; k++) {
        const key = doorGroup[d] * STEP_KEYS + stepKey(this.doorSteps[d * STEPS + k]);
        const list = doorsOf.get(key) ?? [];
        if (list[list.length - 1] !== d) list.push(d);
        doorsOf.set(key, list);
      }
    }
    let size = 16;
    while (size < doorsOf.size * 2) size *= 2;
    this.slotMask = size - 1;
    this.slotKey = new Int32Array(size).fill(NONE);
    this.slotDoorsStart = new Int32Array(size);
    this.slotDoorsCount = new Int32Array(size);
    this.slotCohort = new Int32Array(size).fill(NONE);
    const flat: number[] = [];
    for (const [key, list] of doorsOf) {
      let s = hashSmall(key) & this.slotMask;
      while (this.slotKey[s] !== NONE) s = (s + 1) & this.slotMask;
      this.slotKey[s] = key;
      this.slotDoorsStart[s] = flat.length;
      this.slotDoorsCount[s] = list.length;
      this.slotCohort[s] = cohortOf.get(key) ?? NONE;
      flat.push(...list);
    }
    this.slotDoors = Int32Array.from(flat);
  }

  /** Decodes and checks a derived door's words after its header (MATCHER.md §10). */
  private readDerived(w: Uint32Array, o: number, d: number, ranges: number[], fail: (what: string) => never): void {
    const words = w[o];
    const end = o + words;
    if (words < DOOR_HEADER_WORDS + DERIVED_WORDS + 1 || end > w.length) fail(`derived door ${d} has a bad word count`);
    let k = o + DOOR_HEADER_WORDS;
    const timeStep = w[k++];
    const protocols = w[k++];
    const bind = w[k++];
    const keyBytes = w[k++];
    if (timeStep < 1) fail(`derived door ${d} has time step 0`);
    if (protocols < 1 || protocols > 3) fail(`derived door ${d} has protocol set ${protocols}`);
    if (bind > 1) fail(`derived door ${d} has bindSource ${bind}`);
    if (keyBytes < 16 || keyBytes > 64) fail(`derived door ${d} has a ${keyBytes}-byte key, not 16..64`);
    const keyWords = Math.ceil(keyBytes / 4);
    if (k + keyWords + 1 > end) fail(`derived door ${d}: the key runs past the door`);
    const key = new Uint8Array(keyBytes);
    for (let i = 0; i < keyBytes; i++) key[i] = w[k + (i >> 2)] >>> (24 - 8 * (i & 3));
    k += keyWords;
    const nRanges = w[k++];
    if (nRanges < 1 || words !== k + nRanges - o) fail(`derived door ${d} has a bad range count`);
    this.derivedRangeStart[d] = ranges.length;
    this.derivedRangeCount[d] = nRanges;
    let total = 0;
    let previousHi = -1;
    for (let i = 0; i < nRanges; i++) {
      const lo = w[k + i] & 0xffff;
      const hi = w[k + i] >>> 16;
      if (lo > hi || lo <= previousHi) fail(`derived door ${d}: range ${i} is backwards, unsorted or overlapping`);
      ranges.push(lo, hi, total);
      total += hi - lo + 1;
      previousHi = hi;
    }
    this.doorDerived[d] = 1;
    this.derivedStepUs[d] = timeStep * 1e6;
    this.derivedProtoMask[d] = protocols;
    this.derivedBind[d] = bind;
    this.derivedKey[d] = new HmacSha256Key(key);
    this.derivedRangeSize[d] = total;
  }

  /** Whether derived door d sees (proto, port) with these flags: protocols × ranges, flagsOk. */
  derivedSees(d: number, proto: number, port: number, tcpFlags: number): boolean {
    // derived doors knock with tcp and udp only
    if ((this.derivedProtoMask[d] & (proto === TCP ? 1 : proto === UDP ? 2 : 0)) === 0 || !this.flagsOk(d, proto, tcpFlags)) return false;
    const r = this.derivedRanges;
    let lo = this.derivedRangeStart[d];
    let hi = lo + this.derivedRangeCount[d] * 3; // binary search over ranges (3 words each) by their lo
    while (hi - lo > 3) {
      const mid = lo + Math.floor((hi - lo) / 6) * 3;
      if (r[mid] <= port) lo = mid;
      else hi = mid;
    }
    return port >= r[lo] && port <= r[lo + 1];
  }

  /** The index-th port of derived door d's ranges (0 ≤ index < R). */
  derivedPort(d: number, index: number): number {
    const r = this.derivedRanges;
    let lo = this.derivedRangeStart[d];
    let hi = lo + this.derivedRangeCount[d] * 3;
    while (hi - lo > 3) {
      const mid = lo + Math.floor((hi - lo) / 6) * 3;
      if (r[mid + 2] <= index) lo = mid;
      else hi = mid;
    }
    return r[lo] + index - r[lo + 2];
  }

  /** The lookup slot of (group, step word), or NONE if no door of the group has that step. */
  slot(group: number, step: number): number {
    const key = group * STEP_KEYS + stepKey(step);
    let s = hashSmall(key) & this.slotMask;
    for (;;) {
      const k = this.slotKey[s];
      if (k === key) return s;
      if (k === NONE) return NONE;
      s = (s + 1) & this.slotMask;
    }
  }

  flagsOk(door: number, proto: number, tcpFlags: number): boolean {
    if (proto !== TCP) return true;
    const set = this.doorMustSet[door];
    return (tcpFlags & set) === set && (tcpFlags & this.doorMustClear[door]) === 0;
  }
}

/** port | proto << 16 squeezed to 18 bits: TCP 0, UDP 1, ICMP 2 above the port. */
const stepKey = (step: number): number => (step & 0xffff) | ((step >>> 16 === TCP ? 0 : step >>> 16 === UDP ? 1 : 2) << 16);
const STEP_KEYS = 3 << 16;

const hashSmall = (key: number): number => {
  const h = Math.imul(key ^ (key >>> 15), 0x2c1b3c6d);
  return (h ^ (h >>> 12)) >>> 0;
};

export class TsMatcher implements Matcher {
  private program: Program | undefined;
  private readonly writer = new EventWriter();
  private readonly packet = new ParsedPacket();
  private readonly packetSrc32 = this.packet.srcWords;
  private readonly packetDst32 = this.packet.dstWords;
  private readonly counters = new Float64Array(STAT_NAMES.length);
  private readonly accepting = new Int32Array(256);
  private readonly candidates = new Int32Array(256);
  // derived doors: the HMAC message (MATCHER.md §10), its result, and the windows already used
  private readonly derivedMessage = Uint8Array.of(0x4b, 0x46, 0x44, 0x31, ...new Array<number>(26).fill(0)); // "KFD1"
  private readonly derivedBlock = new Uint32Array(8);
  private usedWindows: UsedWindows | undefined; // allocated at the first derived completion

  // time (§2)
  private started = false;
  private now = 0;
  private wheelPos = 0;
  private window = 0;
  private used = 0;
  private suppressed = 0;

  // records: views of one buffer (layout at RECORD_BYTES); capacity doubles, up to maxTracked exactly
  private capacity = 0;
  private highWater = 0;
  private tracked = 0;
  // freed slots, last freed first; an array of its own, as taking the next one from a list threaded
  // through the free records would wait for a cache miss on each
  private freeTop = 0;
  private freeStack = new Int32Array(0);
  private recBytes = new Uint8Array(0);
  private recHalves = new Uint16Array(0);
  private recWords = new Int32Array(0);
  private recSrc = new Uint32Array(0);
  private recTimes = new Float64Array(0);
  // the age lists (§4.1), oldest first: every tracked record is on one of them
  private s1Head = NONE;
  private s1Tail = NONE;
  private s1Size = 0;
  private progressedHead = NONE;
  private progressedTail = NONE;
  private readonly bucketHead = new Int32Array(WHEEL_BUCKETS).fill(NONE);
  private readonly bucketTail = new Int32Array(WHEEL_BUCKETS).fill(NONE);
  // index: open addressing, linear probing, backward-shift deletion; an entry is the record number + 1
  // (0 = empty) under indexMask and its key's hash above it, so a probe reads no record but the one that
  // matches (record numbers stay under indexMask: the index has twice the slots the pool has records)
  private index = new Int32Array(0);
  private indexMask = 0;

  load(words: Uint32Array): void {
    const next = new Program(words);
    const previous = this.program;
    this.program = next;
    if (this.capacity === 0) this.grow(next, Math.min(INITIAL_RECORDS, next.maxTracked));
    if (previous && this.tracked > 0) this.carryOver(previous, next);
  }

  feed(batch: FrameBatch): Uint8Array {
    const p = this.requireProgram('feed');
    const { data, offsets, timestampsUs, linkTypes } = batch;
    const n = timestampsUs.length;
    if (offsets.length !== n + 1 || linkTypes.length !== n) {
      throw new RangeError(`frame batch of ${n} timestamps needs ${n + 1} offsets and ${n} link types (got ${offsets.length} and ${linkTypes.length})`);
    }
    if (n > 0 && offsets[n] > data.byteLength) {
      throw new RangeError(`frame batch offsets end at ${offsets[n]}, past the ${data.byteLength}-byte data`);
    }
    for (let i = 0; i < n; i++) {
      const start = offsets[i];
      const end = offsets[i + 1];
      if (end < start) throw new RangeError(`frame ${i}: offsets go backwards (${start} > ${end})`);
      this.setTime(p, timestampsUs[i]);
      this.counters[Stat.frames]++;
      const r = parse(data, start, end, linkTypes[i], this.packet);
      if (r === PARSED_KNOCK) {
        if (p.spaDoors.length === 0 || !this.spa(p, data)) this.match(p);
      } else this.counters[r === PARSED_MALFORMED ? Stat.malformed : Stat.notKnock]++;
    }
    return this.writer.take();
  }

  tick(nowUs: number): Uint8Array {
    this.setTime(this.requireProgram('tick'), nowUs);
    return this.writer.take();
  }

  stats(): MatcherStats {
    const out = {} as MatcherStats;
    STAT_NAMES.forEach((name, i) => (out[name] = this.counters[i]));
    out.tracked = this.tracked;
    return out;
  }

  private requireProgram(call: string): Program {
    if (!this.program) throw new Error(`TsMatcher.${call}() called before load(program): load a compiled program first`);
    return this.program;
  }

  // ---- time (§2) ----

  private setTime(p: Program, t: number): void {
    // the window and the wheel are where `now` puts them: they move only when it does (a test small
    // enough to be inlined into the frame loop)
    if (this.started && !(t > this.now)) return;
    this.moveTime(p, t);
  }

  private moveTime(p: Program, t: number): void {
    if (!this.started) {
      this.started = true;
      this.now = t;
      this.window = Math.floor(t / 1e6);
      this.wheelPos = Math.floor(t / BUCKET_US);
      return;
    }
    this.now = t;
    const window = Math.floor(this.now / 1e6);
    if (window !== this.window) {
      if (this.suppressed > 0) {
        this.writer.push(EV_SUPPRESSED, 0, 0, 0, 0, p.generation, this.suppressed, (this.window + 1) * 1e6);
      }
      this.window = window;
      this.used = 0;
      this.suppressed = 0;
    }
    const target = Math.floor(this.now / BUCKET_US);
    if (target - this.wheelPos > WHEEL_BUCKETS) {
      // a gap longer than the wheel: visit each bucket once, re-inserting relative to the old position
      for (let k = 0; k < WHEEL_BUCKETS; k++) this.processBucket(p, (this.wheelPos + k) & BUCKET_MASK);
      this.wheelPos = target;
    } else {
      while (this.wheelPos < target) {
        this.processBucket(p, this.wheelPos & BUCKET_MASK);
        this.wheelPos++;
      }
    }
  }

  private processBucket(p: Program, b: number): void {
    let r = this.bucketHead[b];
    this.bucketHead[b] = NONE;
    this.bucketTail[b] = NONE;
    while (r !== NONE) {
      const next = this.recWords[r * RECORD_WORDS + WHEEL_NEXT_WORD];
      this.recHalves[r * RECORD_HALVES + BUCKET_HALF] = DETACHED;
      if (this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] <= this.now) this.expire(p, r);
      else this.wheelAppend(r);
      r = next;
    }
  }

  /** Times out r's expired members; frees r if none lives, else moves it if its deadline changed. */
  private expire(p: Program, r: number): boolean {
    const c = this.recWords[r * RECORD_WORDS + COHORT_WORD];
    const size = p.cohortSize[c];
    const stages = this.recBytes;
    const base = r * RECORD_BYTES + STAGE_BYTE;
    const t0 = this.recTimes[r * RECORD_DOUBLES + T_FIRST_DOUBLE];
    for (let j = 0; j < size; j++) {
      const s = stages[base + j];
      if (s === 0) continue;
      const d = p.cohortDoors[c * COHORT + j];
      const due = t0 + p.doorTimeoutUs[d];
      if (due <= this.now) {
        this.counters[Stat.failedTimeout]++;
        this.emitLimited(p, EV_FAILED, FAIL_TIMEOUT, r, s, d, due);
        stages[base + j] = 0;
      }
    }
    return this.settle(p, r);
  }

  /** After members died: free r if none lives, else re-file it in the wheel if its deadline changed. */
  private settle(p: Program, r: number): boolean {
    const minTimeout = this.liveTimeout(p, r);
    if (minTimeout === Infinity) {
      this.free(p, r);
      return false;
    }
    const deadline = this.recTimes[r * RECORD_DOUBLES + T_FIRST_DOUBLE] + minTimeout;
    // a record detached by processBucket always needs re-filing
    if (deadline !== this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] || this.recHalves[r * RECORD_HALVES + BUCKET_HALF] === DETACHED) {
      this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] = deadline;
      this.wheelUnlink(r);
      this.wheelAppend(r);
    }
    return true;
  }

  /** The shortest timeout of r's live members under program p; Infinity if none lives. */
  private liveTimeout(p: Program, r: number): number {
    const c = this.recWords[r * RECORD_WORDS + COHORT_WORD];
    const size = p.cohortSize[c];
    const base = r * RECORD_BYTES + STAGE_BYTE;
    let minTimeout = Infinity;
    for (let j = 0; j < size; j++) {
      if (this.recBytes[base + j] === 0) continue;
      const t = p.doorTimeoutUs[p.cohortDoors[c * COHORT + j]];
      if (t < minTimeout) minTimeout = t;
    }
    return minTimeout;
  }

  private wheelAppend(r: number): void {
    const w = r * RECORD_WORDS;
    const abs = Math.floor(this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] / BUCKET_US);
    const pos = abs > this.wheelPos ? abs : this.wheelPos;
    const b = pos & BUCKET_MASK;
    this.recHalves[r * RECORD_HALVES + BUCKET_HALF] = b;
    this.recWords[w + WHEEL_NEXT_WORD] = NONE;
    const tail = this.bucketTail[b];
    this.recWords[w + WHEEL_PREV_WORD] = tail;
    if (tail === NONE) this.bucketHead[b] = r;
    else this.recWords[tail * RECORD_WORDS + WHEEL_NEXT_WORD] = r;
    this.bucketTail[b] = r;
  }

  private wheelUnlink(r: number): void {
    const b = this.recHalves[r * RECORD_HALVES + BUCKET_HALF];
    if (b === DETACHED) return;
    const words = this.recWords;
    const prev = words[r * RECORD_WORDS + WHEEL_PREV_WORD];
    const next = words[r * RECORD_WORDS + WHEEL_NEXT_WORD];
    if (prev === NONE) this.bucketHead[b] = next;
    else words[prev * RECORD_WORDS + WHEEL_NEXT_WORD] = next;
    if (next === NONE) this.bucketTail[b] = prev;
    else words[next * RECORD_WORDS + WHEEL_PREV_WORD] = prev;
    this.recHalves[r * RECORD_HALVES + BUCKET_HALF] = DETACHED;
  }

  // ---- events (§2.2, §7) ----

  /** The SPA step (src/match/spa-check.ts): true when the packet was an SPA candidate and is dealt with. */
  private spa(p: Program, data: Uint8Array): boolean {
    const pk = this.packet;
    if (pk.proto !== UDP || !spaCandidateLength(pk.payloadEnd - pk.payloadStart)) return false;
    if (pk.family === 6 && (p.flags & FLAG_IGNORE_IPV6) !== 0) return false;
    const acc = this.accepting;
    let nAcc = 0;
    if ((p.flags & FLAG_ALL_LOCAL) !== 0 || matchesAny(p.localFamily, p.localWords, pk.family, this.packetDst32)) acc[nAcc++] = 0;
    for (let t = 0; t < p.targetFamily.length; t++) {
      if (p.targetFamily[t] === pk.family && sameAddress(p.targetWords, t * 4, this.packetDst32)) acc[nAcc++] = t + 1;
    }
    const payload = data.subarray(pk.payloadStart, pk.payloadEnd);
    const door = spaAuthenticDoor(p.spaDoors, acc, nAcc, pk.dport, payload);
    if (door === NO_SPA_DOOR) return false;
    if (door >= 0) {
      this.counters[Stat.spaAccepted]++;
      this.writer.push(EV_SPA, 0, pk.family, 0, door, p.generation, payload.byteLength, this.now, this.packetSrc32, 0);
      this.writer.pushPayload(payload);
      return true;
    }
    this.counters[Stat.spaRejected]++;
    if (p.budget !== 0 && this.used >= p.budget) {
      this.suppressed++;
      this.counters[Stat.suppressed]++;
    } else {
      this.used++;
      this.writer.push(EV_FAILED, FAIL_SPA_AUTH, pk.family, 0, -1 - door, p.generation, 0, this.now, this.packetSrc32, 0);
    }
    return true;
  }

  private emitLimited(p: Program, kind: number, reason: number, r: number, stage: number, door: number, time: number): void {
    if (p.budget !== 0 && this.used >= p.budget) {
      this.suppressed++;
      this.counters[Stat.suppressed]++;
      return;
    }
    this.used++;
    this.emit(p, kind, reason, r, stage, door, time);
  }

  /** `count`: a derived door's COMPLETED carries its used window's low 32 bits (§7); 0 otherwise. */
  private emit(p: Program, kind: number, reason: number, r: number, stage: number, door: number, time: number, count = 0): void {
    const family = this.recBytes[r * RECORD_BYTES + FAMILY_BYTE];
    this.writer.push(kind, reason, family, stage, door, p.generation, count >>> 0, time, this.recSrc, r * RECORD_WORDS + SRC_WORD);
  }

  /** STAGE/COMPLETED for the packet's source, before a record may exist (single-step doors). */
  private emitForPacket(p: Program, kind: number, stage: number, door: number, count = 0): void {
    if (kind === EV_STAGE) {
      if ((p.flags & FLAG_STAGE_EVENTS) === 0) return;
      this.counters[Stat.stages]++;
      if (p.budget !== 0 && this.used >= p.budget) {
        this.suppressed++;
        this.counters[Stat.suppressed]++;
        return;
      }
      this.used++;
    }
    this.writer.push(kind, 0, this.packet.family, stage, door, p.generation, count >>> 0, this.now, this.packetSrc32);
  }

  // ---- matching one packet (§4) ----

  private match(p: Program): void {
    const pk = this.packet;
    const family = pk.family;
    if (family === 6 && (p.flags & FLAG_IGNORE_IPV6) !== 0) {
      this.counters[Stat.invisible]++;
      return;
    }
    const proto = pk.proto;
    const flags = pk.tcpFlags;
    const step = (pk.dport | (proto << 16)) >>> 0;

    // accepting groups, ascending
    const acc = this.accepting;
    let nAcc = 0;
    const d32 = this.packetDst32;
    if ((p.flags & FLAG_ALL_LOCAL) !== 0 || matchesAny(p.localFamily, p.localWords, family, d32)) acc[nAcc++] = 0;
    const nTargets = p.targetFamily.length;
    for (let t = 0; t < nTargets; t++) {
      if (p.targetFamily[t] === family && sameAddress(p.targetWords, t * 4, d32)) acc[nAcc++] = t + 1;
    }

    // visibility
    let visible = false;
    for (let i = 0; i < nAcc && !visible; i++) {
      const s = p.slot(acc[i], step);
      if (s === NONE) continue;
      const start = p.slotDoorsStart[s];
      const end = start + p.slotDoorsCount[s];
      for (let k = start; k < end; k++) {
        if (p.flagsOk(p.slotDoors[k], proto, flags)) {
          visible = true;
          break;
        }
      }
    }
    if (!visible && p.hasDerived) visible = this.derivedVisible(p, nAcc, proto, pk.dport, flags);
    if (!visible) {
      this.counters[Stat.invisible]++;
      return;
    }
    this.counters[Stat.visible]++;

    // lazy expiry, then candidates
    const cand = this.candidates;
    let nCand = 0;
    for (let i = 0; i < nAcc; i++) {
      const r = this.find(p, family, acc[i]);
      if (r === NONE) continue;
      // before its deadline no member of r can have expired: skip the walk over them
      if (this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] > this.now || this.expire(p, r)) cand[nCand++] = r;
    }
    if (nCand > 0) {
      for (let i = 0; i < nCand; i++) this.advance(p, cand[i], proto, flags, step);
      return;
    }
    for (let i = 0; i < nAcc; i++) {
      const tracked = this.start(p, acc[i], proto, flags, step);
      if (p.hasDerived) this.startDerived(p, acc[i], proto, flags, step, tracked);
    }
  }

  private derivedVisible(p: Program, nAcc: number, proto: number, port: number, flags: number): boolean {
    for (let i = 0; i < nAcc; i++) {
      const g = this.accepting[i];
      const start = p.groupDerivedStart[g];
      const end = start + p.groupDerivedCount[g];
      for (let k = start; k < end; k++) if (p.derivedSees(p.groupDerived[k], proto, port, flags)) return true;
    }
    return false;
  }

  private advance(p: Program, r: number, proto: number, flags: number, step: number): void {
    const c = this.recWords[r * RECORD_WORDS + COHORT_WORD];
    const size = p.cohortSize[c];
    const stages = this.recBytes;
    const base = r * RECORD_BYTES + STAGE_BYTE;
    const stageEvents = (p.flags & FLAG_STAGE_EVENTS) !== 0;
    let advanced = false;
    let died = false;
    for (let j = 0; j < size; j++) {
      const s = stages[base + j];
      if (s === 0) continue;
      const d = p.cohortDoors[c * COHORT + j];
      if (proto === TCP && !p.flagsOk(d, proto, flags)) continue;
      const steps = d * STEPS;
      const derived = p.doorDerived[d] !== 0;
      if ((derived ? this.recordStep(p, d, r, s) : p.doorSteps[steps + s]) === step) {
        const next = s + 1;
        if (stageEvents) {
          this.counters[Stat.stages]++;
          this.emitLimited(p, EV_STAGE, 0, r, next, d, this.now);
        }
        advanced = true;
        if (next === p.doorLength[d]) {
          this.counters[Stat.completed]++;
          const window = derived ? this.recordWindow(p, d, r) : 0;
          this.emit(p, EV_COMPLETED, 0, r, next, d, this.now, window);
          if (derived) this.markUsed(p, d, window);
          stages[base + j] = 0;
          died = true;
        } else {
          stages[base + j] = next;
        }
      } else if (
        (p.doorOptions[d] & OPT_ALLOW_DUPLICATES) !== 0 &&
        (derived ? this.recordStep(p, d, r, s - 1) : p.doorSteps[steps + s - 1]) === step
      ) {
        continue;
      } else {
        this.counters[Stat.failedWrongPort]++;
        this.emitLimited(p, EV_FAILED, FAIL_WRONG_PORT, r, s, d, this.now);
        stages[base + j] = 0;
        died = true;
      }
    }
    if (died && !this.settle(p, r)) return;
    if (advanced) {
      this.ageRemove(r);
      this.ageAppend(r, false);
    }
  }

  /** §4 step 6 for the fixed doors of group g; returns whether a record now exists for the key. */
  private start(p: Program, g: number, proto: number, flags: number, step: number): boolean {
    const slot = p.slot(g, step);
    if (slot === NONE) return false;
    const c = p.slotCohort[slot];
    if (c === NONE) return false;
    const size = p.cohortSize[c];
    let needRecord = false;
    for (let j = 0; j < size; j++) {
      const d = p.cohortDoors[c * COHORT + j];
      if (p.doorLength[d] >= 2 && p.flagsOk(d, proto, flags)) needRecord = true;
    }
    if (needRecord && this.tracked >= p.maxTracked) this.evict(p);
    let r = NONE;
    let minTimeout = Infinity;
    for (let j = 0; j < size; j++) {
      const d = p.cohortDoors[c * COHORT + j];
      if (!p.flagsOk(d, proto, flags)) continue;
      const len = p.doorLength[d];
      this.emitForPacket(p, EV_STAGE, 1, d);
      if (len === 1) {
        this.counters[Stat.completed]++;
        this.emitForPacket(p, EV_COMPLETED, 1, d);
      } else {
        if (r === NONE) r = this.allocate(p, c);
        this.recBytes[r * RECORD_BYTES + STAGE_BYTE + j] = 1;
        if (p.doorTimeoutUs[d] < minTimeout) minTimeout = p.doorTimeoutUs[d];
      }
    }
    if (r === NONE) return false;
    this.track(p, r, minTimeout);
    return true;
  }

  /** A new record with live members enters the index, the stage-1 list and the wheel. */
  private track(p: Program, r: number, timeoutUs: number): void {
    this.recTimes[r * RECORD_DOUBLES + T_FIRST_DOUBLE] = this.now;
    this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] = this.now + timeoutUs;
    this.indexInsert(p, r);
    this.ageAppend(r, true);
    this.wheelAppend(r);
  }

  /**
   * §10 start for the derived doors of group g, in program order: the first of windows w−1, w, w+1 not
   * used by (door, source) whose step 0 is this packet. A length-1 door completes at once; a longer one
   * needs the record of (family, source, g), unless the fixed doors or an earlier derived door took it.
   */
  private startDerived(p: Program, g: number, proto: number, flags: number, step: number, tracked: boolean): void {
    const first = p.groupDerivedStart[g];
    const end = first + p.groupDerivedCount[g];
    const family = this.packet.family;
    for (let k = first; k < end; k++) {
      const d = p.groupDerived[k];
      if (!p.derivedSees(d, proto, this.packet.dport, flags)) continue;
      const w = Math.floor(this.now / p.derivedStepUs[d]);
      let offset = 0;
      for (; offset < 3; offset++) {
        const window = w + offset - 1;
        if (this.usedWindows?.has(p.doorFingerprint[d], family, this.packetSrc32, window, this.now)) continue;
        if (this.derivedStep(p, d, window, 0) === step) break;
      }
      if (offset === 3) continue;
      if (p.doorLength[d] === 1) {
        this.emitForPacket(p, EV_STAGE, 1, d);
        this.counters[Stat.completed]++;
        this.emitForPacket(p, EV_COMPLETED, 1, d, w + offset - 1);
        this.markUsed(p, d, w + offset - 1);
        continue;
      }
      if (tracked) continue;
      if (this.tracked >= p.maxTracked) this.evict(p);
      this.emitForPacket(p, EV_STAGE, 1, d);
      const r = this.allocate(p, p.doorCohort[d]);
      this.recBytes[r * RECORD_BYTES + STAGE_BYTE] = 1;
      this.recBytes[r * RECORD_BYTES + MISC_BYTE] = offset;
      this.track(p, r, p.doorTimeoutUs[d]);
      tracked = true;
    }
  }

  /** The window a derived record started in (MATCHER.md §10). */
  private recordWindow(p: Program, d: number, r: number): number {
    const tFirst = this.recTimes[r * RECORD_DOUBLES + T_FIRST_DOUBLE];
    return Math.floor(tFirst / p.derivedStepUs[d]) + (this.recBytes[r * RECORD_BYTES + MISC_BYTE] & WINDOW_OFFSET) - 1;
  }

  /** Step i of derived record r; the record is the packet source's. */
  private recordStep(p: Program, d: number, r: number, i: number): number {
    return this.derivedStep(p, d, this.recordWindow(p, d, r), i);
  }

  /** Step i (port | proto << 16) of derived door d for the packet's source in `window`. */
  private derivedStep(p: Program, d: number, window: number, i: number): number {
    const msg = this.derivedMessage;
    const hi = Math.floor(window / 4294967296);
    const lo = window - hi * 4294967296;
    msg[4] = hi >>> 24;
    msg[5] = hi >>> 16;
    msg[6] = hi >>> 8;
    msg[7] = hi;
    msg[8] = lo >>> 24;
    msg[9] = lo >>> 16;
    msg[10] = lo >>> 8;
    msg[11] = lo;
    if (p.derivedBind[d]) {
      msg[12] = this.packet.family;
      msg.set(this.packet.src, 13);
    } else {
      msg.fill(0, 12, 29);
    }
    msg[29] = i >> 2;
    const block = this.derivedBlock;
    p.derivedKey[d]!.mac(msg, 30, block);
    const j = (i & 3) * 2;
    const port = p.derivedPort(d, block[j] % p.derivedRangeSize[d]);
    const protocols = p.derivedProtoMask[d];
    const proto = protocols === 3 ? (block[j + 1] % 2 === 0 ? TCP : UDP) : protocols === 1 ? TCP : UDP;
    return (port | (proto << 16)) >>> 0;
  }

  private markUsed(p: Program, d: number, window: number): void {
    this.usedWindows ??= new UsedWindows();
    this.usedWindows.add(p.doorFingerprint[d], this.packet.family, this.packetSrc32, window, (window + 2) * p.derivedStepUs[d], this.now);
  }

  /**
   * §4.1: make room for one record in a full table. The stage-1 list gives its oldest while it holds at
   * least half the table (or nothing has progressed), else the progressed list gives its oldest.
   */
  private evict(p: Program): void {
    const fromStage1 = this.progressedHead === NONE || this.s1Size * 2 >= p.maxTracked;
    const r = fromStage1 ? this.s1Head : this.progressedHead;
    const c = this.recWords[r * RECORD_WORDS + COHORT_WORD];
    const size = p.cohortSize[c];
    for (let j = 0; j < size; j++) {
      const s = this.recBytes[r * RECORD_BYTES + STAGE_BYTE + j];
      if (s === 0) continue;
      this.counters[Stat.evicted]++;
      if (!fromStage1) this.counters[Stat.evictedProgressed]++;
      this.emitLimited(p, EV_FAILED, FAIL_EVICTED, r, s, p.cohortDoors[c * COHORT + j], this.now);
    }
    this.free(p, r);
  }

  // ---- records ----

  /** A fresh record of cohort c for the packet's source (not yet indexed or listed). */
  private allocate(p: Program, c: number): number {
    let r: number;
    if (this.freeTop > 0) r = this.freeStack[--this.freeTop];
    else {
      // no free slot means fewer than maxTracked records (the caller evicted otherwise): room to grow
      if (this.highWater === this.capacity) this.grow(p, Math.min(this.capacity * 2, p.maxTracked));
      r = this.highWater++;
    }
    this.tracked++;
    const w = r * RECORD_WORDS;
    const at = r * RECORD_BYTES;
    const src = this.packetSrc32;
    this.recSrc[w + SRC_WORD] = src[0];
    this.recSrc[w + SRC_WORD + 1] = src[1];
    this.recSrc[w + SRC_WORD + 2] = src[2];
    this.recSrc[w + SRC_WORD + 3] = src[3];
    this.recBytes[at + FAMILY_BYTE] = this.packet.family;
    this.recWords[w + COHORT_WORD] = c;
    this.recTimes[r * RECORD_DOUBLES + STAGE_BYTE / 8] = 0; // the COHORT (8) stage bytes, in one store of all-zero bits
    this.recHalves[r * RECORD_HALVES + BUCKET_HALF] = DETACHED;
    this.recWords[w + AGE_PREV_WORD] = UNLISTED;
    return r;
  }

  private free(p: Program, r: number): void {
    this.indexRemove(p, r);
    this.release(r);
  }

  /** Returns r (already out of the index) to the pool; cohort NONE marks a free slot. */
  private release(r: number): void {
    this.wheelUnlink(r);
    this.ageRemove(r);
    this.recWords[r * RECORD_WORDS + COHORT_WORD] = NONE;
    this.freeStack[this.freeTop++] = r;
    this.tracked--;
  }

  /** Appends r (on no age list) to the tail of the stage-1 or the progressed list. */
  private ageAppend(r: number, toStage1: boolean): void {
    const w = r * RECORD_WORDS;
    const misc = r * RECORD_BYTES + MISC_BYTE;
    const tail = toStage1 ? this.s1Tail : this.progressedTail;
    this.recWords[w + AGE_NEXT_WORD] = NONE;
    this.recWords[w + AGE_PREV_WORD] = tail;
    if (toStage1) {
      this.recBytes[misc] |= IN_STAGE1;
      this.s1Size++;
      if (tail === NONE) this.s1Head = r;
      this.s1Tail = r;
    } else {
      this.recBytes[misc] &= ~IN_STAGE1;
      if (tail === NONE) this.progressedHead = r;
      this.progressedTail = r;
    }
    if (tail !== NONE) this.recWords[tail * RECORD_WORDS + AGE_NEXT_WORD] = r;
  }

  private ageRemove(r: number): void {
    const words = this.recWords;
    const prev = words[r * RECORD_WORDS + AGE_PREV_WORD];
    if (prev === UNLISTED) return;
    const next = words[r * RECORD_WORDS + AGE_NEXT_WORD];
    const inStage1 = (this.recBytes[r * RECORD_BYTES + MISC_BYTE] & IN_STAGE1) !== 0;
    words[r * RECORD_WORDS + AGE_PREV_WORD] = UNLISTED;
    if (inStage1) this.s1Size--;
    if (prev !== NONE) words[prev * RECORD_WORDS + AGE_NEXT_WORD] = next;
    else if (inStage1) this.s1Head = next;
    else this.progressedHead = next;
    if (next !== NONE) words[next * RECORD_WORDS + AGE_PREV_WORD] = prev;
    else if (inStage1) this.s1Tail = prev;
    else this.progressedTail = prev;
  }

  private grow(p: Program, capacity: number): void {
    const bytes = new Uint8Array(capacity * RECORD_BYTES);
    bytes.set(this.recBytes);
    this.recBytes = bytes;
    this.recHalves = new Uint16Array(bytes.buffer);
    this.recWords = new Int32Array(bytes.buffer);
    this.recSrc = new Uint32Array(bytes.buffer);
    this.recTimes = new Float64Array(bytes.buffer);
    const freeStack = new Int32Array(capacity);
    freeStack.set(this.freeStack);
    this.freeStack = freeStack;
    this.capacity = capacity;
    this.rebuildIndex(p);
  }

  // ---- index ----

  /** The 32-bit hash of a key: its bits under indexMask pick the home slot, the bits above tag the entry. */
  private hashKey(s: Uint32Array, o: number, family: number, g: number): number {
    let h = Math.imul(family ^ (g << 8), 0x9e3779b1);
    h = Math.imul(h ^ s[o], 0x85ebca6b);
    h = Math.imul(h ^ s[o + 1], 0xc2b2ae35);
    h = Math.imul(h ^ s[o + 2], 0x27d4eb2f);
    h = Math.imul(h ^ s[o + 3], 0x165667b1);
    return h ^ (h >>> 15);
  }

  /** The record of (family, packet source, group g), or NONE. */
  private find(p: Program, family: number, g: number): number {
    const ps = this.packetSrc32;
    const src = this.recSrc;
    const mask = this.indexMask;
    const h = this.hashKey(ps, 0, family, g);
    const tag = h & ~mask;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = this.index[i];
      if (e === 0) return NONE;
      if ((e & ~mask) !== tag) continue;
      const r = (e & mask) - 1;
      const w = r * RECORD_WORDS;
      if (
        src[w + SRC_WORD] === ps[0] &&
        src[w + SRC_WORD + 1] === ps[1] &&
        src[w + SRC_WORD + 2] === ps[2] &&
        src[w + SRC_WORD + 3] === ps[3] &&
        this.recBytes[r * RECORD_BYTES + FAMILY_BYTE] === family &&
        p.cohortGroup[this.recWords[w + COHORT_WORD]] === g
      ) {
        return r;
      }
    }
  }

  /** The hash of record r's key (family, source, group) under program p. */
  private recordHash(p: Program, r: number): number {
    const group = p.cohortGroup[this.recWords[r * RECORD_WORDS + COHORT_WORD]];
    return this.hashKey(this.recSrc, r * RECORD_WORDS + SRC_WORD, this.recBytes[r * RECORD_BYTES + FAMILY_BYTE], group);
  }

  private indexInsert(p: Program, r: number): void {
    const mask = this.indexMask;
    const h = this.recordHash(p, r);
    let i = h & mask;
    while (this.index[i] !== 0) i = (i + 1) & mask;
    this.index[i] = (h & ~mask) | (r + 1);
  }

  private indexRemove(p: Program, r: number): void {
    const mask = this.indexMask;
    let i = this.recordHash(p, r) & mask;
    while ((this.index[i] & mask) !== r + 1) i = (i + 1) & mask;
    // backward-shift deletion keeps every probe chain unbroken without tombstones
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const e = this.index[j];
      if (e === 0) break;
      const home = this.recordHash(p, (e & mask) - 1) & mask;
      // move e back to i unless its home lies cyclically in (i, j]
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        this.index[i] = e;
        i = j;
      }
    }
    this.index[i] = 0;
  }

  private rebuildIndex(p: Program): void {
    let size = 16;
    while (size < this.capacity * 2) size *= 2;
    this.index = new Int32Array(size);
    this.indexMask = size - 1;
    for (let r = 0; r < this.highWater; r++) if (this.recWords[r * RECORD_WORDS + COHORT_WORD] !== NONE) this.indexInsert(p, r);
  }

  // ---- reload (§5) ----

  /** Key order (family, source bytes, group): the tie-break for records of the same age (MATCHER.md §5). */
  private compareKeys(p: Program, a: number, b: number): number {
    const bytes = this.recBytes;
    const at = a * RECORD_BYTES;
    const bt = b * RECORD_BYTES;
    if (bytes[at + FAMILY_BYTE] !== bytes[bt + FAMILY_BYTE]) return bytes[at + FAMILY_BYTE] - bytes[bt + FAMILY_BYTE];
    for (let i = 0; i < 16; i++) {
      const d = bytes[at + SRC_WORD * 4 + i] - bytes[bt + SRC_WORD * 4 + i];
      if (d !== 0) return d;
    }
    const words = this.recWords;
    return p.cohortGroup[words[a * RECORD_WORDS + COHORT_WORD]] - p.cohortGroup[words[b * RECORD_WORDS + COHORT_WORD]];
  }

  private carryOver(old: Program, next: Program): void {
    // fingerprint -> new doors with it, in program order (identical doors map by rank)
    const newDoors = new Map<number, number[]>();
    for (let d = 0; d < next.nDoors; d++) {
      const list = newDoors.get(next.doorFingerprint[d]) ?? [];
      list.push(d);
      newDoors.set(next.doorFingerprint[d], list);
    }
    const rank = new Int32Array(old.nDoors);
    const seen = new Map<number, number>();
    for (let d = 0; d < old.nDoors; d++) {
      const n = seen.get(old.doorFingerprint[d]) ?? 0;
      rank[d] = n;
      seen.set(old.doorFingerprint[d], n + 1);
    }
    const mapped = new Int32Array(old.nDoors).fill(NONE);
    for (let d = 0; d < old.nDoors; d++) mapped[d] = newDoors.get(old.doorFingerprint[d])?.[rank[d]] ?? NONE;

    // the index is keyed by the old groups: it is rebuilt for the survivors afterwards
    const stages = new Uint8Array(COHORT);
    const words = this.recWords;
    for (let r = 0; r < this.highWater; r++) {
      const c = words[r * RECORD_WORDS + COHORT_WORD];
      if (c === NONE) continue;
      let newCohort = NONE;
      let oneCohort = true;
      stages.fill(0);
      for (let j = 0; j < old.cohortSize[c]; j++) {
        const s = this.recBytes[r * RECORD_BYTES + STAGE_BYTE + j];
        if (s === 0) continue;
        const d = mapped[old.cohortDoors[c * COHORT + j]];
        if (d === NONE) continue;
        if (newCohort !== NONE && next.doorCohort[d] !== newCohort) oneCohort = false;
        newCohort = next.doorCohort[d];
        stages[next.doorMember[d]] = s;
      }
      if (newCohort === NONE || !oneCohort) {
        this.release(r);
        continue;
      }
      words[r * RECORD_WORDS + COHORT_WORD] = newCohort; // and so the group of newCohort
      this.recBytes.set(stages, r * RECORD_BYTES + STAGE_BYTE);
      // the deadline can only grow (dropped members); the wheel keeps its order and re-files on visit
      this.recTimes[r * RECORD_DOUBLES + DEADLINE_DOUBLE] = this.recTimes[r * RECORD_DOUBLES + T_FIRST_DOUBLE] + this.liveTimeout(next, r);
    }
    // a target address maps to one group in each program, so the new keys are distinct
    this.rebuildIndex(next);

    if (this.tracked > next.maxTracked) {
      while (this.tracked > next.maxTracked && this.s1Head !== NONE) this.free(next, this.s1Head);
      if (this.tracked > next.maxTracked) {
        const rest: number[] = [];
        for (let r = 0; r < this.highWater; r++) if (words[r * RECORD_WORDS + COHORT_WORD] !== NONE) rest.push(r);
        const tFirst = (r: number): number => this.recTimes[r * RECORD_DOUBLES + T_FIRST_DOUBLE];
        rest.sort((a, b) => tFirst(a) - tFirst(b) || this.compareKeys(next, a, b));
        for (let k = 0; this.tracked > next.maxTracked; k++) this.free(next, rest[k]);
      }
    }
  }
}

function matchesAny(families: Uint8Array, words: Uint32Array, family: number, dst: Uint32Array): boolean {
  for (let i = 0; i < families.length; i++) if (families[i] === family && sameAddress(words, i * 4, dst)) return true;
  return false;
}

function sameAddress(words: Uint32Array, o: number, dst: Uint32Array): boolean {
  return words[o] === dst[0] && words[o + 1] === dst[1] && words[o + 2] === dst[2] && words[o + 3] === dst[3];
}

/**
 * The used-table of MATCHER.md §10: (door fingerprint, family, source, window) of derived sequences that
 * opened their door. A ring of USED_WINDOWS entries in insertion order plus an open-addressing index;
 * adding first drops expired entries from the head, then the oldest entry when the ring is full (FIFO).
 * An entry whose expiry has passed counts as absent even while it is still in the ring.
 */
class UsedWindows {
  private readonly fingerprint = new Uint32Array(USED_WINDOWS);
  private readonly family = new Uint8Array(USED_WINDOWS);
  private readonly src = new Uint32Array(USED_WINDOWS * 4);
  private readonly window = new Float64Array(USED_WINDOWS);
  private readonly expiry = new Float64Array(USED_WINDOWS);
  private head = 0;
  private count = 0;
  private readonly index = new Int32Array(USED_WINDOWS * 2); // ring position + 1, 0 = empty
  private readonly mask = USED_WINDOWS * 2 - 1;

  has(fingerprint: number, family: number, src: Uint32Array, window: number, now: number): boolean {
    if (this.count === 0) return false;
    for (let i = this.home(fingerprint, family, src, window); ; i = (i + 1) & this.mask) {
      const e = this.index[i];
      if (e === 0) return false;
      if (this.matches(e - 1, fingerprint, family, src, window) && now < this.expiry[e - 1]) return true;
    }
  }

  add(fingerprint: number, family: number, src: Uint32Array, window: number, expiry: number, now: number): void {
    while (this.count > 0 && this.expiry[this.head] <= now) this.removeHead();
    if (this.count === USED_WINDOWS) this.removeHead();
    const at = (this.head + this.count) % USED_WINDOWS;
    this.count++;
    this.fingerprint[at] = fingerprint;
    this.family[at] = family;
    this.src.set(src.subarray(0, 4), at * 4);
    this.window[at] = window;
    this.expiry[at] = expiry;
    let i = this.home(fingerprint, family, src, window);
    while (this.index[i] !== 0) i = (i + 1) & this.mask;
    this.index[i] = at + 1;
  }

  private matches(at: number, fingerprint: number, family: number, src: Uint32Array, window: number): boolean {
    const s = at * 4;
    return (
      this.fingerprint[at] === fingerprint &&
      this.family[at] === family &&
      this.window[at] === window &&
      this.src[s] === src[0] &&
      this.src[s + 1] === src[1] &&
      this.src[s + 2] === src[2] &&
      this.src[s + 3] === src[3]
    );
  }

  private home(fingerprint: number, family: number, src: Uint32Array, window: number): number {
    let h = Math.imul(fingerprint ^ family, 0x9e3779b1);
    h = Math.imul(h ^ src[0], 0x85ebca6b);
    h = Math.imul(h ^ src[1], 0xc2b2ae35);
    h = Math.imul(h ^ src[2], 0x27d4eb2f);
    h = Math.imul(h ^ src[3], 0x165667b1);
    h = Math.imul(h ^ (window >>> 0), 0x9e3779b1);
    return (h ^ (h >>> 15)) & this.mask;
  }

  private removeHead(): void {
    const at = this.head;
    const s = at * 4;
    const view = this.src.subarray(s, s + 4);
    let i = this.home(this.fingerprint[at], this.family[at], view, this.window[at]);
    while (this.index[i] !== at + 1) i = (i + 1) & this.mask;
    // backward-shift deletion, as in the record index
    for (let j = (i + 1) & this.mask; this.index[j] !== 0; j = (j + 1) & this.mask) {
      const e = this.index[j] - 1;
      const home = this.home(this.fingerprint[e], this.family[e], this.src.subarray(e * 4, e * 4 + 4), this.window[e]);
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        this.index[i] = this.index[j];
        i = j;
      }
    }
    this.index[i] = 0;
    this.head = (this.head + 1) % USED_WINDOWS;
    this.count--;
  }
}
