// knockd.conf -> KnockdConfig: knockd 0.8's grammar and error texts exactly, plus the
// knockd-fast extension directives (README.md, Configuration) and derived doors (docs/MATCHER.md §10).
// Parsing stops at the first error, which is thrown as a ConfigError whose message is the stderr line.
import { isIPv4, isIPv6 } from 'node:net';
import { readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseStoreUrl, STORE_URL_FORMS, StoreUrlError } from './store-url.js';
import { formatAddress, parseAddress, parseAddressBlock, type AddressBlock } from '../address.js';
import { ConfigError, atoi, chunks, fromBytes, parseSequence, perror, toBytes, trimC, upperC } from './lexical.js';
import { oneTimeExhaustedMessage, readNextOneTimeSequence } from './onetime.js';
import { readSecretFile, readSpaKeyFile, SecretFileError, SpaKeyError, type SpaKeys } from './keys.js';
import { migrateAccessConf } from './access-conf.js';
import {
  DEFAULTS,
  DERIVED_TCP_FLAGS,
  NFT_IDENTIFIER,
  TCP_FLAG,
  type DoorConfig,
  type FleetConfig,
  type GuardedPort,
  type KnockdConfig,
  type NftSetRef,
  type OptionsConfig,
  type Proto,
} from './types.js';

export { ConfigError } from './lexical.js';

const SECTION_NAME_BYTES = 254; // char section[256] in knockd, less the ']' it copies
const DOOR_NAME_BYTES = 127; // char name[128]
const INT32_MAX = 0x7fffffff;
const DERIVED_SEQUENCE_LENGTH = 4;
const MAX_THREADS = 256;
const IFNAMSIZ = 16;

export function parseConfig(path: string): KnockdConfig {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new ConfigError(perror(path, err));
  }
  return parseBytes(toBytes(data), path);
}

/** Parses config text as if read from `path` (relative file paths inside it resolve against the cwd). */
export function parseConfigText(text: string, path = '<text>'): KnockdConfig {
  return parseBytes(toBytes(text), path);
}

/** A door being parsed: the DoorConfig plus where directives appeared, for checks at the end. */
interface DoorState {
  config: DoorConfig;
  lines: Partial<Record<DoorKey, number>>;
  secretFile?: string;
  secretKey?: Uint8Array;
  derivedPorts?: number[];
  derivedProtocols?: Proto[];
  sequenceLength: number;
  timeStep: number;
  bindSource: boolean;
  spaKeyFile?: string;
  spaKeys?: SpaKeys;
  spaPort: number;
  spaMaxTimeout: number;
  spaRequireSource: boolean;
  spaUsers: string[];
  spaSources: AddressBlock[];
  spaMaxPacketAge: number;
}

interface ParseState {
  options: OptionsConfig;
  warnings: string[];
  /** the Fleet_* directives as read, checked together at the end */
  fleet: FleetDraft;
}

interface FleetDraft {
  lines: Partial<Record<'FLEET' | 'FLEET_NAME' | 'FLEET_MEMBER' | 'FLEET_KEY_FILE' | 'FLEET_OFFLINE' | 'FLEET_COMMANDS' | 'FLEET_PASSWORD_FILE', number>>;
  url?: string;
  name?: string;
  member?: string;
  keyFile?: string;
  key?: Uint8Array;
  offline?: FleetConfig['offline'];
  commands?: FleetConfig['commands'];
  passwordFile?: string;
  password?: string;
}

const fail = (line: number, what: string) => new ConfigError(`config: line ${line}: ${what}`, line);

/** Extension errors: `config: line N: <Key>: <what is wrong>; expected <forms>`. */
const invalid = (line: number, key: string, what: string, forms: string) =>
  fail(line, `${key}: ${what}; expected ${forms}`);

