// Derived doors end to end (issue 7, docs/MATCHER.md §10): `knockd-fast secret`, the client's options and
// derivation, the used-table's FIFO bound on both matchers, and a live run in private namespaces where
// the daemon opens a derived door for our client and refuses replays of its sequence.
// The per-rule matcher cases (windows, skew, replays, scans, Bind_Source) are in test/matcher-suite/derived.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { main, type CliIo } from '../src/cli.js';
import { readSecretFile } from '../src/config/keys.js';
import { windowOf } from '../src/match/derive.js';
import { decodeEvents } from '../src/match/events.js';
import { batchFromFrames } from '../src/match/frame.js';
import { cliPath, GatewayLab, NET } from '../src/tools/demo.js';
import { Lab } from '../src/tools/netns.js';
import { derivedPorts, parseKnockArgs, sourceAddressFor } from '../src/tools/knock.js';
import { LinkType, type Matcher } from '../src/match/matcher-api.js';
import { TsMatcher } from '../src/match/matcher.js';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { derivedDoor, range, sequenceFor, TEST_KEY } from './helpers/derived.js';
import { compile, config } from './helpers/doors.js';
import { knockFrame } from './helpers/packets.js';
import { isRoot as root, T0 } from './helpers/env.js';


describe('knockd-fast secret', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(join(tmpdir(), 'kf-secret-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const secret = async (): Promise<string> => {
    let out = '';
    const io = { stdout: (s: string) => void (out += s), stderr: (s: string) => assert.fail(`stderr: ${s}`) } as unknown as CliIo;
    assert.equal(await main(['secret'], io), 0);
    return out;
  };

  test('prints 32 random bytes as hex, which a Secret_File accepts', async () => {
    const [a, b] = [await secret(), await secret()];
    assert.match(a, /^[0-9a-f]{64}\n$/);
    assert.notEqual(a, b);
    const path = join(dir, 'ssh.key');
    writeFileSync(path, a, { mode: 0o600 });
    assert.deepEqual(readSecretFile(path), new Uint8Array(Buffer.from(a.trim(), 'hex')));
  });
});

