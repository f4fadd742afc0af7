// The daemon's lifecycle (knockd 0.8's; README.md deviations 5 and 8): start-up order, -d with a
// pid file that refuses a live duplicate, SIGHUP reload that never kills, SIGTERM/SIGINT shutdown that
// flushes the nft batch and the state file and exits with the signal's number as knockd does.
import { fork } from 'node:child_process';
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CommandBackend } from './actions/commands.js';
import { NftBackend } from './actions/nft.js';
import { strerror } from './config/lexical.js';
import { captureInterfaces, parseConfig } from './config/parse.js';
import { capabilityError } from './capabilities.js';
import { DEFAULTS, hasNftAction, type KnockdConfig } from './config/types.js';
import { DoorController, rotateOneTimeFile } from './control/controller.js';
import { decodeEvents } from './match/events.js';
import { formatAddress, type Address } from './address.js';
import { Logger, SYSLOG_SOCKET, unixDatagramTransport, type LogFormat, type SyslogTransport } from './report/log.js';
import type { EngineCounters, Metrics } from './report/metrics.js';
import { CaptureEngine, interfaceAddresses, type CaptureOptions } from './capture/engine.js';
import { compileProgram, type CompiledProgram } from './config/program.js';
import { DEFAULT_STATE_FILE, loadState } from './control/state.js';
import type { FleetLinkImpl } from './fleet/link.js';
import { VERSION } from './cli.js';
import { ReplayCache, SPA_REPLAY_FILE_NAME } from './spa/replay-cache.js';
import { SpaGate } from './spa/gate.js';

// ------------------------------------------------------------------------------------------ pid file

export class PidFileError extends Error {}

/** true when a process with this pid exists (EPERM: it exists but belongs to someone else). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates the pid file (`<pid>\n`, as knockd); a live duplicate is refused, a stale file replaced. */
export function acquirePidFile(path: string, pid = process.pid): void {
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new PidFileError(`could not create pid file ${path}: ${strerror(err)}`);
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch {
        continue; // removed meanwhile: try again
      }
      const other = Number.parseInt(text.trim(), 10);
      if (Number.isInteger(other) && other > 0 && other !== pid && alive(other)) {
        throw new PidFileError(
          `another knockd-fast is already running with pid ${other} (pid file ${path}); stop it first, or remove ${path} if that process is not knockd-fast`,
        );
      }
      unlinkSync(path); // stale: its process is gone
      continue;
    }
    try {
      writeSync(fd, `${pid}\n`);
    } finally {
      closeSync(fd);
    }
    return;
  }
  throw new PidFileError(`could not create pid file ${path}: it keeps reappearing; is another knockd-fast starting?`);
}

/** Removes the pid file if it is still ours. */
export function releasePidFile(path: string, pid = process.pid): void {
  try {
    if (Number.parseInt(readFileSync(path, 'utf8').trim(), 10) === pid) unlinkSync(path);
  } catch {
    // already gone
  }
}

// ------------------------------------------------------------------------------------------ settings

/** The command line as the daemon needs it (src/cli.ts fills it). */
export interface DaemonArgs {
  config: string;
  interface?: string;
  daemon?: boolean;
  debug?: boolean;
  lookup?: boolean;
  pidfile?: string;
  logfile?: string;
  verbose?: boolean;
  onlyIpV4?: boolean;
  threads?: number;
  matcher?: 'native' | 'ts';
  logFormat?: LogFormat;
  metrics?: string;
  stateFile?: string;
}

export interface DaemonSettings {
  configPath: string;
  interfaces: string[];
  logFile?: string;
  pidFile: string;
  logFormat: LogFormat;
  metrics?: string;
  stateFile: string;
  /** the SPA replay cache, next to the state file */
  spaReplayFile: string;
  threads: number;
}

/** knockd's precedence: -i beats Interface=; LogFile=/PidFile= beat -g/-p (the config is read last). */
export function settingsFrom(args: DaemonArgs, config: KnockdConfig, cwd = process.cwd()): DaemonSettings {
  const o = config.options;
  const logFile = o.logFile ?? args.logfile;
  return {
    configPath: resolve(cwd, args.config),
    interfaces: captureInterfaces(args.interface, o),
    // relative paths resolve against the start-up directory, before -d moves to /
    logFile: logFile === undefined ? undefined : resolve(cwd, logFile),
    pidFile: resolve(cwd, o.pidFile ?? args.pidfile ?? DEFAULTS.pidFile),
    logFormat: args.logFormat ?? o.logFormat ?? 'knockd',
    metrics: args.metrics ?? o.metricsListen,
    stateFile: resolve(cwd, args.stateFile ?? o.stateFile ?? DEFAULT_STATE_FILE),
    spaReplayFile: join(dirname(resolve(cwd, args.stateFile ?? o.stateFile ?? DEFAULT_STATE_FILE)), SPA_REPLAY_FILE_NAME),
    threads: args.threads ?? o.threads ?? cpus().length,
  };
}

