// Private test networks: network namespaces joined by veth pairs, used by `knockd-fast demo` and the
// end-to-end tests. Everything created here is owned by one Lab and removed by lab.destroy(), which is
// also run on exit and on SIGINT/SIGTERM, so an interrupted run leaves nothing behind. Addresses come from
// the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and live only
// inside these namespaces.
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnOptions, type SpawnSyncOptionsWithStringEncoding, type SpawnSyncReturns } from 'node:child_process';

export class LabError extends Error {}

export interface LinkSpec {
  a: string; // namespace name (short, as given to lab.ns())
  b: string;
  aAddrs: string[]; // CIDR, e.g. 192.0.2.1/24, 2001:db8:1::1/64
  bAddrs: string[];
}

function run(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new LabError(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`);
  }
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) {
    throw new LabError(`${what} needs root (it creates network namespaces); run it with sudo`);
  }
}

export class Lab {
  private readonly prefix: string;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();
  /** its owner's own cleanup (temporary directories), run by destroy(), on Ctrl-C too */
  private readonly cleanups: (() => void)[] = [];
  private destroyed = false;
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.destroy();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  private readonly onExit = () => this.destroy();

  constructor(tag: string) {
    requireRoot('building a test network');
    this.prefix = `kf-${tag}-${process.pid}`;
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
    process.once('exit', this.onExit);
  }

  /** Full namespace name for a short name. */
  name(short: string): string {
    return `${this.prefix}-${short}`;
  }

  /** Creates a namespace with its loopback up. */
  ns(short: string): string {
    const full = this.name(short);
    run('ip', ['netns', 'add', full]);
    this.namespaces.push(full);
    this.exec(short, 'ip', ['link', 'set', 'lo', 'up']);
    return full;
  }

  /** Joins two namespaces with a veth pair; returns the interface names (a side, b side). */
  link(spec: LinkSpec, ifA = `veth-${spec.b}`, ifB = `veth-${spec.a}`): [string, string] {
    const tmpA = `kfa${process.pid % 100000}${this.namespaces.length}`;
    const tmpB = `kfb${process.pid % 100000}${this.namespaces.length}`;
    run('ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB]);
    run('ip', ['link', 'set', tmpA, 'netns', this.name(spec.a)]);
    run('ip', ['link', 'set', tmpB, 'netns', this.name(spec.b)]);
    this.exec(spec.a, 'ip', ['link', 'set', tmpA, 'name', ifA]);
    this.exec(spec.b, 'ip', ['link', 'set', tmpB, 'name', ifB]);
    for (const [side, ifname, addrs] of [
      [spec.a, ifA, spec.aAddrs],
      [spec.b, ifB, spec.bAddrs],
    ] as const) {
      for (const a of addrs) this.exec(side, 'ip', ['addr', 'add', a, 'dev', ifname, ...(a.includes(':') ? ['nodad'] : [])]);
      this.exec(side, 'ip', ['link', 'set', ifname, 'up']);
    }
    return [ifA, ifB];
  }

  /** Runs a command inside a namespace and returns its stdout; throws LabError with stderr on failure. */
  exec(short: string, cmd: string, args: string[], input?: string): string {
    return run('ip', ['netns', 'exec', this.name(short), cmd, ...args], input);
  }

  /** Exit status of a command inside a namespace (no throw). */
  status(short: string, cmd: string, args: string[]): number {
    return this.run(short, cmd, args, { stdio: 'ignore', timeout: 20_000 }).status ?? 1;
  }

  /** Runs a command inside a namespace to its end (no throw): status, signal and output, as spawnSync
   * gives them; at most a minute unless opts.timeout says otherwise. */
  run(short: string, cmd: string, args: string[], opts: Partial<SpawnSyncOptionsWithStringEncoding> = {}): SpawnSyncReturns<string> {
    return spawnSync('ip', ['netns', 'exec', this.name(short), cmd, ...args], { encoding: 'utf8', timeout: 60_000, ...opts });
  }

  /** Starts a long-running process inside a namespace; it is killed by destroy(). */
  spawn(short: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name(short), cmd, ...args], { stdio: 'pipe', ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Runs `fn` when the lab is destroyed (also on SIGINT/SIGTERM and exit); it must be synchronous. */
  atDestroy(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** Kills every child and deletes every namespace (their veths go with them). Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const c of this.children) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const ns of this.namespaces.reverse()) {
      try {
        // processes still inside (e.g. a daemon started by a test) would keep the namespace alive
        execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean)
          .forEach((pid) => {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              /* gone */
            }
          });
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        /* already removed */
      }
    }
    for (const fn of this.cleanups.splice(0)) {
      try {
        fn();
      } catch {
        /* best effort: the namespaces are gone already */
      }
    }
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    process.removeListener('exit', this.onExit);
  }
}
