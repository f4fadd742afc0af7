// The only file that loads the addon. Declares the typed contract of native/binding/ and casts to it once.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CAPTURE_STAT_NAMES, EngineError } from './capture/engine-contract.js';
import * as program from './config/program.js';
import { EVENT_RECORD_SIZE, EventField, EventKind, FailReason } from './match/events.js';
import { STAT_NAMES } from './match/matcher-api.js';
import { SPA_HMAC_B64_LEN, SPA_MAX_PAYLOAD, SPA_MIN_PAYLOAD } from './spa/packet.js';

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
/** the package's version, for -V of both commands */
export const VERSION = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

/** Synchronous matcher over the C++ core (native/binding/native_matcher.cc): no socket, no root. */
export interface NativeMatcherHandle {
  load(program: Uint32Array): void;
  feed(data: Uint8Array, offsets: Uint32Array, timestampsUs: Float64Array, linkTypes: Uint16Array): Uint8Array;
  tick(nowUs: number): Uint8Array;
  /** fills the counters of docs/MATCHER.md §8 (BindingContract.matcherStats) */
  stats(out: Float64Array): void;
  /** frees the tracking state now (else at garbage collection); any later call but close() throws */
  close(): void;
}

/** Options of the live capture engine (native/binding/engine.cc; validated in src/capture/engine.ts). */
export interface EngineNativeOptions {
  interfaces: string[];
  threads: number;
  forwardFrames?: boolean;
  blockBytes?: number;
  blockCount?: number;
  retireMs?: number;
  flushRecords?: number;
  flushUs?: number;
  tickMs?: number;
  interfaceCheckMs?: number;
}

/** Filtered frames of one capture thread (--matcher ts), in the FrameBatch layout of src/match/matcher-api.ts. */
export interface EngineFrames {
  data: Uint8Array;
  offsets: Uint32Array;
  timestampsUs: Float64Array;
  linkTypes: Uint16Array;
}

/** Live AF_PACKET capture (native/binding/engine.cc); src/capture/engine.ts is its only user. */
export interface EngineHandle {
  load(program: Uint32Array): void;
  /** fills threads × (matcherStats + captureStats) counters, shard-major (BindingContract) */
  stats(out: Float64Array): void;
  close(): void;
}

export interface EngineClass {
  new (
    options: EngineNativeOptions,
    program: Uint32Array,
    onBatch: (shard: number, events: Uint8Array | null, frames: EngineFrames | null) => void,
  ): EngineHandle;
  /** the visibility filter as 8-byte sock_filter records; linkType 0 = the live socket layout */
  compileFilter(program: Uint32Array, linkType: number): { code: Uint8Array; coarse: boolean };
  fanoutFilter(): Uint8Array;
}

/** A connected AF_UNIX datagram socket (native/binding/unix_datagram.cc), for syslog's /dev/log. */
export interface UnixDatagramHandle {
  /** one datagram; false when the receiver's queue is full and the message was dropped; throws on other errors */
  send(data: Uint8Array): boolean;
  close(): void;
}

/** The elements of one nftables set to (re)open, as native/binding/nft_elements_binding.cc reads them. */
export interface NftSetElementsNative {
  family: 'ip' | 'ip6' | 'inet' | 'bridge' | 'arp' | 'netdev';
  table: string;
  set: string;
  /** 4 or 16 bytes per element */
  addresses: Uint8Array;
  /** whole milliseconds >= 1, one per element */
  timeoutsMs: Float64Array;
}

/** Set elements over NETLINK_NETFILTER (native/core/nft_elements.h); src/actions/nft/writers.ts is its only user. */
export interface NftElementsHandle {
  /** one transaction (add, delete, add each element), synchronous (~0.1 ms for tens of elements, ~2 ms for
   * 1,024); throws an Error carrying code and errno */
  refresh(sets: NftSetElementsNative[]): void;
  close(): void;
}

/**
 * Every number and name both sides of the boundary define, in one object: native/binding/contract.cc
 * builds the addon's from native/core, expectedContract() ours from the TypeScript stages, and
 * loadBinding() refuses an addon whose contract differs (it was built from other sources).
 */
export interface BindingContract {
  /** docs/MATCHER.md §7: record size and byte offsets of its fields */
  eventRecord: { size: number; fields: Record<keyof typeof EventField, number> };
  eventKinds: Record<keyof typeof EventKind, number>;
  failReasons: Record<keyof typeof FailReason, number>;
  /** codes of ERROR records (native/core/capture.h) */
  engineErrors: Record<keyof typeof EngineError, number>;
  /** counter names in the order stats() fills them: the matcher's (MATCHER.md §8), then the capture's */
  matcherStats: readonly string[];
  captureStats: readonly string[];
  /** the program format src/config/program.ts writes (MATCHER.md §6) */
  program: {
    magic: number;
    version: number;
    headerWords: number;
    addressWords: number;
    doorHeaderWords: number;
    derivedWords: number;
    spaDoorWords: number;
    maxSteps: number;
    maxCohort: number;
    maxTargets: number;
    maxDoors: number;
    header: Record<keyof typeof program.Header, number>;
    flags: Record<keyof typeof program.ProgramFlag, number>;
    doorOptions: Record<keyof typeof program.DoorOption, number>;
  };
  /** step protocols in programs and parsed packets */
  protocols: { TCP: number; UDP: number; ICMP: number };
  /** the SPA step's payload limits and digest length (docs/SPA.md §4) */
  spa: { minPayload: number; maxPayload: number; hmacBase64Length: number };
}

