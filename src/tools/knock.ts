// The knock client: knockd 0.8's `knock` plus `--source`, and derived knocks
// (`--secret-file`: the sequence of the current time window for our source, docs/MATCHER.md §10).
// A TCP hit is exactly one SYN (connect() issued, then the socket closed before any reply is handled);
// a UDP hit is one datagram carrying a single 0x00 byte; an ICMP hit (`LEN:icmp`, an extension) is one
// echo request with LEN bytes of payload, as `ping -c 1 -s LEN` sends, through the addon's ping socket.
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAddress } from '../address.js';
import { readSecretFile, SecretFileError } from '../config/keys.js';
import { deriveSequence, windowOf, type DerivedParams } from '../match/derive.js';
import { portRanges } from '../config/program.js';
import { MAX_ICMP_PAYLOAD } from '../config/types.js';
import { loadBinding, VERSION, type Binding } from '../native.js';

export type KnockProto = 'tcp' | 'udp';
export type KnockFamily = 4 | 6;
/** A hit's protocol: for icmp, `port` is the echo payload length. */
export type HitProto = KnockProto | 'icmp';

export interface KnockOptions {
  /** -u: every hit is UDP, whatever the port's suffix says */
  udp: boolean;
  /** -d: milliseconds to sleep after each hit, including the last */
  delayMs: number;
  /** -4 / -6: resolve the host to this family only; undefined = the resolver's first answer */
  family?: KnockFamily;
  verbose: boolean;
  /** --source: local address to send from */
  source?: string;
  /** --secret-file and its companions: knock a derived door's current sequence instead of listed ports */
  derived?: DerivedKnockOptions;
}

/** What a derived door's server side says in knockd.conf; the defaults are the server's. */
export interface DerivedKnockOptions {
  secretFile?: string;
  /** sorted, disjoint inclusive ranges (Port_Range) */
  ranges?: [number, number][];
  length: number; // Sequence_Length
  protocols: KnockProto[]; // Protocols, tcp before udp
  timeStep: number; // Time_Step, seconds
  bindSource: boolean; // Bind_Source
}

const derivedOf = (o: KnockOptions): DerivedKnockOptions => (o.derived ??= { length: 4, protocols: ['tcp'], timeStep: 30, bindSource: true });

export interface KnockPort {
  /** the port text as given, without its suffix (what -v prints, as knock does) */
  text: string;
  port: number;
  proto: HitProto;
}

export interface KnockRequest {
  options: KnockOptions;
  host: string;
  ports: KnockPort[];
}

/** What the command line asks for: knock, print the usage or the version, or fail with a message. */
export type KnockCommand =
  | { kind: 'knock'; host: string; portArgs: string[]; options: KnockOptions }
  | { kind: 'derived'; host: string; options: KnockOptions }
  | { kind: 'usage' }
  | { kind: 'version' }
  | { kind: 'error'; message: string; showUsage: boolean };

/** A mistake in what the user asked for; the message says what is wrong and how to fix it. */
export class KnockError extends Error {}

interface OptionSpec {
  short?: string;
  long: string;
  /** placeholder shown in the usage; present when the option takes a value */
  value?: string;
  help: string;
  apply(options: KnockOptions, value: string): string | KnockCommand | undefined;
}

