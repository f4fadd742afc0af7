// The fleet's store: one Redis (or Valkey) reached through node-redis. Two connections: one for commands,
// one subscribed to the fleet's channel. Keys live under `kf:{NAME}:` (the braces keep a fleet's keys in
// one Redis Cluster slot, so the decision script may touch two of them):
//   g:DOOR|FAMILY|ADDRESS   a signed grant message, expiring with the grant (PXAT)
//   w:DOOR|ADDRESS          Cooldown/Dedupe window "COOLDOWN_UNTIL OPEN_UNTIL" (ms, the store's clock)
//   o:DOOR|DIGEST           a one-time line used: the member that used it (kept)
//   u:DOOR|FAMILY|ADDRESS|WINDOW  a derived door's window used by a source: the member (expires with the window)
//   m:MEMBER                a member's heartbeat (JSON), expiring when the member goes quiet
// and the channel `kf:{NAME}:grants` carries every signed message as it is written.
import { createHash } from 'node:crypto';
import { createClient, type RedisClientType } from 'redis';
import type { FleetConfig } from '../config/types.js';
import { parseStoreUrl, type HostPort, type StoreAddress } from '../config/store-url.js';

/** Reconnection backoff: 100 ms doubling up to 5 s, with jitter so a fleet does not reconnect in step. */
export function backoffMs(attempt: number): number {
  const base = Math.min(5000, 100 * 2 ** Math.min(attempt, 6));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

const CONNECT_TIMEOUT_MS = 2000;

type RedisSocketOptions = NonNullable<NonNullable<Parameters<typeof createClient>[0]>['socket']>;

export interface StoreEvents {
  /** the command connection is (again) usable */
  ready(): void;
  /** it was lost or could not be made (node-redis retries with backoffMs) */
  down(message: string): void;
  /** a message arrived on the fleet's channel */
  message(raw: string): void;
}

/** Outcome of the fleet-wide single-use decision (DECIDE below). */
export type StoreDecision = { outcome: 'granted' | 'extended' } | { outcome: 'cooldown'; leftMs: number } | { outcome: 'used'; by: string };

/** What may be used once: a one-time line (kept) or a derived door's window for a source (until it ends). */
export type SingleUse = { lineDigest: string } | { family: 4 | 6; window: number; ttlMs: number };

export interface DecideRequest {
  door: string;
  source: string;
  member: string;
  once?: SingleUse;
  cooldownMs: number;
  openMs: number;
  dedupe: boolean;
}

// KEYS[1]: the single-use key (when ARGV[2] = 1), then the window key (when Cooldown or Dedupe applies).
// ARGV: member, single-use?, cooldown ms, open ms, dedupe?, the single-use key's lifetime in ms (0: kept).
// Time is the store's, the same for every member.
const DECIDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local k = 1
if ARGV[2] == '1' then
  local owner = redis.call('GET', KEYS[1])
  if owner then return {'used', owner} end
  k = 2
end
local outcome = 'granted'
local cooldown, open = tonumber(ARGV[3]), tonumber(ARGV[4])
if KEYS[k] then
  local cd, op = 0, 0
  local w = redis.call('GET', KEYS[k])
  if w then
    local a, b = string.match(w, '^(%d+) (%d+)$')
    cd, op = tonumber(a) or 0, tonumber(b) or 0
  end
  if now < cd then return {'cooldown', tostring(cd - now)} end
  if ARGV[5] == '1' and now < op then outcome = 'extended' end
  local ncd, nop = now + cooldown, now + open
  redis.call('SET', KEYS[k], ncd .. ' ' .. nop, 'PX', math.max(cooldown, open, 1))
end
if ARGV[2] == '1' then
  if ARGV[6] == '0' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[6]) end
