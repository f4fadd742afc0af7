// Live capture end to end (root only): each scenario of test/helpers/capture-scenario.ts runs in a
// child process inside this test's own network namespace, sends real packets on that namespace's lo,
// and reports what the engine saw. The namespace is deleted afterwards, also on failure.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Lab } from '../src/tools/netns.js';
import { isRoot as root } from './helpers/env.js';

const skip = root ? false : 'needs root: it creates a network namespace and opens AF_PACKET sockets';
const scenarioFile = fileURLToPath(new URL('./helpers/capture-scenario.ts', import.meta.url));
let lab: Lab | undefined;

before(() => {
  if (!root) return;
  lab = new Lab('cap');
  lab.ns('c');
});

after(() => lab?.destroy());

/** Runs a scenario in the namespace (optionally under a command prefix) and returns its JSON report. */
function scenario<T = Record<string, unknown>>(args: string[], prefix: string[] = []): T {
  const [cmd, ...rest] = [...prefix, process.execPath, '--import', 'tsx', scenarioFile, ...args];
  const r = lab!.run('c', cmd, rest, { timeout: 240_000 });
  assert.equal(r.status, 0, `scenario ${args.join(' ')} exited with ${r.status ?? r.signal}:\n${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

interface Stats {
  frames: number;
  visible: number;
  invisible: number;
  completed: number;
  failedWrongPort: number;
  ringPackets: number;
  ringDrops: number;
  batchesDropped: number;
  framesForwarded: number;
}

const KNOCK_EVENTS = [
  'stage 0 127.0.0.5',
  'stage 0 127.0.0.5',
  'stage 0 127.0.0.5',
  'completed 0 127.0.0.5',
  'stage 1 127.0.1.9',
  'stage 1 127.0.1.9',
  'stage 1 127.0.1.9',
  'completed 1 127.0.1.9',
];
/** Events in source order: each source's events keep their order (one shard owns a source), while two
 * sources on two capture threads may reach JS in either order. */
const bySource = (events: string[]): string[] =>
  [...events].sort((a, b) => a.slice(a.lastIndexOf(' ')).localeCompare(b.slice(b.lastIndexOf(' '))));

test('TCP connects and UDP datagrams to 127.0.0.1 complete their doors (native matcher, 2 threads)', { skip }, () => {
  const r = scenario<{ events: string[]; stats: Stats }>(['knocks', 'native']);
  assert.deepEqual(bySource(r.events), KNOCK_EVENTS);
  assert.equal(r.stats.ringDrops, 0);
  assert.equal(r.stats.frames, 6, 'only the six knock packets reach userspace (RST and ICMP replies are filtered)');
});

test('--matcher ts: the engine forwards the filtered frames and TsMatcher produces the same events', { skip }, () => {
  const r = scenario<{ events: string[]; stats: Stats }>(['knocks', 'ts']);
  assert.deepEqual(bySource(r.events), KNOCK_EVENTS);
  assert.equal(r.stats.framesForwarded, 6);
});

test('frames outside the visibility set never reach userspace; frames inside all do', { skip }, () => {
  const r = scenario<{ sent: { visible: number }; stats: Stats }>(['invisible']);
  assert.equal(r.stats.invisible, 0, 'the kernel filter dropped every invisible frame');
  assert.equal(r.stats.visible, r.sent.visible);
  assert.equal(r.stats.ringPackets, r.stats.frames, 'the ring admitted exactly what the matcher counted');
  assert.equal(r.stats.ringDrops, 0);
});

test('fanout affinity: 2 threads, 2000 sources, every source completes its sequence', { skip }, () => {
  const r = scenario<{ sent: number; completedSources: number; shards: number[]; stats: Stats }>(['fanout', '2000']);
  assert.equal(r.sent, 2000, 'the sender got every sequence out within its time limit');
  assert.equal(r.completedSources, 2000);
  assert.equal(r.stats.completed, 2000);
  assert.equal(r.stats.failedWrongPort, 0, 'no sequence was split between shards');
  assert.ok(r.shards[0] > 0 && r.shards[1] > 0, `both shards own sources (${r.shards})`);
  assert.equal(r.stats.ringDrops + r.stats.batchesDropped, 0);
});

test('interface down and up while running: noticed, never fatal, capture resumes', { skip }, () => {
  const r = scenario<{ first: number; completed: string[]; notices: string[]; errors: string[] }>(['updown']);
  assert.equal(r.first, 1);
  assert.deepEqual(r.completed, ['completed 1 127.0.0.5', 'completed 1 127.0.0.6']);
  assert.deepEqual(r.notices, ['down', 'up']);
  assert.deepEqual(r.errors, []);
});

test('an address added to a capture interface is noticed without a restart and can be knocked', { skip }, () => {
  const r = scenario<{ notices: string[]; completed: string[] }>(['address']);
  assert.deepEqual(r.notices, ['addresses']);
  assert.deepEqual(r.completed, ['completed 1 127.0.0.9']);
});

test('close() while traffic flows, then close() again: no crash, no callback after close', { skip }, () => {
  const r = scenario<{ sent: number; frames: number; quietAfterClose: boolean }>(['closeflow']);
  assert.ok(r.frames > 0 && r.frames <= r.sent, `captured ${r.frames} of ${r.sent} before closing`);
  assert.equal(r.quietAfterClose, true);
});

test('the process exits by itself with an engine still open', { skip }, () => {
  const r = scenario<{ completed: number }>(['exitopen']);
  assert.equal(r.completed, 1);
});

test('the addon captures in a worker thread, and a worker terminated with an open engine is cleaned up', { skip }, () => {
  const r = scenario<{ clean: { completed: number }; terminated: { completed: number } }>(['worker']);
  assert.deepEqual(r, { clean: { completed: 1 }, terminated: { completed: 1 } });
});

test('a missing interface is a clear KnockdError', { skip }, () => {
  const r = scenario<{ name: string; code: string; message: string }>(['refused', 'kf-nope0']);
  assert.equal(r.name, 'KnockdError');
  assert.equal(r.code, 'ENODEV');
  assert.match(r.message, /interface "kf-nope0" does not exist/);
  assert.match(r.message, /ip link/);
});

test('without CAP_NET_RAW the error says so and how to grant it', { skip }, () => {
  const r = scenario<{ name: string; code: string; syscall: string; message: string }>(['refused', 'lo'], ['setpriv', '--bounding-set', '-net_raw']);
  assert.equal(r.name, 'KnockdError');
  assert.equal(r.code, 'EPERM');
  assert.equal(r.syscall, 'socket');
  assert.match(r.message, /CAP_NET_RAW/);
  assert.match(r.message, /setcap cap_net_raw,cap_net_admin\+ep/);
  assert.match(r.message, /AmbientCapabilities/);
});

test('the default rings share 16 MiB per interface over the threads; an explicit blockBytes is per thread', { skip }, () => {
  const r = scenario<{ mapped: Record<string, number>; afterClose: number }>(['rings']);
  const MiB = 1 << 20;
  assert.deepEqual(r.mapped, { '1': 16 * MiB, '2': 16 * MiB, '8': 16 * MiB, '8 blockBytes 32768': 8 * 16 * MiB });
  assert.equal(r.afterClose, 0, 'close unmaps every ring');
});