// One row per option: adding one (e.g. --secret-file) is one entry here and one field in KnockOptions.
// apply() returns an error text, a command that ends parsing (-h, -V), or undefined.
const OPTION_TABLE: readonly OptionSpec[] = [
  { short: 'u', long: 'udp', help: 'make all ports hits use UDP (default is TCP)', apply: (o) => void (o.udp = true) },
  {
    short: 'd',
    long: 'delay',
    value: '<t>',
    help: 'wait <t> milliseconds between port hits',
    apply: (o, value) => {
      if (!/^[+-]?\d+$/.test(value.trim())) {
        return `error: delay must be a whole number of milliseconds, got '${value}' (for example: -d 200)`;
      }
      const ms = Number(value);
      if (ms < 0) return 'error: delay cannot be negative';
      if (ms > 0x7fffffff) return `error: delay ${value} ms is too long (at most 2147483647)`;
      o.delayMs = ms;
      return undefined;
    },
  },
  { short: '4', long: 'ipv4', help: 'Force usage of IPv4', apply: (o) => void (o.family = 4) },
  { short: '6', long: 'ipv6', help: 'Force usage of IPv6', apply: (o) => void (o.family = 6) },
  {
    long: 'source',
    value: '<addr>',
    help: 'send the hits from this local address',
    apply: (o, value) => {
      if (isIP(value) === 0) return `error: --source needs a local IP address, got '${value}' (for example: --source 192.0.2.10)`;
      o.source = value;
      return undefined;
    },
  },
  {
    long: 'secret-file',
    value: '<file>',
    help: "knock a derived door: the current sequence from this key (the server's Secret_File)",
    apply: (o, value) => void (derivedOf(o).secretFile = value),
  },
  {
    long: 'port-range',
    value: '<ports>',
    help: "the door's Port_Range: LOW-HIGH or a comma list of ports and ranges",
    apply: (o, value) => {
      const ranges = parsePortRange(value);
      if (typeof ranges === 'string') return ranges;
      derivedOf(o).ranges = ranges;
      return undefined;
    },
  },
  {
    long: 'length',
    value: '<n>',
    help: "the door's Sequence_Length (default 4)",
    apply: (o, value) => {
      if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 32) return `error: --length must be a whole number from 1 to 32, got '${value}'`;
      derivedOf(o).length = Number(value);
      return undefined;
    },
  },
  {
    long: 'protocols',
    value: '<list>',
    help: "the door's Protocols: tcp, udp or tcp,udp (default tcp)",
    apply: (o, value) => {
      const items = value.split(',').map((p) => p.trim().toLowerCase());
      if (items.some((p) => p !== 'tcp' && p !== 'udp')) return `error: --protocols takes tcp, udp or tcp,udp, got '${value}'`;
      derivedOf(o).protocols = (['tcp', 'udp'] as const).filter((p) => items.includes(p));
      return undefined;
    },
  },
  {
    long: 'time-step',
    value: '<s>',
    help: "the door's Time_Step in seconds (default 30)",
    apply: (o, value) => {
      if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 0x7fffffff) {
        return `error: --time-step must be a whole number of seconds from 1 up, got '${value}'`;
      }
      derivedOf(o).timeStep = Number(value);
      return undefined;
    },
  },
  {
    long: 'no-bind-source',
    help: 'the door has Bind_Source = no (its sequence does not depend on our address)',
    apply: (o) => void (derivedOf(o).bindSource = false),
  },
  { short: 'v', long: 'verbose', help: 'be verbose', apply: (o) => void (o.verbose = true) },
  { short: 'V', long: 'version', help: 'display version', apply: () => ({ kind: 'version' }) },
  { short: 'h', long: 'help', help: 'this help', apply: () => ({ kind: 'usage' }) },
];

export function knockUsage(programName: string): string {
  const rows = OPTION_TABLE.map((spec) => {
    const flags = `${spec.short ? `-${spec.short}, ` : '    '}--${spec.long}${spec.value ? ` ${spec.value}` : ''}`;
    return `  ${flags.padEnd(25)}${spec.help}\n`;
  });
  return (
    `usage: ${programName} [options] <host> <port[:proto]> [port[:proto]] ...\n` +
    `       ${programName} [options] --secret-file <file> --port-range <ports> <host>\n` +
    'options:\n' +
    rows.join('') +
    '\n' +
    `example:  ${programName} myserver.example.com 123:tcp 456:udp 789:tcp\n` +
    `          ${programName} myserver.example.com 7000 1200:icmp 9000   (1200:icmp: an echo request with 1200 bytes of payload)\n` +
    `          ${programName} --secret-file ssh.key --port-range 40000-49999 myserver.example.com\n\n`
  );
}

/**
 * Parses knock's command line the way getopt_long does: bundled short options (-uv), values attached
 * or separate (-d100, -d 100, --delay=100), options after positionals, and `--` ending the options.
 */
