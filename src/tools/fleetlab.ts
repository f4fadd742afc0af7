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

/** The door the fleet tests, the benchmark's members and `demo --fleet` guard port 22 with. */
export const sshDoor = (openTimeout: number, extra = ''): string => `
[ssh]
    Sequence = 7000,8000,9000
    Seq_Timeout = 5
    TCPFlags = syn
    Open = 22/tcp
    Open_Timeout = ${openTimeout}
${extra}`;

/** Gateway i (0-based): its address on the link to the client. */
export function gatewayAddress(i: number): string {
  return `198.51.100.${1 + i * 4}`;
}

/** redis-server on a unix socket, no persistence: started and stopped by its owner. */
export class RedisServer {
  readonly socket: string;
  private child: ChildProcess | undefined;
  private client: ReturnType<typeof createClient> | undefined;

  /** `spawn`: how to start it (a lab's, so that a Ctrl-C kills it with the lab); a plain child otherwise */
  constructor(
    readonly dir: string,
    private readonly spawnServer: (cmd: string, args: string[]) => ChildProcess = (cmd, args) => spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }),
  ) {
    this.socket = join(dir, 'redis.sock');
  }

  get url(): string {
    return `unix://${this.socket}`;
  }

  async start(): Promise<void> {
    const child = this.spawnServer('redis-server', ['--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', this.dir]);
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

/** The store's address on the store namespace's loopback, reached by every gateway over its own link. */
export const SENTINEL_STORE_ADDRESS = '192.0.2.100';
export const SENTINEL_MASTER = 'kf';
const SENTINEL_PORTS = [26379, 26380, 26381];

/**
 * A highly available store for the Sentinel tests: in its own namespace (node-redis reaches sentinels and
 * the servers they name over TCP only, so on a namespace address, never the host's network), a primary on
 * 6379, a replica on 6380 and three sentinels (quorum 2) that promote the replica one second after the
 * primary stops answering.
 */
export class SentinelStore {
  private readonly servers = new Map<number, ChildProcess>();

  constructor(
    private readonly lab: Lab,
    private readonly dir: string,
  ) {}

  get url(): string {
    return `redis+sentinel://${SENTINEL_PORTS.map((p) => `${SENTINEL_STORE_ADDRESS}:${p}`).join(',')}/${SENTINEL_MASTER}`;
  }

  async start(): Promise<void> {
    // protected mode admits only 127.0.0.1; this namespace's address is reachable from the lab's gateways only
    const common = ['--bind', SENTINEL_STORE_ADDRESS, '--protected-mode', 'no', '--save', '', '--appendonly', 'no', '--dir', this.dir];
    await this.spawn(6379, ['--port', '6379', ...common]);
    await this.spawn(6380, ['--port', '6380', ...common, '--replicaof', SENTINEL_STORE_ADDRESS, '6379', '--replica-announce-ip', SENTINEL_STORE_ADDRESS]);
    for (const port of SENTINEL_PORTS) {
      const conf = join(this.dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          `bind ${SENTINEL_STORE_ADDRESS}`,
          'protected-mode no',
          `dir ${this.dir}`,
          `sentinel announce-ip ${SENTINEL_STORE_ADDRESS}`,
          `sentinel monitor ${SENTINEL_MASTER} ${SENTINEL_STORE_ADDRESS} 6379 2`,
          `sentinel down-after-milliseconds ${SENTINEL_MASTER} 1000`,
          `sentinel failover-timeout ${SENTINEL_MASTER} 10000`,
          '',
        ].join('\n'),
      );
      await this.spawn(port, [conf, '--sentinel']);
    }
  }

  private async spawn(port: number, args: string[]): Promise<void> {
    const child = this.lab.spawn('store', 'redis-server', args);
    child.on('error', () => undefined);
    this.servers.set(port, child);
    await Promise.race([
      firstLine(child, /ready to accept connections|Sentinel ID is/i, 10_000),
      new Promise<never>((_, reject) => child.once('exit', (code) => reject(new LabError(`redis-server on port ${port} exited (status ${code})`)))),
    ]);
  }

  /** One command to the server or sentinel on `port`, through redis-cli in the store's namespace. */
  cli(port: number, args: string[]): string {
    return this.lab.exec('store', 'redis-cli', ['-h', SENTINEL_STORE_ADDRESS, '-p', String(port), ...args]);
  }

  /** The port of the primary the sentinels name now. */
  primaryPort(): number {
    return Number(this.cli(SENTINEL_PORTS[0], ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER]).trim().split('\n')[1]);
  }

  /** Whether every sentinel sees the replica and the two other sentinels (a failover can then be agreed). */
  settled(): boolean {
    return SENTINEL_PORTS.every((p) => {
      const fields = this.cli(p, ['SENTINEL', 'MASTER', SENTINEL_MASTER]).trim().split('\n');
      const field = (name: string) => Number(fields[fields.indexOf(name) + 1]);
      return field('num-slaves') >= 1 && field('num-other-sentinels') >= 2;
    });
  }

  /** Kills the server on `port` (SIGKILL: a crash). */
  async kill(port: number): Promise<void> {
    const child = this.servers.get(port);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
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
    this.lab.atDestroy(() => rmSync(this.dir, { recursive: true, force: true }));
    // in the client's namespace (a unix socket reaches across namespaces): killed with the lab, on Ctrl-C too
    this.redis = new RedisServer(this.dir, (cmd, args) => this.lab.spawn('client', cmd, args));
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

  /**
   * A store namespace linked to every gateway, with SENTINEL_STORE_ADDRESS on its loopback, and a Sentinel
   * store started in it (the Sentinel tests). Removed with the lab.
   */
  async startSentinelStore(): Promise<SentinelStore> {
    this.lab.ns('store');
    this.lab.exec('store', 'ip', ['addr', 'add', `${SENTINEL_STORE_ADDRESS}/32`, 'dev', 'lo']);
    for (let i = 0; i < this.gatewayIfs.length; i++) {
      const storeSide = `192.0.2.${1 + i * 4}`;
      const gwSide = `192.0.2.${2 + i * 4}`;
      this.lab.link({ a: 'store', b: `gw${i}`, aAddrs: [`${storeSide}/30`], bAddrs: [`${gwSide}/30`] }, `to-gw${i}`, 'to-store');
      this.lab.exec(`gw${i}`, 'ip', ['route', 'add', `${SENTINEL_STORE_ADDRESS}/32`, 'via', storeSide]);
    }
    const store = new SentinelStore(this.lab, this.dir);
    await store.start();
    return store;
  }

  writeConfig(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  /** [options] of member i: its own log, state file and table; the shared store (the lab's Redis unless
   * another URL is given) and key. */
  options(i: number, extra = '', storeUrl = this.redis.url): string {
    return `[options]
    LogFile = ${this.dir}/gw${i}.log
    StateFile = ${this.dir}/gw${i}.state
    Fleet = ${storeUrl}
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
    await this.redis.kill();
    this.lab.destroy();
  }
}
