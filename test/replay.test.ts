import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../src/config/parse.js';
import type { KnockdConfig } from '../src/config/types.js';
import { batchFromFrames, type CapturedFrame } from '../src/match/frame.js';
import type { Matcher } from '../src/match/matcher-api.js';
import { TsMatcher } from '../src/match/matcher.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { chooseLocalAddresses, replayBatches, ReplayError } from '../src/tools/replay.js';
import { CONFIGS, config, door } from './helpers/doors.js';
import { knockFrame, TCP } from './helpers/packets.js';
import { T0 } from './helpers/env.js';
import { nativeSkip } from './helpers/native.js';

const A = '198.51.100.1';
const B = '198.51.100.2';
const S = '2001:db8::5';

/** `SRC proto/port FLAGS @t` rows as frames to the conformance setup's addresses. */
type Pkt = [src: string, port: number, t: number, proto?: 'tcp' | 'udp', flags?: number, dst?: string];
function frames(pkts: Pkt[]): CapturedFrame[] {
  return pkts.map(([src, dport, t, proto = 'tcp', flags = TCP.SYN, dst]) => ({
    data: knockFrame({ src, dst: dst ?? (src.includes(':') ? 'fd00::2' : '192.0.2.2'), dport, proto, flags }),
    timeUs: T0 + Math.round(t * 1e6),
    linkType: 1,
  }));
}

const matchers: [string, () => Matcher][] = [['ts', () => new TsMatcher()]];
// the native matcher joins when the addon is built (npm test builds it; a bare checkout may not have it)
const nativeSkipped = nativeSkip();
if (nativeSkipped) test('replay with the native matcher', { skip: nativeSkipped }, () => {});
else matchers.push(['native', () => new NativeMatcher()]);

function run(cfg: KnockdConfig, pkts: Pkt[], make: () => Matcher, opts: { verbose?: boolean; json?: boolean } = { verbose: true }): string[] {
  let out = '';
  replayBatches([batchFromFrames(frames(pkts))], {
    config: cfg,
    matcher: make(),
    local: chooseLocalAddresses([], ['192.0.2.2', 'fd00::2']),
    write: (t) => (out += t),
    ...opts,
  });
  return out.split('\n').filter((l) => l !== '');
}

const s = (who: string, n: number) => `${who}: A: Stage ${n}`;
const open = (who: string, d = 'A') => `${who}: ${d}: OPEN SESAME`;

