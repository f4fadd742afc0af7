#!/usr/bin/env node
// npm's install hook. The package ships a prebuilt addon; where none fits (another architecture or libc)
// it is built from source, which needs cmake, a C++ compiler and make or ninja. Without them the install
// fails with one line saying what to install, not with a build tool's stack trace.
'use strict';
const { spawnSync } = require('node:child_process');
const { accessSync, constants } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

const onPath = (name) =>
  (process.env.PATH || '').split(path.delimiter).some((dir) => {
    try {
      accessSync(path.join(dir || '.', name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

if (loads()) process.exit(0);
const missing = [
  ['cmake', ['cmake']],
  ['g++', ['c++', 'g++', 'clang++']],
  ['make', ['make', 'ninja']],
]
  .filter(([, tools]) => !tools.some(onPath))
  .map(([pkg]) => pkg);
if (missing.length > 0) {
  process.stderr.write(
    `knockd-fast: no prebuilt addon fits linux-${process.arch} here and ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing to build it: ` +
      `apt-get install ${missing.join(' ')}, then install knockd-fast again\n`,
  );
  process.exit(1);
}
const build = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile'], { cwd: root, stdio: 'inherit' });
process.exit(build.status ?? 1);
