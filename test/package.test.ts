// Packaging: `npm run release` makes a tarball with the prebuilt linux-x64 addon, the compiled TypeScript,
// the man page, the license and the native sources for the build-from-source fallback, and nothing of the
// tests; the checkout is left as it was. Installed into an empty directory with no network (`npm ci
// --offline` against a lock that pins the tarball: only the tarball and npm's local cache) and no compiler
// on the PATH, it runs --version, --test and a replay. Without a prebuilt addon and without a compiler the
// install fails with one line saying what to install. With its addon removed, the replay and the nftables
// backend fall back to TypeScript and `nft -i`, each saying so once.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, test } from 'node:test';
import { writePcap } from '../src/capture/pcap.js';
import { MANUAL } from '../src/cli.js';
import { packageRoot } from '../src/native.js';
import { Lab } from '../src/tools/netns.js';
import { knockFrame, TCP } from './helpers/packets.js';
import { isRoot as root, T0 } from './helpers/env.js';

const run = (cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string =>
  execFileSync(cmd, args, { cwd, encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });

let work: string;
let tarball: string;
/** the app the offline install test installed the tarball into */
let app: string;
let conf: string;
let capture: string;
/** a PATH with node, npm and a shell, and no compiler, cmake or make */
let noCompilerPath: string;

/** What `git status` says of the checkout's build outputs (the release must not add any). */
const checkoutOutputs = (): string =>
  spawnSync('git', ['status', '--porcelain', '--ignored', '--', 'dist', 'prebuilds', 'man', 'build-bench', '*.tgz'], { cwd: packageRoot, encoding: 'utf8' }).stdout;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'knockd-fast-pack-'));
  const outputsBefore = checkoutOutputs();
  tarball = run(process.execPath, [join(packageRoot, 'scripts', 'release.mjs'), work], packageRoot).trim().split('\n').pop()!;
  assert.equal(checkoutOutputs(), outputsBefore, 'npm run release leaves the checkout as it was');
  noCompilerPath = join(work, 'path');
  mkdirSync(noCompilerPath);
  for (const tool of ['node', 'npm', 'sh']) {
    const found = run('sh', ['-c', `command -v ${tool}`], work).trim();
    symlinkSync(tool === 'node' ? process.execPath : found, join(noCompilerPath, tool));
  }
  for (const tool of ['cmake', 'c++', 'g++', 'cc', 'make', 'ninja']) assert.ok(!existsSync(join(noCompilerPath, tool)));
});

after(() => rmSync(work, { recursive: true, force: true }));

test('the tarball holds the prebuilt addon, dist/, the man page, the license and the fallback sources; no tests', () => {
  const listing = run('tar', ['-tzf', tarball], work).split('\n');
  for (const want of [
    'package/prebuilds/linux-x64/knockd-fast.glibc.node',
    'package/dist/cli.js',
    'package/bin/knockd-fast.js',
    'package/bin/knock-fast.js',
    'package/man/knockd-fast.8',
    'package/LICENSE',
    'package/README.md',
    'package/CMakeLists.txt',
    'package/native/core/matcher.cc',
    'package/native/binding/addon.cc',
    'package/scripts/install.cjs',
    'package/scripts/cmake-js-as-node-gyp.cjs',
    'package/examples/knockd-fast.service',
    'package/examples/knockd-fast.conf',
    'package/monitoring/knockd-fast.rules.yml',
  ]) {
    assert.ok(listing.includes(want), `${want} is in the tarball`);
  }
  for (const unwanted of ['package/build/', 'package/node_modules/', 'package/test/', 'package/src/', 'package/native/test/', 'package/native/fuzz/', 'package/bench/']) {
    assert.ok(!listing.some((f) => f.startsWith(unwanted)), `nothing under ${unwanted}`);
  }
  const license = run('tar', ['-xzOf', tarball, 'package/LICENSE'], work);
  assert.match(license, /GNU GENERAL PUBLIC LICENSE\s+Version 2, June 1991/);
  assert.match(license, /END OF TERMS AND CONDITIONS/);
  const manifest = JSON.parse(run('tar', ['-xzOf', tarball, 'package/package.json'], work));
  assert.deepEqual(manifest.man, ['./man/knockd-fast.8']);
  assert.deepEqual(manifest.scripts, { install: 'node scripts/install.cjs' });
  assert.equal(manifest.license, 'GPL-2.0-or-later');
});