function parseBytes(bytes: string, path: string): KnockdConfig {
  const state: ParseState = {
    options: { useSyslog: false, maxTracked: DEFAULTS.maxTracked, nftTable: DEFAULTS.nftTable },
    warnings: [],
    fleet: { lines: {} },
  };
  const doors: DoorState[] = [];
  let section = '';
  let door: DoorState | undefined;

  for (const chunk of chunks(bytes)) {
    const n = chunk.number;
    const line = trimC(chunk.raw);
    if (line === '' || line[0] === '#') continue;

    if (line[0] === '[' && line.endsWith(']')) {
      section = line.slice(1, -1).slice(0, SECTION_NAME_BYTES);
      if (section === '') throw fail(n, 'bad section name');
      if (section !== 'options') {
        door = newDoor(fromBytes(section.slice(0, DOOR_NAME_BYTES)), n);
        doors.push(door);
      }
      continue;
    }

    if (section === '') throw fail(n, 'all directives must belong to a section');
    const eq = line.indexOf('=');
    const key = upperC(trimC(eq < 0 ? line : line.slice(0, eq)));
    if (eq < 0) {
      if (key !== 'USESYSLOG') throw fail(n, 'syntax error');
      state.options.useSyslog = true;
      continue;
    }
    const value = trimC(line.slice(eq + 1));
    if (section === 'options') {
      if (!Object.hasOwn(OPTION_DIRECTIVES, key)) throw fail(n, 'syntax error');
      OPTION_DIRECTIVES[key as OptionKey](state.options, value, n, state);
    } else {
      if (!Object.hasOwn(DOOR_DIRECTIVES, key)) throw fail(n, 'syntax error');
      DOOR_DIRECTIVES[key as DoorKey](door!, value, n, state);
    }
  }

  for (const d of doors) finishDoor(d, state);
  finishFleet(state);
  const all = doors.map((d) => d.config);
  if (state.options.fwknopAccess) all.push(...migratedDoors(state.options.fwknopAccess, all));
  return { path, options: state.options, doors: all, warnings: state.warnings };
}

/** fwknopd's access.conf stanzas as SPA doors after the config's own (src/config/access-conf.ts). */
function migratedDoors(at: { path: string; line: number }, existing: DoorConfig[]): DoorConfig[] {
  let migrated: DoorConfig[];
  try {
    migrated = migrateAccessConf(at.path);
  } catch (err) {
    if (err instanceof ConfigError) throw fail(at.line, `Fwknop_Access: ${err.message}`);
    throw err;
  }
  for (const d of migrated) {
    if (existing.some((e) => e.name === d.name)) throw fail(at.line, `Fwknop_Access: the door name ${d.name} is taken by a section of this file; rename the section`);
  }
  return migrated;
}

/** A door as knockd creates it at its section header, with every default (knockd 0.8's, and the extensions' of README.md). */
export function defaultDoor(name: string, line: number): DoorConfig {
  return {
    name,
    line,
    sequence: [],
    seqTimeout: DEFAULTS.seqTimeout,
    cmdTimeout: DEFAULTS.cmdTimeout,
    tcpFlags: { mustSet: 0, mustClear: 0 },
    open: [],
    openTimeout: DEFAULTS.openTimeout,
    hook: 'input',
    allowDuplicates: false,
    cooldown: 0,
    dedupe: false,
  };
}

function newDoor(name: string, line: number): DoorState {
  return {
    config: defaultDoor(name, line),
    lines: {},
    sequenceLength: DERIVED_SEQUENCE_LENGTH,
    timeStep: DEFAULTS.timeStep,
    bindSource: true,
    spaPort: DEFAULTS.spaPort,
    spaMaxTimeout: DEFAULTS.spaMaxTimeout,
    spaRequireSource: false,
    spaUsers: [],
    spaSources: [],
    spaMaxPacketAge: DEFAULTS.spaMaxPacketAge,
  };
}

// ---------------------------------------------------------------- value forms of the extensions

function wholeNumber(value: string, line: number, key: string, min: number, max: number, forms: string): number {
  if (value === '') throw invalid(line, key, 'the value is empty', forms);
  if (!/^\d+$/.test(value)) throw invalid(line, key, `"${fromBytes(value)}" is not a whole number`, forms);
  const v = Number(value);
  if (v < min || v > max) throw invalid(line, key, `${value} is out of range`, forms);
  return v;
}

function yesNo(value: string, line: number, key: string): boolean {
  const v = value.toLowerCase();
  if (v === 'yes') return true;
  if (v === 'no') return false;
  throw invalid(line, key, value === '' ? 'the value is empty' : `"${fromBytes(value)}" is not yes or no`, 'yes or no');
}

function oneOf<T extends string>(value: string, line: number, key: string, choices: readonly T[]): T {
  const v = value.toLowerCase();
  const found = choices.find((c) => c === v);
  if (found) return found;
  const forms = choices.join(' or ');
  throw invalid(line, key, value === '' ? 'the value is empty' : `"${fromBytes(value)}" is not accepted`, forms);
}

function nftIdentifier(text: string, line: number, key: string, what: string, forms: string): string {
  if (!NFT_IDENTIFIER.test(text)) throw invalid(line, key, `${what} "${fromBytes(text)}" is not an nft identifier`, forms);
  return text;
}

function port1(text: string, line: number, key: string, forms: string): number {
  if (!/^\d+$/.test(text)) throw invalid(line, key, `"${fromBytes(text)}" is not a port number`, forms);
  const p = Number(text);
  if (p < 1 || p > 65535) throw invalid(line, key, `port ${text} is out of range`, forms);
  return p;
}

