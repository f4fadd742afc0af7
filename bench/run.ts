// `npm run bench`: runs each bench file in its own child process (so one's heap, addon state and GC do
// not colour another's figures), passes its commentary through, and prints every result row
// (bench/report.ts protocol) as one table. Files: the arguments, or every bench/*.bench.ts.
// KNOCKD_BENCH_SHORT=1 is passed on; the exit code is non-zero if any bench failed.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../src/native.js';
import { ROW_PREFIX, type BenchRow } from './report.js';

const dir = join(packageRoot, 'bench');
const files = process.argv.length > 2 ? process.argv.slice(2) : readdirSync(dir).filter((f) => f.endsWith('.bench.ts')).sort().map((f) => join(dir, f));

const rows: BenchRow[] = [];
let failed = 0;
for (const file of files) {
  console.error(`== ${file}`);
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', file], {
    cwd: packageRoot,
    env: process.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  for (const line of child.stdout.split('\n')) {
    if (line.startsWith(ROW_PREFIX)) rows.push(JSON.parse(line.slice(ROW_PREFIX.length)) as BenchRow);
    else if (line.trim() !== '') console.error(line);
  }
  if (child.status !== 0) {
    failed++;
    console.error(`${file} exited with ${child.status ?? child.signal}`);
  }
}

const fmt = (v: number | string): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(3)) : v);
const columns = ['bench', 'case', ...new Set(rows.flatMap((r) => Object.keys(r.values)))];
const table = rows.map((r) => [r.bench, r.case, ...columns.slice(2).map((c) => (c in r.values ? fmt(r.values[c]) : ''))]);
const widths = columns.map((c, i) => Math.max(c.length, ...table.map((t) => t[i].length)));
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
console.log(line(columns));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const t of table) console.log(line(t));
process.exitCode = failed > 0 ? 1 : 0;