test('the man page is --help\'s text in roff: man renders every option and section of it', () => {
  const page = join(work, 'knockd-fast.8');
  writeFileSync(page, run('tar', ['-xzOf', tarball, 'package/man/knockd-fast.8'], work));
  const rendered = run('man', ['-l', page], work, { ...process.env, MANWIDTH: '200', MAN_KEEP_FORMATTING: '' }).replace(/\u2010\n\s*/g, '');
  const flat = rendered.replace(/\s+/g, ' ');
  for (const line of MANUAL.split('\n').slice(1)) {
    if (line.trim() !== '') assert.ok(flat.includes(line.trim().replace(/\s+/g, ' ')), `man shows: ${line.trim()}`);
  }
});

/** package.json and package-lock.json of an app that depends on the tarball alone. The lock pins the
 * tarball and every runtime dependency exactly as this checkout's lock does (resolved URL and integrity),
 * so `npm ci --offline` installs from the tarball and npm's content cache only: no registry request,
 * not even for metadata, which a plain `npm install --offline` would need to resolve version ranges. */
function writeAppManifests(app: string, tarball: string): void {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(packageRoot, 'package-lock.json'), 'utf8'));
  const spec = `file:${relative(app, tarball)}`;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const manifest = { name: 'app', version: '1.0.0', private: true, dependencies: { 'knockd-fast': spec } };
  const packages: Record<string, unknown> = {
    '': { name: 'app', version: '1.0.0', dependencies: { 'knockd-fast': spec } },
    'node_modules/knockd-fast': {
      version: pkg.version,
      resolved: spec,
      integrity,
      hasInstallScript: true,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
      os: pkg.os,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages as Record<string, { dev?: boolean }>)) {
    if (path !== '' && !entry.dev) packages[path] = entry;
  }
  writeFileSync(join(app, 'package.json'), `${JSON.stringify(manifest)}\n`);
  writeFileSync(join(app, 'package-lock.json'), `${JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages }, null, 2)}\n`);
}

const REPLAY_LINES = ['198.51.100.1: openSSH: Stage 1', '198.51.100.1: openSSH: Stage 2', '198.51.100.1: openSSH: Stage 3', '198.51.100.1: openSSH: OPEN SESAME', ''].join('\n');

test('installs offline, with no compiler on the PATH, into an empty directory and runs --version, --test and a replay', () => {
  app = join(work, 'app');
  mkdirSync(app);
  writeAppManifests(app, tarball);
  run('npm', ['ci', '--offline', '--no-audit', '--no-fund'], app, { ...process.env, PATH: noCompilerPath, npm_config_offline: 'true' });
  assert.ok(!existsSync(join(app, 'node_modules', 'knockd-fast', 'build')), 'nothing was compiled');
  const bin = join(app, 'node_modules', '.bin', 'knockd-fast');

  assert.match(run(bin, ['-V'], app), /knockd-fast \S+/);

  conf = join(work, 'knockd.conf');
  writeFileSync(conf, '[openSSH]\n    sequence = 7000,8000,9000\n    seq_timeout = 5\n    tcpflags = syn\n    Open = 22/tcp\n');
  const tested = run(bin, ['-c', conf, '--test'], app);
  assert.match(tested, /openSSH/);
  assert.match(tested, /table inet knockd_fast/);

  capture = join(work, 'knock.pcap');
  const frames = [7000, 8000, 9000].map((dport, i) => ({
    data: knockFrame({ src: '198.51.100.1', dst: '192.0.2.2', dport, proto: 'tcp', flags: TCP.SYN }),
    timeUs: T0 + i * 100_000,
  }));
  writeFileSync(capture, writePcap(frames, 1));
  const replay = spawnSync(bin, ['-c', conf, '--replay', capture, '--local-address', '192.0.2.2', '-v', '--matcher', 'native'], {
    cwd: app,
    encoding: 'utf8',
  });
  assert.equal(replay.status, 0, replay.stderr);
  assert.equal(replay.stderr, '', 'the prebuilt native matcher loaded (no fallback warning)');
  assert.equal(replay.stdout, REPLAY_LINES);
});

