// Migration from fwknopd: /etc/fwknop/access.conf -> SPA doors (docs/SPA.md §6). Each stanza (from one
// SOURCE line to the next) becomes a door named fwknop-N (fwknopd's "stanza #N"). A directive knockd-fast
// does not implement is an error naming it and its line, never silently dropped.
import { defaultDoor } from './parse.js';
import { ConfigError } from './lexical.js';
import { DEFAULTS, type DoorConfig, type GuardedPort } from './types.js';
import { decodeEncKey, decodeHmacKey, readPrivateFile, SecretFileError, SpaKeyError } from './keys.js';
import { parseAddressBlock, type AddressBlock } from '../address.js';

/** Why each fwknopd feature is not here, for the error text. */
const UNSUPPORTED: Record<string, string> = {
  GPG: 'GnuPG-encrypted SPA is not supported; use Rijndael keys (KEY_BASE64 / HMAC_KEY_BASE64)',
  FORCE_NAT: 'NAT of granted connections is not supported',
  FORCE_SNAT: 'NAT of granted connections is not supported',
  FORCE_MASQUERADE: 'NAT of granted connections is not supported',
  DISABLE_DNAT: 'NAT of granted connections is not supported',
  FORWARD_ALL: 'NAT of granted connections is not supported',
  CMD_CYCLE: 'command cycles are not supported; use Start_Command / Stop_Command on a knockd.conf SPA door',
  CMD: 'command messages (fwknop --server-cmd) are not supported',
  ENABLE_CMD: 'command messages (fwknop --server-cmd) are not supported',
  ACCESS_EXPIRE: 'stanza expiry dates are not supported',
  RESTRICT_PORTS: 'RESTRICT_PORTS is not supported; list the allowed ports in OPEN_PORTS',
  '%INCLUDE': 'included access files are not supported; merge them into one file',
};

const PREFIXES = ['GPG', 'CMD_CYCLE', 'ENABLE_CMD', 'CMD', 'ACCESS_EXPIRE', '%INCLUDE'];

function unsupportedReason(name: string): string | undefined {
  if (UNSUPPORTED[name]) return UNSUPPORTED[name];
  const prefix = PREFIXES.find((p) => name.startsWith(p));
  return prefix && UNSUPPORTED[prefix];
}

interface Stanza {
  line: number;
  values: Map<string, { value: string; line: number }>;
}

/** Reads `path` (private, like key files) and returns its stanzas as SPA doors; throws ConfigError. */
export function migrateAccessConf(path: string): DoorConfig[] {
  let text: string;
  try {
    text = readPrivateFile(path, { maxBytes: 1 << 20 }).toString('latin1');
  } catch (err) {
    throw new ConfigError(err instanceof SecretFileError ? err.message : `${path}: ${(err as Error).message}`);
  }
  const fail = (line: number, what: string) => new ConfigError(`${path}: line ${line}: ${what}`);
  const stanzas: Stanza[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const m = /^\s*(\S+)\s+([^;\r\n]*)/.exec(raw);
    if (raw.trim() === '' || raw.trim().startsWith('#')) return;
    if (!m) throw fail(line, `"${raw.trim()}" has no value (access.conf lines are NAME VALUE)`);
    const name = m[1].toUpperCase();
    const value = m[2].trim();
    const why = unsupportedReason(name);
    if (why) throw fail(line, `${m[1]}: ${why}`);
    if (name === 'SOURCE') stanzas.push({ line, values: new Map() });
    const stanza = stanzas[stanzas.length - 1];
    if (!stanza) throw fail(line, `${m[1]} comes before the first SOURCE line; every stanza starts with SOURCE`);
    if (!KNOWN.has(name)) throw fail(line, `${m[1]} is not an access.conf directive knockd-fast knows`);
    stanza.values.set(name === 'REQUIRE_SOURCE' ? 'REQUIRE_SOURCE_ADDRESS' : name, { value, line });
  });
  if (stanzas.length === 0) throw new ConfigError(`${path}: no stanza (a stanza starts with a SOURCE line)`);
  return stanzas.map((s, i) => stanzaDoor(s, i + 1, path, fail));
}

const KNOWN = new Set([
  'SOURCE',
  'DESTINATION',
  'KEY',
  'KEY_BASE64',
  'HMAC_KEY',
  'HMAC_KEY_BASE64',
  'HMAC_DIGEST_TYPE',
  'ENCRYPTION_MODE',
  'OPEN_PORTS',
  'FW_ACCESS_TIMEOUT',
  'MAX_FW_TIMEOUT',
  'REQUIRE_SOURCE_ADDRESS',
  'REQUIRE_SOURCE',
  'REQUIRE_USERNAME',
]);

