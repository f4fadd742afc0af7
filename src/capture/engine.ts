// Live capture for the daemon: a thin TypeScript layer over the native Engine (native/binding/engine.cc).
//
//   const addresses = interfaceAddresses(['eth0', 'eth1'], false);
//   const engine = CaptureEngine.open({
//     interfaces: ['eth0', 'eth1'],   // interface names, or ['any']
//     threads: 2,                     // capture threads = matcher shards (default: the number of CPUs)
//     matcher: 'native',              // 'ts': native captures and filters, TsMatcher (one per shard) matches here
//     ignoreIpv6: false,              // -4: IPv6 addresses are not local (and the program ignores IPv6)
//     program: compileProgram(config, { localAddresses: addresses, stageEvents: true }).words,
//     addresses,                      // the local addresses `program` was compiled for
//     onAddressesChanged: (a) => ..., // the local addresses changed: the owner compiles for them and calls load()
//     onEvents: (batch) => ...,       // 40-byte event records (src/match/events.ts), never ERROR records
//     onError: (err) => ...,          // KnockdError: a capture thread stopped, or reopening an interface failed
//     onInterface: (notice) => ...,   // an interface went down / came back / was reopened; local addresses changed
//   });                               // throws KnockdError (missing interface, no CAP_NET_RAW, ...) with a hint
//   engine.load(words);               // swap in a program (kernel filters at once, shards at their next wake-up)
//   engine.localAddresses();          // the addresses last reported (or given at open)
//   engine.stats();                   // counters summed over the shards
//   await engine.close();             // idempotent; no callback runs after it
//
// Local addresses are the union of the capture interfaces' addresses (`any`: every address of the
// host), re-read every addressPollMs (2 s); the engine never compiles: it reports a change and its owner
// loads the program for the new addresses, which also rebuilds the kernel filter. Each shard's matcher
// gets ceil(MaxTracked / threads) records, and by default each thread's ring a share of 16 MiB per
// interface (ringBlockBytes).
import { availableParallelism, constants as osConstants, networkInterfaces } from 'node:os';
import { parseAddress, type Address } from '../address.js';
import { EVENT_RECORD_SIZE, EventField, EventKind, recordsOf } from '../match/events.js';
import { CAPTURE_STAT_NAMES, EngineError, type CaptureStatName } from './engine-contract.js';
import { captureHint, fromNativeError, KnockdError } from '../errors.js';
import { TsMatcher } from '../match/matcher.js';
import { STAT_NAMES, type MatcherStats } from '../match/matcher-api.js';
import { loadBinding, type EngineFrames, type EngineHandle } from '../native.js';
import { Header } from '../config/program.js';

/** Counters in each shard's block of Engine.stats: the matcher's, then the capture's. */
const SHARD_STATS = STAT_NAMES.length + CAPTURE_STAT_NAMES.length;

export type EngineStats = MatcherStats &
  Record<CaptureStatName, number> & {
    /** EngineCounters (src/report/metrics.ts) names */
    queueDrops: number;
    threads: number;
  };

export interface InterfaceNotice {
  interface: string;
  event: 'down' | 'up' | 'reopened' | 'addresses';
  /** a log line */
  message: string;
}

export interface RingOptions {
  /** TPACKET_V3 block size in bytes, per thread: a power of two, at least 4096 (default ringBlockBytes(threads)) */
  blockBytes?: number;
  /** blocks per socket, per thread (default 512; native/core/capture.h says why) */
  blockCount?: number;
  /** ms before a partly filled block is handed over: bounds the delay of a knock (default 1) */
  retireMs?: number;
}

