// The `knockd-fast` command line: knockd 0.8's flags with their meanings, defaults and exit codes
// (as knockd 0.8's getopt and main), plus the extensions (--test, --replay, --metrics, ..., `nft status|uninstall`).
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { describeStore, parseStoreUrl } from './config/store-url.js';
import { checkNftScript, nftInstallScript, nftStatus, nftUninstall, formatNftStatus, planNft } from './actions/nft.js';
import { captureInterfaces, ConfigError, parseConfig } from './config/parse.js';
import { strerror } from './config/lexical.js';
import { DEFAULTS, TCP_FLAG, type DoorConfig, type KnockdConfig } from './config/types.js';
import { formatAddress } from './address.js';
import { openCapture, runDaemon, type DaemonArgs } from './daemon.js';
import type { Matcher } from './match/matcher-api.js';
import { TsMatcher } from './match/matcher.js';
import { VERSION } from './native.js';
export { VERSION };
import { compileProgram, ProgramError } from './config/program.js';

/** knockd's flags (as the daemon takes them) plus the one-shot modes. */
export interface CliOptions extends DaemonArgs {
  test?: boolean;
  replay?: string;
  json?: boolean;
  localAddress?: string[];
  help?: boolean;
  version?: boolean;
}

/** Where the CLI writes (injected so tests can capture it). */
export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}


/** The short usage knockd prints on a bad option or a bad config (stdout, as knockd does). */
export const USAGE = `usage: knockd-fast [options]
options:
  -i, --interface <int>  network interface to listen on (default "${DEFAULTS.interface}")
  -d, --daemon           run as a daemon
  -c, --config <file>    use an alternate config file
  -D, --debug            output debug messages
  -l, --lookup           lookup DNS names (may be a security risk)
  -p, --pidfile          use an alternate pidfile
  -g, --logfile          use an alternate logfile
  -v, --verbose          be verbose
  -4, --only-ip-v4       do not track ipv6
  -V, --version          display version
  -h, --help             this help
      --test             check the config, print the doors and the nftables ruleset, exit
      --replay <capture> run a pcap/pcapng capture through the matcher and print the events
      --threads <n>      capture threads (default: one per CPU)
      --matcher <kind>   native (default) or ts
      --log-format <f>   knockd (default) or json
      --metrics <a:p>    serve Prometheus metrics on ADDR:PORT
      --state-file <f>   pending stop commands (default /var/lib/knockd-fast/state.json)
  knockd-fast nft status|uninstall   show or remove the nftables table knockd-fast installed
  knockd-fast fleet status           members, open grants and store round trip of the config's Fleet
  knockd-fast secret [--out FILE]    a new random key (hex) for a derived door's Secret_File
  knockd-fast knock [options] HOST PORT[:PROTO]...   the knock client (knockd-fast knock -h)
  knockd-fast doctor [-i IF[,IF...]] [-c FILE]  check capabilities, interface, nft, addon, capture ring (and FILE's fleet store)
  knockd-fast demo [--fleet]         narrated demonstration on a private namespace network (root)
`;

