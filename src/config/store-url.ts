// The Fleet directive's store address: redis://, rediss:// (TLS) or unix:// (a local socket). Credentials
// may sit in the URL; everything that prints the address goes through redactStoreUrl.

export class StoreUrlError extends Error {}

export interface StoreAddress {
  kind: 'tcp' | 'unix';
  /** tcp: host and port; unix: the socket path */
  host?: string;
  port?: number;
  path?: string;
  tls: boolean;
  database: number;
  username?: string;
  password?: string;
}

export const STORE_URL_FORMS = 'redis://[USER:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N]';

const MAX_DB = 15;

/** Parses a Fleet value; throws StoreUrlError saying what is wrong. */
export function parseStoreUrl(text: string): StoreAddress {
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
  if (a.kind === 'unix') return `unix://${user}${a.path}${a.database ? `?db=${a.database}` : ''}`;
  const host = a.host!.includes(':') ? `[${a.host}]` : a.host;
  return `${a.tls ? 'rediss' : 'redis'}://${user}${host}:${a.port}/${a.database}`;
}