// ------------------------------------------------------------------------------------------ capture

/** What the daemon needs from a capture engine (src/capture/engine.ts CaptureEngine). */
export interface CaptureEngineLike {
  /** swaps in a program compiled for localAddresses() */
  load(words: Uint32Array): void;
  /** the local addresses the engine last reported */
  localAddresses(): Address[];
  stats(): EngineCounters;
  close(): Promise<void>;
}

/** Opens capture; the real one is CaptureEngine.open (tests substitute a matcher fed by hand). */
export type OpenCapture = (opts: CaptureOptions) => CaptureEngineLike | Promise<CaptureEngineLike>;

export const openCapture: OpenCapture = (opts) => CaptureEngine.open(opts);

// ------------------------------------------------------------------------------------------ -d

const DAEMON_CHILD = 'KNOCKD_FAST_DAEMON_CHILD';
type ChildReport = { ready: true } | { error: string };

/**
 * -d: re-runs this command detached (own session, stdio on /dev/null) and waits until the child has
 * written its pid file (exit 0) or failed to start (its error on stderr, exit 1). The child moves to /
 * once its paths are resolved, so relative -c/-g/-p paths work (unlike knockd, whose reload then fails).
 */
export function daemonize(stderr: (t: string) => void): Promise<number> {
  const child = fork(process.argv[1], process.argv.slice(2), {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, [DAEMON_CHILD]: '1' },
    execArgv: process.execArgv,
  });
  return new Promise((done) => {
    let reported = false;
    child.on('message', (m: ChildReport) => {
      reported = true;
      if ('error' in m) {
        stderr(`${m.error}\n`);
        done(1);
      } else done(0);
      child.disconnect();
      child.unref();
    });
    child.on('exit', (code) => {
      if (reported) return;
      stderr(`knockd-fast: the daemon exited during start-up (status ${code})\n`);
      done(1);
    });
  });
}

const isDaemonChild = (): boolean => process.env[DAEMON_CHILD] === '1' && typeof process.send === 'function';

function reportToParent(report: ChildReport): void {
  if (!isDaemonChild()) return;
  process.send?.(report);
  process.disconnect?.();
}

// ------------------------------------------------------------------------------------------ the daemon

export interface DaemonIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** the log daemon's socket for UseSyslog; default /dev/log */
  syslogSocket?: string;
}

export interface DaemonHooks {
  openCapture: OpenCapture;
  /** the capture interfaces' local addresses (default interfaceAddresses; tests give fixed ones) */
  readAddresses?: CaptureOptions['readAddresses'];
  /** called on exit instead of process.exit (tests) */
  exit?: (code: number) => void;
}

const RELOAD_REFUSED = 'error: the new config was not loaded; the running config is kept';
/** SIGTERM/SIGINT end the process within this, whatever is still being flushed. */
const SHUTDOWN_LIMIT_MS = 900;

export class Daemon {
  private config: KnockdConfig;
  private readonly settings: DaemonSettings;
  private readonly log: Logger;
  private readonly controller: DoorController;
  private readonly commands: CommandBackend;
  private nft: NftBackend | undefined;
  private fleet: FleetLinkImpl | undefined;
  private spaCache: ReplayCache | undefined;
  private metrics: Metrics | undefined;
  private engine: CaptureEngineLike | undefined;
  private pidFileWritten = false;
  private stopping = false;
  private exited = false;
  /** a SIGHUP reload is running; another SIGHUP meanwhile asks for one more after it (a storm = two) */
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;
  private keepAlive: NodeJS.Timeout | undefined;
  private readonly onSignal = {
    SIGHUP: () => void this.requestReload(),
    SIGTERM: () => void this.shutdown(15),
    SIGINT: () => void this.shutdown(2),
  };

  /**
   * While a batch of events is handled, the -v lines it causes, written with one write(2) when it ends
   * instead of one per line (under a flood the event budget lets 2,000 lines a second through).
   */
  private batchLines: string[] | undefined;
  /** the kernel timestamps (µs) of the knocks that opened a door in that batch, observed once its lines are out */
  private batchOpens: number[] = [];

