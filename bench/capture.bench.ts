// Live capture figures (root only), measured inside a private network namespace on its lo:
// - latency from sending the last knock datagram to the `completed` event in JS (p50 / p99);
// - packets/s of visible traffic captured with zero ring drops, and capture-process CPU per packet.
// Runs itself again inside `ip netns exec`; the namespace is removed afterwards. Indicative only:
// the sender shares the machine's cores. KNOCKD_BENCH_SHORT=1 shortens it for CI.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { CaptureEngine, interfaceAddresses } from '../src/capture/engine.js';
import { decodeEvents } from '../src/match/events.js';
import { compileProgram } from '../src/config/program.js';
import { Lab } from '../src/tools/netns.js';
import { config, door } from '../test/helpers/doors.js';
import { isRoot } from '../test/helpers/env.js';
import { reportRow } from './report.js';

const short = process.env.KNOCKD_BENCH_SHORT === '1';
const INSIDE = 'KNOCKD_BENCH_NETNS';

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

function send(sock: dgram.Socket, port: number): Promise<void> {
  return new Promise((r) => sock.send(Buffer.of(1), port, '127.0.0.1', () => r()));
}

async function inside(): Promise<void> {
  const cfg = config([door('U', '7001:udp,8001:udp,9001:udp')]);
  const waiting = new Map<string, (t: number) => void>();
  let completed = 0;
  const addresses = interfaceAddresses(['lo'], false);
  const engine = CaptureEngine.open({
    interfaces: ['lo'],
    threads: 2,
    ring: { blockCount: 32 },
    program: compileProgram(cfg, { localAddresses: addresses, eventBudget: 0 }).words,
    addresses,
    onEvents: (batch) => {
      const t = performance.now();
      for (const e of decodeEvents(batch)) {
        if (e.kind !== 'completed') continue;
        completed++;
        waiting.get(e.source)?.(t);
      }
    },
  });

  // latency: one source at a time, idle machine otherwise
  const rounds = short ? 100 : 1000;
  const lat: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const src = `127.1.${1 + Math.floor(i / 250)}.${1 + (i % 250)}`; // a fresh source per round, every octet valid
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: src, port: 0 }, () => resolve());
    });
    await send(sock, 7001);
    await send(sock, 8001);
    const done = new Promise<number>((resolve) => {
      waiting.set(src, resolve);
      setTimeout(() => resolve(NaN), 1000);
    });
    const t0 = performance.now();
    await send(sock, 9001);
    const t1 = await done;
    waiting.delete(src);
    sock.close();
    if (!Number.isNaN(t1)) lat.push(t1 - t0);
  }
  lat.sort((a, b) => a - b);

  // throughput: a separate process floods the visible port 8001 (a middle step: matched, no events)
  const seconds = short ? 2 : 5;
  const before = engine.stats();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const flooder = spawn(process.execPath, [
    '-e',
    `const d=require('dgram');const s=d.createSocket('udp4');const b=Buffer.alloc(1);let n=0;const end=Date.now()+${seconds * 1000};
     s.bind({address:'127.2.0.1',port:0},()=>{const go=()=>{for(let i=0;i<64;i++){s.send(b,8001,'127.0.0.1');n++;}
     if(Date.now()<end)setImmediate(go);else setTimeout(()=>{console.log(n);s.close();},200);};go();});`,
  ]);
  let sentText = '';
  flooder.stdout.on('data', (d) => (sentText += d));
  await new Promise((r) => flooder.on('exit', r));
  await new Promise((r) => setTimeout(r, 300));
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const after = engine.stats();
  await engine.close();
  const frames = after.frames - before.frames;
  const report = {
    latencyMs: { samples: lat.length, of: rounds, p50: +pct(lat, 50).toFixed(3), p99: +pct(lat, 99).toFixed(3), max: +lat[lat.length - 1].toFixed(3) },
    throughput: {
      sent: Number(sentText.trim()),
      captured: frames,
      packetsPerSecond: Math.round(frames / (wall - 0.3)),
      ringDrops: after.ringDrops - before.ringDrops,
      queueDrops: after.queueDrops - before.queueDrops,
      cpuNsPerPacket: Math.round(((cpu.user + cpu.system) * 1000) / Math.max(1, frames)),
    },
    completed,
  };
  console.log(JSON.stringify(report, null, 2));
  reportRow({ bench: 'capture', case: `last knock -> completed event in JS, ${lat.length} knocks`, values: { 'p50 ms': report.latencyMs.p50, 'p99 ms': report.latencyMs.p99 } });
  reportRow({
    bench: 'capture',
    case: 'visible UDP flood on lo, 2 threads',
    values: { pps: report.throughput.packetsPerSecond, 'ring drops': report.throughput.ringDrops, 'CPU ns/pkt': report.throughput.cpuNsPerPacket },
  });
}

if (process.env[INSIDE]) {
  await inside();
} else if (!isRoot) {
  console.log('capture bench: skipped (needs root for a network namespace and AF_PACKET)');
} else {
  const lab = new Lab('capbench');
  try {
    lab.ns('b');
    const r = lab.run('b', process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
      env: { ...process.env, [INSIDE]: '1' },
      stdio: 'inherit',
      timeout: 300_000,
    });
    if (r.status !== 0) {
      console.error(`capture bench failed: ${r.error?.message ?? `exit ${r.status ?? r.signal}`}`);
      process.exitCode = 1;
    }
  } finally {
    lab.destroy();
  }
}