function commaItems(value: string, line: number, key: string, forms: string): string[] {
  if (value === '') throw invalid(line, key, 'the value is empty', forms);
  const items = value.split(',').map(trimC);
  if (items.includes('')) throw invalid(line, key, 'the list has an empty item', forms);
  return items;
}

// ---------------------------------------------------------------- [options]

type OptionKey = keyof typeof OPTION_DIRECTIVES;
type OptionHandler = (o: OptionsConfig, value: string, line: number, state: ParseState) => void;

const OPTION_DIRECTIVES = {
  LOGFILE: (o, v) => void (o.logFile = fromBytes(v)),
  PIDFILE: (o, v) => void (o.pidFile = fromBytes(v)),
  INTERFACE: (o, v, line) => {
    // knockd applies Interface only while no interface is set, and an empty value sets none. The names are
    // checked where they are used (captureInterfaces): under -i knockd never looks at this line.
    if (o.interfaces === undefined && v !== '') {
      o.interfaces = v.split(',').map((name) => fromBytes(trimC(name)));
      o.interfaceLine = line;
    }
  },
  MAXTRACKED: (o, v, line) =>
    void (o.maxTracked = wholeNumber(v, line, 'MaxTracked', 1, INT32_MAX, `a whole number from 1 to ${INT32_MAX}`)),
  NFTTABLE: (o, v, line) =>
    void (o.nftTable = nftIdentifier(v, line, 'NftTable', 'table name', 'NftTable = NAME (letters, digits, _ . / -; not starting with a digit)')),
  THREADS: (o, v, line) =>
    void (o.threads = wholeNumber(v, line, 'Threads', 1, MAX_THREADS, `a whole number from 1 to ${MAX_THREADS}`)),
  LOGFORMAT: (o, v, line) => void (o.logFormat = oneOf(v, line, 'LogFormat', ['knockd', 'json'] as const)),
  METRICSLISTEN: (o, v, line) => void (o.metricsListen = metricsListen(v, line)),
  FWKNOP_ACCESS: (o, v, line) => {
    if (v === '') throw invalid(line, 'Fwknop_Access', 'the value is empty', 'Fwknop_Access = PATH of fwknopd\'s access.conf');
    o.fwknopAccess = { path: fromBytes(v), line };
  },
  STATEFILE: (o, v, line) => {
    if (v === '') throw invalid(line, 'StateFile', 'the value is empty', 'StateFile = PATH');
    o.stateFile = fromBytes(v);
  },

  // --- fleet (docs/FLEET.md)
  FLEET: (_o, v, line, { fleet }) => {
    if (v === '') throw invalid(line, 'Fleet', 'the value is empty', STORE_URL_FORMS);
    try {
      parseStoreUrl(fromBytes(v));
    } catch (err) {
      if (err instanceof StoreUrlError) throw invalid(line, 'Fleet', err.message, STORE_URL_FORMS);
      throw err;
    }
    fleet.url = fromBytes(v);
    fleet.lines.FLEET = line;
  },
  FLEET_NAME: (_o, v, line, { fleet }) => {
    fleet.name = fleetWord(v, line, 'Fleet_Name');
    fleet.lines.FLEET_NAME = line;
  },
  FLEET_MEMBER: (_o, v, line, { fleet }) => {
    fleet.member = fleetWord(v, line, 'Fleet_Member');
    fleet.lines.FLEET_MEMBER = line;
  },
  FLEET_KEY_FILE: (_o, v, line, { fleet }) => {
    const forms = 'Fleet_Key_File = PATH of a key file readable only by root (chmod 600) holding 16 to 64 bytes of key, the same on every member';
    if (v === '') throw invalid(line, 'Fleet_Key_File', 'the value is empty', forms);
    try {
      fleet.key = readSecretFile(fromBytes(v));
    } catch (err) {
      if (err instanceof SecretFileError) throw invalid(line, 'Fleet_Key_File', err.message, forms);
      throw invalid(line, 'Fleet_Key_File', perror(fromBytes(v), err), forms);
    }
    fleet.keyFile = fromBytes(v);
    fleet.lines.FLEET_KEY_FILE = line;
  },
  FLEET_OFFLINE: (_o, v, line, { fleet }) => {
    fleet.offline = oneOf(v, line, 'Fleet_Offline', ['local', 'deny'] as const);
    fleet.lines.FLEET_OFFLINE = line;
  },
  FLEET_COMMANDS: (_o, v, line, { fleet }) => {
    fleet.commands = oneOf(v, line, 'Fleet_Commands', ['local', 'all'] as const);
    fleet.lines.FLEET_COMMANDS = line;
  },
  FLEET_PASSWORD_FILE: (_o, v, line, { fleet }) => {
    const forms = 'Fleet_Password_File = PATH of a file readable only by root (chmod 600) holding the store password';
    if (v === '') throw invalid(line, 'Fleet_Password_File', 'the value is empty', forms);
    try {
      fleet.password = readPasswordFile(fromBytes(v));
    } catch (err) {
      throw invalid(line, 'Fleet_Password_File', err instanceof SecretFileError ? err.message : perror(fromBytes(v), err), forms);
    }
    fleet.passwordFile = fromBytes(v);
    fleet.lines.FLEET_PASSWORD_FILE = line;
  },
} satisfies Record<string, OptionHandler>;

