// Offline replay (`knockd-fast -c FILE --replay CAPTURE`): a capture runs through a matcher with its own
// timestamps, and the events go through the daemon's DoorController with the capture's clock: Cooldown,
// Dedupe, one-time rotation (on private copies of the files: the operator's are never rewritten) and the
// derived doors' used-table (in the matcher) decide as in the daemon. The actions are recording ones: no
// command runs and no door opens. The lines are the daemon's, written by the same Logger (docs/EVENTS.md).
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAddress, type Address } from '../address.js';
import type { KnockdConfig } from '../config/types.js';
import { decodeEvents } from '../match/events.js';
import { TICK_MS } from '../capture/engine.js';
import { DoorController, rotateOneTimeFile } from '../control/controller.js';
import { Logger } from '../report/log.js';
import type { FrameBatch, Matcher, MatcherStats } from '../match/matcher-api.js';
import { compileProgram } from '../config/program.js';
import { ReplayCache } from '../spa/replay-cache.js';
import { SpaGate } from '../spa/gate.js';

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
  /** the daemon's JSON records (docs/EVENTS.md) instead of text lines, stages and wrong-port failures included */
  json?: boolean;
  write: (text: string) => void;
}

/** What the recording actions were asked to do, in order. */
export interface RecordedAction {
  action: 'start_command' | 'nft_grant';
  door: string;
  source: string;
  timeUs: number;
}

export interface ReplaySummary {
  events: number;
  stats: MatcherStats;
  /** the time the final tick advanced to (last frame + the longest seq_timeout) */
  endUs: number | undefined;
  actions: RecordedAction[];
}

/** Feeds the batches in order, then ticks past every pending timeout so those are reported too. */
export function replayBatches(batches: Iterable<FrameBatch>, opts: ReplayOptions): ReplaySummary {
  const { config, matcher } = opts;
  const oneTime = config.doors.filter((d) => d.oneTimeSequences);
  const scratch = oneTime.length > 0 ? mkdtempSync(join(tmpdir(), 'knockd-fast-replay-')) : undefined;
  try {
    // each one-time door rotates through a private copy of its file
    const copies = new Map<string, string>();
    oneTime.forEach((d, i) => {
      const copy = join(scratch as string, String(i));
      copyFileSync(d.oneTimeSequences as string, copy);
      copies.set(d.name, copy);
    });
    const log = new Logger({ verbose: true, format: opts.json ? 'json' : 'knockd', stdout: opts.write, stderr: opts.write });
    const actions: RecordedAction[] = [];
    let timeUs = 0;
    let doorsChanged = false;
    const controller = new DoorController({
      log: (message, fields) => log.log(message, fields),
      commands: {
        start: (g) => void actions.push({ action: 'start_command', door: g.door.name, source: g.source, timeUs }),
        stop: () => undefined,
      },
      nft: {
        grant: (g) => void actions.push({ action: 'nft_grant', door: g.door.name, source: g.source, timeUs }),
        async grantAll(grants) {
          for (const g of grants) this.grant(g);
        },
        flush: async () => undefined,
      },
      now: (eventTimeUs = timeUs) => {
        timeUs = eventTimeUs;
        return eventTimeUs / 1000;
      },
      summaryAfterMs: 0,
      wrongPortRecords: opts.json,
      rotateOneTime: (door) => rotateOneTimeFile(door, copies.get(door.name) as string, (m) => log.log(m)),
      onDoorsChanged: () => (doorsChanged = true),
      // SPA packets are decided as in the daemon, with a replay cache of this run only
      spa: new SpaGate(new ReplayCache()),
    });
    const load = () => {
      const program = compileProgram(controller.withCurrentSequences(config), {
        localAddresses: opts.local.addresses,
        allLocal: opts.local.allLocal,
        ignoreIpv6: opts.ignoreIpv6,
        stageEvents: opts.verbose || opts.json,
        eventBudget: 0, // forensic: every event, nothing folded
      });
      controller.setProgram(program);
      matcher.load(program.words);
    };
    let events = 0;
    const handle = (records: Uint8Array) => {
      const decoded = decodeEvents(records);
      events += decoded.length;
      controller.handle(decoded);
      if (doorsChanged) {
        doorsChanged = false;
        load();
      }
    };
    load();
    let lastUs: number | undefined;
    // The daemon's matcher also hears a tick every TICK_MS: attempts time out between packets, one due
    // door at a time, not all at once at the next packet. Replay ticks alike on the capture's clock while
    // attempts are tracked.
    const tickUs = TICK_MS * 1000;
    let nextTickUs = Infinity;
    const tickUpTo = (timeUs: number) => {
      while (timeUs >= nextTickUs) {
        if (matcher.stats().tracked === 0) nextTickUs += Math.floor((timeUs - nextTickUs) / tickUs) * tickUs;
        else handle(matcher.tick(nextTickUs));
        nextTickUs += tickUs;
      }
    };
    for (const batch of batches) {
      const n = batch.timestampsUs.length;
      let from = 0;
      for (let i = 0; i < n; i++) {
        const t = batch.timestampsUs[i];
        if (lastUs === undefined) nextTickUs = t + tickUs;
        lastUs = Math.max(lastUs ?? -Infinity, t);
        // a one-time door's next sequence applies from the frame after the completion, as in the daemon
        if (t >= nextTickUs || oneTime.length > 0) {
          if (i > from) handle(matcher.feed(framesOf(batch, from, i)));
          from = i;
          tickUpTo(lastUs);
          if (oneTime.length > 0) {
            handle(matcher.feed(framesOf(batch, i, i + 1)));
            from = i + 1;
          }
        }
      }
      if (n > from) handle(matcher.feed(framesOf(batch, from, n)));
    }
    let endUs: number | undefined;
    if (lastUs !== undefined) {
      const longest = Math.max(0, ...config.doors.map((d) => d.seqTimeout));
      // one more second than the longest timeout covers the wheel's bucket granularity (MATCHER.md §2.1)
      endUs = lastUs + (longest + 1) * 1e6;
      tickUpTo(endUs);
      handle(matcher.tick(endUs));
    }
    controller.flushSummaries();
    return { events, stats: matcher.stats(), endUs, actions };
  } finally {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

/** Frames [from, to) of a batch as a batch of their own (views, no copy). */
function framesOf(batch: FrameBatch, from: number, to: number): FrameBatch {
  return {
    data: batch.data,
    offsets: batch.offsets.subarray(from, to + 1),
    timestampsUs: batch.timestampsUs.subarray(from, to),
    linkTypes: batch.linkTypes.subarray(from, to),
  };
}

/** For -D: what the replay saw. */
export function describeStats(stats: MatcherStats): string {
  return Object.entries(stats)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}