/** `--help`: a manual page. */
export const MANUAL = `KNOCKD-FAST(8)

NAME
    knockd-fast - port-knock server, a drop-in replacement for knockd 0.8

SYNOPSIS
    knockd-fast [-i IF] [-c FILE] [-d] [-p PIDFILE] [-g LOGFILE] [-v] [-D] [-l] [-4] [extensions]
    knockd-fast -c FILE --test
    knockd-fast -c FILE --replay CAPTURE [-v] [--json] [--matcher native|ts] [--local-address ADDR]...
    knockd-fast [-c FILE] nft status|uninstall
    knockd-fast [-c FILE] fleet status
    knockd-fast secret [--out KEYFILE]
    knockd-fast knock [options] HOST PORT[:PROTO]...
    knockd-fast doctor [-i IF[,IF...]] [-c FILE]
    knockd-fast demo [--fleet]
    knockd-fast -V | -h

DESCRIPTION
    knockd-fast listens on a network interface for knock sequences: packets from one source to a
    configured series of TCP/UDP ports. When a source completes a door's sequence within its
    seq_timeout, the door's start_command runs (and its stop_command cmd_timeout seconds later), or,
    for doors with Open = PORT/PROTO, the source is added to an nftables set that lets it connect to
    the guarded ports for Open_Timeout seconds. It reads knockd's configuration file, takes knockd's
    flags and writes knockd's log lines; capture and matching run on native threads (AF_PACKET).

OPTIONS (knockd)
    -i, --interface IF
        Interface to listen on. Overrides Interface= in the config. Default "${DEFAULTS.interface}".
    -d, --daemon
        Run in the background. The command returns once the daemon has written its pid file.
    -c, --config FILE
        Configuration file. Default ${DEFAULTS.configPath}.
    -D, --debug
        Debug output on stdout (program, counters, decisions).
    -l, --lookup
        Look up host names of knocking sources (asynchronously; lines read "ADDR (HOST): ...").
    -p, --pidfile FILE
        Pid file in daemon mode. PidFile= in the config overrides it, as in knockd.
        Default ${DEFAULTS.pidFile}.
    -g, --logfile FILE
        Log file. LogFile= in the config overrides it, as in knockd.
    -v, --verbose
        Print event lines ("ADDR: DOOR: Stage N", "OPEN SESAME", ...) on stdout.
    -4, --only-ip-v4
        Ignore IPv6: IPv6 knocks are not seen.
    -V, --version
        Print the version and exit.
    -h, --help
        Print this manual and exit.

OPTIONS (knockd-fast)
    --test
        Parse and check the config, print the doors and the nftables ruleset that would be installed,
        and exit 0 if the config is valid, 1 if not. Changes nothing.
    --replay CAPTURE
        Run a pcap or pcapng file through the matcher and the daemon's door logic (Cooldown, Dedupe,
        one-time sequences on a private copy of the file) with its own timestamps and print the lines
        the daemon would log, in order (with -v also every "Stage N" line); no command runs, no door
        opens, no file is rewritten. Host
        addresses come from -i/Interface= when that interface exists here, else from --local-address,
        else every destination counts as local.
    --json
        With --replay: the daemon's JSON records (docs/EVENTS.md) instead of text lines.
    --local-address ADDR
        With --replay: a host address (repeatable).
    --matcher native|ts
        The matcher implementation. native (default) is the C++ core; ts is the TypeScript twin. If
        the addon cannot be loaded, --replay falls back to ts with a warning.
    --threads N
        Capture threads (sockets in one fanout group). Default: Threads= or one per CPU.
    --log-format knockd|json
        Log file and -v output as knockd lines (default) or JSON lines. Overrides LogFormat=.
    --metrics ADDR:PORT
        Serve Prometheus metrics at http://ADDR:PORT/metrics. Overrides MetricsListen=.
    --state-file FILE
        Where pending stop commands are kept across restarts. Overrides StateFile=.
        Default /var/lib/knockd-fast/state.json.

COMMANDS
    nft status
        Show the nftables table knockd-fast installed (NftTable=, default ${DEFAULTS.nftTable}).
    nft uninstall
        Remove that table. Open doors close at once; guarded ports are no longer guarded.
    fleet status
        The fleet of the config's Fleet= (docs/FLEET.md): members seen through their heartbeats (last
        seen, version, uptime; members whose doors differ from this config are flagged), open grants per
        door, and the store's round-trip time. Exit 1 when the store cannot be reached.
    knock [options] HOST PORT[:PROTO]...
        The knock client (also installed as knock-fast): knockd's knock options -u -d -4 -6 -v,
        plus --source ADDR and, for derived doors, --secret-file FILE --port-range LOW-HIGH.
        knockd-fast knock -h lists them.
    doctor [-i IF[,IF...]] [-c FILE]
        Check what a deployment needs: the addon loads, CAP_NET_RAW/CAP_NET_ADMIN, the interface
        exists, is up and has addresses, nft works, a capture ring opens, and with -c the store of
        FILE's Fleet= answers. One pass/FAIL line each, with the fix; exit 0 when all pass.
    demo [--fleet]
        As root: build a private client/gateway/server network in namespaces, run the daemon on the
        gateway and narrate a knock opening a guarded port, then remove everything (also on Ctrl-C).
        --fleet: two gateways sharing one Redis (redis-server): a knock on A opens B, A crashes and
        B still admits the client, A comes back and catches up (docs/FLEET.md).
    secret [--out FILE]
        Print a new random 256-bit key (hex) for a derived door's Secret_File, or with --out create
        FILE with mode 600 (an existing file is not overwritten).

SIGNALS
    SIGHUP      re-read the config file; a bad config is logged and the running one is kept.
    SIGTERM     shut down (pending stop commands stay in the state file), exit status 15.
    SIGINT      the same, exit status 2.

EXIT STATUS
    0   normal end, -h, -V, or an unknown option (usage printed, as knockd does)
    1   bad configuration or a start-up failure
    2, 15   ended by SIGINT, SIGTERM

FILES
    ${DEFAULTS.configPath}, ${DEFAULTS.pidFile}, /var/lib/knockd-fast/state.json

SEE ALSO
    knockd(1), nft(8); the knock client: knockd-fast knock -h
`;