function stanzaDoor(s: Stanza, n: number, path: string, fail: (line: number, what: string) => ConfigError): DoorConfig {
  const get = (k: string) => s.values.get(k);
  const door = defaultDoor(`fwknop-${n}`, s.line);
  const keyed = (k: string, decode: (v: string) => Uint8Array): Uint8Array | undefined => {
    const v = get(k);
    if (!v) return undefined;
    try {
      return decode(v.value);
    } catch (err) {
      throw fail(v.line, (err as SpaKeyError).message);
    }
  };
  const encKey = keyed('KEY_BASE64', decodeEncKey) ?? keyed('KEY', (v) => new Uint8Array(Buffer.from(v, 'latin1')));
  const hmacKey = keyed('HMAC_KEY_BASE64', decodeHmacKey) ?? keyed('HMAC_KEY', (v) => new Uint8Array(Buffer.from(v, 'latin1')));
  if (!encKey || encKey.length === 0) throw fail(s.line, `stanza #${n} has no KEY_BASE64 (or KEY)`);
  if (!hmacKey || hmacKey.length === 0) {
    throw fail(s.line, `stanza #${n} has no HMAC_KEY_BASE64 (or HMAC_KEY): knockd-fast authenticates every packet by its HMAC before decrypting it; generate keys with fwknop --key-gen`);
  }
  const digest = get('HMAC_DIGEST_TYPE');
  if (digest && digest.value.toLowerCase() !== 'sha256') throw fail(digest.line, `HMAC_DIGEST_TYPE ${digest.value} is not supported; only sha256 (fwknop's default)`);
  const mode = get('ENCRYPTION_MODE');
  if (mode && mode.value.toUpperCase() !== 'CBC') throw fail(mode.line, `ENCRYPTION_MODE ${mode.value} is not supported; only CBC (fwknop's default)`);
  const dest = get('DESTINATION');
  if (dest && dest.value.toUpperCase() !== 'ANY') throw fail(dest.line, 'DESTINATION other than ANY is not supported; use Target on a knockd.conf SPA door');
  const open = get('OPEN_PORTS');
  if (!open) throw fail(s.line, `stanza #${n} has no OPEN_PORTS: knockd-fast opens nftables sets for the ports a door lists`);
  door.open = openPorts(open.value, open.line, fail);
  const seconds = (k: string, fallback: number): number => {
    const v = get(k);
    if (!v) return fallback;
    if (!/^\d+$/.test(v.value) || Number(v.value) < 1 || Number(v.value) > 0x7fffffff) throw fail(v.line, `${k} "${v.value}" is not a whole number of seconds from 1 up`);
    return Number(v.value);
  };
  door.openTimeout = seconds('FW_ACCESS_TIMEOUT', DEFAULTS.openTimeout);
  const users = get('REQUIRE_USERNAME');
  door.spa = {
    keyFile: `${path} (stanza #${n})`,
    encKey,
    hmacKey,
    port: DEFAULTS.spaPort,
    maxTimeout: seconds('MAX_FW_TIMEOUT', DEFAULTS.spaMaxTimeout),
    requireSourceAddress: /^y/i.test(get('REQUIRE_SOURCE_ADDRESS')?.value ?? 'N'),
    users: users ? [users.value] : [],
    sources: sources(get('SOURCE')!.value, get('SOURCE')!.line, fail),
    maxPacketAge: DEFAULTS.spaMaxPacketAge,
  };
  return door;
}

function openPorts(value: string, line: number, fail: (line: number, what: string) => ConfigError): GuardedPort[] {
  return value.split(',').map((item) => {
    const m = /^\s*(tcp|udp)\/(\d{1,5})\s*$/i.exec(item);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw fail(line, `OPEN_PORTS item "${item.trim()}" is not tcp/PORT or udp/PORT`);
    return { proto: m[1].toLowerCase() as 'tcp' | 'udp', port: Number(m[2]) };
  });
}

function sources(value: string, line: number, fail: (line: number, what: string) => ConfigError): AddressBlock[] {
  const items = value.split(',').map((i) => i.trim());
  if (items.some((i) => i.toUpperCase() === 'ANY')) return [];
  return items.map((item) => {
    const block = parseAddressBlock(item);
    if (typeof block === 'string') throw fail(line, `SOURCE: ${block}`);
    return block;
  });
}
