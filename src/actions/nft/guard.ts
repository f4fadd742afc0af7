// nftables doors, the guard watch: `nft -j monitor rules` receives the kernel's ruleset notifications
// (netlink group NFNLGRP_NFTABLES), so a rule of the knockd-fast table that is added or deleted by anyone —
// a flushed or deleted guard chain, a deleted table — is noticed within milliseconds, without polling. The
// backend (nft/backend.ts) then compares the table with its plan and restores it. A monitor that cannot
// start or exits is started again after a second, followed by a full check, so a gap is at most ~1 s.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { LogFn } from '../types.js';
import { nftArgv, type NftRunner } from './process.js';

const RESTART_MS = 1000;

export interface GuardWatchOptions extends NftRunner {
  table: string;
  log: LogFn;
  /** a rule of the table changed, or the monitor (re)started: the table must be checked */
  onChange: () => void;
}

type MonitorRule = { rule?: { family: string; table: string } };
/** One line of `nft -j monitor rules`: what happened to which rule. */
type MonitorEvent = Partial<Record<'add' | 'insert' | 'replace' | 'delete', MonitorRule>>;

export class GuardWatch {
  private child: ChildProcess | undefined;
  private restart: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: GuardWatchOptions) {
    this.startMonitor();
  }

  private startMonitor(): void {
    const argv = nftArgv(this.opts);
    const child = spawn(argv[0], [...argv.slice(1), '-j', 'monitor', 'rules'], {
      env: this.opts.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let event: MonitorEvent;
      try {
        event = JSON.parse(line) as MonitorEvent;
      } catch {
        return; // not an event (nft prints nothing else in JSON mode)
      }
      const rule = Object.values(event)[0]?.rule;
      if (rule?.family === 'inet' && rule.table === this.opts.table) this.opts.onChange();
    });
    // the first check covers whatever happened before the monitor subscribed
    child.once('spawn', () => this.opts.onChange());
    child.once('error', () => undefined); // 'close' follows and reports it
    child.once('close', (code, signal) => {
      if (this.closed) return;
      this.opts.log(
        `nft: the monitor watching table inet ${this.opts.table} stopped (${signal ?? `status ${code}`}${stderr.trim() ? `: ${stderr.trim()}` : ''}); restarting it in 1 s`,
      );
      this.restart = setTimeout(() => this.startMonitor(), RESTART_MS);
      this.restart.unref();
    });
    // the daemon's own timers keep it alive; a test that forgets close() must still exit
    child.unref();
    (child.stdout as unknown as { unref(): void }).unref();
    (child.stderr as unknown as { unref(): void }).unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.restart);
    this.child?.kill();
    this.child = undefined;
  }
}