const oneOf =
  <T extends string>(name: string, values: readonly T[]) =>
  (v: string): T => {
    if (!(values as readonly string[]).includes(v)) {
      throw new CommanderError(1, 'knockd-fast.invalidValue', `${name} must be one of ${values.join(', ')} (got "${v}")`);
    }
    return v as T;
  };

const positiveInt = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 1024) {
    throw new CommanderError(1, 'knockd-fast.invalidValue', `${name} must be a whole number from 1 to 1024 (got "${v}")`);
  }
  return n;
};

type Action =
  | { kind: 'run'; options: CliOptions }
  | { kind: 'nft'; action: 'status' | 'uninstall'; options: CliOptions }
  | { kind: 'fleet'; action: 'status'; options: CliOptions }
  | { kind: 'exit'; code: number };

/** Parses argv (without node and script) into what to do; prints usage/help/version/errors itself. */
export function parseArgs(argv: string[], io: CliIo): Action {
  let result: Action | undefined;
  const program = new Command('knockd-fast')
    .helpOption(false)
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: () => undefined })
    .option('-i, --interface <int>')
    .option('-d, --daemon')
    .option('-c, --config <file>', '', DEFAULTS.configPath)
    .option('-D, --debug')
    .option('-l, --lookup')
    .option('-p, --pidfile <file>')
    .option('-g, --logfile <file>')
    .option('-v, --verbose')
    .option('-4, --only-ip-v4')
    .option('-V, --version')
    .option('-h, --help')
    .option('--test')
    .addOption(new Option('--threads <n>').argParser(positiveInt('--threads')))
    .addOption(new Option('--matcher <kind>').argParser(oneOf('--matcher', ['native', 'ts'] as const)))
    .addOption(new Option('--log-format <format>').argParser(oneOf('--log-format', ['knockd', 'json'] as const)))
    .option('--metrics <addr:port>')
    .option('--state-file <file>')
    .option('--replay <capture>')
    .option('--json')
    .option('--local-address <addr>', '', (v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
  program.action(() => {
    result = { kind: 'run', options: program.opts<CliOptions>() };
  });
  program
    .command('nft')
    .helpOption(false)
    .argument('<action>', '', oneOf('nft', ['status', 'uninstall'] as const))
    .action((action: 'status' | 'uninstall') => {
      result = { kind: 'nft', action, options: program.opts<CliOptions>() };
    });
  program
    .command('fleet')
    .helpOption(false)
    .argument('<action>', '', oneOf('fleet', ['status'] as const))
    .action((action: 'status') => {
      result = { kind: 'fleet', action, options: program.opts<CliOptions>() };
    });
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    if (err.code === 'knockd-fast.invalidValue' || err.code === 'commander.invalidArgument') {
      io.stderr(`knockd-fast: ${err.message.replace(/^error: /, '')}\n`);
      return { kind: 'exit', code: 1 };
    }
    // knockd (getopt) prints its complaint on stderr, the usage on stdout, and exits 0
    io.stderr(`knockd-fast: ${err.message.replace(/^error: /, '')}\n`);
    io.stdout(USAGE);
    return { kind: 'exit', code: 0 };
  }
  const opts = program.opts<CliOptions>();
  if (opts.help) {
    io.stdout(MANUAL);
    return { kind: 'exit', code: 0 };
  }
  if (opts.version) {
    io.stdout(`knockd-fast ${VERSION} (knockd 0.8 compatible)\n`);
    return { kind: 'exit', code: 0 };
  }
  if (!result) throw new Error('no command was selected');
  return result;
}