// Rows of the reference configs where the reference has no defect at play (no D1, whole seconds agree).
const GOLDEN: { row: number; cfg: () => KnockdConfig; pkts: Pkt[]; lines: string[] }[] = [
  { row: 1, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 8000, 1], [A, 9000, 2]], lines: [s(A, 1), s(A, 2), s(A, 3), open(A)] },
  { row: 2, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 8000, 2], [A, 9000, 4.999]], lines: [s(A, 1), s(A, 2), s(A, 3), open(A)] },
  { row: 3, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 8000, 2], [A, 9000, 5]], lines: [s(A, 1), s(A, 2), `${A}: A: sequence timeout (stage 2)`] },
  {
    row: 5,
    cfg: CONFIGS.C1,
    pkts: [[A, 7000, 0], [A, 7000, 6], [A, 8000, 6.1], [A, 9000, 6.2]],
    lines: [s(A, 1), `${A}: A: sequence timeout (stage 1)`, s(A, 1), s(A, 2), s(A, 3), open(A)],
  },
  { row: 7, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 9000, 1], [A, 8000, 2], [A, 9000, 3]], lines: [s(A, 1)] },
  { row: 8, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 1234, 0.5], [A, 8000, 1], [A, 9000, 2]], lines: [s(A, 1), s(A, 2), s(A, 3), open(A)] },
  { row: 10, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 7000, 0.1], [A, 8000, 0.2], [A, 9000, 0.3]], lines: [s(A, 1)] },
  {
    row: 11,
    cfg: CONFIGS.C1,
    pkts: [[A, 7000, 0], [A, 7000, 0.1], [A, 7000, 0.2], [A, 8000, 0.3], [A, 9000, 0.4]],
    lines: [s(A, 1), s(A, 1), s(A, 2), s(A, 3), open(A)],
  },
  { row: 12, cfg: CONFIGS.C1, pkts: [[A, 7000, 0], [A, 8000, 0.1], [A, 8000, 0.2], [A, 9000, 0.3]], lines: [s(A, 1), s(A, 2)] },
  { row: 13, cfg: CONFIGS.C8, pkts: [[A, 7000, 0], [A, 7000, 0.1], [A, 8000, 0.2]], lines: [s(A, 1), s(A, 2), s(A, 3), open(A)] },
  {
    row: 19,
    cfg: CONFIGS.C1,
    pkts: [[A, 7000, 0], [B, 7000, 0.1], [B, 9000, 0.2], [A, 8000, 0.3], [A, 9000, 0.4]],
    lines: [s(A, 1), s(B, 1), s(A, 2), s(A, 3), open(A)],
  },
  {
    row: 21,
    cfg: CONFIGS.C3,
    pkts: [[A, 7000, 0], [A, 8000, 0.1, 'tcp', TCP.ACK], [A, 8000, 0.2], [A, 9000, 0.3]],
    lines: [s(A, 1), s(A, 2), s(A, 3), open(A)],
  },
  {
    row: 26,
    cfg: CONFIGS.C7b,
    pkts: [[A, 7000, 0, 'udp'], [A, 8000, 0.1, 'udp'], [A, 8000, 0.2], [A, 9000, 0.3, 'udp']],
    lines: [s(A, 1)],
  },
  {
    row: 29,
    cfg: CONFIGS.C5r,
    pkts: [[A, 7000, 0], [A, 8000, 0.1], [A, 9000, 0.2]],
    lines: [`${A}: B: Stage 1`, s(A, 1), `${A}: B: Stage 2`, s(A, 2), open(A), `${A}: B: Stage 3`, open(A, 'B')],
  },
  {
    row: 31,
    cfg: CONFIGS.C6,
    pkts: [[A, 7000, 0], [A, 5000, 0.1], [A, 5000, 0.2], [A, 6000, 0.3]],
    lines: [s(A, 1), `${A}: B: Stage 1`, `${A}: B: Stage 2`, open(A, 'B')],
  },
  { row: 32, cfg: CONFIGS.C10, pkts: [[S, 7000, 0], [S, 8000, 0.1], [S, 9000, 0.2]], lines: [s(S, 1), s(S, 2), s(S, 3), open(S)] },
  {
    row: 35,
    cfg: CONFIGS.C11,
    pkts: [[A, 7000, 0], [A, 7000, 0.1, 'tcp', TCP.SYN, '192.0.2.77'], [A, 8000, 0.2, 'tcp', TCP.SYN, '192.0.2.77'], [A, 9000, 0.3, 'tcp', TCP.SYN, '192.0.2.77']],
    lines: [s(A, 1), s(A, 2), s(A, 3), open(A)],
  },
];