  constructor(
    private readonly args: DaemonArgs,
    config: KnockdConfig,
    private readonly io: DaemonIo,
    private readonly hooks: DaemonHooks,
  ) {
    this.config = config;
    this.settings = settingsFrom(args, config);
    let syslog: SyslogTransport | undefined;
    if (config.options.useSyslog) {
      try {
        syslog = unixDatagramTransport(io.syslogSocket);
      } catch (err) {
        io.stderr(`warning: cannot log to syslog (${io.syslogSocket ?? SYSLOG_SOCKET}): ${strerror(err).split('\n')[0]}\n`);
      }
    }
    this.log = new Logger({
      logFile: this.settings.logFile,
      syslog,
      verbose: args.verbose,
      format: this.settings.logFormat,
      stdout: (text) => (this.batchLines ? this.batchLines.push(text) : io.stdout(text)),
      stderr: io.stderr,
    });
    for (const w of config.warnings) this.log.log(`warning: ${w}`);
    // a configuration without commands (nft doors) never needs the commands' runner shell; a reload that
    // adds one starts it at the first command
    const hasCommands = config.doors.some((d) => [d.startCommand, d.startCommand6, d.stopCommand, d.stopCommand6].some((c) => c));
    this.commands = new CommandBackend({ log: (m) => this.log.log(m), prestart: hasCommands });
    this.controller = new DoorController({
      log: (m, f) => this.log.log(m, f),
      logBatch: (fn) => this.log.batch(fn),
      commands: this.commands,
      stateFile: this.settings.stateFile,
      lookup: args.lookup,
      rotateOneTime: (door) => rotateOneTimeFile(door, door.oneTimeSequences as string, (m) => this.log.log(m)),
      onDoorsChanged: () => this.swapProgram(),
      onOpen: (timeUs) => (this.batchLines ? this.batchOpens.push(timeUs) : this.observeOpen(timeUs)),
    });
    this.commands.onDropped = (stop) => this.controller.forgetStop(stop);
  }

  /** Start-up in knockd's order; throws (with a message for stderr) when the daemon cannot run. */
  async start(): Promise<void> {
    const s = this.settings;
    // first: a second instance must not touch the state file, the nft table or the metrics port
    if (this.args.daemon) {
      acquirePidFile(s.pidFile);
      this.pidFileWritten = true;
    }
    try {
      await this.open();
    } catch (err) {
      // the cause first; what went wrong while undoing the half-done start comes after it
      const cleanup: string[] = [];
      try {
        // a first start that failed leaves no guard rule behind; a running installation's table stays
        if (await this.nft?.removeIfCreated()) this.debug('removed the nftables table this failed start had installed');
      } catch (undo) {
        cleanup.push(`error: ${(undo as Error).message}`);
      }
      cleanup.push(...(await this.release()));
      if (cleanup.length === 0) throw err;
      throw new Error([(err as Error).message, ...cleanup].join('\n'), { cause: err });
    }
    // like daemon(3): no working directory kept busy; every path was made absolute in settingsFrom
    if (isDaemonChild()) process.chdir('/');
    for (const [sig, fn] of Object.entries(this.onSignal)) process.on(sig, fn);
    // the capture threads and timers are unref'd: this keeps the daemon alive until a signal ends it
    this.keepAlive = setInterval(() => undefined, 1 << 30);
    this.log.log(`starting up, listening on ${s.interfaces.join(', ')}`);
    reportToParent({ ready: true });
  }

