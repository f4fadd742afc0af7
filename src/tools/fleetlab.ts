// A private fleet for the fleet tests, the benchmark and `demo --fleet`: a Redis started for the occasion on
// a unix socket in a private directory (reachable from every namespace, listening on no network), gateway
// namespaces each running its own daemon and nftables, and a client namespace that reaches every gateway
// from the same source addresses, as a router hashing on the source address would deliver them.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cliPath, collectLines, ECHO_SERVER, firstLine, knockClientPath, PROBE, waitLine, type Daemon } from './demo.js';
import { Lab, LabError } from './netns.js';
import { createClient } from 'redis';

/** The client's own addresses (on its loopback): the same source reaches every gateway. */
export const FLEET_NET = {
  client: '203.0.113.10',
  client2: '203.0.113.11',
} as const;

/** Gateway i (0-based): its address on the link to the client. */
export function gatewayAddress(i: number): string {
  return `198.51.100.${1 + i * 4}`;
}

/** redis-server on a unix socket, no persistence: started and stopped by its owner. */
export class RedisServer {
  readonly socket: string;
  private child: ChildProcess | undefined;
  private client: ReturnType<typeof createClient> | undefined;

  constructor(readonly dir: string) {
    this.socket = join(dir, 'redis.sock');
  }

  get url(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', this.dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.on('error', () => undefined);
    this.child = child;
    const started = firstLine(child, /ready to accept connections/i, 10_000);
    const failed = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new LabError(`redis-server exited (status ${code}); apt-get install redis-server`))),
    );
    await Promise.race([started, failed]);
  }

  /** Stops it (SIGKILL: an outage, not a shutdown); its data is gone (no persistence). */
  async kill(): Promise<void> {
    if (this.client?.isOpen) this.client.destroy();
    this.client = undefined;
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
    rmSync(this.socket, { force: true });
  }

  /** Runs one command on it through a client of its own (tests write straight into the store with it). */
  async command(args: (string | Buffer)[]): Promise<unknown> {
    if (!this.client) {
      this.client = createClient({ socket: { path: this.socket, reconnectStrategy: false } });
      this.client.on('error', () => undefined);
      await this.client.connect();
    }
    return this.client.sendCommand(args);
  }
}

export class FleetLab {
  readonly lab: Lab;
  readonly dir: string;
  readonly redis: RedisServer;
  readonly keyFile: string;
  /** per gateway: the interface facing the client */
  private readonly gatewayIfs: string[] = [];
  private readonly servers: ChildProcess[] = [];

  constructor(tag: string, gateways: number) {
    this.lab = new Lab(tag);
    this.dir = mkdtempSync(join(tmpdir(), `knockd-fast-${tag}-`));
    this.redis = new RedisServer(this.dir);
    this.keyFile = join(this.dir, 'fleet.key');
    writeFileSync(this.keyFile, `${'5a'.repeat(32)}\n`);
    chmodSync(this.keyFile, 0o600);
    try {
      this.lab.ns('client');
      this.lab.exec('client', 'ip', ['addr', 'add', `${FLEET_NET.client}/32`, 'dev', 'lo']);
      this.lab.exec('client', 'ip', ['addr', 'add', `${FLEET_NET.client2}/32`, 'dev', 'lo']);
      for (let i = 0; i < gateways; i++) this.addGateway(i);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  private addGateway(i: number): void {
    const gw = `gw${i}`;
    this.lab.ns(gw);
    const gwAddr = gatewayAddress(i);
    const clientAddr = `198.51.100.${2 + i * 4}`;
    const [, gwIf] = this.lab.link({ a: 'client', b: gw, aAddrs: [`${clientAddr}/30`], bAddrs: [`${gwAddr}/30`] }, `to-${gw}`, 'to-client');
    this.gatewayIfs.push(gwIf);
    this.lab.exec(gw, 'ip', ['route', 'add', '203.0.113.0/24', 'via', clientAddr]);
  }

  /** A TCP echo server on `port` in every gateway (the guarded service). */
  async startEchoServers(port = 22): Promise<void> {
    for (let i = 0; i < this.gatewayIfs.length; i++) {
      const child = this.lab.spawn(`gw${i}`, process.execPath, ['-e', ECHO_SERVER, String(port)]);
      this.servers.push(child);
      await firstLine(child, /listening/, 5000);
    }
  }

  /** "open" when a new TCP connection from `source` to gateway i succeeds. */
  probe(i: number, source: string = FLEET_NET.client, port = 22): 'open' | 'closed' {
    const out = this.lab.exec('client', process.execPath, ['-e', PROBE, gatewayAddress(i), String(port), source]).trim();
    return out === 'open' ? 'open' : 'closed';
  }

  /** Knocks on gateway i from `source`; returns what the client printed (with -v, the derived sequence). */
  knock(i: number, ports: string[], source: string = FLEET_NET.client, extra: string[] = []): string {
    return this.lab.exec('client', process.execPath, [knockClientPath(), '--source', source, ...extra, gatewayAddress(i), ...ports]);
  }

  writeConfig(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  /** [options] of member i: its own log, state file and table; the shared store and key. */
  options(i: number, extra = ''): string {
    return `[options]
    LogFile = ${this.dir}/gw${i}.log
    StateFile = ${this.dir}/gw${i}.state
    Fleet = ${this.redis.url}
    Fleet_Name = test
    Fleet_Member = gw${i}
    Fleet_Key_File = ${this.keyFile}
${extra}`;
  }

  async startDaemon(i: number, configPath: string, extraArgs: string[] = []): Promise<Daemon> {
    const child = this.lab.spawn(`gw${i}`, process.execPath, [cliPath(), '-c', configPath, '-i', this.gatewayIfs[i], '-v', ...extraArgs]);
    const lines: string[] = [];
    const stderr: string[] = [];
    collectLines(child, lines);
    child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
    const daemon: Daemon = {
      child,
      lines,
      waitFor: (pattern, timeoutMs = 20_000) =>
        waitLine(lines, pattern, timeoutMs).catch((err: Error) => {
          throw new LabError(`gw${i}: ${err.message}\nstdout:\n${lines.join('\n')}\nstderr:\n${stderr.join('')}`);
        }),
      stop: (signal = 'SIGTERM') =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
          child.once('exit', (code) => resolve(code));
          child.kill(signal);
        }),
    };
    await daemon.waitFor(/starting up, listening on/, 30_000);
    return daemon;
  }

  nft(i: number, args: string[]): string {
    return this.lab.exec(`gw${i}`, 'nft', args);
  }

  /** Waits until `check` holds, polling; false if it never did within timeoutMs. */
  async until(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (check()) return true;
      await sleep(100);
    }
    return check();
  }

  async destroy(): Promise<void> {
    this.lab.destroy();
    await this.redis.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
