// Fleet messages and the Fleet directives without a store: signing and every refusal reason, the
// store URL forms and their redaction, and the config checks (key file rules, stray Fleet_* lines).
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseConfigText } from '../src/config/parse.js';
import { defaultDoor } from '../src/config/parse.js';
import { checkGrant, CLOCK_SKEW_MS, decodeMessage, encodeMessage, lineDigest, MAX_MESSAGE_BYTES, MessageRefused, type FleetMessage } from '../src/fleet/message.js';
import { describeStore, parseStoreUrl, redactStoreUrl } from '../src/config/store-url.js';
import { derivedUse } from '../src/fleet/link.js';

const KEY = new Uint8Array(32).fill(7);
const OTHER_KEY = new Uint8Array(32).fill(8);
const NOW = 1_800_000_000_000;
const door = { ...defaultDoor('ssh', 1), open: [{ port: 22, proto: 'tcp' as const }], openTimeout: 30 };
const grant = (over: Partial<FleetMessage> = {}): FleetMessage => ({
  type: 'grant',
  member: 'gw-a',
  door: 'ssh',
  family: 4,
  subject: '203.0.113.10',
  expiryMs: NOW + 30_000,
  nonce: 'n1',
  seq: 1,
  ...over,
});

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MessageRefused, `a MessageRefused, not ${String(err)}`);
    return err.reason;
  }
  assert.fail('not refused');
}

describe('fleet messages', () => {
  test('a signed grant verifies and checks against the door', () => {
    const raw = encodeMessage(KEY, 'f', grant());
    const m = decodeMessage(KEY, 'f', raw);
    assert.deepEqual(m, grant());
    assert.equal(checkGrant(m, [door], NOW).door, door);
    assert.deepEqual(checkGrant(m, [door], NOW).address, Uint8Array.from([203, 0, 113, 10, ...new Array(12).fill(0)]), 'the address as the nft writer takes it');
  });

  test('the signature is the wire format members of other versions compute (a fixed vector)', () => {
    const raw = JSON.parse(encodeMessage(KEY, 'f', grant())) as Record<string, unknown>;
    assert.equal(raw.h, '317b5b274d49c496b73d1e54dffc58c05601914441c6f800ba7c1e10d3866ec3');
  });

  test('every altered field breaks the signature; another key or fleet name too', () => {
    const raw = JSON.parse(encodeMessage(KEY, 'f', grant())) as Record<string, unknown>;
    for (const [k, v] of Object.entries({ m: 'gw-b', d: 'ssh2', f: 6, a: '203.0.113.11', e: NOW + 1, n: 'n2', s: 2, t: 'used' })) {
      assert.equal(refusal(() => decodeMessage(KEY, 'f', JSON.stringify({ ...raw, [k]: v }))), 'bad_signature', k);
    }
    assert.equal(refusal(() => decodeMessage(OTHER_KEY, 'f', JSON.stringify(raw))), 'bad_signature');
    assert.equal(refusal(() => decodeMessage(KEY, 'g', JSON.stringify(raw))), 'bad_signature');
    assert.equal(refusal(() => decodeMessage(KEY, 'f', JSON.stringify({ ...raw, h: 'zz' }))), 'bad_signature');
    const { h: _h, ...unsigned } = raw;
    assert.equal(refusal(() => decodeMessage(KEY, 'f', JSON.stringify(unsigned))), 'unsigned');
  });

  test('bytes that are not a message are refused by reason, never thrown as anything else', () => {
    assert.equal(refusal(() => decodeMessage(KEY, 'f', 'x'.repeat(MAX_MESSAGE_BYTES + 1))), 'oversize');
    for (const bad of ['', 'not json', '[]', 'null', '42', '{"v":2}', '{"v":1,"t":"grant"}', Buffer.from([0xff, 0xfe, 0, 1]).toString('latin1')]) {
      assert.equal(refusal(() => decodeMessage(KEY, 'f', bad)), 'unparsable', JSON.stringify(bad));
    }
  });

  test('unknown door, bad address, expired, longer than the door allows', () => {
    const check = (m: FleetMessage) => refusal(() => checkGrant(decodeMessage(KEY, 'f', encodeMessage(KEY, 'f', m)), [door], NOW));
    assert.equal(check(grant({ door: 'other' })), 'unknown_door');
    assert.equal(check(grant({ subject: '203.0.113.999' })), 'bad_address');
    assert.equal(check(grant({ subject: '2001:db8::1' })), 'bad_address', 'an IPv6 address in an IPv4 grant');
    assert.equal(check(grant({ family: 6, subject: '2001:DB8::1' })), 'bad_address', 'not canonical');
    assert.equal(check(grant({ expiryMs: NOW })), 'expired');
    assert.equal(check(grant({ expiryMs: NOW + 30_000 + CLOCK_SKEW_MS + 1 })), 'too_long');
    assert.equal(checkGrant(grant({ expiryMs: NOW + 30_000 + CLOCK_SKEW_MS }), [door], NOW).door, door, 'within the skew bound');
  });

  test('a one-time line is named by a digest of its steps', () => {
    const a = lineDigest([{ port: 1, proto: 'tcp' }, { port: 2, proto: 'udp' }]);
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.notEqual(a, lineDigest([{ port: 1, proto: 'tcp' }, { port: 2, proto: 'tcp' }]));
  });
});