export function parseKnockArgs(argv: readonly string[]): KnockCommand {
  const options: KnockOptions = { udp: false, delayMs: 0, verbose: false };
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const spec = OPTION_TABLE.find((s) => s.long === name);
      if (!spec) return { kind: 'error', message: `unknown option '--${name}'`, showUsage: true };
      let value = '';
      if (spec.value) {
        if (eq >= 0) value = arg.slice(eq + 1);
        else if (i + 1 < argv.length) value = argv[++i]!;
        else return { kind: 'error', message: `option '--${name}' needs a value ${spec.value}`, showUsage: true };
      } else if (eq >= 0) {
        return { kind: 'error', message: `option '--${name}' takes no value`, showUsage: true };
      }
      const outcome = spec.apply(options, value);
      if (typeof outcome === 'string') return { kind: 'error', message: outcome, showUsage: false };
      if (outcome) return outcome;
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!;
        const spec = OPTION_TABLE.find((s) => s.short === letter);
        if (!spec) return { kind: 'error', message: `unknown option '-${letter}'`, showUsage: true };
        let value = '';
        if (spec.value) {
          if (j + 1 < arg.length) value = arg.slice(j + 1);
          else if (i + 1 < argv.length) value = argv[++i]!;
          else return { kind: 'error', message: `option '-${letter}' needs a value ${spec.value}`, showUsage: true };
          j = arg.length;
        }
        const outcome = spec.apply(options, value);
        if (typeof outcome === 'string') return { kind: 'error', message: outcome, showUsage: false };
        if (outcome) return outcome;
      }
      continue;
    }
    positionals.push(arg);
  }
  if (options.source && options.family && isIP(options.source) !== options.family) {
    return {
      kind: 'error',
      message: `error: --source ${options.source} is not an IPv${options.family} address but -${options.family} was given; drop one of them`,
      showUsage: false,
    };
  }
  const derived = options.derived;
  if (derived) {
    const fail = (message: string): KnockCommand => ({ kind: 'error', message: `error: ${message}`, showUsage: false });
    if (derived.secretFile === undefined) return fail('--port-range, --length, --protocols, --time-step and --no-bind-source need --secret-file <file>');
    if (!derived.ranges) return fail("--secret-file needs the door's --port-range (for example: --port-range 40000-49999)");
    if (positionals.length !== 1) return fail('with --secret-file give only the host: the ports are derived from the key');
    if (options.udp) return fail("-u does not apply to a derived knock; give the door's --protocols");
    return { kind: 'derived', host: positionals[0]!, options };
  }
  if (positionals.length < 2) return { kind: 'usage' };
  return { kind: 'knock', host: positionals[0]!, portArgs: positionals.slice(1), options };
}

/** `LOW-HIGH[,PORT|LOW-HIGH...]` (ports 1-65535) -> sorted disjoint ranges, or an error text. */
export function parsePortRange(value: string): [number, number][] | string {
  const ports: number[] = [];
  for (const item of value.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(item);
    const lo = Number(m?.[1]);
    const hi = m?.[2] === undefined ? lo : Number(m[2]);
    if (!m || lo < 1 || hi > 65535 || lo > hi) {
      return `error: --port-range '${value}': '${item.trim()}' is not a port or a LOW-HIGH range of ports 1-65535 (for example: 40000-49999)`;
    }
    for (let p = lo; p <= hi; p++) ports.push(p);
  }
  return portRanges(ports);
}

/** service name → port, per protocol, as listed in /etc/services (Node has no getservbyname). */
export type ServiceTable = Map<string, number>;

const serviceKey = (name: string, proto: KnockProto): string => `${proto}/${name}`;

