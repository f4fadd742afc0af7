// Differential against Debian's fwknopd: packets made by the stock fwknop client go into one pcap file,
// which fwknopd (--pcap-file, its own config, access file, run dir and digest file in a temp dir) and
// `knockd-fast --replay` (the same access.conf through Fwknop_Access, both matchers) decide; every packet
// must get the same accept/refuse from both, except where the case says why not.
//
// fwknopd -t (test mode) makes no firewall change, but it also records no digest (incoming_spa.c,
// add_replay_cache: `!opts->test`), so it accepts a replayed packet. A second fwknopd run without -t, inside
// a network namespace of its own (its iptables rules live and die with that namespace), decides the same
// file again: there it refuses the replay, grants the rest as in -t mode, and its rule expiry shows the
// access time it gave.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writePcap } from '../src/capture/pcap.js';
import { main } from '../src/cli.js';
import { LinkType } from '../src/match/matcher-api.js';
import { Lab } from '../src/tools/netns.js';
import { needsRoot } from './helpers/env.js';
import { knockFrame } from './helpers/packets.js';
import { fwknopPayload, keyGen, type FwknopKeys, type FwknopRequest } from './helpers/spa.js';

const skip = needsRoot('fwknopd reads its pcap file with its own run directory; the second run uses a network namespace');

interface Case {
  name: string;
  /** the packet's source address: one per case, so each side's output maps back to its case */
  src: string;
  payload: () => Uint8Array;
  fwknopd: 'accept' | 'refuse';
  knockdFast: 'accept' | 'refuse';
  /** knockd-fast's refusal code (docs/EVENTS.md spa_refused) */
  reason?: string;
  /** why the two differ, when they do */
  why?: string;
  /** fwknopd without -t: when it differs from -t mode (the replay) */
  fwknopdFirewall?: 'refuse';
  /** the address fwknopd's rule opens (default: src) and the access time both give */
  grantFor?: string;
  timeoutS?: number;
}