export interface CaptureOptions {
  interfaces: string[];
  threads?: number;
  matcher?: 'native' | 'ts';
  ignoreIpv6?: boolean;
  /** the program to start with (compileProgram(...).words), compiled for `addresses` */
  program: Uint32Array;
  addresses: Address[];
  /** the interfaces' local addresses differ from the last ones: compile for these and call load() */
  onAddressesChanged?: (addresses: Address[]) => void;
  onEvents: (batch: Uint8Array) => void;
  onError?: (err: KnockdError) => void;
  onInterface?: (notice: InterfaceNotice) => void;
  ring?: RingOptions;
  /** event records (or frames) per batch before it is sent to JS (default 256) */
  flushRecords?: number;
  /**
   * µs a batch without a completion may wait for more records, at most 1,000,000. Default: native 100,000
   * (stages, failures and timeouts only: a completion goes at once, and fewer hand-overs are what keep a
   * daemon held to a few % of a core within it at low flood rates); ts 2,000 (the batch carries the frames
   * the TS matcher completes knocks from, so it bounds their latency).
   */
  flushUs?: number;
  /** how often local addresses are re-read, ms (default 2000; 0 = never) */
  addressPollMs?: number;
  /** the local-address source (default interfaceAddresses: the interfaces' addresses from os.networkInterfaces()) */
  readAddresses?: (interfaces: readonly string[], ignoreIpv6: boolean) => Address[];
}

/** The matcher's idle tick (timeouts between packets); --replay ticks on the capture's clock alike. */
export const TICK_MS = 100;
const IFNAME = /^[^\s/:]{1,15}$/;

class OptionsError extends KnockdError {
  constructor(message: string) {
    super(message, { code: 'ERR_INVALID_CAPTURE_OPTIONS' });
  }
}

function positiveInt(value: unknown, name: string, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new OptionsError(`${name} must be a whole number from 1 to ${max} (got ${String(value)})`);
  }
  return value;
}

/**
 * The default block size of each thread's ring: 512 blocks of 32 KiB (16 MiB) per interface split over
 * the threads, i.e. 32 KiB / threads rounded down to a power of two, at least 4 KiB (the page size, the
 * smallest block the kernel takes; it still holds 20+ knock frames). Fanout gives each thread its share
 * of the traffic, so the block count, which bounds the stall a ring absorbs at low rates (512 × retireMs),
 * stays, and the bytes, which bound it at high rates, shrink with the share. Every ring page is resident
 * from mmap: 16 MiB per thread made an idle daemon 128 MiB of rings on 8 cores.
 */
function ringBlockBytes(threads: number): number {
  return Math.max(4096, 2 ** Math.floor(Math.log2((32 << 10) / threads)));
}

