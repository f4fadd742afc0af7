// Offline replay (`knockd-fast -c FILE --replay CAPTURE`): a capture runs through a matcher with its own
// timestamps and the events come out as knockd's -v lines or JSON objects. No command runs, no door opens,
// no one-time file is rewritten: replay only tells what the daemon would have decided.
import { networkInterfaces } from 'node:os';
import { parseAddress, type Address } from '../address.js';
import type { KnockdConfig } from '../config/types.js';
import { decodeEvents, type KnockEvent } from '../capture/events.js';
import { eventText } from '../report/log.js';
import type { FrameBatch, Matcher, MatcherStats } from '../match/matcher-api.js';
import { compileProgram, type CompiledProgram } from '../config/program.js';

export class ReplayError extends Error {}

export interface LocalAddressChoice {
  addresses: Address[];
  /** no interface of this host and no --local-address: every destination counts as local */
  allLocal: boolean;
  /** what decided, for -D */
  source: string;
}

/**
 * The host addresses that decide the visibility set: those of the named interfaces that exist here,
 * plus every --local-address; with neither, every destination is local (ALL_LOCAL).
 */
export function chooseLocalAddresses(interfaces: readonly string[], localAddress: readonly string[], ignoreIpv6 = false): LocalAddressChoice {
  const addresses: Address[] = [];
  const from: string[] = [];
  const present = networkInterfaces();
  for (const name of interfaces) {
    const list = present[name];
    if (!list) continue;
    from.push(`interface ${name}`);
    for (const a of list) {
      const parsed = parseAddress(a.address);
      if (parsed && !(ignoreIpv6 && parsed.family === 6)) addresses.push(parsed);
    }
  }
  for (const text of localAddress) {
    const parsed = parseAddress(text);
    if (!parsed) throw new ReplayError(`--local-address "${text}" is not an IPv4 or IPv6 address (example: --local-address 192.0.2.2)`);
    addresses.push(parsed);
    from.push(`--local-address ${text}`);
  }
  if (from.length === 0) return { addresses: [], allLocal: true, source: 'every destination (no interface of this host, no --local-address)' };
  return { addresses, allLocal: false, source: from.join(', ') };
}

export interface ReplayOptions {
  config: KnockdConfig;
  matcher: Matcher;
  local: LocalAddressChoice;
  /** -4 */
  ignoreIpv6?: boolean;
  /** -v: also the `Stage N` lines */
  verbose?: boolean;
  /** one JSON object per event (every kind, wrong-port failures included) */
  json?: boolean;
  write: (text: string) => void;
}

export interface ReplaySummary {
  events: number;
  stats: MatcherStats;
  /** the time the final tick advanced to (last frame + the longest seq_timeout) */
  endUs: number | undefined;
}

const isoOf = (timeUs: number): string => {
  const ms = Math.floor(timeUs / 1000);
  const iso = new Date(ms).toISOString(); // ...HH:MM:SS.mmmZ
  return `${iso.slice(0, 19)}.${String(timeUs - Math.floor(timeUs / 1e6) * 1e6).padStart(6, '0')}Z`;
};

/** Feeds the batches in order, then ticks past every pending timeout so those are reported too. */
export function replayBatches(batches: Iterable<FrameBatch>, opts: ReplayOptions): ReplaySummary {
  const program = compileProgram(opts.config, {
    localAddresses: opts.local.addresses,
    allLocal: opts.local.allLocal,
    ignoreIpv6: opts.ignoreIpv6,
    stageEvents: opts.verbose || opts.json,
    eventBudget: 0, // forensic: every event, nothing folded
  });
  const printer = new EventPrinter(program, opts);
  opts.matcher.load(program.words);
  let lastUs: number | undefined;
  for (const batch of batches) {
    const n = batch.timestampsUs.length;
    if (n === 0) continue;
    printer.print(opts.matcher.feed(batch));
    lastUs = Math.max(lastUs ?? -Infinity, batch.timestampsUs[n - 1]);
  }
  let endUs: number | undefined;
  if (lastUs !== undefined) {
    const longest = Math.max(0, ...program.doors.map((d) => d.seqTimeout));
    // one more second than the longest timeout covers the wheel's bucket granularity (MATCHER.md §2.1)
    endUs = lastUs + (longest + 1) * 1e6;
    printer.print(opts.matcher.tick(endUs));
  }
  printer.finish();
  return { events: printer.count, stats: opts.matcher.stats(), endUs };
}

/** Event records -> lines, in event order; evictions are folded into one line per second of capture time. */
class EventPrinter {
  count = 0;
  private evicted = 0;
  private evictedSecond = 0;

  constructor(
    private readonly program: CompiledProgram,
    private readonly opts: ReplayOptions,
  ) {}

  print(records: Uint8Array): void {
    for (const ev of decodeEvents(records)) {
      this.count++;
      if (this.opts.json) this.opts.write(`${JSON.stringify(this.json(ev))}\n`);
      else this.text(ev);
    }
  }

  finish(): void {
    this.flushEvictions();
  }

  private doorName(index: number): string {
    return this.program.doors[index]?.name ?? `#${index}`;
  }

  private text(ev: KnockEvent): void {
    if (ev.kind === 'failed' && ev.reason === 'evicted') {
      const second = Math.floor(ev.timeUs / 1e6);
      if (this.evicted > 0 && second !== this.evictedSecond) this.flushEvictions();
      this.evictedSecond = second;
      this.evicted++;
      return;
    }
    this.flushEvictions();
    let line: string | undefined;
    if (ev.kind === 'stage') line = this.opts.verbose ? eventText.stage(ev.source, this.doorName(ev.door), ev.stage) : undefined;
    else if (ev.kind === 'completed') line = eventText.open(ev.source, this.doorName(ev.door));
    else if (ev.kind === 'failed' && ev.reason === 'timeout') line = eventText.timeout(ev.source, this.doorName(ev.door), ev.stage);
    else if (ev.kind === 'suppressed') line = eventText.suppressed(ev.count);
    if (line !== undefined) this.opts.write(`${line}\n`);
  }

  private flushEvictions(): void {
    if (this.evicted === 0) return;
    this.opts.write(`${eventText.evicted(this.evicted)}\n`);
    this.evicted = 0;
  }

  private json(ev: KnockEvent): Record<string, unknown> {
    const time = isoOf(ev.timeUs);
    switch (ev.kind) {
      case 'stage':
      case 'completed':
        return { time, event: ev.kind, source: ev.source, door: this.doorName(ev.door), stage: ev.stage };
      case 'failed':
        return { time, event: 'failed', reason: ev.reason, source: ev.source, door: this.doorName(ev.door), stage: ev.stage };
      case 'suppressed':
        return { time, event: 'suppressed', count: ev.count };
      case 'error':
        return { time, event: 'error', code: ev.code, errno: ev.errno };
    }
  }
}

/** For -D: what the replay saw. */
export function describeStats(stats: MatcherStats): string {
  return Object.entries(stats)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}