describe('the same SPA packets through fwknopd and knockd-fast --replay', { skip, timeout: 120_000 }, () => {
  let dir: string;
  let strict: FwknopKeys; // stanza 1: 198.51.100.0/24, REQUIRE_SOURCE_ADDRESS, REQUIRE_USERNAME alice
  let open: FwknopKeys; // stanza 2: 203.0.113.0/24, tcp/22 and udp/53, -s allowed, MAX_FW_TIMEOUT 120
  let other: FwknopKeys;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kf-fwknopd-'));
    [strict, open, other] = [keyGen(), keyGen(), keyGen()];
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('each packet gets the same accept/refuse, or the case says why not', async () => {
    const access = join(dir, 'access.conf');
    writeFileSync(
      access,
      `SOURCE 198.51.100.0/24\nKEY_BASE64 ${strict.keyBase64}\nHMAC_KEY_BASE64 ${strict.hmacKeyBase64}\nOPEN_PORTS tcp/22\n` +
        `REQUIRE_SOURCE_ADDRESS Y\nREQUIRE_USERNAME alice\nFW_ACCESS_TIMEOUT 30\n\n` +
        `SOURCE 203.0.113.0/24\nKEY_BASE64 ${open.keyBase64}\nHMAC_KEY_BASE64 ${open.hmacKeyBase64}\nOPEN_PORTS tcp/22, udp/53\n` +
        `FW_ACCESS_TIMEOUT 40\nMAX_FW_TIMEOUT 120\n`,
      { mode: 0o600 },
    );
    chmodSync(access, 0o600);
    const pkt = (keys: FwknopKeys, r: Partial<FwknopRequest> = {}) => () => fwknopPayload({ keys, ...r });
    const alice = (src: string, r: Partial<FwknopRequest> = {}) => pkt(strict, { allow: src, user: 'alice', ...r });
    let first: Uint8Array | undefined;
    const cases: Case[] = [
      { name: '-a its own address, allowed user', src: '198.51.100.1', payload: alice('198.51.100.1'), fwknopd: 'accept', knockdFast: 'accept', timeoutS: 30 },
      { name: '-s', src: '203.0.113.1', payload: () => (first = fwknopPayload({ keys: open })), fwknopd: 'accept', knockdFast: 'accept', timeoutS: 40 },
      { name: '-f 60 under MAX_FW_TIMEOUT', src: '203.0.113.2', payload: pkt(open, { timeout: 60 }), fwknopd: 'accept', knockdFast: 'accept', timeoutS: 60 },
      { name: '-f 1000 over MAX_FW_TIMEOUT', src: '203.0.113.3', payload: pkt(open, { timeout: 1000 }), fwknopd: 'accept', knockdFast: 'accept', timeoutS: 120 },
      { name: 'a subset of OPEN_PORTS', src: '203.0.113.4', payload: pkt(open, { access: 'udp/53' }), fwknopd: 'accept', knockdFast: 'accept', timeoutS: 40 },
      { name: 'wrong encryption key', src: '203.0.113.5', payload: pkt({ ...open, keyBase64: other.keyBase64 }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'decrypt' },
      { name: 'wrong HMAC key', src: '203.0.113.6', payload: pkt({ ...open, hmacKeyBase64: other.hmacKeyBase64 }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'hmac' },
      { name: 'timestamp 300 s old', src: '203.0.113.7', payload: pkt(open, { offsetMinus: '300s' }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'too_old' },
      { name: 'timestamp 300 s ahead', src: '203.0.113.8', payload: pkt(open, { offsetPlus: '300s' }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'too_new' },
      { name: 'a port not in OPEN_PORTS', src: '203.0.113.9', payload: pkt(open, { access: 'tcp/23' }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'port' },
      { name: 'truncated by 10 bytes', src: '203.0.113.10', payload: () => fwknopPayload({ keys: open }).subarray(0, -10), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'hmac' },
      {
        name: 'one bit flipped in the ciphertext',
        src: '203.0.113.11',
        payload: () => {
          const p = new Uint8Array(fwknopPayload({ keys: open }));
          p[60] ^= 0x02;
          return p;
        },
        fwknopd: 'refuse',
        knockdFast: 'refuse',
        reason: 'hmac',
      },
      { name: 'cut below 140 bytes (no SPA candidate for either)', src: '203.0.113.12', payload: () => fwknopPayload({ keys: open }).subarray(0, 120), fwknopd: 'refuse', knockdFast: 'refuse' },
      { name: '-s while REQUIRE_SOURCE_ADDRESS', src: '198.51.100.2', payload: pkt(strict, { user: 'alice' }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'wildcard_address' },
      {
        name: '-a another address while REQUIRE_SOURCE_ADDRESS',
        src: '198.51.100.3',
        payload: alice('198.51.100.99'),
        fwknopd: 'accept',
        knockdFast: 'refuse',
        reason: 'address_mismatch',
        grantFor: '198.51.100.99',
        timeoutS: 30,
        why: 'fwknopd REQUIRE_SOURCE_ADDRESS refuses only 0.0.0.0 and opens for any address the request names; ours requires the packet source (docs/SPA.md §5)',
      },
      { name: 'a user not in REQUIRE_USERNAME', src: '198.51.100.4', payload: alice('198.51.100.4', { user: 'mallory' }), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'user' },
      { name: 'a source in no stanza', src: '192.0.2.77', payload: pkt(open), fwknopd: 'refuse', knockdFast: 'refuse', reason: 'source' },
      {
        name: 'the -s packet again from another address (a replay)',
        src: '203.0.113.13',
        payload: () => first!,
        fwknopd: 'accept',
        fwknopdFirewall: 'refuse',
        knockdFast: 'refuse',
        reason: 'replay',
        why: 'fwknopd -t does not record digests, so test mode accepts a replay; without -t it refuses it',
      },
    ];

    // the packets just before both run: fwknopd checks the client's timestamp against its own clock
    const base = Date.now() * 1000;
    const frames = cases.map((c, i) => ({ data: knockFrame({ src: c.src, dst: '192.0.2.2', dport: 62201, proto: 'udp', sport: 40000 + i }, { data: c.payload() }), timeUs: base + i }));
    const pcap = join(dir, 'spa.pcap');
    writeFileSync(pcap, writePcap(frames, LinkType.ETHERNET));

    // fwknopd -t: accepted = "[SRC] (stanza #N) --test mode enabled, skipping firewall manipulation."
    const testRun = fwknopd(dir, 'test', pcap, cases.length, ['-t']);
    const fwknopdAccepted = new Set([...testRun.matchAll(/^\[([\d.]+)\] \(stanza #\d+\) --test mode enabled, skipping firewall manipulation\./gm)].map((m) => m[1]));

    // knockd-fast --replay with the same access.conf, on both matchers
    const conf = join(dir, 'knockd.conf');
    writeFileSync(conf, `[options]\n  logfile = /dev/null\n  Fwknop_Access = ${access}\n`);
    for (const matcher of ['native', 'ts']) {
      let out = '';
      let err = '';
      const code = await main(['-c', conf, '--replay', pcap, '--json', '--matcher', matcher, '--local-address', '192.0.2.2'], { stdout: (t) => (out += t), stderr: (t) => (err += t) });
      assert.equal(code, 0, err);
      const records = out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; source: string; reason?: string; timeout?: number });
      for (const c of cases) {
        const mine = records.filter((r) => r.source === c.src);
        const opened = mine.find((r) => r.event === 'spa_open');
        const label = `${matcher}: ${c.name} (${c.src})`;
        assert.equal(fwknopdAccepted.has(c.src) ? 'accept' : 'refuse', c.fwknopd, `fwknopd -t: ${c.name}\n${testRun}`);
        assert.equal(opened ? 'accept' : 'refuse', c.knockdFast, `${label}: ${JSON.stringify(mine)}`);
        if (c.fwknopd !== c.knockdFast) assert.ok(c.why, `${c.name}: the two differ, the case must say why`);
        if (opened) assert.equal(opened.timeout, c.timeoutS, label);
        if (c.reason) assert.equal(mine.find((r) => r.event === 'spa_refused')?.reason, c.reason, label);
        else if (!opened) assert.equal(mine.length, 0, `${label}: no SPA candidate, no record`);
      }
    }

    // fwknopd without -t in a private network namespace: "Added access rule to FWKNOP_INPUT for ADDR -> ..., expires at T"
    const lab = new Lab('fwknopd');
    try {
      lab.ns('d');
      const startS = Math.floor(Date.now() / 1000);
      const fwRun = fwknopd(dir, 'firewall', pcap, cases.length, [], lab);
      const endS = Math.ceil(Date.now() / 1000);
      const rules = new Map([...fwRun.matchAll(/^Added access rule to FWKNOP_INPUT for ([\d.]+) -> \S+ (\S+), expires at (\d+)$/gm)].map((m) => [m[1], Number(m[3])]));
      for (const c of cases) {
        const want = c.fwknopdFirewall ?? c.fwknopd;
        const expires = rules.get(c.grantFor ?? c.src);
        assert.equal(expires !== undefined ? 'accept' : 'refuse', want, `fwknopd: ${c.name}\n${fwRun}`);
        if (expires !== undefined && c.timeoutS !== undefined) {
          assert.ok(expires >= startS + c.timeoutS && expires <= endS + c.timeoutS, `fwknopd: ${c.name}: expires at ${expires}, expected ${c.timeoutS} s after ${startS}..${endS}`);
        }
      }
      assert.match(fwRun, /Replay detected from source IP: 203\.0\.113\.13/);
    } finally {
      lab.destroy();
    }
  });
});

/**
 * Runs fwknopd on the pcap file in the foreground until it has seen `count` packets (-C), with its own
 * fwknopd.conf, run directory and digest file under `dir` (in the lab's namespace "d" when a lab is
 * given); returns what it printed. With --pcap-file, fwknopd turns packet aging off unless the config
 * sets it (config_init.c), so the config sets it.
 */
function fwknopd(dir: string, tag: string, pcap: string, count: number, extra: string[], lab?: Lab): string {
  const run = join(dir, `run-${tag}`);
  mkdirSync(run, { mode: 0o700 });
  const conf = join(run, 'fwknopd.conf');
  writeFileSync(conf, 'ENABLE_SPA_PACKET_AGING Y;\nMAX_SPA_PACKET_AGE 120;\n', { mode: 0o600 });
  const args = ['-c', conf, '-a', join(dir, 'access.conf'), '-r', run, '-d', join(run, 'digest.cache'), '-p', join(run, 'fwknopd.pid')];
  args.push('-f', '-v', '-C', String(count), '--pcap-file', pcap, ...extra);
  const r = lab ? lab.run('d', 'fwknopd', args) : spawnSync('fwknopd', args, { encoding: 'utf8', timeout: 60_000 });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `fwknopd ${args.join(' ')} exited with ${r.status} ${r.signal ?? ''}\n${out}`);
  return out;
}
