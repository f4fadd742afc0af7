#!/usr/bin/env node
// prebuildify only knows node-gyp (prebuild/prebuildify#49); it honours PREBUILD_NODE_GYP, so this shim
// turns its `node-gyp rebuild --arch=X --release|--debug ...` call into `cmake-js rebuild`.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const args = process.argv.slice(2);
const out = ['rebuild'];
for (const a of args) {
  if (a.startsWith('--arch=')) out.push('--arch', a.slice('--arch='.length));
  else if (a === '--debug') out.push('--debug');
}
const cli = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [cli, ...out], { stdio: 'inherit', cwd: path.resolve(__dirname, '..') });
process.exit(r.status ?? 1);
