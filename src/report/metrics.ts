// Prometheus endpoint (`--metrics ADDR:PORT` / `MetricsListen`). Matcher and capture counters are read from
// the engine at scrape time; grants, commands and nft latency are counted by the controller as they happen.
import { createServer, type Server } from 'node:http';
import { isIPv6 } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MatcherStats } from '../match/matcher-api.js';

/** What the capture side reports: the matcher counters summed over shards, plus capture-level drops. */
export type EngineCounters = Partial<MatcherStats> & { ringDrops?: number; queueDrops?: number };

/** Everything read at scrape time: the engine's counters and the command backend's. */
export type ScrapeCounters = EngineCounters & { commandRuns?: number; commandFailures?: number; commandDrops?: number };

export class MetricsAddressError extends Error {}

/** `ADDR:PORT` or `[IPv6]:PORT` → host and port, with an error saying what a valid value looks like. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535 || (text.startsWith('[') && !isIPv6(m[1]))) {
    throw new MetricsAddressError(
      `invalid metrics address "${text}": expected ADDR:PORT such as 127.0.0.1:9101 or [::1]:9101 (port 1-65535)`,
    );
  }
  return { host: m[1], port };
}

const STAT_METRICS: [keyof ScrapeCounters, string, string][] = [
  ['frames', 'knockd_packets_total', 'Frames seen by the matchers'],
  ['visible', 'knockd_visible_packets_total', 'Frames inside the visibility set (a knock port of some door)'],
  ['malformed', 'knockd_malformed_packets_total', 'Frames whose headers did not parse'],
  ['stages', 'knockd_steps_total', 'Knock steps matched'],
  ['completed', 'knockd_completions_total', 'Knock sequences completed'],
  ['evicted', 'knockd_evictions_total', 'Attempts evicted because MaxTracked sources were tracked'],
  ['evictedProgressed', 'knockd_evictions_progressed_total', 'Evicted attempts that had passed step 1 (progressed attempts held over half of MaxTracked)'],
  ['suppressed', 'knockd_suppressed_events_total', 'Stage/failure events folded into "N events suppressed" lines'],
  ['commandRuns', 'knockd_command_runs_total', 'start/stop commands run'],
  ['commandFailures', 'knockd_command_failures_total', 'start/stop commands that exited non-zero or could not run'],
  ['commandDrops', 'knockd_command_drops_total', 'start commands not run because the command limits were reached (a completion flood)'],
];

export class Metrics {
  readonly registry = new Registry();
  readonly grants: Counter<'door' | 'outcome'>;
  readonly nftBatchSeconds: Histogram;
  readonly knockToOpenSeconds: Histogram;
  readonly fleetConnected: Gauge;
  readonly fleetPublishSeconds: Histogram;
  readonly fleetApplySeconds: Histogram;
  readonly fleetRefused: Counter<'reason'>;
  readonly fleetQueueDepth: Gauge;
  readonly fleetQueueOverflow: Counter;
  readonly fleetCatchUpGrants: Gauge;
  readonly fleetCatchUpSeconds: Gauge;
  readonly nftBatchFailures: Counter;
  readonly nftGuardRestored: Counter;
  private server: Server | undefined;

  constructor(readCounters: () => ScrapeCounters) {
    const reg = [this.registry];
    for (const [key, name, help] of STAT_METRICS) {
      new Counter({
        name,
        help,
        registers: reg,
        collect() {
          this.reset();
          this.inc(readCounters()[key] ?? 0);
        },
      });
    }
    const byLabel = (name: string, help: string, label: string, pick: (c: ScrapeCounters) => Record<string, number | undefined>) =>
      new Counter({
        name,
        help,
        labelNames: [label],
        registers: reg,
        collect() {
          this.reset();
          for (const [value, n] of Object.entries(pick(readCounters()))) this.inc({ [label]: value }, n ?? 0);
        },
      });
    byLabel('knockd_failures_total', 'Knock attempts that failed, by reason', 'reason', (c) => ({
      timeout: c.failedTimeout,
      wrong_port: c.failedWrongPort,
      evicted: c.evicted,
    }));
    byLabel('knockd_drops_total', 'Packets lost before matching: kernel ring drops, and event batches dropped because JS was behind', 'where', (c) => ({
      ring: c.ringDrops,
      event_queue: c.queueDrops,
    }));
    new Gauge({
      name: 'knockd_tracked_sources',
      help: 'Sources with a knock attempt in progress',
      registers: reg,
      collect() {
        this.set(readCounters().tracked ?? 0);
      },
    });
    this.grants = new Counter({
      name: 'knockd_grants_total',
      help: 'Completed knocks by what the controller did: granted, extended (Dedupe), cooldown, disabled',
      labelNames: ['door', 'outcome'],
      registers: reg,
    });
    this.nftBatchSeconds = new Histogram({
      name: 'knockd_nft_batch_seconds',
      help: 'Time from the first grant of an nftables batch to the batch being applied',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: reg,
    });
    // fleet (docs/FLEET.md); present, at zero, without a Fleet too, so dashboards need no special case
    this.knockToOpenSeconds = new Histogram({
      name: 'knockd_knock_to_open_seconds',
      help: "Time from the kernel's timestamp of a sequence's last knock to its OPEN SESAME line written (wall clock, 1 ms resolution)",
      buckets: [0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: reg,
    });
    const fleetBuckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];
    this.fleetConnected = new Gauge({ name: 'knockd_fleet_connected', help: '1 while the fleet store answers, 0 otherwise', registers: reg });
    this.fleetPublishSeconds = new Histogram({ name: 'knockd_fleet_publish_seconds', help: 'Time to write and publish a grant to the fleet store', buckets: fleetBuckets, registers: reg });
    this.fleetApplySeconds = new Histogram({ name: 'knockd_fleet_apply_seconds', help: "Time from receiving another member's grant to its element installed here", buckets: fleetBuckets, registers: reg });
    this.fleetRefused = new Counter({ name: 'knockd_fleet_refused_total', help: 'Fleet messages refused, by reason (bad signature, unknown door, expired, ...)', labelNames: ['reason'], registers: reg });
    this.fleetQueueDepth = new Gauge({ name: 'knockd_fleet_queue_depth', help: 'Grants waiting for the fleet store to come back', registers: reg });
    this.fleetQueueOverflow = new Counter({ name: 'knockd_fleet_queue_overflow_total', help: 'Grants dropped from a full outage queue (still open on this member)', registers: reg });
    this.fleetCatchUpGrants = new Gauge({ name: 'knockd_fleet_catch_up_grants', help: 'Open grants read by the last catch-up', registers: reg });
    this.fleetCatchUpSeconds = new Gauge({ name: 'knockd_fleet_catch_up_seconds', help: 'Duration of the last catch-up', registers: reg });
    this.nftBatchFailures = new Counter({
      name: 'knockd_nft_batch_failures_total',
      help: 'nftables batches refused by the kernel or nft (their grants are retried)',
      registers: reg,
    });
    this.nftGuardRestored = new Counter({
      name: 'knockd_nft_guard_restored_total',
      help: 'Times the knockd-fast nftables table, guard chains or sets were found deleted or changed and restored',
      registers: reg,
    });
  }

  /** Serves GET /metrics; resolves once listening (rejects with the bind error). */
  async listen(address: string): Promise<{ host: string; port: number }> {
    const { host, port } = parseListen(address);
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('knockd-fast serves metrics at /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.unref();
    this.server = server;
    const a = server.address();
    return { host, port: typeof a === 'object' && a ? a.port : port };
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}
