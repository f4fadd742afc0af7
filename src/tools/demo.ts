// `knockd-fast demo`: the whole story on a private network built for the occasion — a closed port, a
// knock, the port open for that client only, closed again — narrated step by step. The same building
// blocks (GatewayLab) drive the end-to-end tests, so what the demo shows is what the tests prove.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, LabError } from './netns.js';
import { packageRoot } from '../native.js';

/** Addresses of the private test network (documentation ranges, inside our namespaces only). */
export const NET = {
  client: '198.51.100.10',
  client2: '198.51.100.11',
  client6: '2001:db8:1::10',
  gateway: '198.51.100.1',
  gateway6: '2001:db8:1::1',
  server: '203.0.113.10',
  server6: '2001:db8:2::10',
} as const;

export const ECHO_SERVER = `
const net = require('net');
const srv = net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); });
srv.listen({ port: Number(process.argv[1]), host: '::', ipv6Only: false }, () => console.log('listening'));
`;

// Prints "open" when a TCP connection succeeds within the timeout, "closed" otherwise; never throws.
export const PROBE = `
const net = require('net');
const [host, port, source] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localAddress: source || undefined });
const t = setTimeout(() => { console.log('closed'); process.exit(0); }, 1500);
s.on('connect', () => { clearTimeout(t); console.log('open'); s.destroy(); process.exit(0); });
s.on('error', () => { clearTimeout(t); console.log('closed'); process.exit(0); });
`;

// Keeps one connection and echoes a line every 300 ms; prints "alive" or "dead" on each round.
const SESSION = `
const net = require('net');
const [host, port, source] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localAddress: source || undefined });
let pending = 0;
s.on('connect', () => { console.log('connected'); setInterval(() => { if (pending > 3) console.log('dead'); pending++; s.write('ping\\n'); }, 300); });
s.on('data', () => { pending = 0; console.log('alive'); });
s.on('error', () => { console.log('dead'); process.exit(1); });
`;

export interface Daemon {
  child: ChildProcess;
  lines: string[];
  /** resolves with the first stdout line matching, or rejects after timeoutMs */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export const cliPath = (): string => join(packageRoot, 'bin', 'knockd-fast.js');
export const knockClientPath = (): string => join(packageRoot, 'bin', 'knock-fast.js');

/**
 * client ── veth ── gateway ── veth ── server. The gateway forwards and runs the daemon; a TCP echo
 * server listens on port 22 in the gateway and in the server.
 */
export class GatewayLab {
  readonly lab: Lab;
  readonly dir: string;
  readonly gatewayIf: string;
  private readonly servers: ChildProcess[] = [];

