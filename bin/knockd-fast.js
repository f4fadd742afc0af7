#!/usr/bin/env node
// knockd-fast: the daemon, replay and admin commands. Runs the compiled dist/ when built (the npm package),
// else the TypeScript sources through tsx (a checkout), like bin/knock-fast.js.
import { existsSync } from 'node:fs';

const dist = new URL('../dist/cli.js', import.meta.url);
const { main } = existsSync(dist)
  ? await import(dist.href)
  : await (await import('tsx/esm/api')).tsImport('../src/cli.ts', import.meta.url);
process.exitCode = await main(process.argv.slice(2));