const FLEET_WORD = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Fleet_Name and Fleet_Member become parts of store keys: a plain word. */
function fleetWord(value: string, line: number, key: string): string {
  const forms = `${key} = NAME (1 to 64 letters, digits and . _ -, starting with a letter or digit)`;
  if (value === '') throw invalid(line, key, 'the value is empty', forms);
  if (!FLEET_WORD.test(value)) throw invalid(line, key, `"${fromBytes(value)}" is not accepted`, forms);
  return value;
}

/** The store password: the file's first line, from a file only root can read (like Secret_File). */
function readPasswordFile(path: string): string {
  const st = statSync(path);
  if ((st.mode & 0o077) !== 0) {
    throw new SecretFileError(`${path}: the password file is readable by other users (mode ${(st.mode & 0o777).toString(8)}); fix with: chmod 600 ${path}`);
  }
  const password = readFileSync(path, 'utf8').split('\n')[0].trim();
  if (password === '') throw new SecretFileError(`${path}: the file is empty; write the store password on its first line`);
  return password;
}

function finishFleet(state: ParseState): void {
  const f = state.fleet;
  if (f.url === undefined) {
    const stray = Object.entries(f.lines)[0];
    if (stray) {
      const name = stray[0].split('_').map((w) => w[0] + w.slice(1).toLowerCase()).join('_');
      throw invalid(stray[1], name, 'there is no Fleet directive', 'Fleet = redis://HOST:PORT in [options] to join a fleet');
    }
    return;
  }
  if (f.key === undefined) {
    throw invalid(f.lines.FLEET!, 'Fleet', 'a fleet needs Fleet_Key_File (the key every member signs its messages with)', 'Fleet_Key_File = PATH in [options]; create it with: knockd-fast secret > PATH');
  }
  state.options.fleet = {
    url: f.url,
    name: f.name ?? 'knockd-fast',
    member: f.member ?? defaultMember(),
    keyFile: f.keyFile!,
    key: f.key,
    offline: f.offline ?? 'local',
    commands: f.commands ?? 'local',
    passwordFile: f.passwordFile,
    password: f.password,
  };
}

/** The host name, cut to a Fleet_Member word. */
function defaultMember(): string {
  const name = hostname().split('.')[0].replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64);
  return FLEET_WORD.test(name) ? name : 'member';
}

/**
 * The interfaces the daemon captures on: -i's list, else Interface='s, else knockd's eth0. Interface= is
 * checked here, where it is used; a bad name fails the way knockd's capture open fails (its text), then
 * the line and what is wrong with it.
 */