for (const [kind, make] of matchers) {
  for (const g of GOLDEN) {
    test(`replay -v (${kind}): reference row ${g.row}`, () => {
      assert.deepEqual(run(g.cfg(), g.pkts, make), g.lines);
    });
  }

  test(`replay (${kind}): a pending timeout is reported after the last frame (deviation 3, row 6)`, () => {
    assert.deepEqual(run(CONFIGS.C1(), [[A, 7000, 0]], make), [s(A, 1), `${A}: A: sequence timeout (stage 1)`]);
  });

  test(`replay (${kind}): timeouts come out as the daemon's 100 ms ticks give them, one due door at a time`, () => {
    // doors sharing a first step, 2 s and 3 s timeouts: the daemon reports both sources' 2 s timeouts
    // before either 3 s one (a later packet or the last tick must not expire a source's doors together)
    const cfg = config([door('A', '7000,8000', { seqTimeout: 2 }), door('B', '7000,8000,9000', { seqTimeout: 3 })]);
    const timeout = (src: string, d: string) => `${src}: ${d}: sequence timeout (stage 1)`;
    const expected = [timeout(A, 'A'), timeout(B, 'A'), timeout(A, 'B'), timeout(B, 'B')];
    const knocks: Pkt[] = [[A, 7000, 0], [B, 7000, 0.5]];
    assert.deepEqual(run(cfg, knocks, make, {}), expected, 'after the last frame');
    assert.deepEqual(run(cfg, [...knocks, [A, 1234, 10]], make, {}), expected, 'before a later packet');
  });

  test(`replay (${kind}): concurrent knockers are independent (deviation 1, row 15)`, () => {
    const pkts: Pkt[] = [[A, 7000, 0], [B, 7000, 0.1], [A, 8000, 0.2], [B, 8000, 0.3], [A, 9000, 0.4], [B, 9000, 0.5]];
    assert.deepEqual(run(CONFIGS.C1(), pkts, make), [s(A, 1), s(B, 1), s(A, 2), s(B, 2), s(A, 3), open(A), s(B, 3), open(B)]);
  });

  test(`replay (${kind}): without -v only the outcome lines`, () => {
    const pkts: Pkt[] = [[A, 7000, 0], [A, 8000, 1], [A, 9000, 2], [B, 7000, 3]];
    assert.deepEqual(run(CONFIGS.C1(), pkts, make, {}), [open(A), `${B}: A: sequence timeout (stage 1)`]);
  });

  test(`replay --json (${kind}): the daemon's records (docs/EVENTS.md) with capture time, wrong-port failures included`, () => {
    const lines = run(CONFIGS.C1(), [[A, 7000, 0.25], [A, 9000, 1], [B, 7000, 2]], make, { json: true });
    assert.deepEqual(
      lines.map((l) => JSON.parse(l)),
      [
        { v: 1, time: '2023-11-14T22:13:20.250000Z', event: 'stage', message: `${A}: A: Stage 1`, source: A, door: 'A', stage: 1 },
        { v: 1, time: '2023-11-14T22:13:21.000000Z', event: 'wrong_port', message: `${A}: A: wrong knock after stage 1, attempt dropped`, source: A, door: 'A', stage: 1 },
        { v: 1, time: '2023-11-14T22:13:22.000000Z', event: 'stage', message: `${B}: A: Stage 1`, source: B, door: 'A', stage: 1 },
        // the tick after the last frame fires B's timeout: the record carries its deadline (stage 1 + seq_timeout)
        { v: 1, time: '2023-11-14T22:13:27.000000Z', event: 'timeout', message: `${B}: A: sequence timeout (stage 1)`, source: B, door: 'A', stage: 1 },
      ],
    );
  });

  test(`replay (${kind}): evictions under MaxTracked become one summary line per second`, () => {
    const cfg = config([door('A', '7000,8000,9000', { seqTimeout: 5 })], { maxTracked: 2 });
    const pkts: Pkt[] = [[A, 7000, 0], [B, 7000, 0.1], ['198.51.100.3', 7000, 0.2], ['198.51.100.4', 7000, 0.3], ['198.51.100.3', 8000, 2]];
    assert.deepEqual(run(cfg, pkts, make, {}), [
      '2 knock attempts evicted (MaxTracked reached)',
      '198.51.100.3: A: sequence timeout (stage 2)',
      '198.51.100.4: A: sequence timeout (stage 1)',
    ]);
  });
}

test('local addresses: --local-address values, else every destination is local', () => {
  const none = chooseLocalAddresses(['kf-no-such-if0'], []);
  assert.equal(none.allLocal, true);
  const given = chooseLocalAddresses(['kf-no-such-if0'], ['192.0.2.2', 'fd00::2']);
  assert.equal(given.allLocal, false);
  assert.deepEqual(given.addresses.map((a) => a.family), [4, 6]);
  assert.throws(() => chooseLocalAddresses([], ['192.0.2.300']), ReplayError);
  assert.throws(() => chooseLocalAddresses([], ['nope']), /--local-address "nope" is not an IPv4 or IPv6 address/);
});

test('local addresses: an interface of this host contributes its addresses; -4 drops IPv6', () => {
  const lo = chooseLocalAddresses(['lo'], []);
  assert.equal(lo.allLocal, false);
  assert.ok(lo.addresses.some((a) => a.family === 4 && a.bytes[0] === 127));
  assert.ok(chooseLocalAddresses(['lo'], [], true).addresses.every((a) => a.family === 4));
});

