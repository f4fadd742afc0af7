// nftables doors, the nft process: running `nft` once (install, list, delete), the long-lived `nft -i` of
// the fallback element writer, and what nft's JSON listings say exists. Whether a table or set is missing is
// read from a listing (`nft -j list tables`, `nft -j -t list table`), never from nft's English error text.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { NftSetRef } from '../../config/types.js';

export class NftError extends Error {
  override name = 'NftError';
}

const INSTALL_HINT = 'knockd-fast needs the nft tool for doors with Open or NftSet: apt-get install nftables';

/** Where nftables is: the network namespace (a name under /run/netns; default: the daemon's own) and the
 * environment whose PATH finds nft. */
export interface NftRunner {
  netns?: string;
  env?: NodeJS.ProcessEnv;
}

export interface NftTableOptions extends NftRunner {
  /** NftTable; default knockd_fast (family inet) */
  table?: string;
}

export function nftArgv(runner: NftRunner): string[] {
  return runner.netns ? ['ip', 'netns', 'exec', runner.netns, 'nft'] : ['nft'];
}

export interface RunResult {
  code: number;
  output: string;
}

/** Runs nft once with `args` (through `argv`, which ends in nft), feeding `input` on stdin; stdout and stderr
 * are returned together. */
export function runNft(runner: NftRunner, args: string[], input?: string, argv = nftArgv(runner)): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], [...argv.slice(1), ...args], {
      env: runner.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new NftError(`cannot run ${argv[0]}: not found in PATH (${(runner.env ?? process.env).PATH ?? ''}); ${INSTALL_HINT}`)
          : new NftError(`cannot run ${argv.join(' ')}: ${err.message}`),
      );
    });
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
    child.stdin.on('error', () => {}); // the exit status reports the failure
    child.stdin.end(input ?? '');
  });
}

/** Fails with a clear message when nft cannot be run at all. */
export async function checkNft(runner: NftRunner): Promise<string> {
  const { code, output } = await runNft(runner, ['--version']);
  if (code !== 0) {
    throw new NftError(`cannot run ${nftArgv(runner).join(' ')} (exit status ${code}): ${output.trim()}; ${INSTALL_HINT}`);
  }
  return output.trim();
}

/** Whether the table exists, from nft's listing of the family's tables; throws NftError when nft fails. */
export async function tableExists(runner: NftRunner, family: string, table: string): Promise<boolean> {
  const { code, output } = await runNft(runner, ['-j', 'list', 'tables', family]);
  if (code !== 0) throw new NftError(`nft list tables ${family} failed: ${output.trim()}`);
  const items = (JSON.parse(output) as { nftables: { table?: { family: string; name: string } }[] }).nftables;
  return items.some((i) => i.table?.family === family && i.table.name === table);
}

/**
 * A table's objects as `nft -j list table` gives them (`elements: false`: sets without their elements), or
 * undefined when the table does not exist. nft's failure is told apart from a missing table by listing the
 * tables; any other failure throws NftError with nft's message.
 */
export async function listTable(runner: NftRunner, family: string, table: string, elements = false): Promise<object[] | undefined> {
  const args = [...(elements ? [] : ['-t']), '-j', 'list', 'table', family, table];
  const { code, output } = await runNft(runner, args);
  if (code === 0) return (JSON.parse(output) as { nftables: object[] }).nftables;
  if (!(await tableExists(runner, family, table))) return undefined;
  throw new NftError(`nft list table ${family} ${table} failed: ${output.trim()}`);
}

/** A set with its elements as nft lists it, or undefined when its table or the set does not exist. */
export async function listSet(runner: NftRunner, ref: NftSetRef): Promise<object[] | undefined> {
  const { code, output } = await runNft(runner, ['-j', 'list', 'set', ref.family, ref.table, ref.set]);
  if (code === 0) return (JSON.parse(output) as { nftables: object[] }).nftables;
  if (await setsMissing(runner, [ref])) return undefined;
  throw new NftError(`nft list set ${ref.family} ${ref.table} ${ref.set} failed: ${output.trim()}`);
}

/** true when at least one of the sets (or its table) does not exist. */
export async function setsMissing(runner: NftRunner, refs: readonly NftSetRef[]): Promise<boolean> {
  const tables = new Map<string, NftSetRef[]>();
  for (const r of refs) tables.set(`${r.family} ${r.table}`, [...(tables.get(`${r.family} ${r.table}`) ?? []), r]);
  for (const group of tables.values()) {
    const items = await listTable(runner, group[0].family, group[0].table);
    if (!items) return true;
    const names = new Set((items as { set?: { name: string } }[]).flatMap((i) => (i.set ? [i.set.name] : [])));
    if (group.some((r) => !names.has(r.set))) return true;
  }
  return false;
}

