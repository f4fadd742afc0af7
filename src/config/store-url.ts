// The Fleet directive's store address: redis://, rediss:// (TLS), unix:// (a local socket) or
// redis+sentinel:// (Redis Sentinel: the sentinels to ask for the current primary of a named master).
// Credentials may sit in the URL; everything that prints the address goes through redactStoreUrl.

export class StoreUrlError extends Error {}

export interface HostPort {
  host: string;
  port: number;
}

export interface StoreAddress {
  kind: 'tcp' | 'unix' | 'sentinel';
  /** tcp: host and port; unix: the socket path */
  host?: string;
  port?: number;
  path?: string;
  /** sentinel: the sentinels (asked in this order) and the master's name in their configuration */
  sentinels?: HostPort[];
  master?: string;
  tls: boolean;
  database: number;
  username?: string;
  password?: string;
}

export const STORE_URL_FORMS =
  'redis://[USER:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS), unix:///PATH[?db=N] or redis+sentinel://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB] (Redis Sentinel)';

const MAX_DB = 15;
export const SENTINEL_PORT = 26379;

/** Parses a Fleet value; throws StoreUrlError saying what is wrong. */
export function parseStoreUrl(text: string): StoreAddress {
  if (/^redis\+sentinel:/i.test(text)) return parseSentinelUrl(text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StoreUrlError(`"${redactStoreUrl(text)}" is not a URL`);
  }
  const username = url.username === '' ? undefined : decodeURIComponent(url.username);
  const password = url.password === '' ? undefined : decodeURIComponent(url.password);
  if (url.protocol === 'unix:') {
    if (url.host !== '' || !url.pathname.startsWith('/') || url.pathname === '/') {
      throw new StoreUrlError(`"${redactStoreUrl(text)}" does not name a socket path (unix:///run/redis/redis.sock)`);
    }
    return { kind: 'unix', path: decodeURIComponent(url.pathname), tls: false, database: database(url.searchParams.get('db') ?? '0', text), username, password };
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new StoreUrlError(`the scheme "${url.protocol.replace(/:$/, '')}" is not redis, rediss or unix`);
  }
  if (url.hostname === '') throw new StoreUrlError(`"${redactStoreUrl(text)}" has no host`);
  const db = url.pathname === '' || url.pathname === '/' ? '0' : url.pathname.slice(1);
  return {
    kind: 'tcp',
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? 6379 : Number(url.port),
    tls: url.protocol === 'rediss:',
    database: database(db, text),
    username,
    password,
  };
}

/** redis+sentinel://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]: a list of hosts is no URL
 * authority, so this form is split by hand. */
function parseSentinelUrl(text: string): StoreAddress {
  const m = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]*)(?:\/([^/?#]*))?(?:\/([^/?#]*))?$/i.exec(text);
  const shown = redactStoreUrl(text);
  if (!m) throw new StoreUrlError(`"${shown}" is not of the form redis+sentinel://[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB]`);
  const [, user, pass, hosts, master, db] = m;
  if (hosts === '') throw new StoreUrlError(`"${shown}" names no sentinel`);
  const sentinels = hosts.split(',').map((item): HostPort => {
    const hp = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/i.exec(item.trim());
    const port = hp?.[3] === undefined ? SENTINEL_PORT : Number(hp[3]);
    if (!hp || port < 1 || port > 65535) throw new StoreUrlError(`"${shown}": sentinel "${item}" is not HOST[:PORT] (IPv6: [ADDRESS]:PORT)`);
    return { host: hp[1] ?? hp[2], port };
  });
  if (master === undefined || master === '') throw new StoreUrlError(`"${shown}" names no master: add /MASTER, the name in the sentinels' "sentinel monitor" line`);
  return {
    kind: 'sentinel',
    sentinels,
    master: decodeURIComponent(master),
    tls: false,
    database: database(db === undefined || db === '' ? '0' : db, text),
    username: user ? decodeURIComponent(user) : undefined,
    password: pass ? decodeURIComponent(pass) : undefined,
  };
}

function database(text: string, url: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_DB) throw new StoreUrlError(`"${redactStoreUrl(url)}": database "${text}" is not a number from 0 to ${MAX_DB}`);
  return Number(text);
}

/** The address with any password replaced by `***` (for --test, -D, logs and status). */
export function redactStoreUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
}

/** The address as shown to operators: scheme, user, host or path, database; never the password. */
export function describeStore(a: StoreAddress): string {
  const user = a.username ? `${a.username}@` : '';
  if (a.kind === 'sentinel') {
    const hosts = a.sentinels!.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`).join(',');
    return `redis+sentinel://${user}${hosts}/${a.master}/${a.database}`;
  }
  if (a.kind === 'unix') return `unix://${user}${a.path}${a.database ? `?db=${a.database}` : ''}`;
  const host = a.host!.includes(':') ? `[${a.host}]` : a.host;
  return `${a.tls ? 'rediss' : 'redis'}://${user}${host}:${a.port}/${a.database}`;
}
