#!/usr/bin/env node
// knockd-fast: the daemon, replay and admin commands. In a checkout (src/ is there) it runs the TypeScript
// sources through tsx, so an edit takes effect at once and no stale build can run; the package has no
// src/ and runs its compiled dist/. Like bin/knock-fast.js.
import { existsSync } from 'node:fs';

const src = new URL('../src/cli.ts', import.meta.url);
const { main } = existsSync(src)
  ? await (await import('tsx/esm/api')).tsImport(src.href, import.meta.url)
  : await import(new URL('../dist/cli.js', import.meta.url).href);
process.exitCode = await main(process.argv.slice(2));