export function captureInterfaces(cliInterface: string | undefined, options: OptionsConfig): string[] {
  if (cliInterface) return cliInterface.split(',').map((name) => name.trim());
  const names = options.interfaces;
  if (!names) return [DEFAULTS.interface];
  const forms = 'Interface = NAME[,NAME...] (Linux interface names, at most 15 bytes each; a # starts a comment only at the start of a line)';
  for (const [i, name] of names.entries()) {
    const why =
      name === ''
        ? 'the list has an empty item'
        : Buffer.byteLength(name) >= IFNAMSIZ || /[ \t\n\v\f\r/:]/.test(name) || name === '.' || name === '..'
          ? `"${name}" is not a valid interface name`
          : names.indexOf(name) !== i
            ? `"${name}" is listed twice`
            : undefined;
    if (why) {
      const line = options.interfaceLine ?? 0;
      throw new ConfigError(
        `could not open ${name}: ${name}: No such device exists (No such device exists)\nconfig: line ${line}: Interface: ${why}; expected ${forms}`,
        line,
      );
    }
  }
  return names;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

function metricsListen(value: string, line: number): string {
  const forms = 'MetricsListen = ADDR:PORT (ADDR an IPv4 address, [IPv6 address] or host name; PORT 1-65535)';
  const colon = value.lastIndexOf(':');
  if (value === '') throw invalid(line, 'MetricsListen', 'the value is empty', forms);
  if (colon <= 0) throw invalid(line, 'MetricsListen', `"${fromBytes(value)}" has no ADDR:PORT form`, forms);
  const addr = value.slice(0, colon);
  port1(value.slice(colon + 1), line, 'MetricsListen', forms);
  const bracketed = addr.startsWith('[') && addr.endsWith(']');
  const ok = bracketed ? isIPv6(addr.slice(1, -1)) : isIPv4(addr) || (!addr.includes(':') && HOSTNAME.test(addr));
  if (!ok) throw invalid(line, 'MetricsListen', `"${fromBytes(addr)}" is not an address or host name`, forms);
  return value;
}

// ---------------------------------------------------------------- doors

type DoorKey = keyof typeof DOOR_DIRECTIVES;
type DoorHandler = (d: DoorState, value: string, line: number, state: ParseState) => void;

const flagNames = Object.keys(TCP_FLAG) as (keyof typeof TCP_FLAG)[];

const DOOR_DIRECTIVES = {
  TARGET: (d, v, line) => {
    d.config.target = fromBytes(v);
    d.lines.TARGET = line;
  },
  SEQUENCE: (d, v, line) => {
    d.config.sequence = withLine(line, () => parseSequence(v, d.config.name));
    d.lines.SEQUENCE = line;
  },
  ONE_TIME_SEQUENCES: (d, v, line, state) => {
    const path = fromBytes(v);
    const read = withLine(line, () => readNextOneTimeSequence(path, d.config.name));
    d.config.oneTimeSequences = path;
    d.config.sequence = read.sequence;
    d.lines.ONE_TIME_SEQUENCES = line;
    state.warnings.push(...read.errors);
    // the reference stops here; knockd-fast keeps the door, disabled (README.md deviation 6)
    if (read.sequence.length === 0) state.warnings.push(oneTimeExhaustedMessage(d.config.name));
  },
  SEQ_TIMEOUT: (d, v) => void (d.config.seqTimeout = atoi(v)),
  TIMEOUT: (d, v) => void (d.config.seqTimeout = atoi(v)),
  START_COMMAND: (d, v) => void (d.config.startCommand = fromBytes(v)),
  COMMAND: (d, v) => void (d.config.startCommand = fromBytes(v)),
  START_COMMAND_6: (d, v) => void (d.config.startCommand6 = fromBytes(v)),
  COMMAND_6: (d, v) => void (d.config.startCommand6 = fromBytes(v)),
  CMD_TIMEOUT: (d, v) => void (d.config.cmdTimeout = atoi(v)),
  STOP_COMMAND: (d, v) => void (d.config.stopCommand = fromBytes(v)),
  STOP_COMMAND_6: (d, v) => void (d.config.stopCommand6 = fromBytes(v)),
  TCPFLAGS: (d, v, line) => {
    d.lines.TCPFLAGS = line;
    // no per-item trimming; each mention overrides the flag's earlier state, also across lines
    const rule = d.config.tcpFlags;
    for (const item of upperC(v).split(',')) {
      const negated = item.startsWith('!');
      const name = flagNames.find((f) => f === (negated ? item.slice(1) : item));
      if (!name) throw fail(line, `unrecognized flag "${fromBytes(item)}"`);
      const bit = TCP_FLAG[name];
      rule.mustSet = negated ? rule.mustSet & ~bit : rule.mustSet | bit;
      rule.mustClear = negated ? rule.mustClear | bit : rule.mustClear & ~bit;
    }
  },

  // --- extensions (README.md, Configuration)
  OPEN: (d, v, line) => void (d.config.open = guardedPorts(v, line)),
  OPEN_TIMEOUT: (d, v, line) =>
    void (d.config.openTimeout = wholeNumber(v, line, 'Open_Timeout', 1, INT32_MAX, 'a whole number of seconds from 1 up')),
  NFTSET: (d, v, line) => void (d.config.nftSet = nftSet(v, line)),
  HOOK: (d, v, line) => void (d.config.hook = oneOf(v, line, 'Hook', ['input', 'forward'] as const)),
  ALLOW_DUPLICATES: (d, v, line) => void (d.config.allowDuplicates = yesNo(v, line, 'Allow_Duplicates')),
  COOLDOWN: (d, v, line) =>
    void (d.config.cooldown = wholeNumber(v, line, 'Cooldown', 0, INT32_MAX, 'a whole number of seconds (0 = off)')),
  DEDUPE: (d, v, line) => void (d.config.dedupe = yesNo(v, line, 'Dedupe')),

  // --- derived doors (docs/MATCHER.md §10)
  SECRET_FILE: (d, v, line) => {
    const forms = 'Secret_File = PATH of a key file readable only by root (chmod 600) holding 16 to 64 bytes of key';
    d.secretKey = readKeyDirective(v, line, 'Secret_File', forms, readSecretFile);
    d.secretFile = fromBytes(v);
    d.lines.SECRET_FILE = line;
  },
  SEQUENCE_LENGTH: (d, v, line) => {
    d.sequenceLength = wholeNumber(v, line, 'Sequence_Length', 1, 32, 'a whole number of steps from 1 to 32');
    d.lines.SEQUENCE_LENGTH = line;
  },
  PORT_RANGE: (d, v, line) => {
    d.derivedPorts = portRange(v, line);
    d.lines.PORT_RANGE = line;
  },
  PROTOCOLS: (d, v, line) => {
    d.derivedProtocols = protocols(v, line);
    d.lines.PROTOCOLS = line;
  },
  TIME_STEP: (d, v, line) => {
    d.timeStep = wholeNumber(v, line, 'Time_Step', 1, INT32_MAX, 'a whole number of seconds from 1 up');
    d.lines.TIME_STEP = line;
  },
  BIND_SOURCE: (d, v, line) => {
    d.bindSource = yesNo(v, line, 'Bind_Source');
    d.lines.BIND_SOURCE = line;
  },

  // --- SPA doors (docs/SPA.md)
  SPA_KEY_FILE: (d, v, line) => {
    const forms = 'SPA_Key_File = PATH of a file readable only by root (chmod 600) with the KEY_BASE64 and HMAC_KEY_BASE64 lines of fwknop --key-gen';
    d.spaKeys = readKeyDirective(v, line, 'SPA_Key_File', forms, readSpaKeyFile);
    d.spaKeyFile = fromBytes(v);
    d.lines.SPA_KEY_FILE = line;
  },
  SPA_PORT: (d, v, line) => {
    d.spaPort = port1(v, line, 'SPA_Port', 'SPA_Port = PORT (UDP, 1-65535; fwknop uses 62201)');
    d.lines.SPA_PORT = line;
  },
  HMAC_DIGEST: (d, v, line) => {
    if (v.toLowerCase() !== 'sha256') {
      throw invalid(line, 'HMAC_Digest', `"${fromBytes(v)}" is not supported (the capture threads check HMAC-SHA256 only)`, 'sha256 (fwknop\'s default; clients: --hmac-digest-type sha256)');
    }
    d.lines.HMAC_DIGEST = line;
  },
  MAX_OPEN_TIMEOUT: (d, v, line) => {
    d.spaMaxTimeout = wholeNumber(v, line, 'Max_Open_Timeout', 1, INT32_MAX, 'a whole number of seconds from 1 up');
    d.lines.MAX_OPEN_TIMEOUT = line;
  },
  REQUIRE_SOURCE_ADDRESS: (d, v, line) => {
    d.spaRequireSource = yesNo(v, line, 'Require_Source_Address');
    d.lines.REQUIRE_SOURCE_ADDRESS = line;
  },
  REQUIRE_USERNAME: (d, v, line) => {
    d.spaUsers = commaItems(v, line, 'Require_Username', 'Require_Username = NAME[,NAME...]').map(fromBytes);
    d.lines.REQUIRE_USERNAME = line;
  },
  SOURCE: (d, v, line) => {
    d.spaSources = addressBlocks(v, line);
    d.lines.SOURCE = line;
  },
  MAX_PACKET_AGE: (d, v, line) => {
    d.spaMaxPacketAge = wholeNumber(v, line, 'Max_Packet_Age', 1, INT32_MAX, 'a whole number of seconds from 1 up (fwknop: 120)');
    d.lines.MAX_PACKET_AGE = line;
  },
} satisfies Record<string, DoorHandler>;

/** A directive naming a private key file: the reader's complaint becomes the directive's error. */
function readKeyDirective<T>(value: string, line: number, key: string, forms: string, read: (path: string) => T): T {
  if (value === '') throw invalid(line, key, 'the value is empty', forms);
  try {
    return read(fromBytes(value));
  } catch (err) {
    if (err instanceof SecretFileError || err instanceof SpaKeyError) throw invalid(line, key, err.message, forms);
    throw invalid(line, key, perror(fromBytes(value), err), forms);
  }
}

/** `ANY` or a comma list of ADDR[/PREFIX] (IPv4 or IPv6); access.conf's SOURCE form. */
function addressBlocks(value: string, line: number): AddressBlock[] {
  const forms = 'Source = ANY or ADDR[/PREFIX][,ADDR[/PREFIX]...] (IPv4 or IPv6)';
  const items = commaItems(value, line, 'Source', forms);
  if (items.some((i) => i.toUpperCase() === 'ANY')) return [];
  return items.map((item) => {
    const block = parseAddressBlock(fromBytes(item));
    if (typeof block === 'string') throw invalid(line, 'Source', block, forms);
    return block;
  });
}

/** Runs a sequence reader and gives its ConfigError the directive's line number. */
function withLine<T>(line: number, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof ConfigError && err.line === undefined) throw new ConfigError(err.message, line);
    throw err;
  }
}