test('ALL_LOCAL replay sees knocks to any destination; with addresses, others are invisible', () => {
  const pkts: Pkt[] = [[A, 7000, 0, 'tcp', TCP.SYN, '203.0.113.9'], [A, 8000, 1, 'tcp', TCP.SYN, '203.0.113.9'], [A, 9000, 2, 'tcp', TCP.SYN, '203.0.113.9']];
  const go = (local: string[]) => {
    let out = '';
    replayBatches([batchFromFrames(frames(pkts))], {
      config: CONFIGS.C1(),
      matcher: new TsMatcher(),
      local: chooseLocalAddresses([], local),
      write: (t) => (out += t),
    });
    return out;
  };
  assert.equal(go([]), `${A}: A: OPEN SESAME\n`);
  assert.equal(go(['192.0.2.2']), '');
});

// Issue 18: --replay runs the daemon's door logic. The issue's own example: one door, three one-time
// sequences; .2 opens, .3's reuse of the used sequence is ignored, .4 and .5 open with the next ones, then
// the file is exhausted and the door disabled. The operator's file is never rewritten by a replay.
test('replay: one-time sequences rotate as in the daemon, on a private copy of the file (issue 18)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-replay-ot-'));
  try {
    const seqs = join(dir, 'seqs.txt');
    const original = '1111,2222,3333\n4444,5555,6666\n7777,8888,9999\n';
    writeFileSync(seqs, original);
    const conf = join(dir, 'knockd.conf');
    writeFileSync(conf, `[opencloseSMTP]\n  one_time_sequences = ${seqs}\n  seq_timeout = 5\n  tcpflags = syn\n  start_command = echo open %IP%\n`);
    const knocks = (src: string, ports: number[], t0: number): Pkt[] => ports.map((p, i) => [src, p, t0 + i * 0.1, 'tcp', TCP.SYN, '127.0.0.1']);
    const pkts: Pkt[] = [
      ...knocks('127.0.0.2', [1111, 2222, 3333], 0),
      ...knocks('127.0.0.3', [1111, 2222, 3333], 1),
      ...knocks('127.0.0.4', [4444, 5555, 6666], 2),
      ...knocks('127.0.0.5', [7777, 8888, 9999], 3),
    ];
    for (const [kind, make] of matchers) {
      let out = '';
      const summary = replayBatches([batchFromFrames(frames(pkts))], {
        config: parseConfig(conf),
        matcher: make(),
        local: chooseLocalAddresses([], ['127.0.0.1']),
        write: (t) => (out += t),
      });
      assert.deepEqual(
        out.split('\n').filter((l) => l !== ''),
        [
          '127.0.0.2: opencloseSMTP: OPEN SESAME',
          '127.0.0.4: opencloseSMTP: OPEN SESAME',
          '127.0.0.5: opencloseSMTP: OPEN SESAME',
          'no more sequences left in the one time sequences file for door opencloseSMTP --> disabling the door',
        ],
        kind,
      );
      assert.deepEqual(
        summary.actions.map((a) => `${a.action} ${a.source}`),
        ['start_command 127.0.0.2', 'start_command 127.0.0.4', 'start_command 127.0.0.5'],
      );
      assert.equal(readFileSync(seqs, 'utf8'), original, 'the operator\'s file is untouched');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('replay: Cooldown and Dedupe decide with the capture\'s clock, as in the daemon', () => {
  const cfg = config([door('A', '7000,8000', { cooldown: 10 }), door('B', '7100,8100', { dedupe: true, cmdTimeout: 30 })]);
  const pkts: Pkt[] = [
    [A, 7000, 0], [A, 8000, 0.1], // opens A
    [A, 7000, 5], [A, 8000, 5.1], // during A's cooldown (4.9 s left -> 5s)
    [A, 7000, 10.2], [A, 8000, 10.3], // after it: opens again
    [B, 7100, 0], [B, 8100, 0.1], // opens B
    [B, 7100, 20], [B, 8100, 20.1], // still open: extended
  ].sort((x, y) => (x[2] as number) - (y[2] as number)) as Pkt[];
  for (const [kind, make] of matchers) {
    assert.deepEqual(
      run(cfg, pkts, make, {}),
      [
        open(A),
        open(B, 'B'),
        `${A}: A: sequence completed during cooldown (5s left), not opening`,
        open(A),
        open(B, 'B'),
        `${B}: B: already open, window extended`,
      ],
      kind,
    );
  }
});