describe("a derived door's window in the store", () => {
  const step = 30;
  const at = (window: number, into: number) => window * step * 1e6 + into * 1e6;
  test('the full window from the low 32 bits the event carries, and the record lasts until no member accepts it', () => {
    const w = Math.floor(NOW / 1000 / step);
    for (const [window, timeUs, what] of [
      [w, at(w, 10), 'the current window'],
      [w - 1, at(w, 5), 'w−1 (started in the previous window, completed in this one)'],
      [w + 1, at(w, 28), 'w+1 (a client clock ahead)'],
    ] as const) {
      const use = derivedUse(step, { source: '203.0.113.10', family: 4, sequence: [], window: window % 2 ** 32, timeUs });
      assert.ok('window' in use);
      assert.equal(use.window, window, what);
    }
    const use = derivedUse(step, { source: '203.0.113.10', family: 6, sequence: [], window: w, timeUs: at(w, 10) });
    assert.ok('ttlMs' in use && use.family === 6);
    assert.equal(use.ttlMs, (2 * step - 10) * 1000 + CLOCK_SKEW_MS, 'until (window + 2) × Time_Step, plus the skew bound');
    // past 2^32 windows (Time_Step 1 after 2106) the low 32 bits wrap; the nearest window is still found
    const big = 2 ** 32 + 5;
    const wrapped = derivedUse(1, { source: '203.0.113.10', family: 4, sequence: [], window: (big - 1) % 2 ** 32, timeUs: big * 1e6 + 0.5e6 });
    assert.ok('window' in wrapped);
    assert.equal(wrapped.window, big - 1);
  });
});

describe('store addresses', () => {
  test('redis, rediss and unix forms; passwords never shown', () => {
    assert.deepEqual(parseStoreUrl('redis://kf:s3cret@10.0.0.5:6380/2'), { kind: 'tcp', host: '10.0.0.5', port: 6380, tls: false, database: 2, username: 'kf', password: 's3cret' });
    assert.equal(parseStoreUrl('rediss://[2001:db8::5]').tls, true);
    assert.equal(parseStoreUrl('unix:///run/redis/redis.sock?db=3').path, '/run/redis/redis.sock');
    assert.equal(redactStoreUrl('redis://kf:s3cret@10.0.0.5:6380/2'), 'redis://kf:***@10.0.0.5:6380/2');
    assert.equal(redactStoreUrl('redis://:s3cret@h/0'), 'redis://:***@h/0');
    assert.equal(describeStore(parseStoreUrl('redis://kf:s3cret@h')), 'redis://kf@h:6379/0');
    for (const bad of ['http://h', 'redis://', 'unix://host/x', 'redis://h/99', 'nonsense']) assert.throws(() => parseStoreUrl(bad), Error, bad);
  });

  test('redis+sentinel: the sentinels in order (default port 26379), the master, the database', () => {
    const a = parseStoreUrl('redis+sentinel://kf:s3cret@10.0.0.1,10.0.0.2:26380,[2001:db8::7]:26381/edge/2');
    assert.deepEqual(a, {
      kind: 'sentinel',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '10.0.0.2', port: 26380 },
        { host: '2001:db8::7', port: 26381 },
      ],
      master: 'edge',
      tls: false,
      database: 2,
      username: 'kf',
      password: 's3cret',
    });
    assert.equal(describeStore(a), 'redis+sentinel://kf@10.0.0.1:26379,10.0.0.2:26380,[2001:db8::7]:26381/edge/2');
    assert.equal(redactStoreUrl('redis+sentinel://kf:s3cret@10.0.0.1,10.0.0.2/edge'), 'redis+sentinel://kf:***@10.0.0.1,10.0.0.2/edge');
    assert.equal(parseStoreUrl('redis+sentinel://s1/edge').database, 0);
    const error = (url: string) => {
      try {
        parseStoreUrl(url);
      } catch (err) {
        return (err as Error).message;
      }
      return 'no error';
    };
    assert.match(error('redis+sentinel://s1'), /names no master: add \/MASTER/);
    assert.match(error('redis+sentinel:///edge'), /names no sentinel/);
    assert.match(error('redis+sentinel://s1:99999/edge'), /sentinel "s1:99999" is not HOST\[:PORT\]/);
    assert.match(error('redis+sentinel://kf:s3cret@s1/edge/16'), /^"redis\+sentinel:\/\/kf:\*\*\*@s1\/edge\/16": database "16"/);
  });
});