// ------------------------------------------------------------------------------------------ commands

/** Writes to a stream until its reader goes away: `knockd-fast --test | head -1` closes the pipe early, and
 * the command still ends with its own exit code instead of an EPIPE crash. Other write errors still throw. */
function pipeWriter(stream: NodeJS.WriteStream): (text: string) => void {
  let readerGone = false;
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    readerGone = true;
  });
  return (text) => void (readerGone || stream.write(text));
}

let processIo: CliIo | undefined;
const defaultIo = (): CliIo => (processIo ??= { stdout: pipeWriter(process.stdout), stderr: pipeWriter(process.stderr) });

/** Reads the config, or prints knockd's error (stderr) and usage (stdout) and gives exit code 1. */
function loadConfig(path: string, io: CliIo, usage = true): KnockdConfig | undefined {
  try {
    return parseConfig(path);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`${err.message}\n`);
    if (usage) io.stdout(USAGE);
    return undefined;
  }
}

const stepsText = (d: DoorConfig): string => d.sequence.map((s) => `${s.port}:${s.proto}`).join(',');

function flagsText(d: DoorConfig): string {
  const names = Object.entries(TCP_FLAG);
  const items = [
    ...names.filter(([, bit]) => d.tcpFlags.mustSet & bit).map(([n]) => n.toLowerCase()),
    ...names.filter(([, bit]) => d.tcpFlags.mustClear & bit).map(([n]) => `!${n.toLowerCase()}`),
  ];
  return items.join(',');
}