/** Every address of the given interfaces (`any`: of every interface), IPv6 too unless ignoreIpv6. */
export function interfaceAddresses(interfaces: readonly string[], ignoreIpv6: boolean): Address[] {
  const present = networkInterfaces();
  const names = interfaces.includes('any') ? Object.keys(present) : interfaces;
  const out: Address[] = [];
  const seen = new Set<string>();
  for (const name of names) {
    for (const info of present[name] ?? []) {
      const a = parseAddress(info.address);
      if (!a || (ignoreIpv6 && a.family === 6)) continue;
      const key = `${a.family}/${Buffer.from(a.bytes).toString('hex')}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(a);
    }
  }
  return out;
}

const addressKey = (list: Address[]): string =>
  list
    .map((a) => `${a.family}/${Buffer.from(a.bytes).toString('hex')}`)
    .sort()
    .join(',');

const errnoName = (errno: number): string => Object.entries(osConstants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;

export class CaptureEngine {
  private readonly handle: EngineHandle;
  private readonly threads: number;
  private readonly statsBuf: Float64Array;
  private readonly tsMatchers: TsMatcher[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly interfaces: string[];
  private readonly readLocals: () => Address[];
  private locals: Address[];
  private localKey: string;
  private closed = false;

  private constructor(private readonly opts: CaptureOptions) {
    const o = opts;
    if (typeof o !== 'object' || o === null) throw new OptionsError('capture options must be an object');
    if (!Array.isArray(o.interfaces) || o.interfaces.length === 0) {
      throw new OptionsError('interfaces must list at least one interface name (e.g. ["eth0"] or ["any"])');
    }
    for (const name of o.interfaces) {
      if (typeof name !== 'string' || !IFNAME.test(name)) {
        throw new OptionsError(`"${String(name)}" is not an interface name (1-15 characters, no spaces, "/" or ":")`);
      }
    }
    if (o.interfaces.includes('any') && o.interfaces.length > 1) {
      throw new OptionsError('"any" already captures on every interface; do not list it with other interfaces');
    }
    if (new Set(o.interfaces).size !== o.interfaces.length) throw new OptionsError(`interfaces lists a name twice: ${o.interfaces.join(', ')}`);
    const matcher = o.matcher ?? 'native';
    if (matcher !== 'native' && matcher !== 'ts') throw new OptionsError(`matcher must be "native" or "ts" (got ${String(matcher)})`);
    if (!Array.isArray(o.addresses)) throw new OptionsError('addresses must list the local addresses the program was compiled for');
    if (typeof o.onEvents !== 'function') throw new OptionsError('onEvents must be a function receiving event batches');
    this.threads = positiveInt(o.threads, 'threads', 1024, availableParallelism());
    const flushUs = positiveInt(o.flushUs, 'flushUs', 1_000_000, matcher === 'ts' ? 2000 : 100_000);
    const flushRecords = positiveInt(o.flushRecords, 'flushRecords', 65536, 256);
    const blockBytes = positiveInt(o.ring?.blockBytes, 'ring.blockBytes', 1 << 30, ringBlockBytes(this.threads));
    if (blockBytes < 4096 || (blockBytes & (blockBytes - 1)) !== 0) {
      throw new OptionsError(`ring.blockBytes must be a power of two of at least 4096 (got ${blockBytes})`);
    }
    const blockCount = positiveInt(o.ring?.blockCount, 'ring.blockCount', 4096, 512);
    const retireMs = positiveInt(o.ring?.retireMs, 'ring.retireMs', 1000, 1); // capture.h: retire_ms
    const pollMs = o.addressPollMs ?? 2000;
    if (!Number.isInteger(pollMs) || pollMs < 0) throw new OptionsError(`addressPollMs must be a whole number of ms, 0 to disable (got ${pollMs})`);
    this.interfaces = [...o.interfaces];
    const source = o.readAddresses ?? interfaceAddresses;
    this.readLocals = () => source(this.interfaces, !!o.ignoreIpv6);

    const binding = loadBinding();
    this.statsBuf = new Float64Array(this.threads * SHARD_STATS);
    this.locals = [...o.addresses];
    this.localKey = addressKey(this.locals);
    const words = this.perShard(o.program);
    if (matcher === 'ts') {
      for (let s = 0; s < this.threads; s++) {
        const m = new TsMatcher();
        m.load(words);
        this.tsMatchers.push(m);
      }
    }
    try {
      this.handle = new binding.Engine(
        { interfaces: this.interfaces, threads: this.threads, forwardFrames: matcher === 'ts', blockBytes, blockCount, retireMs, flushRecords, flushUs, tickMs: TICK_MS },
        words,
        (shard, events, frames) => this.onBatch(shard, events, frames),
      );
    } catch (err) {
      throw fromNativeError(err);
    }
    if (matcher === 'ts') this.every(TICK_MS, () => this.tickTs());
    if (pollMs > 0) this.every(pollMs, () => this.pollAddresses());
  }

  /** Opens every interface on `threads` sockets and starts capturing; throws KnockdError. */
  static open(opts: CaptureOptions): CaptureEngine {
    return new CaptureEngine(opts);
  }

  /** The local addresses last reported through onAddressesChanged (or given at open). */
  localAddresses(): Address[] {
    return [...this.locals];
  }

  /** Swaps in a compiled program: kernel filters at once, matcher shards at their next wake-up. */
  load(words: Uint32Array): void {
    if (this.closed) throw new KnockdError('the capture engine is closed', { code: 'ERR_ENGINE_CLOSED' });
    const shardWords = this.perShard(words);
    for (const m of this.tsMatchers) m.load(shardWords);
    this.handle.load(shardWords);
  }

  stats(): EngineStats {
    if (!this.closed) this.handle.stats(this.statsBuf);
    const sum = (i: number) => {
      let t = 0;
      for (let s = 0; s < this.threads; s++) t += this.statsBuf[s * SHARD_STATS + i];
      return t;
    };
    const out = { threads: this.threads } as EngineStats;
    STAT_NAMES.forEach((name, i) => (out[name] = sum(i)));
    if (this.tsMatchers.length > 0) {
      for (const name of STAT_NAMES) out[name] = 0;
      for (const m of this.tsMatchers) {
        const st = m.stats();
        for (const name of STAT_NAMES) out[name] += st[name];
      }
    }
    CAPTURE_STAT_NAMES.forEach((name, i) => (out[name] = sum(STAT_NAMES.length + i)));
    out.filterCoarse = out.filterCoarse > 0 ? 1 : 0;
    out.queueDrops = out.batchesDropped;
    return out;
  }

  /** Stops the threads (each flushes what it holds) and closes the sockets; no callback runs afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stats(); // the last counters stay readable
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.handle.close();
    this.handle.stats(this.statsBuf);
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  /** Each shard tracks at most ceil(MaxTracked / threads) sources. */
  private perShard(words: Uint32Array): Uint32Array {
    if (!(words instanceof Uint32Array) || words.length <= Header.MAX_TRACKED) {
      throw new OptionsError('a program must be the words of compileProgram(...).words');
    }
    const out = words.slice();
    out[Header.MAX_TRACKED] = Math.max(1, Math.ceil(words[Header.MAX_TRACKED] / this.threads));
    return out;
  }

  private pollAddresses(): void {
    if (this.closed) return;
    const locals = this.readLocals();
    const key = addressKey(locals);
    if (key === this.localKey) return;
    this.localKey = key;
    this.locals = locals;
    try {
      this.opts.onAddressesChanged?.(locals);
      this.opts.onInterface?.({
        interface: this.interfaces.join(','),
        event: 'addresses',
        message: `local addresses of ${this.interfaces.join(', ')} changed; the filter now matches ${locals.length} address(es)`,
      });
    } catch (err) {
      this.opts.onError?.(err instanceof KnockdError ? err : new KnockdError(`cannot load the program for the new addresses: ${(err as Error).message}`, { code: 'ERR_RELOAD', cause: err }));
    }
  }

  private tickTs(): void {
    if (this.closed) return;
    const now = Date.now() * 1000;
    for (const m of this.tsMatchers) {
      const ev = m.tick(now);
      if (ev.length > 0) this.opts.onEvents(ev);
    }
  }

  private onBatch(shard: number, events: Uint8Array | null, frames: EngineFrames | null): void {
    if (this.closed) return;
    if (frames) {
      const ev = this.tsMatchers[shard].feed(frames);
      if (ev.length > 0) this.opts.onEvents(ev);
    }
    if (!events) return;
    let errors = 0;
    for (let o = 0; o < events.length; o += recordsOf(events, o) * EVENT_RECORD_SIZE) if (events[o] === EventKind.ERROR) errors++;
    if (errors === 0) {
      this.opts.onEvents(events);
      return;
    }
    const kept = new Uint8Array(events.length - errors * EVENT_RECORD_SIZE);
    let k = 0;
    for (let o = 0; o < events.length; ) {
      const span = recordsOf(events, o) * EVENT_RECORD_SIZE;
      const rec = events.subarray(o, o + span);
      if (rec[0] === EventKind.ERROR) this.onErrorRecord(rec);
      else {
        kept.set(rec, k);
        k += span;
      }
      o += span;
    }
    if (kept.length > 0) this.opts.onEvents(kept);
  }

  private onErrorRecord(rec: Uint8Array): void {
    const view = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    const code = rec[EventField.REASON];
    const ifIndex = view.getUint16(EventField.DOOR, true);
    const errno = view.getUint32(EventField.COUNT, true); // the positive C errno; errors carry it negative, as Node does
    const name = this.interfaces[ifIndex] ?? `#${ifIndex}`;
    const notify = (event: InterfaceNotice['event'], message: string) => this.opts.onInterface?.({ interface: name, event, message });
    switch (code) {
      case EngineError.INTERFACE_DOWN:
        notify('down', `interface ${name} ${errnoName(errno) === 'ENODEV' ? 'disappeared' : 'went down'}; capture resumes when it is back`);
        break;
      case EngineError.INTERFACE_UP:
        if (errno === 0) notify('up', `interface ${name} is up again; capture resumed`);
        else notify('reopened', `interface ${name} is back (ifindex ${errno}); capture reopened`);
        break;
      default: {
        const what = code === EngineError.INTERFACE_REOPEN ? `cannot reopen interface ${name}` : `capture thread ${view.getUint16(EventField.SHARD, true)} stopped`;
        const errCode = errnoName(errno);
        this.opts.onError?.(
          new KnockdError(`${what}: ${errCode}`, { code: errCode, errno: -errno, interface: name, hint: captureHint(errCode, name) }),
        );
      }
    }
  }
}