describe('knock client: derived knocks', () => {
  test('options: defaults are the server defaults; --port-range is required; no ports; no stray options', () => {
    const c = parseKnockArgs(['--secret-file', 'k', '--port-range', '40000-40009,41000', 'gw']);
    assert.equal(c.kind, 'derived');
    assert.deepEqual(c.kind === 'derived' && c.options.derived, {
      secretFile: 'k',
      ranges: [
        [40000, 40009],
        [41000, 41000],
      ],
      length: 4,
      protocols: ['tcp'],
      timeStep: 30,
      bindSource: true,
    });
    const all = parseKnockArgs(['--secret-file=k', '--port-range=1-9', '--length', '6', '--protocols', 'udp,tcp', '--time-step', '60', '--no-bind-source', 'gw']);
    assert.deepEqual(all.kind === 'derived' && all.options.derived, {
      secretFile: 'k',
      ranges: [[1, 9]],
      length: 6,
      protocols: ['tcp', 'udp'],
      timeStep: 60,
      bindSource: false,
    });
    const error = (argv: string[]) => {
      const r = parseKnockArgs(argv);
      return r.kind === 'error' ? r.message : `not an error: ${r.kind}`;
    };
    assert.match(error(['--secret-file', 'k', 'gw']), /needs the door's --port-range/);
    assert.match(error(['--secret-file', 'k', '--port-range', '1-9', 'gw', '7000']), /give only the host/);
    assert.match(error(['--port-range', '1-9', 'gw', '7000']), /need --secret-file/);
    assert.match(error(['--secret-file', 'k', '--port-range', '9-1', 'gw']), /'9-1' is not a port or a LOW-HIGH range/);
    assert.match(error(['--secret-file', 'k', '--port-range', '1-70000', 'gw']), /is not a port/);
    assert.match(error(['--length', '33', 'gw', '1']), /--length must be a whole number from 1 to 32/);
    assert.match(error(['--protocols', 'icmp', 'gw', '1']), /--protocols takes tcp, udp or tcp,udp/);
    assert.match(error(['--secret-file', 'k', '--port-range', '1-9', '-u', 'gw']), /-u does not apply/);
  });

  test('derivedPorts is the sequence the server expects for that source and the current window', () => {
    const d = derivedDoor('D', { timeStep: 30, ports: range(40000, 49999) });
    const now = 1_700_000_012_345_678;
    const options = { length: 4, protocols: ['tcp' as const], timeStep: 30, bindSource: true, ranges: [[40000, 49999]] as [number, number][] };
    const ports = derivedPorts(options, TEST_KEY, '198.51.100.7', now);
    assert.deepEqual(
      ports.map((p) => `${p.proto}/${p.port}`),
      sequenceFor(d, '198.51.100.7', windowOf(now, 30)).map((s) => `${s.proto}/${s.port}`),
    );
    assert.notDeepEqual(derivedPorts(options, TEST_KEY, '198.51.100.8', now), ports, 'another source, another sequence');
  });

  test('the source is the one the route to the host uses', async () => {
    assert.equal(await sourceAddressFor('127.0.0.1', 4), '127.0.0.1');
    assert.equal(await sourceAddressFor('127.0.0.1', 4, '192.0.2.9'), '192.0.2.9', 'a given --source wins');
  });
});

describe('used-table: 65,536 entries, the oldest replaced first', () => {
  // Bind_Source = no and one step: every source knocks the same port; each opening uses an entry.
  const door = derivedDoor('N', { bindSource: false, sequenceLength: 1 });
  const [step] = sequenceFor(door, '198.51.100.1', windowOf(T0, 10)); // T0 starts a 10 s window
  const source = (i: number) => `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`;
  const knock = (i: number, t: number) => ({
    data: knockFrame({ src: source(i), dst: '192.0.2.2', dport: step.port, proto: step.proto }),
    timeUs: t,
    linkType: LinkType.ETHERNET,
  });
  const opens = (m: Matcher, frames: ReturnType<typeof knock>[]) => decodeEvents(m.feed(batchFromFrames(frames))).filter((e) => e.kind === 'completed').length;

  for (const [name, make] of [
    ['TsMatcher', () => new TsMatcher()],
    ['NativeMatcher', () => new NativeMatcher()],
  ] as const) {
    test(`${name}: after 65,537 openings in one window the first source may open again, the last may not`, () => {
      const m: Matcher = make();
      m.load(compile(config([door])).words);
      const n = 65_537;
      const frames = Array.from({ length: n }, (_, i) => knock(i, T0 + i));
      assert.equal(opens(m, frames), n, 'every source opens once');
      assert.equal(opens(m, [knock(0, T0 + n)]), 1, "source 0's entry, the oldest, was replaced (and its new one replaces source 1's)");
      assert.equal(opens(m, [knock(n - 1, T0 + n + 1), knock(2, T0 + n + 2)]), 0, 'the youngest and the now oldest entries are still used');
      assert.equal(opens(m, [knock(1, T0 + n + 3)]), 1, "source 1's entry was replaced");
    });
  }
});

describe('live: a derived door in private namespaces', { skip: root ? false : 'needs root (network namespaces, AF_PACKET, nftables)', timeout: 120_000 }, () => {
  let lab: GatewayLab;
  let key: string;
  before(async () => {
    lab = new GatewayLab('derived');
    await lab.startEchoServers(22);
    key = join(lab.dir, 'ssh.key');
    writeFileSync(key, `${randomBytes(32).toString('hex')}\n`);
    chmodSync(key, 0o600);
  });
  after(() => lab?.destroy());

  test('our client opens the door; replays from another source or after use do not', async () => {
    const conf = lab.writeConfig(
      'derived.conf',
      `[options]
    LogFile = ${lab.dir}/derived.log
    StateFile = ${lab.dir}/derived.state
    NftTable = kf_derived
[ssh-otp]
    Secret_File = ${key}
    Port_Range  = 40000-49999
    Open        = 22/tcp
[marker]
    Sequence = 7000
    Command  = true
`,
    );
    const daemon = await lab.startDaemon(conf);
    const opened = (who: string, door = 'ssh-otp') => daemon.lines.filter((l) => l.includes(`${who}: ${door}: OPEN SESAME`)).length;
    /** Knocks the marker door from `who` and waits for it: every earlier knock of that source was matched. */
    const settle = async (who: string) => {
      lab.knock(['--source', who, NET.gateway, '7000']);
      await daemon.waitFor(new RegExp(`${who.replace(/\./g, '\\.')}: marker: OPEN SESAME`));
    };
    try {
      assert.equal(lab.probe(NET.gateway), 'closed', 'closed before knocking');
      // start well inside a 30 s window, so the test computes the same window the client used
      const intoWindow = Date.now() % 30_000;
      if (intoWindow > 20_000) await sleep(30_000 - intoWindow + 100);
      lab.knock(['--secret-file', key, '--port-range', '40000-49999', NET.gateway]);
      await daemon.waitFor(new RegExp(`${NET.client.replace(/\./g, '\\.')}: ssh-otp: OPEN SESAME`));
      assert.equal(lab.probe(NET.gateway), 'open', 'open for the knocking client');
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'closed', 'not for another address');

      // the sequence a sniffer saw, sent again by the client (used) and from client2 (bound to the source)
      const keyBytes = readSecretFile(key);
      const d = { length: 4, protocols: ['tcp' as const], timeStep: 30, bindSource: true, ranges: [[40000, 49999]] as [number, number][] };
      const seen = derivedPorts(d, keyBytes, NET.client, Date.now() * 1000).map((p) => String(p.port));
      lab.knock(['--source', NET.client2, NET.gateway, ...seen]);
      lab.knock(['--source', NET.client, NET.gateway, ...seen]);
      await settle(NET.client2);
      await settle(NET.client);
      assert.equal(opened(NET.client2), 0, 'a replay from another source does not open');
      assert.equal(opened(NET.client), 1, 'a replay after use does not open again');
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'closed');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_derived']);
    }
  });
});

