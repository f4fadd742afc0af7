// The front door: what README.md and examples/ tell an operator works as written. Every ini/conf block of
// the README and every config in examples/ passes --test (the files they refer to — one-time sequence
// files, derived-door keys — are created by the test, in a temporary directory the paths are moved to);
// links stay inside the repository; the npm scripts it names exist; every message its Troubleshooting
// table quotes is printed by a real run of the mistake it describes.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { packageRoot } from '../src/native.js';
import { Lab } from '../src/tools/netns.js';
import { isRoot as root } from './helpers/env.js';

const dir = mkdtempSync(join(tmpdir(), 'kf-frontdoor-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const bin = join(packageRoot, 'bin', 'knockd-fast.js');
const knockdFast = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');

/** The fenced blocks of a markdown text whose info string is one of `languages`. */
export function fencedBlocks(markdown: string, languages: string[]): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)) if (languages.includes(m[1])) out.push(m[2]);
  return out;
}

/** Writes `text` as a config whose one-time files and key files exist: each such path is moved into
 * this test's directory and created there (three one-time sequences; a key made by `secret --out`; SPA keys
 * made by `fwknop --key-gen`, also as the one stanza of an fwknopd access.conf). */
function withPrerequisites(name: string, text: string): string {
  const moved = text.replace(/^(\s*(one_time_sequences|secret_file|fleet_key_file|spa_key_file|fwknop_access)\s*=\s*)(\S.*?)\s*$/gim, (_all, head: string, key: string, path: string) => {
    const local = join(dir, `${name}-${basename(path)}`);
    const spaKeys = () => execFileSync('fwknop', ['--key-gen'], { encoding: 'utf8' });
    if (key.toLowerCase() === 'one_time_sequences') writeFileSync(local, '1111,2222,3333\n4444,5555,6666\n7777,8888,9999\n');
    else if (key.toLowerCase() === 'spa_key_file') writeFileSync(local, spaKeys(), { mode: 0o600 });
    else if (key.toLowerCase() === 'fwknop_access') {
      const keys = spaKeys().replace(/: /g, ' ');
      writeFileSync(local, `SOURCE ANY\n${keys}OPEN_PORTS tcp/22\n`, { mode: 0o600 });
    } else {
      rmSync(local, { force: true });
      const made = knockdFast('secret', '--out', local);
      assert.equal(made.status, 0, made.stderr);
    }
    return `${head}${local}`;
  });
  const path = join(dir, `${name}.conf`);
  writeFileSync(path, moved);
  return path;
}

test('every ini/conf block of README.md passes --test', () => {
  const blocks = fencedBlocks(readme, ['ini', 'conf']);
  assert.ok(blocks.length >= 2, 'the README shows configs');
  blocks.forEach((block, i) => {
    const r = knockdFast('-c', withPrerequisites(`readme-${i}`, block), '--test');
    assert.equal(r.status, 0, `README block ${i + 1}:\n${block}\n${r.stderr}`);
    assert.match(r.stdout, /test is successful\n$/);
  });
});

test('every config in examples/ passes --test', () => {
  const configs = readdirSync(join(packageRoot, 'examples')).filter((f) => f.endsWith('.conf'));
  assert.ok(configs.length > 0);
  for (const file of configs) {
    const r = knockdFast('-c', withPrerequisites(file, readFileSync(join(packageRoot, 'examples', file), 'utf8')), '--test');
    assert.equal(r.status, 0, `${file}: ${r.stderr}`);
  }
});

