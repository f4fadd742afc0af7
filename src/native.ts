// The only file that loads the addon. Declares the typed contract of native/binding/ and casts to it once.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EVENT_RECORD_SIZE, EventKind, FailReason } from './match/events.js';
import { PROTO_ICMP } from './config/program.js';
import { STAT_NAMES } from './match/matcher-api.js';
import { SPA_MAX_PAYLOAD, SPA_MIN_PAYLOAD } from './spa/packet.js';

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
/** the package's version, for -V of both commands */
export const VERSION = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

/** Synchronous matcher over the C++ core (native/binding/native_matcher.cc): no socket, no root. */
export interface NativeMatcherHandle {
  load(program: Uint32Array): void;
  feed(data: Uint8Array, offsets: Uint32Array, timestampsUs: Float64Array, linkTypes: Uint16Array): Uint8Array;
  tick(nowUs: number): Uint8Array;
  /** fills the counters of docs/MATCHER.md §8 (STAT_COUNT of them) */
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
  /** fills threads × SHARD_STATS counters: MATCHER.md §8's 13, then src/capture/engine.ts CAPTURE_STAT_NAMES */
  stats(out: Float64Array): void;
  close(): void;
}

export interface EngineClass {
  new (
    options: EngineNativeOptions,
    program: Uint32Array,
    onBatch: (shard: number, events: Uint8Array | null, frames: EngineFrames | null) => void,
  ): EngineHandle;
  readonly SHARD_STATS: number;
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

export interface Binding {
  EVENT_RECORD_SIZE: number;
  /** the step protocol of an ICMP echo request in programs and parsed packets (native/core/packet.h) */
  PROTO_ICMP: number;
  /** one ICMP echo request with payloadBytes of payload through a ping socket (native/core/echo_request.h);
   * addresses are 16 bytes (IPv4 in bytes 0-3); throws an Error with code, errno and syscall */
  sendEchoRequest(family: 4 | 6, destination: Uint8Array, source: Uint8Array | null, payloadBytes: number): void;
  EVENT_KIND_SPA: number;
  FAIL_REASON_SPA_AUTH: number;
  SPA_MIN_PAYLOAD: number;
  SPA_MAX_PAYLOAD: number;
  STAT_COUNT: number;
  Engine: EngineClass;
  NativeMatcher: new (shard?: number) => NativeMatcherHandle;
  /** opens the socket, in the network namespace at netnsPath when given; throws an Error with code and errno */
  NftElements: new (netnsPath?: string) => NftElementsHandle;
  UnixDatagram: new (path: string) => UnixDatagramHandle;
}

export class NativeLoadError extends Error {
  readonly code = 'ERR_NATIVE_LOAD';
}

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
    checkConstants(binding);
    cached = binding;
    return cached;
  } catch (err) {
    loadError = new NativeLoadError(
      [
        `could not load the knockd-fast native addon: ${(err as Error).message}`,
        `looked in ${join(packageRoot, 'prebuilds')} (prebuilt, linux-x64 glibc) and ${join(packageRoot, 'build', 'Release')}.`,
        'To fix: rebuild it from source with `npm rebuild knockd-fast` (needs cmake, g++ and make:',
        '`apt-get install cmake g++ make`), or in a checkout run `npm run build:native`.',
      ].join('\n'),
    );
    throw loadError;
  }
}

/** Constants both sides of the boundary define: an addon built from other sources would misread programs. */
function checkConstants(binding: Binding): void {
  const expected: [keyof Binding, number][] = [
    ['EVENT_RECORD_SIZE', EVENT_RECORD_SIZE],
    ['PROTO_ICMP', PROTO_ICMP],
    ['EVENT_KIND_SPA', EventKind.SPA],
    ['FAIL_REASON_SPA_AUTH', FailReason.SPA_AUTH],
    ['SPA_MIN_PAYLOAD', SPA_MIN_PAYLOAD],
    ['SPA_MAX_PAYLOAD', SPA_MAX_PAYLOAD],
    ['STAT_COUNT', STAT_NAMES.length],
  ];
  for (const [name, value] of expected) {
    if (binding[name] !== value) {
      throw new Error(`the addon's ${name} is ${String(binding[name])}, this code's is ${value}: the addon was built from other sources`);
    }
  }
}