/** `--test`: the doors as knockd-fast understood them, and the nft ruleset it would install. */
export function describeConfig(config: KnockdConfig): string {
  const out: string[] = [`config ${config.path}: ${config.doors.length} door(s)`];
  for (const d of config.doors) {
    out.push(`door [${d.name}] (line ${d.line})`);
    const put = (k: string, v: string | number | undefined) => v !== undefined && v !== '' && out.push(`  ${k.padEnd(16)} ${v}`);
    if (d.spa) {
      const s = d.spa;
      put('spa', `udp/${s.port} keys from ${s.keyFile}, requested time up to ${s.maxTimeout}s, packet age ${s.maxPacketAge}s`);
      put('spa_rules', `${s.requireSourceAddress ? 'request must name the packet source' : 'any requested address'}; users ${s.users.join(',') || 'any'}; sources ${s.sources.map((b) => `${formatAddress(b.family, b.bytes)}/${b.prefix}`).join(',') || 'any'}`);
      if (d.open.length === 0) put('open', 'any requested port (commands only)');
    } else {
      put('sequence', d.sequence.length > 0 ? stepsText(d) : d.oneTimeSequences ? '(one-time file exhausted: door disabled)' : '(none)');
      put('one_time_file', d.oneTimeSequences);
      put('seq_timeout', `${d.seqTimeout}s`);
    }
    put('tcpflags', flagsText(d));
    put('target', d.target);
    put('start_command', d.startCommand);
    if (d.startCommand6 !== undefined) put('start_command_6', d.startCommand6 === '' ? '(none for IPv6)' : d.startCommand6);
    put('stop_command', d.stopCommand);
    if (d.stopCommand6 !== undefined) put('stop_command_6', d.stopCommand6 === '' ? '(none for IPv6)' : d.stopCommand6);
    if (d.stopCommand !== undefined || d.stopCommand6 !== undefined) put('cmd_timeout', `${d.cmdTimeout}s`);
    if (d.open.length > 0) put('open', `${d.open.map((p) => `${p.port}/${p.proto}`).join(',')} for ${d.openTimeout}s (hook ${d.hook})`);
    if (d.nftSet) put('nftset', `${d.nftSet.family} ${d.nftSet.table} ${d.nftSet.set} for ${d.openTimeout}s`);
    if (d.allowDuplicates) put('allow_duplicates', 'yes');
    if (d.cooldown > 0) put('cooldown', `${d.cooldown}s`);
    if (d.dedupe) put('dedupe', 'yes');
    if (d.derived) put('derived', `${d.derived.sequenceLength} steps from ${d.derived.secretFile}, time step ${d.derived.timeStep}s`);
  }
  const f = config.options.fleet;
  if (f) {
    // never the password (URL or Fleet_Password_File) or the key: only where they come from
    out.push(`fleet ${f.name}, member ${f.member}`);
    out.push(`  ${'store'.padEnd(16)} ${describeStore(parseStoreUrl(f.url))}${f.password || parseStoreUrl(f.url).password ? ` (password from ${f.passwordFile ?? 'the URL'})` : ''}`);
    out.push(`  ${'key_file'.padEnd(16)} ${f.keyFile} (${f.key.length * 8}-bit key, mode 600)`);
    out.push(`  ${'offline'.padEnd(16)} ${f.offline === 'local' ? 'local (single-use doors decide on this member while the store is unreachable)' : 'deny (single-use doors refuse while the store is unreachable)'}`);
    out.push(`  ${'commands'.padEnd(16)} ${f.commands === 'all' ? 'all (every member runs start_command for a grant)' : 'local (only the member that saw the knock runs start_command)'}`);
  }
  for (const w of config.warnings) out.push(`warning: ${w}`);
  out.push('', `nftables ruleset (table inet ${config.options.nftTable}):`);
  out.push(nftInstallScript(planNft(config.doors, config.options.nftTable)).trimEnd());
  return `${out.join('\n')}\n`;
}

async function runTest(options: CliOptions, io: CliIo): Promise<number> {
  let config: KnockdConfig;
  try {
    config = parseConfig(options.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`${err.message}\n`);
    // knockd's texts for a file named in the config (a one-time file, say) carry no line: --test adds it
    if (err.line !== undefined && !err.message.startsWith(`config: line ${err.line}:`)) {
      io.stderr(`knockd-fast: the error is on line ${err.line} of ${options.config}\n`);
    }
    io.stderr(`knockd-fast: configuration file ${options.config} test failed\n`);
    return 1;
  }
  try {
    // everything the daemon would refuse at start-up: the program, the interfaces it would use, the nft plan
    compileProgram(config, { localAddresses: [], allLocal: true });
    captureInterfaces(options.interface, config.options);
    io.stdout(describeConfig(config));
  } catch (err) {
    io.stderr(`${(err as Error).message}\nknockd-fast: configuration file ${options.config} test failed\n`);
    return 1;
  }
  // the kernel's own limits and syntax: nft -c validates the transaction without committing it
  const plan = planNft(config.doors, config.options.nftTable);
  if (plan.doorSets.some((sets) => sets.some((s) => s.owned))) {
    const check = await checkNftScript(nftInstallScript(plan));
    if (check.outcome === 'refused') {
      io.stderr(`nft refused the ruleset above (nft -c in ${check.where}):\n${check.output}\nknockd-fast: configuration file ${options.config} test failed\n`);
      return 1;
    }
    io.stdout(
      check.outcome === 'accepted'
        ? `nftables ruleset: accepted by nft -c in ${check.where}\n`
        : `nftables ruleset: not checked with nft (${check.why})\n`,
    );
  }
  io.stdout(`knockd-fast: configuration file ${options.config} test is successful\n`);
  return 0;
}