test('links in README.md and docs/ stay inside the repository and lead to files that exist', () => {
  const pages = ['README.md', ...readdirSync(join(packageRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const page of pages) {
    const text = readFileSync(join(packageRoot, page), 'utf8');
    assert.doesNotMatch(text, /\.\.\/shared|https?:\/\//, `${page} links nothing outside the repository`);
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      assert.ok(existsSync(join(packageRoot, dirname(page), m[1])), `${page}: ${m[1]} exists`);
    }
  }
});

test('every npm script the README names exists', () => {
  const scripts = Object.keys((JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts);
  const named = [...readme.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]);
  assert.ok(named.length > 0);
  for (const name of named) assert.ok(scripts.includes(name), `npm run ${name}`);
});

/** The messages quoted (first `code` span) in the Symptom column of README's Troubleshooting table. */
function troubleshootingQuotes(): string[] {
  const section = readme.slice(readme.indexOf('## Troubleshooting'));
  const rows = section.slice(0, section.indexOf('\n## ')).split('\n').filter((l) => l.startsWith('| `'));
  return rows.map((l) => /^\| `([^`]+)`/.exec(l)![1]);
}

/** Whether one run's output holds the quote, each "…" standing for the text in between (a multi-line
 * message, such as nft's own error under knockd-fast's, may be quoted by its first and last words). */
const produces = (output: string, quote: string): boolean =>
  new RegExp(quote.split('…').map((part) => part.trim().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\s\\S]*?')).test(output);


test('every message quoted in README\'s Troubleshooting table is what a real run prints', { skip: !root && 'needs root (runs the daemon in private network namespaces, also as nobody)', timeout: 120_000 }, () => {
  const open = mkdtempSync(join(tmpdir(), 'kf-trouble-'));
  chmodSync(open, 0o755);
  const lab = new Lab('trouble');
  const outputs: string[] = [];
  const record = (r: { stdout: string; stderr: string }) => outputs.push(r.stdout + r.stderr);
  const config = (name: string, text: string) => {
    const path = join(open, name);
    writeFileSync(path, text);
    chmodSync(path, 0o644);
    return path;
  };
  const inNs = (ns: string, argv: string[]) => lab.run(ns, argv[0], argv.slice(1), { timeout: 30_000 });
  const state = `  StateFile = ${join(open, 'state.json')}\n`;
  try {
    lab.ns('eth');
    lab.exec('eth', 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
    lab.exec('eth', 'ip', ['link', 'set', 'eth0', 'up']);
    lab.ns('bare');
    const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, bin];
    // a user without capabilities: the capture socket, the nft ruleset, a log file it may not write
    const commandDoor = config('cmd.conf', `[options]\n  LogFile = /root/kf-trouble.log\n${state}[A]\n  sequence = 7000,8000\n  command = echo %IP%\n`);
    record(inNs('eth', [...nobody, '-c', commandDoor, '-i', 'eth0']));
    const nftDoor = config('nft.conf', `[options]\n${state}[ssh]\n  sequence = 7000,8000\n  Open = 22/tcp\n`);
    record(inNs('eth', [...nobody, '-c', nftDoor, '-i', 'eth0']));
    // root: no nft on the PATH; no eth0 (knockd's default interface) in this namespace
    record(inNs('bare', ['env', 'PATH=/nonexistent', process.execPath, bin, '-c', nftDoor, '-i', 'lo']));
    record(inNs('bare', [process.execPath, bin, '-c', commandDoor]));
    // config mistakes, through --test
    record(knockdFast('-c', config('comment.conf', '[options]\n  Interface = eth0  # comment\n[A]\n  sequence = 7000\n  command = x\n'), '--test'));
    record(knockdFast('-c', config('header.conf', '[options]\n  UseSyslog\n\n# doors\n[A]   # the first door\n  sequence = 7000\n'), '--test'));
    const key = join(open, 'open.key');
    writeFileSync(key, `${'ab'.repeat(32)}\n`);
    chmodSync(key, 0o644);
    record(knockdFast('-c', config('key.conf', `[d]\n  Secret_File = ${key}\n  Port_Range = 20000-29999\n  Open = 22/tcp\n`), '--test'));
    // a copy of the program without its addon: nftables falls back to nft -i, capture cannot start
    const bare = join(open, 'noaddon');
    mkdirSync(bare);
    for (const entry of ['bin', 'src', 'package.json']) cpSync(join(packageRoot, entry), join(bare, entry), { recursive: true });
    symlinkSync(join(packageRoot, 'node_modules'), join(bare, 'node_modules'));
    record(inNs('bare', [process.execPath, join(bare, 'bin', 'knockd-fast.js'), '-c', nftDoor, '-i', 'lo', '-v']));
  } finally {
    lab.destroy();
    rmSync(open, { recursive: true, force: true });
  }
  const quotes = troubleshootingQuotes();
  assert.ok(quotes.length >= 8, quotes.join('\n'));
  const all = outputs.join('\n----\n');
  for (const quote of quotes) assert.ok(outputs.some((o) => produces(o, quote)), `"${quote}" is printed by a real run; the runs printed:\n${all}`);
});