  constructor(tag = 'demo') {
    this.lab = new Lab(tag);
    this.dir = mkdtempSync(join(tmpdir(), `knockd-fast-${tag}-`));
    this.lab.atDestroy(() => rmSync(this.dir, { recursive: true, force: true }));
    try {
      for (const ns of ['client', 'gw', 'srv']) this.lab.ns(ns);
      const [, gwToClient] = this.lab.link({
        a: 'client',
        b: 'gw',
        aAddrs: [`${NET.client}/24`, `${NET.client2}/24`, `${NET.client6}/64`],
        bAddrs: [`${NET.gateway}/24`, `${NET.gateway6}/64`],
      });
      this.gatewayIf = gwToClient;
      this.lab.link({
        a: 'gw',
        b: 'srv',
        aAddrs: ['203.0.113.1/24', '2001:db8:2::1/64'],
        bAddrs: [`${NET.server}/24`, `${NET.server6}/64`],
      });
      this.lab.exec('gw', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      this.lab.exec('gw', 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
      this.lab.exec('client', 'ip', ['route', 'add', 'default', 'via', NET.gateway]);
      this.lab.exec('client', 'ip', ['-6', 'route', 'add', 'default', 'via', NET.gateway6]);
      this.lab.exec('srv', 'ip', ['route', 'add', 'default', 'via', '203.0.113.1']);
      this.lab.exec('srv', 'ip', ['-6', 'route', 'add', 'default', 'via', '2001:db8:2::1']);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  async startEchoServers(port = 22): Promise<void> {
    for (const ns of ['gw', 'srv']) {
      const child = this.lab.spawn(ns, process.execPath, ['-e', ECHO_SERVER, String(port)]);
      this.servers.push(child);
      await firstLine(child, /listening/, 5000);
    }
  }

  /** "open" if a new TCP connection from the client namespace succeeds. */
  probe(host: string, port = 22, source?: string): 'open' | 'closed' {
    const out = this.lab.exec('client', process.execPath, ['-e', PROBE, host, String(port), source ?? '']).trim();
    return out === 'open' ? 'open' : 'closed';
  }

  /** A long-lived connection from the client; check session.lines for "alive"/"dead". */
  async openSession(host: string, port = 22): Promise<{ child: ChildProcess; lines: string[] }> {
    const child = this.lab.spawn('client', process.execPath, ['-e', SESSION, host, String(port)]);
    const lines: string[] = [];
    collectLines(child, lines);
    await waitLine(lines, /connected|dead/, 5000);
    return { child, lines };
  }

  /** Knocks from the client namespace with knock-fast (or any client given as argv). */
  knock(args: string[], client: string[] = [process.execPath, knockClientPath()]): void {
    this.lab.exec('client', client[0], [...client.slice(1), ...args]);
  }

  writeConfig(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  /** Runs the daemon on the gateway; `launcher` (e.g. setpriv with the systemd unit's capabilities) runs it. */
  async startDaemon(configPath: string, extraArgs: string[] = [], launcher: string[] = []): Promise<Daemon> {
    const argv = [...launcher, process.execPath, cliPath(), '-c', configPath, '-i', this.gatewayIf, '-v', ...extraArgs];
    const child = this.lab.spawn('gw', argv[0], argv.slice(1));
    const lines: string[] = [];
    const stderr: string[] = [];
    collectLines(child, lines);
    child.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
    const daemon: Daemon = {
      child,
      lines,
      waitFor: (pattern, timeoutMs = 10_000) =>
        waitLine(lines, pattern, timeoutMs).catch((err: Error) => {
          throw new LabError(`${err.message}\nstdout:\n${lines.join('\n')}\nstderr:\n${stderr.join('')}`);
        }),
      stop: (signal = 'SIGTERM') =>
        new Promise((resolve) => {
          if (child.exitCode !== null) return resolve(child.exitCode);
          child.once('exit', (code) => resolve(code));
          child.kill(signal);
        }),
    };
    await daemon.waitFor(/starting up, listening on/);
    return daemon;
  }

  /** The nft ruleset of the gateway (for narration and tests). */
  nft(args: string[]): string {
    return this.lab.exec('gw', 'nft', args);
  }

  destroy(): void {
    this.lab.destroy();
  }
}

export function collectLines(child: ChildProcess, lines: string[]): void {
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

export async function waitLine(lines: string[], pattern: RegExp, timeoutMs: number, from = 0): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const hit = lines.slice(from).find((l) => pattern.test(l));
    if (hit !== undefined) return hit;
    await sleep(50);
  }
  throw new LabError(`timed out after ${timeoutMs} ms waiting for ${pattern}`);
}

export async function firstLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  const lines: string[] = [];
  collectLines(child, lines);
  return waitLine(lines, pattern, timeoutMs);
}

export function demoConfig(lab: GatewayLab, openTimeout: number): string {
  return lab.writeConfig(
    'knockd.conf',
    `# knockd-fast demo: the gateway guards its own SSH port and the server behind it
[options]
    LogFile = ${join(lab.dir, 'knockd.log')}
    StateFile = ${join(lab.dir, 'state.json')}
    NftTable = knockd_fast_demo

[ssh]
    Sequence     = 7000,8000,9000
    Seq_Timeout  = 5
    TCPFlags     = syn
    Open         = 22/tcp
    Open_Timeout = ${openTimeout}

[server]
    Sequence     = 7100:udp,8100,9100
    Seq_Timeout  = 5
    Open         = 22/tcp
    Open_Timeout = ${openTimeout}
    Hook         = forward
`,
  );
}

export interface DemoOptions {
  out?: (line: string) => void;
  openTimeout?: number;
}

/** Whether a demo can run here: root, and each [command, Debian package] installed; says what is missing. */
export function demoCanRun(out: (line: string) => void, command: string, needs: [string, string][]): boolean {
  if (process.getuid?.() !== 0) {
    out('The demo builds private network namespaces and nftables rules, which needs root.');
    out(`Run it as root: sudo npx ${command}`);
    return false;
  }
  for (const [cmd, pkg] of needs) {
    try {
      execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    } catch {
      out(`The demo needs the ${cmd} command. Install it with: apt-get install ${pkg}`);
      return false;
    }
  }
  return true;
}

/** A demo's checks: each printed with why it matters; the summary line and the exit code at the end. */
export class DemoChecks {
  private readonly results: [string, boolean][] = [];

  constructor(private readonly out: (line: string) => void) {}

  readonly check = (what: string, ok: boolean, why: string): void => {
    this.results.push([what, ok]);
    this.out(`   ${ok ? 'ok  ' : 'FAIL'} ${what}${ok ? '' : '  <-- unexpected'}`);
    this.out(`        why it matters: ${why}`);
  };

  /** The story could not go on: counted as a failed check. */
  stopped(err: Error): void {
    this.out(`The demo stopped with an error: ${err.message}`);
    this.results.push(['demo ran to the end', false]);
  }

  /** Prints the summary; 0 when every check held, else 1. */
  summary(): number {
    const failed = this.results.filter(([, ok]) => !ok);
    this.out('');
    this.out(`Summary: ${this.results.length - failed.length} of ${this.results.length} checks held.${failed.length ? ` Failed: ${failed.map(([w]) => w).join('; ')}` : ''}`);
    return failed.length ? 1 : 0;
  }
}

/** Runs the narrated story; returns the exit code (0 when every check held). */
export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const out = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const openTimeout = opts.openTimeout ?? 6;
  if (!demoCanRun(out, 'knockd-fast demo', [['nft', 'nftables']])) return 1;
  const checks = new DemoChecks(out);
  const check = checks.check;
  let lab: GatewayLab | undefined;
  try {
    out('1. Building a private network: client --- gateway --- server (three network namespaces).');
    lab = new GatewayLab('demo');
    await lab.startEchoServers(22);
    out(`   client ${NET.client} / ${NET.client6}, gateway ${NET.gateway}, server ${NET.server}; port 22 listens on gateway and server.`);

    out('2. Starting knockd-fast on the gateway with two doors: [ssh] guards the gateway, [server] the host behind it.');
    const config = demoConfig(lab, openTimeout);
    out(`   gateway# knockd-fast -c ${config} -i ${lab.gatewayIf} -v`);
    for (const l of readFileSync(config, 'utf8').trimEnd().split('\n')) out(`   | ${l}`);
    const daemon = await lab.startDaemon(config);
    out(`   ${daemon.lines.find((l) => l.includes('starting up')) ?? 'started'}`);

    out('3. Before any knock, the client tries to connect to the gateway on port 22.');
    out(`   client$ nc -z -w 2 ${NET.gateway} 22        (the demo opens this TCP connection itself)`);
    check(
      'port 22 is closed before knocking: the SYN is dropped and the connection times out',
      lab.probe(NET.gateway) === 'closed',
      'the guarded port is invisible to everyone who has not knocked (no reset, no answer at all).',
    );

    out('4. The client knocks 7000, 8000, 9000 (one SYN each).');
    out(`   client$ knock-fast ${NET.gateway} 7000 8000 9000`);
    lab.knock([NET.gateway, '7000', '8000', '9000']);
    const opened = await daemon.waitFor(/OPEN SESAME/).catch(() => '');
    out(`   daemon: ${opened || '(no OPEN SESAME line)'}`);
    check('port 22 opens for the client', lab.probe(NET.gateway) === 'open', 'the kernel now admits new connections from this one address, with no shell command in between.');
    check(
      'still closed for another address of the same client host',
      lab.probe(NET.gateway, 22, NET.client2) === 'closed',
      'a door opens for the source that knocked, not for its neighbours.',
    );

    out('5. An SSH-like session stays connected while the door closes behind it.');
    const session = await lab.openSession(NET.gateway);
    out(`   waiting ${openTimeout + 1} s for the door's Open_Timeout (${openTimeout} s) to pass...`);
    await sleep((openTimeout + 1) * 1000);
    check(
      'a new connection is dropped (times out) after Open_Timeout',
      lab.probe(NET.gateway) === 'closed',
      'the kernel expired the set element itself: a crashed daemon would still close the door on time.',
    );
    const before = session.lines.length;
    await sleep(1000);
    check(
      'the established session keeps working',
      session.lines.slice(before).includes('alive') && !session.lines.slice(before).includes('dead'),
      'only new connections are guarded; nobody is cut off mid-session.',
    );
    session.child.kill();

    out('6. The client knocks the [server] door (7100/udp, 8100, 9100) to reach the server behind the gateway.');
    check('the server is unreachable before the knock (dropped, times out)', lab.probe(NET.server) === 'closed', 'Hook = forward guards traffic routed through the gateway too.');
    out(`   client$ knock-fast ${NET.gateway} 7100:udp 8100 9100`);
    lab.knock([NET.gateway, '7100:udp', '8100', '9100']);
    await daemon.waitFor(/server: OPEN SESAME/).catch(() => '');
    check('the server is reachable after the knock', lab.probe(NET.server) === 'open', 'one knock on the gateway opens the path to the host behind it.');

    out(`7. Over IPv6 this time, a wrong knock (7000, 9000, 8000 to ${NET.gateway6}) opens nothing.`);
    out(`   client$ knock-fast -6 ${NET.gateway6} 7000 9000 8000`);
    lab.knock(['-6', NET.gateway6, '7000', '9000', '8000']);
    await sleep(300);
    check(
      'a wrong sequence does not open the door (IPv6 port 22 stays dropped)',
      lab.probe(NET.gateway6) === 'closed',
      'only the exact sequence, in order, within Seq_Timeout, counts; IPv6 sources have their own set.',
    );

    out('8. What knockd-fast installed in the gateway:');
    out('   gateway# nft list table inet knockd_fast_demo');
    for (const l of lab.nft(['list', 'table', 'inet', 'knockd_fast_demo']).trimEnd().split('\n')) out(`   | ${l}`);
    await daemon.stop();
  } catch (err) {
    checks.stopped(err as Error);
  } finally {
    out('9. Removing the namespaces, their veth pairs and the daemon.');
    lab?.destroy();
  }
  return checks.summary();
}
