#!/usr/bin/env node
// `npm run release [-- DIR]`: the package tarball, made away from the checkout (which keeps no dist/ or
// prebuilds/, so bin/ there always runs the sources). The files package.json lists are copied to a
// staging directory; the TypeScript is compiled, the addon prebuilt (prebuildify, linux-<arch>, glibc) and
// the man page written from --help's text there; then npm packs it into DIR (default: the checkout).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const destination = resolve(process.argv[2] ?? root);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const built = new Set(['dist', 'prebuilds', 'man']);
const stage = mkdtempSync(join(tmpdir(), 'knockd-fast-release-'));

const run = (file, args, env = process.env) => execFileSync(file, args, { cwd: stage, stdio: ['ignore', 'inherit', 'inherit'], env });

try {
  for (const entry of [...pkg.files.filter((f) => !f.startsWith('!') && !built.has(f)), 'README.md', 'LICENSE']) {
    cpSync(join(root, entry), join(stage, entry), { recursive: true });
  }
  // what users install runs only the install hook; the development scripts stay in the checkout
  const published = { ...pkg, scripts: { install: pkg.scripts.install } };
  delete published.devDependencies;
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
  symlinkSync(join(root, 'node_modules'), join(stage, 'node_modules'));

  run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(stage, 'dist'), '--sourceMap', 'false']);
  run(process.execPath, [join(root, 'node_modules', 'prebuildify', 'bin.js'), '--napi', '--strip', '--tag-libc'], {
    ...process.env,
    PREBUILD_NODE_GYP: join(stage, 'scripts', 'cmake-js-as-node-gyp.cjs'),
  });
  const { MANUAL, VERSION } = await import(pathToFileURL(join(stage, 'dist', 'cli.js')).href);
  const { manualToRoff } = await import(pathToFileURL(join(stage, 'dist', 'tools', 'manpage.js')).href);
  mkdirSync(join(stage, 'man'));
  writeFileSync(join(stage, 'man', 'knockd-fast.8'), manualToRoff(MANUAL, VERSION));

  mkdirSync(destination, { recursive: true });
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', destination], { cwd: stage, encoding: 'utf8' }));
  process.stdout.write(`${join(destination, packed[0].filename)}\n`);
} finally {
  rmSync(stage, { recursive: true, force: true });
}
