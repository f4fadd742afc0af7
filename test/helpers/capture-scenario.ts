// One live-capture scenario, run by test/capture.test.ts inside the test's own network namespace
// (`ip netns exec kf-cap-<pid> node --import tsx test/helpers/capture-scenario.ts <name> [args]`).
// It sends real packets on that namespace's lo only, with bounded counts and deadlines, and prints one
// JSON line with what it observed; the test makes the assertions.
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { parseAddress, type Address } from '../../src/address.js';
import { CaptureEngine, interfaceAddresses, type CaptureOptions, type InterfaceNotice } from '../../src/capture/engine.js';
import { decodeEvents, type KnockEvent } from '../../src/match/events.js';
import { packageRoot } from '../../src/native.js';
import { compileProgram } from '../../src/config/program.js';
import { config, door } from './doors.js';

const DOORS = config([door('T', '7000,8000,9000'), door('U', '7001:udp,8001:udp,9001:udp')]);
const TCP_SEQ = [7000, 8000, 9000];
const UDP_SEQ = [7001, 8001, 9001];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tcpKnock(src: string, dst: string, port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: dst, port, localAddress: src });
    const done = () => {
      s.destroy();
      resolve();
    };
    s.on('error', done);
    s.on('connect', done);
    s.setTimeout(2000, done);
  });
}

function udpKnocks(src: string, dst: string, ports: number[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.on('error', reject);
    sock.bind({ address: src, port: 0 }, async () => {
      for (const p of ports) await new Promise<void>((r) => sock.send(Buffer.of(1), p, dst, () => r()));
      sock.close(() => resolve());
    });
  });
}

interface Session {
  engine: CaptureEngine;
  events: KnockEvent[];
  notices: InterfaceNotice[];
  errors: string[];
  /** resolves once `n` completed events were seen, or after `ms` */
  completions(n: number, ms: number): Promise<KnockEvent[]>;
}

function open(opts: Partial<CaptureOptions> = {}): Session {
  const events: KnockEvent[] = [];
  const notices: InterfaceNotice[] = [];
  const errors: string[] = [];
  const interfaces = opts.interfaces ?? ['lo'];
  const compile = (addresses: Address[]) => compileProgram(DOORS, { localAddresses: addresses, stageEvents: true, eventBudget: 0 }).words;
  const addresses = interfaceAddresses(interfaces, false);
  // the owner compiles for changed addresses and loads the program, as the daemon does
  const engine: CaptureEngine = CaptureEngine.open({
    interfaces,
    threads: 1,
    program: compile(addresses),
    addresses,
    onAddressesChanged: (changed) => engine.load(compile(changed)),
    onEvents: (b) => events.push(...decodeEvents(b)),
    onInterface: (n) => notices.push(n),
    onError: (e) => errors.push(e.message),
    ...opts,
  });
  const completed = () => events.filter((e) => e.kind === 'completed');
  return {
    engine,
    events,
    notices,
    errors,
    async completions(n, ms) {
      const end = Date.now() + ms;
      while (completed().length < n && Date.now() < end) await sleep(20);
      return completed();
    },
  };
}

const brief = (evs: KnockEvent[]) => evs.map((e) => ('source' in e ? `${e.kind} ${e.door} ${e.source}` : e.kind));
const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