/** The result of checking a script with `nft -c`: accepted, refused (nft's message), or not checked (why). */
export type NftCheck = { outcome: 'accepted'; where: string } | { outcome: 'refused'; where: string; output: string } | { outcome: 'not checked'; why: string };

/** `unshare` runs nft in a network namespace of its own (and, without root, a user namespace in which it has
 * CAP_NET_ADMIN), so the check needs no privilege and does not depend on the live ruleset. */
function privateNamespace(): string[] {
  return ['unshare', ...(process.getuid?.() === 0 ? [] : ['--user', '--map-root-user']), '--net', 'nft'];
}

/**
 * Checks `script` with `nft -c` (the kernel validates the transaction and nothing is committed): in a private
 * network namespace when unshare can make one, else in the current one. nft's answer is trusted only once
 * `nft list tables` has worked in the same place, so a missing privilege is "not checked", never "refused".
 */
export async function checkScript(script: string, env: NodeJS.ProcessEnv = process.env): Promise<NftCheck> {
  try {
    await checkNft({ env });
  } catch (err) {
    return { outcome: 'not checked', why: firstLine((err as Error).message) };
  }
  const places: [string, string[]][] = [
    ['a private network namespace', privateNamespace()],
    ['the current network namespace', ['nft']],
  ];
  let why = '';
  for (const [where, argv] of places) {
    let probe: RunResult;
    try {
      probe = await runNft({ env }, ['list', 'tables'], undefined, argv);
    } catch (err) {
      why = (err as Error).message;
      continue;
    }
    if (probe.code !== 0) {
      why = `${argv.join(' ')} list tables: ${firstLine(probe.output.trim())}`;
      continue;
    }
    const result = await runNft({ env }, ['-c', '-f', '-'], script, argv);
    return result.code === 0 ? { outcome: 'accepted', where } : { outcome: 'refused', where, output: result.output.trim() };
  }
  return { outcome: 'not checked', why };
}

// `describe` is answered by nft without touching the kernel; its output marks the end of a command's output
const MARKER_COMMAND = 'describe tcp dport';
const MARKER = 'payload expression, datatype inet_service';

/**
 * One long-lived `nft -i` process. Each script is written to a private file and run with `include`:
 * the interactive line reader costs ~30 µs per element of a long line, the file scanner ~5 µs.
 */
export class NftShell {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly dir = mkdtempSync(join(tmpdir(), 'knockd-fast-nft-'));
  private readonly file = join(this.dir, 'batch.nft');
  private output = '';
  private current: { resolve: (r: RunResult) => void; reject: (e: Error) => void } | undefined;
  private exited: Error | undefined;

  constructor(runner: NftRunner) {
    const argv = nftArgv(runner);
    this.child = spawn('/bin/sh', ['-c', 'exec "$@" -i 2>&1', 'sh', ...argv], {
      env: runner.env ?? process.env,
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    this.child.stdin.on('error', () => {}); // reported through 'close'
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => this.onData(d));
    this.child.on('close', (code, signal) => {
      this.exited = new NftError(`nft -i exited (${signal ?? `status ${code}`}): ${this.output.trim()}`);
      this.finish(undefined);
    });
    this.child.on('error', (err) => {
      this.exited = new NftError(`cannot run ${argv.join(' ')} -i: ${err.message}`);
      this.finish(undefined);
    });
  }

  get alive(): boolean {
    return this.exited === undefined;
  }

  /** Runs one script as one transaction. Only one script runs at a time (the caller serialises). */
  run(script: string): Promise<RunResult> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => {
      this.current = { resolve, reject };
      writeFileSync(this.file, script);
      this.child.stdin.write(`include "${this.file}"\n${MARKER_COMMAND}\n`);
    });
  }

  private onData(chunk: string): void {
    this.output += chunk;
    const at = this.output.indexOf(MARKER);
    if (at < 0) return;
    const end = this.output.indexOf('\n', at);
    if (end < 0) return;
    const result = this.output.slice(0, at).trim();
    this.output = this.output.slice(end + 1);
    // nft -i keeps running after a failed command; its message is the only sign of the failure
    this.finish({ code: /(^|\n)[^\n]*Error: /.test(result) ? 1 : 0, output: result });
  }

  private finish(result: RunResult | undefined): void {
    const current = this.current;
    this.current = undefined;
    if (!current) return;
    if (result) current.resolve(result);
    else current.reject(this.exited!);
  }

  close(): void {
    if (this.alive) this.child.stdin.end();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The line of nft's output that says what failed (its "Error:" line), else the first line. */
export function firstLine(text: string): string {
  return text.split('\n').find((l) => l.includes('Error')) ?? text.split('\n')[0];
}