/** Parses the services(5) format: `name port/proto [aliases...] [# comment]`. */
export function parseServices(text: string): ServiceTable {
  const table: ServiceTable = new Map();
  for (const rawLine of text.split('\n')) {
    const hash = rawLine.indexOf('#');
    const fields = (hash < 0 ? rawLine : rawLine.slice(0, hash)).trim().split(/\s+/);
    if (fields.length < 2) continue;
    const match = /^(\d+)\/(tcp|udp)$/.exec(fields[1]!);
    if (!match) continue;
    const port = Number(match[1]);
    if (port < 1 || port > 65535) continue;
    const proto = match[2] as KnockProto;
    for (const name of [fields[0]!, ...fields.slice(2)]) {
      // The first entry wins, as getservbyname's linear scan does.
      if (!table.has(serviceKey(name, proto))) table.set(serviceKey(name, proto), port);
    }
  }
  return table;
}

export function loadServices(path = '/etc/services'): ServiceTable {
  try {
    return parseServices(readFileSync(path, 'utf8'));
  } catch {
    // Without the file only numeric ports work; resolvePort says so when a name is used.
    return new Map();
  }
}

/**
 * Resolves one `port[:proto]` argument: `:udp` (exact lowercase) is UDP, any other suffix TCP; -u forces UDP.
 * Extension: `LEN:icmp` (exact lowercase, -u or not) is an ICMP echo request with LEN bytes of payload.
 */
export function resolvePortArg(arg: string, forceUdp: boolean, services: ServiceTable): KnockPort {
  const colon = arg.indexOf(':');
  const text = colon < 0 ? arg : arg.slice(0, colon);
  if (colon >= 0 && arg.slice(colon + 1) === 'icmp') {
    if (!/^\d+$/.test(text) || Number(text) > MAX_ICMP_PAYLOAD) {
      throw new KnockError(`error: '${arg}' needs a payload length from 0 to ${MAX_ICMP_PAYLOAD} before :icmp (65507 over IPv4), e.g. 1200:icmp`);
    }
    return { text, port: Number(text), proto: 'icmp' };
  }
  const proto: KnockProto = forceUdp || (colon >= 0 && arg.slice(colon + 1) === 'udp') ? 'udp' : 'tcp';
  if (/^\d+$/.test(text)) {
    const port = Number(text);
    if (port < 1 || port > 65535) {
      throw new KnockError(`error: port ${text} in '${arg}' is out of range; ports are 1 to 65535`);
    }
    return { text, port, proto };
  }
  if (text === '') throw new KnockError(`error: '${arg}' has no port; write it as port[:proto], e.g. 1234:udp`);
  const port = services.get(serviceKey(text, proto));
  if (port !== undefined) return { text, port, proto };
  const other: KnockProto = proto === 'tcp' ? 'udp' : 'tcp';
  const otherPort = services.get(serviceKey(text, other));
  if (otherPort !== undefined) {
    throw new KnockError(
      `error: service '${text}' is not a ${proto} service in /etc/services (it is ${other} port ${otherPort}); ` +
        `give the port number instead, e.g. ${otherPort}${proto === 'udp' ? ':udp' : ''}`,
    );
  }
  throw new KnockError(`error: unknown port '${text}' in '${arg}': not a number and not a service name in /etc/services`);
}