test('without a prebuilt addon and without a compiler the install fails with one line saying what to install', () => {
  const bare = join(work, 'bare');
  mkdirSync(join(bare, 'unpacked'), { recursive: true });
  run('tar', ['-xzf', tarball, '-C', join(bare, 'unpacked')], work);
  rmSync(join(bare, 'unpacked', 'package', 'prebuilds'), { recursive: true });
  const bareTarball = join(bare, 'knockd-fast-noprebuild.tgz');
  run('tar', ['-czf', bareTarball, '-C', join(bare, 'unpacked'), 'package'], work);
  const bareApp = join(bare, 'app');
  mkdirSync(bareApp);
  writeAppManifests(bareApp, bareTarball);
  const r = spawnSync('npm', ['ci', '--offline', '--no-audit', '--no-fund'], {
    cwd: bareApp,
    encoding: 'utf8',
    env: { ...process.env, PATH: noCompilerPath, npm_config_offline: 'true' },
    timeout: 600_000,
  });
  assert.notEqual(r.status, 0);
  const output = r.stdout + r.stderr;
  const ours = output.split('\n').filter((l) => l.includes('knockd-fast: no prebuilt addon'));
  assert.equal(ours.length, 1, output);
  assert.match(ours[0], /knockd-fast: no prebuilt addon fits linux-x64 here and cmake, g\+\+, make are missing to build it: apt-get install cmake g\+\+ make, then install knockd-fast again$/);
  assert.doesNotMatch(output, /^\s+at /m, 'no stack trace');
});


test('without a loadable addon: replay falls back to the TS matcher and nftables to nft -i, each with one warning', () => {
  rmSync(join(app, 'node_modules', 'knockd-fast', 'prebuilds'), { recursive: true });
  const bin = join(app, 'node_modules', '.bin', 'knockd-fast');
  const replay = spawnSync(bin, ['-c', conf, '--replay', capture, '--local-address', '192.0.2.2', '-v'], { cwd: app, encoding: 'utf8' });
  assert.equal(replay.status, 0, replay.stderr);
  assert.equal(replay.stdout, REPLAY_LINES);
  assert.match(replay.stderr, /^warning: the native matcher is not available, replaying with the TypeScript matcher: could not load the knockd-fast native addon[^\n]*\n$/);

  if (!root) return; // the nft half needs a network namespace
  const lab = new Lab('pkg');
  try {
    lab.ns('n');
    // the installed package, inside the namespace: start the backend, grant one source, report the log
    const script = `
      const { NftBackend, parseConfigText } = await import(${JSON.stringify(pathToFileURL(join(app, 'node_modules', 'knockd-fast', 'dist', 'index.js')).href)});
      const { doors } = parseConfigText(${JSON.stringify(readFileSync(conf, 'utf8'))});
      const logs = [];
      const backend = new NftBackend({ doors, log: (m) => logs.push(m) });
      await backend.start();
      const installed = await backend.grant({ door: doors[0], source: '198.51.100.1', family: 4 });
      await backend.close();
      process.stdout.write(JSON.stringify({ installed, logs }));
    `;
    const out = JSON.parse(lab.exec('n', process.execPath, ['--input-type=module', '-e', script]).toString()) as { installed: boolean; logs: string[] };
    assert.equal(out.installed, true);
    assert.equal(out.logs.length, 1, out.logs.join('\n'));
    assert.match(out.logs[0], /^nft: could not load the knockd-fast native addon.*; set elements go through nft -i instead \(slower\)$/);
    assert.match(lab.exec('n', 'nft', ['list', 'set', 'inet', 'knockd_fast', 'd_openSSH_v4']), /198\.51\.100\.1 timeout 30s/);
  } finally {
    lab.destroy();
  }
});
