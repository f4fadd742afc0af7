// The import rules of docs/ARCHITECTURE.md hold: every relative import in src/ goes from a folder to one
// the table lets it import. The table in the document is the rule; this test reads it from there.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { packageRoot } from '../src/native.js';

const SRC = join(packageRoot, 'src');
const BASE = new Set(['address.ts', 'errors.ts', 'native.ts', 'capabilities.ts']);

/** `| \`config/\` | \`base\` |` rows of the table: folder -> what it may import ('*' = everything). */
function rules(): Map<string, Set<string>> {
  const doc = readFileSync(join(packageRoot, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const table = doc.slice(doc.indexOf('## What each folder may import'));
  const out = new Map<string, Set<string>>();
  for (const line of table.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const folder = /^`([^`]+)`/.exec(cells[1] ?? '')?.[1];
    if (!folder) continue;
    const allowed = cells[2] === 'everything' ? ['*'] : [...cells[2].matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    out.set(folder, new Set(allowed));
  }
  return out;
}

/** The table's name for the place a file under src/ belongs to. */
function layerOf(file: string): string {
  const rel = relative(SRC, file).split('/');
  if (rel.length === 1) return BASE.has(rel[0]) ? 'base' : rel[0];
  return `${rel[0]}/`;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

const IMPORT = /(?:\bfrom|\bimport)\s*\(?\s*'(\.{1,2}\/[^']+)'/g;

test('docs/ARCHITECTURE.md: every folder of src/ has a row, and every relative import follows the table', () => {
  const table = rules();
  assert.ok(table.size >= 10, `the rules table was read (${table.size} rows)`);
  const broken: string[] = [];
  for (const file of sources(SRC)) {
    const from = layerOf(file);
    const allowed = table.get(from);
    if (!allowed) {
      broken.push(`${relative(packageRoot, file)}: ${from} has no row in docs/ARCHITECTURE.md's import table; add one`);
      continue;
    }
    for (const [, spec] of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      const to = layerOf(target);
      if (to === from || allowed.has('*') || allowed.has(to)) continue;
      broken.push(`${relative(packageRoot, file)} imports ${spec}: ${from} may not import ${to} (docs/ARCHITECTURE.md)`);
    }
  }
  assert.deepEqual(broken, []);
});

test('the import check sees a forbidden import', () => {
  // the same reading applied to a made-up file: config/ importing control/ breaks the table
  const allowed = rules().get('config/')!;
  assert.equal(allowed.has(layerOf(join(SRC, 'control', 'controller.ts'))), false);
  assert.equal(layerOf(join(SRC, 'actions', 'nft', 'backend.ts')), 'actions/');
  assert.equal(layerOf(join(SRC, 'native.ts')), 'base');
  const spec = [..."import { DoorController } from '../control/controller.js';".matchAll(IMPORT)].map((m) => m[1]);
  assert.deepEqual(spec, ['../control/controller.js']);
});