describe('Fleet directives', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-fleet-conf-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, 'fleet.key');
  writeFileSync(keyFile, 'ab'.repeat(16));
  chmodSync(keyFile, 0o600);
  const DOOR = '[ssh]\nSequence = 1,2,3\nOpen = 22\n';

  test('a config without Fleet has no fleet; defaults with one', () => {
    assert.equal(parseConfigText(`[options]\n${DOOR}`).options.fleet, undefined);
    const f = parseConfigText(`[options]\nFleet = redis://u:pw@h:7000/1\nFleet_Key_File = ${keyFile}\n${DOOR}`).options.fleet!;
    assert.equal(f.name, 'knockd-fast');
    assert.equal(f.offline, 'local');
    assert.equal(f.commands, 'local');
    assert.match(f.member, /^[A-Za-z0-9][A-Za-z0-9._-]*$/);
    assert.equal(f.key.length, 16);
  });

  test('errors say what is wrong and how to fix it', () => {
    const err = (text: string) => {
      try {
        parseConfigText(text);
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    assert.match(err(`[options]\nFleet = redis://h\n${DOOR}`), /line 2: Fleet: a fleet needs Fleet_Key_File .*knockd-fast secret > PATH/);
    assert.match(err(`[options]\nFleet_Name = x\n${DOOR}`), /line 2: Fleet_Name: there is no Fleet directive/);
    assert.match(err(`[options]\nFleet = ftp://h\n${DOOR}`), /line 2: Fleet: the scheme "ftp" is not redis, rediss or unix/);
    assert.match(err(`[options]\nFleet = redis://u:topsecret@h/77\n${DOOR}`), /database "77"/);
    assert.doesNotMatch(err(`[options]\nFleet = redis://u:topsecret@h/77\n${DOOR}`), /topsecret/);
    assert.match(err(`[options]\nFleet = redis://h\nFleet_Offline = maybe\n${DOOR}`), /Fleet_Offline: "maybe" is not accepted; expected local or deny/);
    assert.match(err(`[options]\nFleet = redis://h\nFleet_Member = a b\n${DOOR}`), /Fleet_Member: "a b" is not accepted/);
    const open = join(dir, 'open.key');
    writeFileSync(open, 'ab'.repeat(16));
    chmodSync(open, 0o644);
    assert.match(err(`[options]\nFleet = redis://h\nFleet_Key_File = ${open}\n${DOOR}`), /readable by other users .*chmod 600/);
    const short = join(dir, 'short.key');
    writeFileSync(short, 'abcdefgh');
    chmodSync(short, 0o600);
    assert.match(err(`[options]\nFleet = redis://h\nFleet_Key_File = ${short}\n${DOOR}`), /at least 16 bytes/);
    const pw = join(dir, 'pw');
    writeFileSync(pw, 'hunter2\n');
    chmodSync(pw, 0o644);
    assert.match(err(`[options]\nFleet = redis://h\nFleet_Password_File = ${pw}\n${DOOR}`), /password file is readable by other users/);
    chmodSync(pw, 0o600);
    assert.equal(parseConfigText(`[options]\nFleet = redis://h\nFleet_Password_File = ${pw}\nFleet_Key_File = ${keyFile}\n${DOOR}`).options.fleet!.password, 'hunter2');
  });
});

describe('--test prints the fleet settings without secrets', () => {
  test('store, member, key file, policies; no password, no key', async () => {
    const { main } = await import('../src/cli.js');
    const dir = mkdtempSync(join(tmpdir(), 'kf-fleet-cli-'));
    try {
      const keyFile = join(dir, 'fleet.key');
      writeFileSync(keyFile, 'cd'.repeat(32));
      chmodSync(keyFile, 0o600);
      const conf = join(dir, 'k.conf');
      writeFileSync(conf, `[options]\nFleet = redis://kf:topsecret@192.0.2.7:6380/1\nFleet_Name = edge\nFleet_Member = gw-a\nFleet_Key_File = ${keyFile}\nFleet_Offline = deny\n[ssh]\nSequence = 1,2,3\nOpen = 22\n`);
      let out = '';
      const code = await main(['-c', conf, '--test'], { stdout: (t: string) => (out += t), stderr: (t: string) => (out += t) });
      assert.equal(code, 0, out);
      assert.match(out, /fleet edge, member gw-a/);
      assert.match(out, /store +redis:\/\/kf@192\.0\.2\.7:6380\/1 \(password from the URL\)/);
      assert.match(out, /key_file +.*fleet\.key \(256-bit key, mode 600\)/);
      assert.match(out, /offline +deny/);
      assert.doesNotMatch(out, /topsecret/);
      assert.doesNotMatch(out, /cdcdcdcd/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