/** Resolves the host the way knock does for every hit: the first getaddrinfo answer of the wanted family. */
export async function resolveHost(host: string, family: KnockFamily | undefined): Promise<{ address: string; family: KnockFamily }> {
  let answer: { address: string; family: number };
  try {
    answer = await lookup(host, { family: family ?? 0, verbatim: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (family && (code === 'ENODATA' || code === 'EAI_ADDRFAMILY' || code === 'ENOTFOUND')) {
      throw new KnockError(`error: cannot resolve host '${host}' to an IPv${family} address (${code}); check the name or drop -${family}`);
    }
    const why = code === 'ENOTFOUND' ? 'no such host' : code === 'EAI_AGAIN' ? 'the DNS server did not answer' : (code ?? (err as Error).message);
    throw new KnockError(`error: cannot resolve host '${host}' (${why}); check the name or give an IP address`);
  }
  // dns.lookup hands back an IP literal unchanged whatever family was asked for; getaddrinfo refuses it.
  if (family && answer.family !== family) {
    throw new KnockError(`error: host '${host}' is an IPv${answer.family} address but -${family} was given; drop -${family}`);
  }
  return { address: answer.address, family: answer.family as KnockFamily };
}

const UDP_PAYLOAD = Buffer.of(0);

function sendFailure(proto: HitProto, address: string, port: number, err: Error): KnockError {
  const code = (err as NodeJS.ErrnoException).code ?? err.message;
  const hint = code === 'EADDRNOTAVAIL' ? ' (is the --source address configured on this host?)' : '';
  const what = proto === 'icmp' ? `(${port} bytes)` : `port ${port}`;
  return new KnockError(`error: ${proto} hit to ${address} ${what} could not be sent: ${code}${hint}`);
}

/**
 * Sends one SYN. net.Socket issues connect() inside internalConnect, right after emitting
 * 'connectionAttempt'; closing on the next tick therefore happens after the SYN left and before any
 * reply is processed, so the kernel drops the half-open socket without retransmitting or answering.
 */
function hitTcp(address: string, port: number, source: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.once('error', (err) => reject(sendFailure('tcp', address, port, err)));
    socket.once('connectionAttempt', () =>
      process.nextTick(() => {
        // A connect() that failed at once has already destroyed the socket; its 'error' follows.
        if (socket.destroyed) return;
        socket.destroy();
        resolve();
      }),
    );
    socket.connect({ host: address, port, ...(source ? { localAddress: source } : {}) });
  });
}

function hitUdp(address: string, port: number, family: KnockFamily, source: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
    const fail = (err: Error): void => {
      socket.close();
      reject(sendFailure('udp', address, port, err));
    };
    socket.once('error', fail);
    const send = (): void =>
      socket.send(UDP_PAYLOAD, port, address, (err) => {
        if (err) return fail(err);
        socket.close();
        resolve();
      });
    if (source) socket.bind(0, source, send);
    else send();
  });
}

/**
 * Sends one ICMP echo request with `length` bytes of payload through a ping socket (the addon's: Node has
 * none). Without permission for ping sockets the error says how to grant it, or to use ping.
 */
function hitIcmp(address: string, length: number, family: KnockFamily, source: string | undefined): void {
  const ping = `ping -c 1 -s ${length}${source ? ` -I ${source}` : ''} ${address}`;
  let binding: Binding;
  try {
    binding = loadBinding();
  } catch (err) {
    throw new KnockError(`error: an icmp hit needs the native addon, which did not load; or send it with \`${ping}\`\n${(err as Error).message}`);
  }
  const bytes = (text: string): Uint8Array => {
    const a = parseAddress(text);
    if (!a || a.family !== family) throw new KnockError(`error: '${text}' is not an IPv${family} address`);
    return a.bytes;
  };
  try {
    binding.sendEchoRequest(family, bytes(address), source ? bytes(source) : null, length);
  } catch (err) {
    if (err instanceof KnockError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.syscall === 'socket' && (e.code === 'EACCES' || e.code === 'EPERM')) {
      const gid = process.getgid?.() ?? 0;
      throw new KnockError(
        `error: icmp hit to ${address} (${length} bytes) could not be sent: this system does not let group ${gid} open ICMP ` +
          `echo ("ping") sockets. Allow it with \`sysctl -w net.ipv4.ping_group_range="${gid} ${gid}"\` (or a range holding ` +
          `one of your groups; it covers IPv6 too), or send this step with \`${ping}\``,
      );
    }
    if (e.code === 'EMSGSIZE') {
      throw new KnockError(`error: icmp hit to ${address}: ${length} bytes of payload do not fit in one IPv${family} packet (at most ${family === 4 ? 65507 : MAX_ICMP_PAYLOAD})`);
    }
    throw sendFailure('icmp', address, length, err as Error);
  }
}

/**
 * The address `host` sees us as: the one given, or the local address the kernel picks for the route to
 * the host (a UDP socket's connect() only chooses a route and a source; it sends nothing).
 */
