#!/usr/bin/env node
// knock-fast: the knock client. Runs the compiled dist/ when built (the npm package), else the TypeScript
// sources through tsx (a checkout).
import { existsSync } from 'node:fs';

const dist = new URL('../dist/tools/knock.js', import.meta.url);
const { runKnockCli } = existsSync(dist)
  ? await import(dist.href)
  : await (await import('tsx/esm/api')).tsImport('../src/tools/knock.ts', import.meta.url);
process.exitCode = await runKnockCli(process.argv.slice(2), 'knock-fast');