describe('live: a derived door knocked on the same machine (127.0.0.1)', { skip: root ? false : 'needs root (network namespace, AF_PACKET)', timeout: 60_000 }, () => {
  // The kernel answers each SYN to 127.0.0.1 with a RST to the client's ephemeral port, on the capture
  // the daemon reads; with ephemeral ports inside the README's Port_Range (Linux picks them from
  // 32768-60999) those answers must not count as wrong knocks.
  let lab: Lab;
  let dir: string;
  before(() => {
    lab = new Lab('derivedlo');
    lab.ns('host');
    lab.exec('host', 'sysctl', ['-qw', 'net.ipv4.ip_local_port_range=40000 49999']);
    dir = mkdtempSync(join(tmpdir(), 'kf-derivedlo-'));
  });
  after(() => {
    lab?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("our client's knocks open the door although every RST reply lands in the range", async () => {
    const key = join(dir, 'ssh.key');
    writeFileSync(key, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const conf = join(dir, 'knockd.conf');
    writeFileSync(conf, `[ssh-otp]\n    Secret_File = ${key}\n    Port_Range  = 40000-49999\n    Start_Command = true\n`);
    const daemon = lab.spawn('host', process.execPath, [cliPath(), '-c', conf, '-i', 'lo', '-v', '--threads', '1', '-g', join(dir, 'log'), '--state-file', join(dir, 'state')]);
    const lines: string[] = [];
    let partial = '';
    daemon.stdout!.on('data', (d: Buffer) => {
      const parts = (partial + d.toString()).split('\n');
      partial = parts.pop()!;
      lines.push(...parts);
    });
    const waitFor = async (pattern: RegExp): Promise<void> => {
      for (const end = Date.now() + 15_000; !lines.some((l) => pattern.test(l)); await sleep(25)) {
        if (Date.now() > end || daemon.exitCode !== null) assert.fail(`no line matching ${pattern}; got:\n${lines.join('\n')}`);
      }
    };
    try {
      await waitFor(/starting up, listening on/);
      lab.exec('host', process.execPath, [cliPath(), 'knock', '--secret-file', key, '--port-range', '40000-49999', '127.0.0.1']);
      await waitFor(/127\.0\.0\.1: ssh-otp: OPEN SESAME/);
      const events = lines.map((l) => /^127\.0\.0\.1: ssh-otp: (Stage \d|OPEN SESAME|.*timeout.*)$/.exec(l)?.[1]).filter(Boolean);
      assert.deepEqual(events, ['Stage 1', 'Stage 2', 'Stage 3', 'Stage 4', 'OPEN SESAME'], 'one attempt, no wrong knock in between');
    } finally {
      daemon.kill('SIGTERM');
    }
  });
});

describe('derived door records are checked before use (both matchers)', () => {
  const base = compile(config([derivedDoor('D', { ports: [...range(40000, 40009), 40020] })])).words;
  const door = 16 + 2 * 5; // after the header and the two local addresses
  const keyWords = 8;
  const nRanges = door + 11 + keyWords;
  const variants: [string, (w: Uint32Array) => Uint32Array][] = [
    ['time step 0', (w) => ((w[door + 7] = 0), w)],
    ['no protocol', (w) => ((w[door + 8] = 0), w)],
    ['bindSource 2', (w) => ((w[door + 9] = 2), w)],
    ['an 8-byte key', (w) => ((w[door + 10] = 8), w)],
    ['a 65-byte key', (w) => ((w[door + 10] = 65), w)],
    ['more ranges than words', (w) => ((w[nRanges] = 3), w)],
    ['no range', (w) => ((w[nRanges] = 0), w)],
    ['overlapping ranges', (w) => ((w[nRanges + 2] = (40009 | (40020 << 16)) >>> 0), w)],
    ['a backwards range', (w) => ((w[nRanges + 1] = (40009 | (40000 << 16)) >>> 0), w)],
    [
      'a record cut short',
      (w) => {
        const cut = w.slice(0, w.length - 2);
        cut[9] = cut.length;
        cut[door] -= 2;
        return cut;
      },
    ],
  ];
  for (const [name, make] of [
    ['TsMatcher', () => new TsMatcher()],
    ['NativeMatcher', () => new NativeMatcher()],
  ] as const) {
    test(`${name}: loads the compiled record and refuses each broken one`, () => {
      make().load(base);
      assert.equal(base[nRanges], 2, 'the layout this test edits');
      for (const [what, edit] of variants) assert.throws(() => make().load(edit(base.slice())), TypeError, what);
    });
  }
});