end
return {outcome, ''}
`;
const DECIDE_SHA = createHash('sha1').update(DECIDE).digest('hex');

// A page of values: SCAN for keys matching ARGV[2] from cursor ARGV[1] (COUNT ARGV[3]), then their values,
// in one call: the keys are not sent to the client and back. Replies {next cursor, value, …}; a key gone
// between the two is a nil value. MGET takes at most 1,000 keys at a time (SCAN's COUNT is only a hint).
const PAGE = `
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys, out = r[2], {r[1]}
for i = 1, #keys, 1000 do
  local v = redis.call('MGET', unpack(keys, i, math.min(i + 999, #keys)))
  for j = 1, #v do out[#out + 1] = v[j] end
end
return out
`;
const PAGE_SHA = createHash('sha1').update(PAGE).digest('hex');

export class FleetStore {
  readonly prefix: string;
  readonly channel: string;
  private commands!: RedisClientType;
  private subscriber!: RedisClientType;
  private readonly address: StoreAddress;
  private readonly password: string | undefined;
  private closed = false;
  private wasReady = false;
  /** the subscriber listens on the channel (first subscription made, or restored after a reconnect) */
  private listening = false;
  private subscribed = false;
  /** Sentinel: the pair of clients in use (a lost primary's pair is dropped and a new one made) */
  private pair = 0;
  private resolving = false;
  private resolveAttempt = 0;
  private resolveTimer: NodeJS.Timeout | undefined;

  constructor(
    cfg: FleetConfig,
    private readonly events: StoreEvents,
  ) {
    this.prefix = `kf:{${cfg.name}}:`;
    this.channel = `${this.prefix}grants`;
    this.address = parseStoreUrl(cfg.url);
    this.password = cfg.password ?? this.address.password;
    const a = this.address;
    if (a.kind === 'sentinel') return; // the clients are made once a sentinel names the primary
    this.open(
      a.kind === 'unix'
        ? { path: a.path!, connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: backoffMs }
        : a.tls
          ? { host: a.host!, port: a.port!, tls: true as const, connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: backoffMs }
          : { host: a.host!, port: a.port!, connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: backoffMs },
    );
  }

  /** Makes the command and subscriber clients for one server. */
  private open(socket: RedisSocketOptions): void {
    const pair = ++this.pair;
    const mine = () => pair === this.pair && !this.closed;
    this.listening = false;
    this.subscribed = false;
    this.commands = createClient({
      socket,
      username: this.address.username,
      password: this.password,
      database: this.address.database,
      // commands fail at once while disconnected: the fleet queues what it must keep, bounded (link.ts)
      disableOfflineQueue: true,
    }) as RedisClientType;
    this.subscriber = this.commands.duplicate();
    // Sentinel: a failed connection is not retried in place (the primary may have moved): lost() asks again
    const failed = (err: Error) => (this.address.kind === 'sentinel' ? this.lost(err) : this.onDown(err));
    this.commands.on('error', (err: Error) => mine() && failed(err));
    this.subscriber.on('error', (err: Error) => {
      if (!mine()) return;
      this.listening = false;
      failed(err);
    });
    this.commands.on('ready', () => mine() && this.maybeReady());
    // node-redis subscribes again while reconnecting, before 'ready'
    this.subscriber.on('ready', () => {
      if (!mine()) return;
      this.listening = this.subscribed;
      this.maybeReady();
    });
  }

  /** Up once both connections are: a catch-up then runs while new grants already arrive on the channel,
   * so none falls between the two. */
  private maybeReady(): void {
    if (this.wasReady || this.closed || !this.commands?.isReady || !this.listening) return;
    this.wasReady = true;
    this.resolveAttempt = 0;
    this.events.ready();
  }

  /** Starts connecting; resolves at once (the clients keep retrying in the background). */
  start(): void {
    if (this.address.kind === 'sentinel') {
      void this.resolvePrimary();
      return;
    }
    this.connect();
  }

  private connect(): void {
    const pair = this.pair;
    const { commands, subscriber } = this;
    const checkRole = this.address.kind === 'sentinel';
    commands
      .connect()
      .then(async () => {
        // a sentinel may still name a primary that was just demoted: its role says
        if (checkRole && pair === this.pair && ((await commands.sendCommand(['ROLE'])) as string[])[0] !== 'master') this.lost(new Error('the server the sentinels named is not the primary (yet)'));
      })
      .catch(() => undefined);
    subscriber
      .connect()
      .then(() => subscriber.subscribe(this.channel, (raw) => this.events.message(raw)))
      .then(() => {
        if (pair !== this.pair) return;
        this.subscribed = true;
        this.listening = true;
        this.maybeReady();
      })
      .catch(() => undefined);
  }

  /**
   * Sentinel: asks each sentinel in turn for the master's current primary and connects to it; while none
   * answers, tries again with backoffMs. Clients to a primary do not reconnect by themselves: a lost
   * primary may have been replaced, so the sentinels are asked again (lost()).
   */
  private async resolvePrimary(): Promise<void> {
    if (this.closed || this.resolving) return;
    this.resolving = true;
    const a = this.address;
    const errors: string[] = [];
    let primary: HostPort | undefined;
    for (const s of a.sentinels!) {
      const client = createClient({ socket: { host: s.host, port: s.port, connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false } });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const reply = (await client.sendCommand(['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', a.master!])) as [string, string] | null;
        if (reply) primary = { host: reply[0], port: Number(reply[1]) };
        else errors.push(`sentinel ${s.host}:${s.port} does not know the master "${a.master}"`);
      } catch (err) {
        errors.push(`sentinel ${s.host}:${s.port}: ${(err as Error).message}`);
      } finally {
        if (client.isOpen) client.destroy();
      }
      if (primary) break;
    }
    this.resolving = false;
    if (this.closed) return;
    if (!primary) {
      this.events.down(errors.join('; '));
      this.resolveTimer = setTimeout(() => void this.resolvePrimary(), backoffMs(this.resolveAttempt++));
      this.resolveTimer.unref();
      return;
    }
    this.open({ host: primary.host, port: primary.port, connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false });
    this.connect();
  }

  /** Sentinel: the primary's connection failed or it is not the primary; drop the pair and ask again. */
  private lost(err: Error): void {
    if (this.closed) return;
    const { commands, subscriber } = this;
    this.pair++; // the old pair's events are ignored from here on
    this.listening = false;
    for (const c of [commands, subscriber]) if (c.isOpen) c.destroy();
    this.onDown(err);
    if (this.resolveTimer || this.resolving) return;
    this.resolveTimer = setTimeout(() => {
      this.resolveTimer = undefined;
      void this.resolvePrimary();
    }, backoffMs(this.resolveAttempt++));
    this.resolveTimer.unref();
  }

  /** One command; a demoted primary (READONLY) is lost as if it had gone (Sentinel). */
  private send(args: string[]): Promise<unknown> {
    return this.commands.sendCommand(args).catch((err: Error) => {
      if (this.address.kind === 'sentinel' && /^READONLY/.test(err.message)) this.lost(err);
      throw err;
    });
  }

  get ready(): boolean {
    return this.commands?.isReady ?? false;
  }

  private onDown(err: Error): void {
    if (this.closed) return;
    const wasReady = this.wasReady;
    this.wasReady = false;
    this.events.down(wasReady ? `lost: ${err.message}` : err.message);
    // a connection that is back (the other one failed) makes the link ready again when both are
    this.maybeReady();
  }

  grantKey(door: string, family: number, address: string): string {
    return `${this.prefix}g:${door}|${family}|${address}`;
  }

  /** Writes a signed grant with its absolute expiry and publishes it (one round trip: both are pipelined). */
  async putGrant(key: string, raw: string, expiryMs: number): Promise<void> {
    await Promise.all([this.send(['SET', key, raw, 'PXAT', String(expiryMs)]), this.send(['PUBLISH', this.channel, raw])]);
  }

  /** Writes a grant back only where it is missing (a store that lost its data); a newer grant is kept. */
  async restoreGrant(key: string, raw: string, expiryMs: number): Promise<void> {
    await this.send(['SET', key, raw, 'NX', 'PXAT', String(expiryMs)]);
  }

  /** Publishes a signed message that is not a grant (a one-time line used). */
  async publish(raw: string): Promise<void> {
    await this.send(['PUBLISH', this.channel, raw]);
  }

  async decide(q: DecideRequest): Promise<StoreDecision> {
    const keys: string[] = [];
    const once = q.once;
    if (once) keys.push('lineDigest' in once ? this.lineKey(q.door, once.lineDigest) : `${this.prefix}u:${q.door}|${once.family}|${q.source}|${once.window}`);
    if (q.cooldownMs > 0 || q.dedupe) keys.push(`${this.prefix}w:${q.door}|${q.source}`);
    const ttl = once && 'ttlMs' in once ? String(Math.max(1, Math.ceil(once.ttlMs))) : '0';
    const args = [q.member, once ? '1' : '0', String(q.cooldownMs), String(q.openMs), q.dedupe ? '1' : '0', ttl];
    const [outcome, detail] = (await this.script(DECIDE, DECIDE_SHA, keys, args)) as [string, string];
    if (outcome === 'cooldown') return { outcome, leftMs: Number(detail) };
    if (outcome === 'used') return { outcome, by: detail };
    return { outcome: outcome === 'extended' ? 'extended' : 'granted' };
  }

  /** A script by its digest, sent in full the first time the server does not know it (NOSCRIPT). */
  private async script(source: string, sha: string, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.send(['EVALSHA', sha, String(keys.length), ...keys, ...args]);
    } catch (err) {
      if (!/NOSCRIPT/.test((err as Error).message)) throw err;
      return await this.send(['EVAL', source, String(keys.length), ...keys, ...args]);
    }
  }

  private lineKey(door: string, digest: string): string {
    return `${this.prefix}o:${door}|${digest}`;
  }

  /** Whether a one-time line was used by some member. */
  async lineUsedBy(door: string, digest: string): Promise<string | undefined> {
    const v = await this.send(['GET', this.lineKey(door, digest)]);
    return typeof v === 'string' ? v : undefined;
  }

  /** Every stored grant message, a page at a time (one script call per page: SCAN + MGET, so the store is
   * never blocked for long). */
  async *grantPages(pageSize = 1000): AsyncGenerator<string[]> {
    yield* this.valuePages(`${this.prefix}g:*`, pageSize);
  }

  private async *valuePages(match: string, pageSize: number): AsyncGenerator<string[]> {
    let cursor = '0';
    do {
      const reply = (await this.script(PAGE, PAGE_SHA, [], [cursor, match, String(pageSize)])) as [string, ...(string | null)[]];
      cursor = reply[0];
      const values: string[] = [];
      for (let i = 1; i < reply.length; i++) if (typeof reply[i] === 'string') values.push(reply[i] as string);
      if (values.length > 0) yield values;
    } while (cursor !== '0');
  }

  async heartbeat(member: string, record: string, ttlMs: number): Promise<void> {
    await this.send(['SET', `${this.prefix}m:${member}`, record, 'PX', String(ttlMs)]);
  }

  /** The heartbeat records of every member still alive. */
  async members(): Promise<string[]> {
    const out: string[] = [];
    for await (const page of this.valuePages(`${this.prefix}m:*`, 100)) out.push(...page);
    return out;
  }

  /** One round trip, in ms. */
  async ping(): Promise<number> {
    const t = performance.now();
    await this.send(['PING']);
    return performance.now() - t;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.resolveTimer);
    for (const c of [this.subscriber, this.commands]) {
      if (!c) continue; // Sentinel: no primary found yet
      try {
        if (c.isOpen) await c.close();
        else c.destroy();
      } catch {
        c.destroy();
      }
    }
  }
}