function guardedPorts(value: string, line: number): GuardedPort[] {
  const forms = 'Open = PORT/PROTO[,PORT/PROTO...] with PORT 1-65535 and PROTO tcp or udp (a bare PORT means tcp)';
  const out: GuardedPort[] = [];
  for (const item of commaItems(value, line, 'Open', forms)) {
    const slash = item.indexOf('/');
    const port = port1(trimC(slash < 0 ? item : item.slice(0, slash)), line, 'Open', forms);
    const protoText = slash < 0 ? 'tcp' : trimC(item.slice(slash + 1)).toLowerCase();
    if (protoText !== 'tcp' && protoText !== 'udp') {
      throw invalid(line, 'Open', `"${fromBytes(item)}" has an unknown protocol`, forms);
    }
    const proto: Proto = protoText;
    if (!out.some((g) => g.port === port && g.proto === proto)) out.push({ port, proto });
  }
  return out;
}

const NFT_FAMILIES = ['ip', 'ip6', 'inet', 'bridge', 'arp', 'netdev'] as const;

function nftSet(value: string, line: number): NftSetRef {
  const forms = `NftSet = FAMILY TABLE SET with FAMILY one of ${NFT_FAMILIES.join(', ')}`;
  const words = value.split(/[ \t]+/).filter((w) => w !== '');
  if (words.length !== 3) throw invalid(line, 'NftSet', `"${fromBytes(value)}" does not have three words`, forms);
  const family = NFT_FAMILIES.find((f) => f === words[0].toLowerCase());
  if (!family) throw invalid(line, 'NftSet', `"${fromBytes(words[0])}" is not an nft family`, forms);
  return {
    family,
    table: fromBytes(nftIdentifier(words[1], line, 'NftSet', 'table name', forms)),
    set: fromBytes(nftIdentifier(words[2], line, 'NftSet', 'set name', forms)),
  };
}

