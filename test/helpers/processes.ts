// Long-running children in tests (daemons, tcpdump, knockd): their stdout as lines, waiting for a line,
// stopping them with a signal.
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** A child's stdout as a growing array of lines. */
export function collectLines(child: ChildProcess, stream: 'stdout' | 'stderr' = 'stdout'): string[] {
  const lines: string[] = [];
  let buf = '';
  child[stream]!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  return lines;
}

/** Resolves once a line matches; throws with the lines seen after `ms`. */
export async function waitFor(lines: string[], pattern: RegExp, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!lines.some((l) => pattern.test(l))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${pattern}; got:\n${lines.join('\n')}`);
    await sleep(25);
  }
}

/** Sends `signal` and waits for the exit (at once when it has exited already). */
export async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}