async function replayMatcher(kind: 'native' | 'ts', io: CliIo): Promise<Matcher> {
  if (kind === 'ts') return new TsMatcher();
  const { NativeMatcher } = await import('./match/native-matcher.js');
  try {
    return new NativeMatcher();
  } catch (err) {
    io.stderr(`warning: the native matcher is not available, replaying with the TypeScript matcher: ${(err as Error).message.split('\n')[0]}\n`);
    return new TsMatcher();
  }
}

async function runReplay(options: CliOptions, config: KnockdConfig, io: CliIo): Promise<number> {
  const capture = options.replay as string;
  const [{ CaptureFileError, readCaptureFile }, { chooseLocalAddresses, describeStats, replayBatches, ReplayError }] = await Promise.all([
    import('./capture/pcap.js'),
    import('./tools/replay.js'),
  ]);
  try {
    const interfaces = options.interface ? options.interface.split(',') : (config.options.interfaces ?? []);
    const local = chooseLocalAddresses(interfaces, options.localAddress ?? [], options.onlyIpV4);
    if (options.debug) io.stderr(`replay: local addresses from ${local.source}\n`);
    const summary = replayBatches(readCaptureFile(capture), {
      config,
      matcher: await replayMatcher(options.matcher ?? 'native', io),
      local,
      ignoreIpv6: options.onlyIpV4,
      verbose: options.verbose,
      json: options.json,
      write: io.stdout,
    });
    if (options.debug) io.stderr(`replay: ${summary.events} events; ${describeStats(summary.stats)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ReplayError || err instanceof CaptureFileError || err instanceof ProgramError || /capture file/.test((err as Error).message)) {
      io.stderr(`knockd-fast: ${(err as Error).message}\n`);
      return 1;
    }
    throw err;
  }
}

async function runNft(action: 'status' | 'uninstall', options: CliOptions, io: CliIo): Promise<number> {
  const config = loadConfig(options.config, io, false);
  if (!config) return 1;
  try {
    if (action === 'status') {
      io.stdout(formatNftStatus(await nftStatus({ table: config.options.nftTable, doors: config.doors })));
    } else {
      const removed = await nftUninstall({ table: config.options.nftTable });
      io.stdout(removed ? `removed table inet ${config.options.nftTable}\n` : `table inet ${config.options.nftTable} was not installed\n`);
    }
    return 0;
  } catch (err) {
    io.stderr(`knockd-fast: ${(err as Error).message}\n`);
    return 1;
  }
}

async function runFleetStatus(options: CliOptions, io: CliIo): Promise<number> {
  const config = loadConfig(options.config, io, false);
  if (!config) return 1;
  const fleet = config.options.fleet;
  if (!fleet) {
    io.stderr(`knockd-fast: ${options.config} has no Fleet line in [options]; see docs/FLEET.md\n`);
    return 1;
  }
  try {
    const { fleetStatus } = await import('./fleet/status.js');
    io.stdout(await fleetStatus(fleet, config.doors));
    return 0;
  } catch (err) {
    io.stderr(`knockd-fast: ${(err as Error).message}\n`);
    return 1;
  }
}

/** The usage line of each subcommand parsed by parseSubcommand. */
const SUBCOMMAND_USAGE: Record<string, string> = {
  doctor: 'usage: knockd-fast doctor [-i IF[,IF...]] [-c FILE]',
  demo: 'usage: knockd-fast demo [--fleet]',
  secret: 'usage: knockd-fast secret [--out FILE]',
};

/** A subcommand's options; an unknown option or a stray argument is an error (stderr, usage, exit 1). */
function parseSubcommand(name: string, argv: string[], io: CliIo, define: (c: Command) => Command): Record<string, unknown> | number {
  const command = define(new Command(`knockd-fast ${name}`).helpOption(false).option('-h, --help'))
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: () => undefined });
  try {
    command.parse(argv, { from: 'user' });
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    io.stderr(`knockd-fast ${name}: ${err.message.replace(/^error: /, '')}\n${SUBCOMMAND_USAGE[name]}\n`);
    return 1;
  }
  const opts = command.opts();
  if (opts.help) {
    io.stdout(`${SUBCOMMAND_USAGE[name]}\n`);
    return 0;
  }
  return opts;
}

/** A derived door's key: 256 bits from the OS CSPRNG as hex text (src/config/keys.ts readSecretFile), on
 * stdout or in a new file created with mode 600, the only mode a Secret_File is accepted with. */
function writeSecret(path: string | undefined, io: CliIo): number {
  const text = `${randomBytes(32).toString('hex')}\n`;
  if (path === undefined) {
    io.stdout(text);
    return 0;
  }
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    io.stderr(`knockd-fast secret: cannot create ${path}: ${code === 'EEXIST' ? 'the file exists (a key is never overwritten; remove it first to replace it)' : strerror(err)}\n`);
    return 1;
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return 0;
}

/** The whole CLI: returns the exit code (a running daemon never returns). */
export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  // subcommands with their own option grammar: knock (knock 0.8's), doctor, demo and secret
  // each loads its code only when run: a daemon that never runs them keeps their modules (the redis client
  // among them) out of its memory (docs/PERFORMANCE.md "What users run: memory as installed")
  if (argv[0] === 'knock') return (await import('./tools/knock.js')).runKnockCli(argv.slice(1), 'knockd-fast knock');
  if (argv[0] === 'doctor') {
    const doctor = parseSubcommand('doctor', argv.slice(1), io, (c) => c.option('-i, --interface <int>').option('-c, --config <file>'));
    if (typeof doctor === 'number') return doctor;
    const interfaces = doctor.interface ? String(doctor.interface).split(',') : [];
    let fleet;
    if (doctor.config !== undefined) {
      const config = loadConfig(String(doctor.config), io, false);
      if (!config) return 1;
      fleet = config.options.fleet;
    }
    const { runDoctor } = await import('./tools/doctor.js');
    return runDoctor({ interfaces, fleet, out: io.stdout });
  }
  if (argv[0] === 'demo') {
    const demo = parseSubcommand('demo', argv.slice(1), io, (c) => c.option('--fleet'));
    if (typeof demo === 'number') return demo;
    const out = (l: string) => io.stdout(`${l}\n`);
    return demo.fleet ? (await import('./tools/fleetdemo.js')).runFleetDemo({ out }) : (await import('./tools/demo.js')).runDemo({ out });
  }
  if (argv[0] === 'secret') {
    const secret = parseSubcommand('secret', argv.slice(1), io, (c) => c.option('--out <file>'));
    if (typeof secret === 'number') return secret;
    return writeSecret(secret.out as string | undefined, io);
  }
  const action = parseArgs(argv, io);
  if (action.kind === 'exit') return action.code;
  if (action.kind === 'nft') return runNft(action.action, action.options, io);
  if (action.kind === 'fleet') return runFleetStatus(action.options, io);
  const options = action.options;
  if (options.test) return runTest(options, io);
  const config = loadConfig(options.config, io);
  if (!config) return 1;
  if (options.replay) return runReplay(options, config, io);
  return runDaemon(options, config, io, { openCapture });
}