  private async open(): Promise<void> {
    const s = this.settings;
    // before anything is installed: capture needs CAP_NET_RAW (a test's own capture needs none), nft doors
    // CAP_NET_ADMIN
    const missing = capabilityError({ capture: this.hooks.openCapture === openCapture, nft: this.config.doors.some(hasNftAction) });
    if (missing) throw new Error(missing);
    // refuse an unsafe or unreadable state file before anything is installed (it is restored at the end)
    loadState(s.stateFile);
    if (this.config.doors.some(hasNftAction)) {
      this.nft = this.newNft(this.config);
      await this.nft.start();
    }
    this.controller.attach({ nft: this.nft });
    // the fleet connects in the background: with the store down the daemon starts local-only and retries
    if (this.config.options.fleet) await this.startFleet(this.config);
    this.openSpa(this.config);
    this.debug(`log file ${s.logFile ?? '(none)'}, state file ${s.stateFile}, ${s.threads} capture thread(s), ${this.args.matcher ?? 'native'} matcher`);
    const readAddresses = this.hooks.readAddresses ?? interfaceAddresses;
    const addresses = readAddresses(s.interfaces, !!this.args.onlyIpV4);
    const program = this.compile(addresses);
    this.controller.setProgram(program);
    this.engine = await this.hooks.openCapture({
      interfaces: s.interfaces,
      threads: s.threads,
      matcher: this.args.matcher ?? 'native',
      ignoreIpv6: this.args.onlyIpV4,
      program: program.words,
      addresses,
      readAddresses,
      onAddressesChanged: (changed) => this.swapProgram(changed),
      onEvents: (batch) => this.onEvents(batch),
      onError: (err) => this.log.log(`error: ${err.message}`),
      onInterface: (notice) => this.log.log(notice.message, { event: `interface_${notice.event}`, interface: notice.interface }),
    });
    if (s.metrics) {
      // prom-client and the redis client (fleet) load only when configured: each adds MiBs of resident
      // memory (docs/PERFORMANCE.md "What users run: memory as installed")
      const { Metrics } = await import('./report/metrics.js');
      this.metrics = new Metrics(() => {
        const c = this.commands.stats();
        return { ...this.engine?.stats(), commandRuns: c.runs, commandFailures: c.failures, commandDrops: c.dropped };
      });
      this.controller.attach({ metrics: this.metrics });
      this.fleet?.attachMetrics(this.metrics);
      await this.metrics.listen(s.metrics);
    }
    // last: the state file is read, and from now on written, only by a daemon that has started
    this.controller.restoreState();
  }

  /** Closes whatever is open, in an order that keeps grants and stops: capture, nft, state, metrics, pid
   * file. Returns the lines saying what failed on the way. */
  private async release(): Promise<string[]> {
    const problems: string[] = [];
    try {
      await this.engine?.close();
      await this.fleet?.close();
      // nft first: closing gives up a failing batch instead of retrying it, so shutdown stays prompt
      await this.nft?.close();
      this.commands.close();
      await this.controller.close();
      this.spaCache?.flush();
      await this.metrics?.close();
    } catch (err) {
      problems.push(`error during shutdown: ${(err as Error).message}`);
    }
    if (this.pidFileWritten) releasePidFile(this.settings.pidFile);
    this.log.close();
    if (this.keepAlive) clearInterval(this.keepAlive);
    return problems;
  }