const scenarios: Record<string, (arg?: string) => Promise<unknown>> = {
  // Real TCP connects and UDP datagrams complete both doors; the program's ports and nothing else reach userspace.
  async knocks(matcher = 'native') {
    const s = open({ matcher: matcher as 'native' | 'ts', threads: 2 });
    for (const p of TCP_SEQ) await tcpKnock('127.0.0.5', '127.0.0.1', p);
    await udpKnocks('127.0.1.9', '127.0.0.1', UDP_SEQ);
    const done = await s.completions(2, 5000);
    await sleep(150); // one idle tick: ring statistics are read at least every 100 ms
    await s.engine.close();
    return { completed: brief(done), events: brief(s.events), stats: s.engine.stats() };
  },

  // Traffic outside the visibility set never reaches the ring; what is inside is all seen.
  async invisible() {
    const s = open();
    const sent = { visible: 0 };
    for (let i = 0; i < 20; i++) {
      await tcpKnock('127.0.0.7', '127.0.0.1', 1234 + i); // no door uses these ports
      await udpKnocks('127.0.0.7', '127.0.0.1', [7000, 8000]); // TCP steps knocked over UDP
      await tcpKnock('127.0.0.7', '127.0.0.2', 7000); // a destination that is not an interface address
      await udpKnocks('127.0.0.8', '127.0.0.1', [7001]); // visible
      sent.visible++;
    }
    const end = Date.now() + 3000;
    while (s.engine.stats().visible < sent.visible && Date.now() < end) await sleep(20);
    await sleep(150);
    await s.engine.close();
    return { sent, stats: s.engine.stats() };
  },

  // 2 threads, thousands of sources, each completing its own sequence: fanout keeps each source on one shard.
  async fanout(count = '2000') {
    const n = Number(count);
    const s = open({ threads: 2 });
    const sources = Array.from({ length: n }, (_, i) => `127.${10 + Math.floor(i / 50000)}.${Math.floor(i / 250) % 200}.${(i % 250) + 1}`);
    // bounded by count (n sources x 3 datagrams) and by a generous time limit on a loaded machine
    const deadline = Date.now() + 180_000;
    let sent = 0;
    for (let i = 0; i < sources.length && Date.now() < deadline; i += 50) {
      const chunk = sources.slice(i, i + 50);
      await Promise.all(chunk.map((src) => udpKnocks(src, '127.0.0.1', UDP_SEQ)));
      sent += chunk.length;
    }
    const done = await s.completions(n, 10_000);
    await s.engine.close();
    const shards = [0, 0];
    for (const e of done) if (e.kind === 'completed') shards[e.shard]++;
    return { sent, completedSources: new Set(done.map((e) => ('source' in e ? e.source : ''))).size, shards, stats: s.engine.stats() };
  },

  // lo goes down and comes back: the engine says so and keeps capturing.
  async updown() {
    const s = open();
    await udpKnocks('127.0.0.5', '127.0.0.1', UDP_SEQ);
    const first = (await s.completions(1, 3000)).length;
    ip('link', 'set', 'lo', 'down');
    await sleep(1600);
    ip('link', 'set', 'lo', 'up');
    await sleep(1600);
    await udpKnocks('127.0.0.6', '127.0.0.1', UDP_SEQ);
    const done = await s.completions(2, 3000);
    await s.engine.close();
    return { first, completed: brief(done), notices: s.notices.map((n) => n.event), errors: s.errors };
  },

  // An address added to a capture interface is noticed without a restart.
  async address() {
    ip('link', 'add', 'kfv0', 'type', 'veth', 'peer', 'name', 'kfv1');
    ip('link', 'set', 'kfv0', 'up');
    ip('link', 'set', 'kfv1', 'up');
    const s = open({ interfaces: ['lo', 'kfv0'], addressPollMs: 200 });
    ip('addr', 'add', '192.0.2.77/32', 'dev', 'kfv0');
    const end = Date.now() + 5000;
    while (!s.notices.some((n) => n.event === 'addresses') && Date.now() < end) await sleep(20);
    await udpKnocks('127.0.0.9', '192.0.2.77', UDP_SEQ);
    const done = await s.completions(1, 3000);
    await s.engine.close();
    return { notices: s.notices.map((n) => n.event), completed: brief(done) };
  },

  // close() while datagrams flow, then close() again: no crash, counters still readable.
  async closeflow() {
    const s = open({ threads: 2 });
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind({ address: '127.0.0.3', port: 0 }, () => r()));
    let sent = 0;
    const end = Date.now() + 3000;
    const closing = sleep(300).then(() => s.engine.close());
    while (Date.now() < end && sent < 20_000) {
      await new Promise<void>((r) => sock.send(Buffer.of(1), UDP_SEQ[sent % 3], '127.0.0.1', () => r()));
      sent++;
      if (sent % 200 === 0) await sleep(1);
    }
    await closing;
    await s.engine.close();
    sock.close();
    const eventsAfterClose = s.events.length;
    await sleep(200);
    return { sent, frames: s.engine.stats().frames, quietAfterClose: s.events.length === eventsAfterClose };
  },

  // The process ends on its own with an engine still open (the TSFN is unref'd, the env hook closes it).
  async exitopen() {
    const s = open({ threads: 2 });
    await udpKnocks('127.0.0.5', '127.0.0.1', UDP_SEQ);
    await s.completions(1, 3000);
    return { completed: s.events.filter((e) => e.kind === 'completed').length };
  },

  // The addon in a worker thread (plain JS: workers do not inherit tsx): capture and complete a knock,
  // then close; then a worker terminated with its engine still open (the env cleanup hook closes it).
  async worker() {
    const words = compileProgram(DOORS, { localAddresses: [parseAddress('127.0.0.1')!], stageEvents: true, eventBudget: 0 }).words;
    const require = createRequire(import.meta.url);
    const run = (mode: string, source: string) =>
      new Promise<unknown>((resolve, reject) => {
        const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { mode, source, words, gyp: require.resolve('node-gyp-build'), root: packageRoot } });
        w.on('message', (m) => {
          if (mode === 'terminate') void w.terminate().then(() => resolve(m));
          else resolve(m);
        });
        w.on('error', reject);
      });
    const clean = await run('clean', '127.0.0.4');
    const terminated = await run('terminate', '127.0.0.14');
    await udpKnocks('127.0.0.24', '127.0.0.1', UDP_SEQ); // traffic after the terminated worker's engine is gone
    return { clean, terminated };
  },

  // The capture rings mapped for 1, 2 and 8 threads by default, and for 8 threads with blockBytes set:
  // bytes of this process's socket mappings (packet rings are the only ones) while each engine is open.
  async rings() {
    const ringBytes = () =>
      readFileSync('/proc/self/maps', 'utf8')
        .split('\n')
        .filter((l) => / socket:\[\d+\]$/.test(l))
        .reduce((sum, l) => {
          const [lo, hi] = l.split(' ')[0].split('-');
          return sum + Number(BigInt(`0x${hi}`) - BigInt(`0x${lo}`));
        }, 0);
    const mapped: Record<string, number> = {};
    for (const [name, opts] of [
      ['1', { threads: 1 }],
      ['2', { threads: 2 }],
      ['8', { threads: 8 }],
      ['8 blockBytes 32768', { threads: 8, ring: { blockBytes: 32768 } }],
    ] as const) {
      const s = open(opts);
      mapped[name] = ringBytes();
      await s.engine.close();
    }
    return { mapped, afterClose: ringBytes() };
  },

  // A missing interface, or no CAP_NET_RAW (the test runs this one with the capability dropped).
  async refused(iface = 'lo') {
    try {
      open({ interfaces: [iface] });
      return { opened: true };
    } catch (err) {
      const e = err as { code?: string; syscall?: string; message: string; name: string };
      return { name: e.name, code: e.code, syscall: e.syscall, message: e.message };
    }
  },
};

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const dgram = require('node:dgram');
const binding = require(workerData.gyp)(workerData.root);
let completed = 0;
const engine = new binding.Engine({ interfaces: ['lo'], threads: 1 }, workerData.words, (shard, events) => {
  if (events) for (let o = 0; o < events.length; o += 40) if (events[o] === 2) completed++;
});
const sock = dgram.createSocket('udp4');
sock.bind({ address: workerData.source, port: 0 }, () => {
  let i = 0;
  const next = () => (i < 3 ? sock.send(Buffer.of(1), [7001, 8001, 9001][i++], '127.0.0.1', next) : sock.close());
  next();
});
const started = Date.now();
const wait = setInterval(() => {
  if (completed === 0 && Date.now() - started < 3000) return;
  clearInterval(wait);
  if (workerData.mode === 'clean') engine.close();
  parentPort.postMessage({ completed });
}, 20);
`;

const [name, arg] = process.argv.slice(2);
const scenario = scenarios[name];
if (!scenario) throw new Error(`unknown scenario ${name}`);
process.stdout.write(`${JSON.stringify(await scenario(arg))}\n`);