function portRange(value: string, line: number): number[] {
  const forms = 'Port_Range = LOW-HIGH or a comma list of ports and LOW-HIGH ranges (ports 1-65535)';
  const ports = new Set<number>();
  for (const item of commaItems(value, line, 'Port_Range', forms)) {
    const dash = item.indexOf('-');
    const lo = port1(trimC(dash < 0 ? item : item.slice(0, dash)), line, 'Port_Range', forms);
    const hi = dash < 0 ? lo : port1(trimC(item.slice(dash + 1)), line, 'Port_Range', forms);
    if (lo > hi) throw invalid(line, 'Port_Range', `range ${fromBytes(item)} runs backwards`, forms);
    for (let p = lo; p <= hi; p++) ports.add(p);
  }
  return [...ports].sort((a, b) => a - b);
}

function protocols(value: string, line: number): Proto[] {
  const forms = 'Protocols = tcp, udp or tcp,udp';
  const set = new Set<Proto>();
  for (const item of commaItems(value, line, 'Protocols', forms)) {
    const p = item.toLowerCase();
    if (p !== 'tcp' && p !== 'udp') throw invalid(line, 'Protocols', `"${fromBytes(item)}" is not tcp or udp`, forms);
    set.add(p);
  }
  return (['tcp', 'udp'] as const).filter((p) => set.has(p)); // the program lists tcp before udp
}

const DERIVED_ONLY = ['SEQUENCE_LENGTH', 'PORT_RANGE', 'PROTOCOLS', 'TIME_STEP', 'BIND_SOURCE'] as const;
const DIRECTIVE_NAME: Record<(typeof DERIVED_ONLY)[number], string> = {
  SEQUENCE_LENGTH: 'Sequence_Length',
  PORT_RANGE: 'Port_Range',
  PROTOCOLS: 'Protocols',
  TIME_STEP: 'Time_Step',
  BIND_SOURCE: 'Bind_Source',
};

const SPA_ONLY = {
  SPA_PORT: 'SPA_Port',
  HMAC_DIGEST: 'HMAC_Digest',
  MAX_OPEN_TIMEOUT: 'Max_Open_Timeout',
  REQUIRE_SOURCE_ADDRESS: 'Require_Source_Address',
  REQUIRE_USERNAME: 'Require_Username',
  SOURCE: 'Source',
  MAX_PACKET_AGE: 'Max_Packet_Age',
} as const;