  /** SIGHUP: one reload at a time; SIGHUPs during a reload are folded into one more reload after it. */
  requestReload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        await this.reload();
      } while (this.reloadAgain && !this.stopping);
      this.reloading = undefined;
    })();
    return this.reloading;
  }

  /** SIGHUP: a good config is swapped in; a bad one is logged and the running one kept (deviation 5). */
  async reload(): Promise<void> {
    if (this.stopping) return;
    this.log.log(`re-reading config file: ${this.settings.configPath}`);
    let next: KnockdConfig;
    try {
      next = parseConfig(this.settings.configPath);
    } catch (err) {
      this.log.log((err as Error).message);
      this.log.log(RELOAD_REFUSED);
      return;
    }
    try {
      // refuse what the matchers would refuse before anything is swapped
      compileProgram(next, { localAddresses: [], allLocal: true });
      if (this.nft) await this.nft.reload(next.doors);
      else if (next.doors.some(hasNftAction)) {
        this.nft = this.newNft(next);
        await this.nft.start();
      }
      this.openSpa(next);
      this.config = next;
      this.controller.resetSequences();
      this.controller.attach({ nft: this.nft });
      await this.reloadFleet(next);
      this.log.reopen(next.options.logFile ?? this.args.logfile);
      this.swapProgram();
    } catch (err) {
      this.log.log(`error: ${(err as Error).message}`);
      this.log.log(RELOAD_REFUSED);
    }
  }

  /** SIGTERM/SIGINT: stop capture, flush grants and state, remove the pid file, exit with the signal number. */
  async shutdown(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.log('shutting down');
    for (const [sig, fn] of Object.entries(this.onSignal)) process.off(sig, fn);
    // a flush that hangs must not keep the process: the state is written first, then it exits
    const watchdog = setTimeout(() => {
      this.commands.close();
      void this.controller.close();
      this.log.log(`shutdown took longer than ${SHUTDOWN_LIMIT_MS} ms; exiting without waiting for the rest`);
      this.exit(code);
    }, SHUTDOWN_LIMIT_MS);
    for (const problem of await this.release()) this.io.stderr(`${problem}\n`);
    clearTimeout(watchdog);
    this.exit(code);
  }

  private exit(code: number): void {
    if (this.exited) return;
    this.exited = true;
    (this.hooks.exit ?? process.exit)(code);
  }

  private async startFleet(config: KnockdConfig): Promise<void> {
    const { FleetLinkImpl } = await import('./fleet/link.js');
    this.fleet = new FleetLinkImpl({
      config: config.options.fleet!,
      doors: config.doors,
      version: VERSION,
      log: (m, f) => this.log.log(m, f),
      target: this.controller,
      metrics: this.metrics,
    });
    this.controller.attach({ fleet: this.fleet });
    this.fleet.start();
  }

  /** A reload keeps the store connection when the store, fleet and member stay the same. */
  private async reloadFleet(next: KnockdConfig): Promise<void> {
    const f = next.options.fleet;
    if (this.fleet && f && this.fleet.sameStore(f)) {
      this.fleet.reload(f, next.doors);
      return;
    }
    if (this.fleet) {
      this.log.log('fleet: the fleet settings changed; leaving the old store', { event: 'fleet_leave' });
      this.controller.attach({ fleet: undefined });
      await this.fleet.close();
      this.fleet = undefined;
    }
    if (f) await this.startFleet(next);
  }

  /** The first SPA door brings the replay cache (read from its file: a corrupt file stops the start). */
  private openSpa(config: KnockdConfig): void {
    if (this.spaCache || !config.doors.some((d) => d.spa)) return;
    this.spaCache = new ReplayCache(this.settings.spaReplayFile, (m) => this.log.log(m));
    this.controller.attach({ spa: new SpaGate(this.spaCache) });
  }

  private newNft(config: KnockdConfig): NftBackend {
    return new NftBackend({
      doors: config.doors,
      table: config.options.nftTable,
      log: (m) => this.log.log(m),
      onBatch: (_n, ms) => this.metrics?.nftBatchSeconds.observe(ms / 1000),
      onBatchFailure: () => this.metrics?.nftBatchFailures.inc(),
      onGuardRestored: () => this.metrics?.nftGuardRestored.inc(),
    });
  }

  /** The program for these local addresses, with each one-time door's current sequence (nothing registered). */
  private compile(localAddresses: Address[]): CompiledProgram {
    const program = compileProgram(this.controller.withCurrentSequences(this.config), { localAddresses, ignoreIpv6: this.args.onlyIpV4, stageEvents: true });
    this.debug(
      `program generation ${program.generation}: ${program.doors.length} door(s); local addresses ${localAddresses.map((a) => formatAddress(a.family, a.bytes)).join(', ') || '(none: only doors with Target can match)'}`,
    );
    return program;
  }

  /**
   * The one place a program is swapped in: after SIGHUP, when the local addresses changed (the engine
   * reports it) and when a one-time door moved on (the controller reports it). The controller learns the
   * new door table before the matchers can produce events with its generation.
   */
  private swapProgram(addresses = this.engine?.localAddresses()): void {
    if (!this.engine || !addresses) return;
    const program = this.compile(addresses);
    this.controller.setProgram(program);
    this.engine.load(program.words);
  }

  private onEvents(batch: Uint8Array): void {
    if (this.args.debug) for (const ev of decodeEvents(batch)) this.io.stdout(`debug: event ${JSON.stringify(ev)}\n`);
    this.batchLines = [];
    try {
      this.controller.handleBatch(batch);
    } finally {
      const lines = this.batchLines;
      this.batchLines = undefined;
      if (lines.length > 0) this.io.stdout(lines.join(''));
      for (const timeUs of this.batchOpens) this.observeOpen(timeUs);
      this.batchOpens.length = 0;
    }
  }

  /** knockd_knock_to_open_seconds: the daemon's own part of a knocker's wait, from the kernel's timestamp. */
  private observeOpen(timeUs: number): void {
    this.metrics?.knockToOpenSeconds.observe(Math.max(0, Date.now() - timeUs / 1000) / 1000);
  }

  /** -D: what the daemon decided at start-up and on reload, on stdout. */
  private debug(text: string): void {
    if (this.args.debug) this.io.stdout(`debug: ${text}\n`);
  }
}

/** Runs the daemon for the CLI; resolves with the exit code only when start-up fails. */
export async function runDaemon(args: DaemonArgs, config: KnockdConfig, io: DaemonIo, hooks: DaemonHooks): Promise<number> {
  if (args.daemon && !isDaemonChild()) return daemonize(io.stderr);
  try {
    const daemon = new Daemon(args, config, io, hooks);
    await daemon.start();
  } catch (err) {
    const message = (err as Error).message;
    reportToParent({ error: message });
    io.stderr(`${message}\n`);
    return 1;
  }
  return new Promise<number>(() => undefined);
}
