// monitoring/: the example alert rules are valid (promtool check rules), fire on what they are about and
// only then (promtool test rules), and name only metrics the daemon exports; README's metrics table lists
// exactly the metrics the daemon exports.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/native.js';
import { Metrics } from '../src/report/metrics.js';

const monitoring = join(packageRoot, 'monitoring');
const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = !promtool && 'promtool is not installed (apt-get install prometheus)';

test('promtool check rules: the alert rules are valid', { skip }, () => {
  const r = spawnSync('promtool', ['check', 'rules', 'knockd-fast.rules.yml'], { cwd: monitoring, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS: 5 rules found/);
});

test('promtool test rules: daemon down, ring and queue drops, nft batch failures and suppressed events alert as specified', { skip }, () => {
  const r = spawnSync('promtool', ['test', 'rules', 'knockd-fast.rules.test.yml'], { cwd: monitoring, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});

/** The metric names a scrape of the daemon's endpoint shows. */
async function exported(): Promise<string[]> {
  const metrics = new Metrics(() => ({}));
  const text = await metrics.registry.metrics();
  return [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]).sort();
}

test('the rules name only exported metrics (and up, from Prometheus itself)', async () => {
  const names = new Set(await exported());
  const rules = readFileSync(join(monitoring, 'knockd-fast.rules.yml'), 'utf8');
  const used = [...rules.matchAll(/^\s+expr: (.*)$/gm)].flatMap((m) => [...m[1].matchAll(/\b([a-z_]+)(?=\{|\[| ==)/g)].map((x) => x[1]));
  assert.ok(used.length >= 5);
  for (const name of used) assert.ok(name === 'up' || names.has(name), `${name} is exported`);
});

test('README\'s metrics table lists exactly the exported metrics', async () => {
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('| Metric |'));
  const rows = [...table.slice(0, table.search(/\n\n/)).matchAll(/^\| `([a-z_]+)`/gm)].map((m) => m[1]).sort();
  assert.deepEqual(rows, await exported());
});