function finishSpaDoor(d: DoorState): void {
  const c = d.config;
  const keyLine = d.lines.SPA_KEY_FILE!;
  const forms = 'an SPA door has SPA_Key_File and no knock sequence';
  for (const [key, name] of [['SEQUENCE', 'Sequence'], ['ONE_TIME_SEQUENCES', 'One_Time_Sequences'], ['SECRET_FILE', 'Secret_File']] as const) {
    const line = d.lines[key];
    if (line !== undefined) throw invalid(keyLine, 'SPA_Key_File', `the door also has ${name} (line ${line})`, forms);
  }
  for (const key of DERIVED_ONLY) {
    const line = d.lines[key];
    if (line !== undefined) throw invalid(line, DIRECTIVE_NAME[key], `door ${c.name} is an SPA door, not a derived door`, forms);
  }
  c.spa = {
    keyFile: d.spaKeyFile!,
    encKey: d.spaKeys!.encKey,
    hmacKey: d.spaKeys!.hmacKey,
    port: d.spaPort,
    maxTimeout: d.spaMaxTimeout,
    requireSourceAddress: d.spaRequireSource,
    users: d.spaUsers,
    sources: d.spaSources,
    maxPacketAge: d.spaMaxPacketAge,
  };
}

function finishDoor(d: DoorState, state: ParseState): void {
  const c = d.config;
  const secretLine = d.lines.SECRET_FILE;
  if (d.lines.SPA_KEY_FILE === undefined) {
    for (const [key, name] of Object.entries(SPA_ONLY)) {
      const line = d.lines[key as keyof typeof SPA_ONLY];
      if (line !== undefined) throw invalid(line, name, `door ${c.name} is not an SPA door`, 'SPA_Key_File = PATH in the same section');
    }
  }
  if (d.lines.SPA_KEY_FILE !== undefined) {
    finishSpaDoor(d);
  } else if (secretLine !== undefined) {
    const secretForms = 'either Secret_File (a derived door) or Sequence / One_Time_Sequences, not both';
    if (d.lines.SEQUENCE !== undefined) {
      throw invalid(secretLine, 'Secret_File', `the door also has a fixed Sequence (line ${d.lines.SEQUENCE})`, secretForms);
    }
    if (d.lines.ONE_TIME_SEQUENCES !== undefined) {
      throw invalid(secretLine, 'Secret_File', `the door also has One_Time_Sequences (line ${d.lines.ONE_TIME_SEQUENCES})`, secretForms);
    }
    if (!d.derivedPorts) {
      throw invalid(secretLine, 'Secret_File', `door ${c.name} has no Port_Range to derive its knocks from`, 'Port_Range = LOW-HIGH in the same section');
    }
    const flags = c.tcpFlags;
    if ((flags.mustSet & DERIVED_TCP_FLAGS.mustClear) !== 0 || (flags.mustClear & DERIVED_TCP_FLAGS.mustSet) !== 0) {
      throw invalid(
        d.lines.TCPFLAGS!,
        'TCPFlags',
        `door ${c.name} is a derived door, which counts only what a client sends: SYN without ACK or RST`,
        'no TCPFlags, or only flags that such a SYN can carry (e.g. TCPFlags = syn,!fin)',
      );
    }
    c.derived = {
      secretFile: d.secretFile!,
      key: d.secretKey!,
      sequenceLength: d.sequenceLength,
      ports: d.derivedPorts,
      protocols: d.derivedProtocols ?? ['tcp'],
      timeStep: d.timeStep,
      bindSource: d.bindSource,
    };
  } else {
    for (const key of DERIVED_ONLY) {
      const line = d.lines[key];
      if (line !== undefined) {
        throw invalid(line, DIRECTIVE_NAME[key], `door ${c.name} is not a derived door`, 'Secret_File = PATH in the same section');
      }
    }
    if (c.sequence.length === 0 && c.oneTimeSequences === undefined) {
      throw new ConfigError(`error: section '${c.name}' has an empty knock sequence`, c.line);
    }
  }
  if (c.target !== undefined) targetWarning(c, d.lines.TARGET!, state);
}

function targetWarning(c: DoorConfig, line: number, state: ParseState): void {
  const address = parseAddress(c.target!);
  if (!address) {
    state.warnings.push(
      `config: line ${line}: door ${c.name}: Target "${c.target}" is not an IP address; knockd 0.8 compared it as a ` +
        `string, so it could never match, and knockd-fast ignores this door until Target is an IP address`,
    );
    return;
  }
  c.targetAddress = address;
  const canonical = formatAddress(address.family, address.bytes);
  if (canonical !== c.target) {
    state.warnings.push(
      `config: line ${line}: door ${c.name}: Target "${c.target}" is not written as knockd 0.8 printed addresses ` +
        `("${canonical}"), so knockd 0.8 never matched it; knockd-fast matches the address ${canonical}`,
    );
  }
}