export async function sourceAddressFor(host: string, family: KnockFamily, given?: string): Promise<string> {
  if (given) return given;
  const socket = createSocket(family === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(9, host, () => resolve());
    });
    return socket.address().address;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new KnockError(`error: no route to ${host} to find our source address (${code}); give it with --source`);
  } finally {
    socket.close();
  }
}

/** The ports of a derived door's sequence for `source` at `nowUs` (the server's window for that time). */
export function derivedPorts(d: DerivedKnockOptions, key: Uint8Array, source: string, nowUs: number): KnockPort[] {
  const address = parseAddress(source);
  if (!address) throw new KnockError(`error: '${source}' is not an IP address`);
  const params: DerivedParams = {
    key,
    sequenceLength: d.length,
    ranges: d.ranges!,
    protocols: d.protocols,
    timeStep: d.timeStep,
    bindSource: d.bindSource,
  };
  return deriveSequence(params, windowOf(nowUs, d.timeStep), address.family, address.bytes).map((s) => ({
    text: String(s.port),
    port: s.port,
    proto: s.proto,
  }));
}

/** Knocks a derived door: the sequence of the current window for the source the server will see. */
export async function knockDerived(host: string, options: KnockOptions, out: (line: string) => void = () => {}): Promise<void> {
  let key: Uint8Array;
  try {
    key = readSecretFile(options.derived!.secretFile!);
  } catch (err) {
    if (err instanceof SecretFileError) throw new KnockError(`error: --secret-file ${err.message}`);
    throw err;
  }
  const family = options.family ?? (options.source ? (isIP(options.source) as KnockFamily) : undefined);
  const target = await resolveHost(host, family);
  const source = await sourceAddressFor(target.address, target.family, options.source);
  const ports = derivedPorts(options.derived!, key, source, Date.now() * 1000);
  if (options.verbose) out(`derived sequence for ${source}: ${ports.map((p) => `${p.port}:${p.proto}`).join(' ')}\n`);
  await knock({ options: { ...options, family: target.family }, host: target.address, ports }, out);
}

/** Sends the knocks in order, resolving the host again for every port as knock does. */
export async function knock(request: KnockRequest, out: (line: string) => void = () => {}): Promise<void> {
  const { options, host, ports } = request;
  const family = options.family ?? (options.source ? (isIP(options.source) as KnockFamily) : undefined);
  for (const hit of ports) {
    const target = await resolveHost(host, family);
    if (options.verbose) out(`hitting ${hit.proto} ${target.address}:${hit.text}\n`);
    if (hit.proto === 'udp') await hitUdp(target.address, hit.port, target.family, options.source);
    else if (hit.proto === 'icmp') hitIcmp(target.address, hit.port, target.family, options.source);
    else await hitTcp(target.address, hit.port, options.source);
    if (options.delayMs > 0) await sleep(options.delayMs);
  }
}

/** The `knock-fast` / `knockd-fast knock` command. Returns the exit code; never calls process.exit. */
export async function runKnockCli(argv: string[], programName = 'knock-fast'): Promise<number> {
  const command = parseKnockArgs(argv);
  switch (command.kind) {
    case 'usage':
      process.stdout.write(knockUsage(programName));
      return 1;
    case 'version':
      process.stdout.write(`${programName} ${VERSION} (knockd-fast; options of knock 0.8)\n`);
      return 0;
    case 'error':
      process.stderr.write(`${command.showUsage ? `${programName}: ` : ''}${command.message}\n`);
      if (command.showUsage) process.stdout.write(knockUsage(programName));
      return 1;
    case 'knock':
    case 'derived':
      try {
        const write = (line: string): void => void process.stdout.write(line);
        if (command.kind === 'derived') {
          await knockDerived(command.host, command.options, write);
          return 0;
        }
        // Every port is checked before the first hit, so a typo never sends half a sequence.
        const services = loadServices();
        const ports = command.portArgs.map((arg) => resolvePortArg(arg, command.options.udp, services));
        await knock({ options: command.options, host: command.host, ports }, write);
        return 0;
      } catch (err) {
        if (!(err instanceof KnockError)) throw err;
        process.stderr.write(`${err.message}\n`);
        return 1;
      }
  }
}
