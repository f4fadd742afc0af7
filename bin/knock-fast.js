#!/usr/bin/env node
// knock-fast: the knock client. In a checkout (src/ is there) it runs the TypeScript sources through tsx;
// the package has no src/ and runs its compiled dist/. Like bin/knockd-fast.js.
import { existsSync } from 'node:fs';

const src = new URL('../src/tools/knock.ts', import.meta.url);
const { runKnockCli } = existsSync(src)
  ? await (await import('tsx/esm/api')).tsImport(src.href, import.meta.url)
  : await import(new URL('../dist/tools/knock.js', import.meta.url).href);
process.exitCode = await runKnockCli(process.argv.slice(2), 'knock-fast');