export interface Binding {
  CONTRACT: BindingContract;
  /** one ICMP echo request with payloadBytes of payload through a ping socket (native/core/echo_request.h);
   * addresses are 16 bytes (IPv4 in bytes 0-3); throws an Error with code, errno and syscall */
  sendEchoRequest(family: 4 | 6, destination: Uint8Array, source: Uint8Array | null, payloadBytes: number): void;
  Engine: EngineClass;
  NativeMatcher: new (shard?: number) => NativeMatcherHandle;
  /** opens the socket, in the network namespace at netnsPath when given; throws an Error with code and errno */
  NftElements: new (netnsPath?: string) => NftElementsHandle;
  UnixDatagram: new (path: string) => UnixDatagramHandle;
}

export class NativeLoadError extends Error {
  readonly code = 'ERR_NATIVE_LOAD';
}

/** The addon's contract differs from this code's; the message names every difference. */
export class BindingContractError extends Error {}

let cached: Binding | undefined;
let loadError: Error | undefined;

/** Loads the addon (prebuilt or built from source) once; throws NativeLoadError with the fixes. */
export function loadBinding(): Binding {
  if (cached) return cached;
  if (loadError) throw loadError;
  try {
    const require = createRequire(import.meta.url);
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    const binding = nodeGypBuild(packageRoot) as Binding;
    checkContract(binding.CONTRACT);
    cached = binding;
    return cached;
  } catch (err) {
    loadError = new NativeLoadError(
      err instanceof BindingContractError
        ? `could not load the knockd-fast native addon: ${err.message}`
        : [
            `could not load the knockd-fast native addon: ${(err as Error).message}`,
            `looked in ${join(packageRoot, 'prebuilds')} (prebuilt, linux-x64 glibc) and ${join(packageRoot, 'build', 'Release')}.`,
            'To fix: rebuild it from source with `npm rebuild knockd-fast` (needs cmake, g++ and make:',
            '`apt-get install cmake g++ make`), or in a checkout run `npm run build:native`.',
          ].join('\n'),
    );
    throw loadError;
  }
}

/** This code's side of the contract, read from the stages that use each value. */
export function expectedContract(): BindingContract {
  return {
    eventRecord: { size: EVENT_RECORD_SIZE, fields: { ...EventField } },
    eventKinds: { ...EventKind },
    failReasons: { ...FailReason },
    engineErrors: { ...EngineError },
    matcherStats: [...STAT_NAMES],
    captureStats: [...CAPTURE_STAT_NAMES],
    program: {
      magic: program.PROGRAM_MAGIC,
      version: program.PROGRAM_VERSION,
      headerWords: program.HEADER_WORDS,
      addressWords: program.ADDRESS_WORDS,
      doorHeaderWords: program.DOOR_HEADER_WORDS,
      derivedWords: program.DERIVED_WORDS,
      spaDoorWords: program.SPA_DOOR_WORDS,
      maxSteps: program.MAX_STEPS,
      maxCohort: program.MAX_COHORT,
      maxTargets: program.MAX_TARGETS,
      maxDoors: program.MAX_DOORS,
      header: { ...program.Header },
      flags: { ...program.ProgramFlag },
      doorOptions: { ...program.DoorOption },
    },
    protocols: { TCP: program.PROTO_TCP, UDP: program.PROTO_UDP, ICMP: program.PROTO_ICMP },
    spa: { minPayload: SPA_MIN_PAYLOAD, maxPayload: SPA_MAX_PAYLOAD, hmacBase64Length: SPA_HMAC_B64_LEN },
  };
}

const shown = (v: unknown): string => (v === undefined ? 'nothing' : JSON.stringify(v));

/** Every place where the addon's contract differs from ours, as "path: the addon has X, this code Y". */
export function contractMismatches(addon: unknown, ours: BindingContract = expectedContract()): string[] {
  return differences(addon, ours, 'CONTRACT');
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function differences(addon: unknown, ours: unknown, path: string): string[] {
  if (isObject(ours) && isObject(addon)) {
    const keys = [...new Set([...Object.keys(ours), ...Object.keys(addon)])];
    return keys.flatMap((k) => differences(addon[k], ours[k], `${path}.${k}`));
  }
  if (isObject(ours)) return [`${path}: the addon has ${shown(addon)}, this code an object of ${Object.keys(ours).join(', ')}`];
  // numbers, and name lists as a whole (an order change is one difference, shown in full)
  if (JSON.stringify(addon) === JSON.stringify(ours)) return [];
  return [`${path}: the addon has ${shown(addon)}, this code ${shown(ours)}`];
}

/** Throws BindingContractError naming every difference, and how to get a matching addon. */
export function checkContract(addon: unknown): void {
  const mismatches = contractMismatches(addon);
  if (mismatches.length === 0) return;
  throw new BindingContractError(
    [
      `it was built from other sources than this code (${mismatches.length} difference${mismatches.length === 1 ? '' : 's'} in the binding contract):`,
      ...mismatches.map((m) => `  ${m}`),
      'To fix: rebuild it from these sources with `npm run build:native` (an installed package: `npm rebuild knockd-fast`).',
    ].join('\n'),
  );
}
