// The front door: what README.md and examples/ tell an operator works as written. Every ini/conf block of
// the README and every config in examples/ passes --test (the files they refer to — one-time sequence
// files, derived-door keys — are created by the test, in a temporary directory the paths are moved to).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import { packageRoot } from '../src/native.js';

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
 * this test's directory and created there (three one-time sequences; a key made by `secret --out`). */
function withPrerequisites(name: string, text: string): string {
  const moved = text.replace(/^(\s*(one_time_sequences|secret_file|fleet_key_file)\s*=\s*)(\S.*?)\s*$/gim, (_all, head: string, key: string, path: string) => {
    const local = join(dir, `${name}-${basename(path)}`);
    if (key.toLowerCase() === 'one_time_sequences') writeFileSync(local, '1111,2222,3333\n4444,5555,6666\n7777,8888,9999\n');
    else {
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
