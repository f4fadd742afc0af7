// SPA decoding and door rules, with packets built by the stock fwknop client (test mode, nothing sent).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { parseAddress } from '../src/address.js';
import { parseConfigText, ConfigError } from '../src/config/parse.js';
import type { DoorConfig } from '../src/config/types.js';
import { decideSpa, type SpaDecision } from '../src/spa/decide.js';
import { decodeSpa, spaAuthentic, SPA_MIN_PAYLOAD } from '../src/spa/packet.js';
import { ReplayCache, ReplayCacheError } from '../src/spa/replay-cache.js';
import { fwknopPayload, keyGen, spaDoor, writeKeyFile, type FwknopKeys, type FwknopRequest } from './helpers/spa.js';

const SRC = '198.51.100.7';
const nowS = () => Date.now() / 1000;

function decide(doors: DoorConfig[], payload: Uint8Array, opts: { source?: string; cache?: ReplayCache; nowS?: number } = {}): SpaDecision {
  const source = opts.source ?? SRC;
  const a = parseAddress(source)!;
  return decideSpa(doors, { payload, family: a.family, sourceBytes: a.bytes, source, nowS: opts.nowS ?? nowS() }, opts.cache ?? new ReplayCache());
}

function refusedWith(d: SpaDecision, code: string): void {
  assert.equal(d.ok, false, `expected a refusal (${code}), got a grant`);
  if (!d.ok) {
    assert.equal(d.code, code, d.reason);
    assert.ok(d.reason.length > 10, 'a reason in words');
  }
}

describe('SPA packets of the stock fwknop client', () => {
  let keys: FwknopKeys;
  let other: FwknopKeys;
  let dir: string;
  const pkt = (r: Partial<FwknopRequest> = {}) => fwknopPayload({ keys, ...r });

  before(() => {
    keys = keyGen();
    other = keyGen();
    dir = mkdtempSync(join(tmpdir(), 'kf-spa-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('-a ADDRESS: decoded fields, granted for that address with the door Open_Timeout', () => {
    const payload = pkt({ allow: '203.0.113.9', user: 'alice' });
    assert.ok(spaAuthentic(payload, spaDoor('s', keys).spa!.hmacKey));
    const m = decodeSpa(payload, spaDoor('s', keys).spa!);
    assert.ok(m.ok);
    if (!m.ok) return;
    assert.equal(m.message.user, 'alice');
    assert.equal(m.message.allowAddress, '203.0.113.9');
    assert.deepEqual(m.message.access, [{ proto: 'tcp', port: 22 }]);
    assert.ok(Math.abs(m.message.timestamp - nowS()) < 5);
    const d = decide([spaDoor('s', keys, {}, undefined, { openTimeout: 45 })], payload);
    assert.ok(d.ok);
    if (d.ok) {
      assert.equal(d.address, '203.0.113.9');
      assert.equal(d.timeoutS, 45);
    }
  });

  test('-s (0.0.0.0): granted for the packet source, IPv4 or IPv6', () => {
    const d = decide([spaDoor('s', keys)], pkt());
    assert.ok(d.ok && d.address === SRC && d.family === 4);
    const v6 = decide([spaDoor('s', keys)], pkt(), { source: '2001:db8::7' });
    assert.ok(v6.ok && v6.address === '2001:db8::7' && v6.family === 6);
  });

  test('a requested timeout (-f) is honoured up to Max_Open_Timeout', () => {
    const door = spaDoor('s', keys, { maxTimeout: 120 });
    const under = decide([door], pkt({ timeout: 60 }));
    assert.ok(under.ok && under.timeoutS === 60);
    const over = decide([door], pkt({ timeout: 1000 }));
    assert.ok(over.ok && over.timeoutS === 120);
  });

  test('refusals, each with its reason', () => {
    const door = spaDoor('s', keys);
    refusedWith(decide([spaDoor('s', { ...keys, keyBase64: other.keyBase64 })], pkt()), 'decrypt');
    refusedWith(decide([spaDoor('s', { ...keys, hmacKeyBase64: other.hmacKeyBase64 })], pkt()), 'hmac');
    refusedWith(decide([door], pkt({ offsetMinus: '300s' })), 'too_old');
    refusedWith(decide([door], pkt({ offsetPlus: '300s' })), 'too_new');
    refusedWith(decide([door], pkt({ access: 'tcp/23' })), 'port');
    refusedWith(decide([door], pkt({ access: 'tcp/22,udp/53' })), 'port');
    const strict = spaDoor('s', keys, { requireSourceAddress: true });
    refusedWith(decide([strict], pkt({ allow: '203.0.113.9' })), 'address_mismatch');
    refusedWith(decide([strict], pkt()), 'wildcard_address');
    assert.ok(decide([strict], pkt({ allow: SRC })).ok, 'the packet source itself is fine');
    refusedWith(decide([spaDoor('s', keys, { users: ['bob'] })], pkt({ user: 'alice' })), 'user');
    assert.ok(decide([spaDoor('s', keys, { users: ['bob', 'alice'] })], pkt({ user: 'alice' })).ok);
    const only = spaDoor('s', keys, { sources: [{ family: 4, bytes: parseAddress('10.0.0.0')!.bytes, prefix: 8 }] });
    refusedWith(decide([only], pkt()), 'source');
    assert.ok(decide([only], pkt(), { source: '10.1.2.3' }).ok);
  });

  test('truncated and bit-flipped packets are refused, never thrown on', () => {
    const payload = pkt();
    const door = spaDoor('s', keys);
    refusedWith(decide([door], payload.subarray(0, SPA_MIN_PAYLOAD - 1)), 'length');
    refusedWith(decide([door], payload.subarray(0, payload.length - 1)), 'hmac');
    for (let i = 0; i < payload.length; i += 7) {
      const flipped = new Uint8Array(payload);
      flipped[i] ^= 0x04;
      const d = decide([door], flipped);
      assert.equal(d.ok, false, `bit flip at byte ${i}`);
    }
  });

  test('replay: the same packet twice is refused, also after a restart (the cache file)', () => {
    const file = join(dir, 'replay.json');
    const door = spaDoor('s', keys);
    const payload = pkt();
    const cache = new ReplayCache(file);
    assert.ok(decide([door], payload, { cache }).ok);
    refusedWith(decide([door], payload, { cache }), 'replay');
    cache.flush();
    refusedWith(decide([door], payload, { cache: new ReplayCache(file) }), 'replay');
    assert.ok(decide([door], pkt(), { cache: new ReplayCache(file) }).ok, 'a fresh packet still opens');
    writeFileSync(file, '{"version":1,"digests":{"x":"soon"}}');
    assert.throws(() => new ReplayCache(file), (e: Error) => e instanceof ReplayCacheError && /move it aside/.test(e.message));
  });

  test('doors sharing the port are tried in order, as fwknopd tries stanzas', () => {
    const a = spaDoor('a', other);
    const b = spaDoor('b', keys, { users: ['bob'] });
    const c = spaDoor('c', keys);
    const d = decide([a, b, c], pkt({ user: 'alice' }));
    assert.ok(d.ok && d.door.name === 'c');
    const refused = decide([a, b], pkt({ user: 'alice' }));
    refusedWith(refused, 'user');
    assert.equal(refused.door.name, 'b', 'the refusal of the door whose keys opened the packet');
  });

  test('fast-check: any bytes and any mutation of a real packet decode to a refusal, never an exception', () => {
    const door = spaDoor('s', keys);
    const payload = pkt();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 1600 }), (bytes) => {
        const d = decodeSpa(bytes, door.spa!);
        assert.equal(d.ok, false);
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(payload.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (edits) => {
        const b = new Uint8Array(payload);
        for (const [i, x] of edits) b[i] ^= x;
        assert.equal(decodeSpa(b, door.spa!).ok, false);
      }),
      { numRuns: 300 },
    );
  });

  test('fast-check: the field parser refuses every malformed plaintext with a reason', async () => {
    const { parseFields } = await import('../src/spa/packet.js');
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (text) => {
        const d = parseFields(text);
        if (!d.ok) assert.ok(d.reason.length > 0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('SPA door directives', () => {
  let dir: string;
  let keyFile: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kf-spa-conf-'));
    keyFile = writeKeyFile(dir, keyGen());
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('an SPA door with every directive', () => {
    const c = parseConfigText(
      `[ssh]\n  SPA_Key_File = ${keyFile}\n  SPA_Port = 62202\n  HMAC_Digest = sha256\n  Open = 22/tcp\n  Open_Timeout = 20\n` +
        `  Max_Open_Timeout = 600\n  Require_Source_Address = yes\n  Require_Username = alice,bob\n  Source = 10.0.0.0/8, 192.168.1.0/255.255.255.0, 2001:db8::/32\n  Max_Packet_Age = 60\n`,
    );
    const spa = c.doors[0].spa!;
    assert.equal(spa.port, 62202);
    assert.equal(spa.maxTimeout, 600);
    assert.equal(spa.requireSourceAddress, true);
    assert.deepEqual(spa.users, ['alice', 'bob']);
    assert.deepEqual(spa.sources.map((s) => s.prefix), [8, 24, 32]);
    assert.equal(spa.maxPacketAge, 60);
    assert.equal(c.doors[0].openTimeout, 20);
  });

  test('defaults: port 62201, cap 300 s, packet age 120 s, any user and source', () => {
    const spa = parseConfigText(`[ssh]\nSPA_Key_File = ${keyFile}\nOpen = 22\n`).doors[0].spa!;
    assert.deepEqual([spa.port, spa.maxTimeout, spa.maxPacketAge, spa.requireSourceAddress, spa.users, spa.sources], [62201, 300, 120, false, [], []]);
  });

  test('errors name the line, the directive and the fix', () => {
    const bad = (text: string, pattern: RegExp) => assert.throws(() => parseConfigText(text), (e: Error) => e instanceof ConfigError && pattern.test(e.message));
    bad(`[ssh]\nSPA_Key_File = ${dir}/missing\n`, /line 2: SPA_Key_File: .*no such file/);
    const open = join(dir, 'open.keys');
    writeFileSync(open, 'KEY_BASE64: AAAA\nHMAC_KEY_BASE64: AAAA\n');
    chmodSync(open, 0o644);
    bad(`[ssh]\nSPA_Key_File = ${open}\n`, /chmod 600/);
    const half = join(dir, 'half.keys');
    writeFileSync(half, 'KEY_BASE64: AAAA\n', { mode: 0o600 });
    bad(`[ssh]\nSPA_Key_File = ${half}\n`, /no HMAC_KEY_BASE64 line/);
    bad(`[ssh]\nSPA_Key_File = ${keyFile}\nHMAC_Digest = sha512\n`, /line 3: HMAC_Digest: "sha512" is not supported/);
    bad(`[ssh]\nSequence = 1,2\nSPA_Port = 1\n`, /line 3: SPA_Port: door ssh is not an SPA door/);
    bad(`[ssh]\nSPA_Key_File = ${keyFile}\nSequence = 1,2\n`, /SPA_Key_File: the door also has Sequence/);
    bad(`[ssh]\nSPA_Key_File = ${keyFile}\nSource = 10.0.0.0/33\n`, /Source: "10.0.0.0\/33" has a bad prefix length/);
  });
});

describe('migrating from fwknopd: access.conf', () => {
  let dir: string;
  let keys: FwknopKeys;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kf-spa-access-'));
    keys = keyGen();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string, mode = 0o600): string => {
    const p = join(dir, name);
    writeFileSync(p, text, { mode });
    chmodSync(p, mode);
    return p;
  };
  const knockdConf = (access: string) => `[options]\n  Fwknop_Access = ${access}\n[knock]\n  Sequence = 7000,8000\n`;

  test('several stanzas become SPA doors fwknop-1..N after the config own doors', () => {
    const access = write(
      'access.conf',
      `# fwknopd access.conf\nSOURCE                 ANY\nKEY_BASE64             ${keys.keyBase64}\nHMAC_KEY_BASE64        ${keys.hmacKeyBase64}\nOPEN_PORTS             tcp/22\n` +
        `FW_ACCESS_TIMEOUT      45\nMAX_FW_TIMEOUT         600\nREQUIRE_SOURCE_ADDRESS Y\nREQUIRE_USERNAME       alice\n\n` +
        `SOURCE                 10.0.0.0/8, 192.168.1.0/24\nKEY                    a passphrase\nHMAC_KEY               another passphrase\nHMAC_DIGEST_TYPE       sha256\nENCRYPTION_MODE        CBC\nOPEN_PORTS             tcp/80, udp/53\n`,
    );
    const c = parseConfigText(knockdConf(access));
    assert.deepEqual(c.doors.map((d) => d.name), ['knock', 'fwknop-1', 'fwknop-2']);
    const [one, two] = c.doors.slice(1);
    assert.deepEqual(one.open, [{ proto: 'tcp', port: 22 }]);
    assert.equal(one.openTimeout, 45);
    assert.deepEqual([one.spa!.maxTimeout, one.spa!.requireSourceAddress, one.spa!.users, one.spa!.sources, one.spa!.port], [600, true, ['alice'], [], 62201]);
    assert.deepEqual(Buffer.from(two.spa!.encKey).toString(), 'a passphrase');
    assert.deepEqual(two.open, [{ proto: 'tcp', port: 80 }, { proto: 'udp', port: 53 }]);
    assert.deepEqual(two.spa!.sources.map((s) => s.prefix), [8, 24]);
    assert.equal(two.spa!.requireSourceAddress, false);
    // the migrated door decides the stock client's packets
    const d = decide([one], fwknopPayload({ keys, user: 'alice', allow: SRC }));
    assert.ok(d.ok && d.door.name === 'fwknop-1');
  });

  test('unsupported directives are an error naming the directive and its line', () => {
    const head = `SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\nOPEN_PORTS tcp/22\n`;
    for (const [directive, why] of [
      ['GPG_REMOTE_ID 1234ABCD', /GnuPG/],
      ['GPG_DECRYPT_ID ABCD', /GnuPG/],
      ['FORCE_NAT 192.168.10.2 22', /NAT/],
      ['CMD_CYCLE_OPEN iptables -A ...', /command cycles/],
      ['ENABLE_CMD_EXEC Y', /command messages/],
      ['RESTRICT_PORTS tcp/23', /RESTRICT_PORTS/],
      ['ACCESS_EXPIRE 01/01/2030', /expiry/],
      ['%include /etc/fwknop/more.conf', /included/],
    ] as const) {
      const access = write('bad.conf', `${head}${directive}\n`);
      const name = directive.split(' ')[0];
      assert.throws(
        () => parseConfigText(knockdConf(access)),
        (e: Error) => e instanceof ConfigError && e.message.includes(`config: line 2: Fwknop_Access: ${access}: line 5: ${name}:`) && why.test(e.message),
        directive,
      );
    }
  });

  test('other mistakes: no HMAC key, no OPEN_PORTS, a directive before SOURCE, other digests, an open file mode', () => {
    const bad = (text: string, pattern: RegExp, mode = 0o600) => {
      const access = write('bad.conf', text, mode);
      assert.throws(() => parseConfigText(knockdConf(access)), (e: Error) => e instanceof ConfigError && pattern.test(e.message), pattern.source);
    };
    bad(`SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nOPEN_PORTS tcp/22\n`, /line 1: stanza #1 has no HMAC_KEY_BASE64/);
    bad(`SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\n`, /stanza #1 has no OPEN_PORTS/);
    bad(`KEY_BASE64 ${keys.keyBase64}\nSOURCE ANY\n`, /line 1: KEY_BASE64 comes before the first SOURCE line/);
    bad(`SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\nHMAC_DIGEST_TYPE sha512\nOPEN_PORTS tcp/22\n`, /line 4: HMAC_DIGEST_TYPE sha512 is not supported/);
    bad(`SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\nOPEN_PORTS tcp/22\n`, /chmod 600/, 0o644);
    bad(`SOURCE 10.0.0.0/40\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\nOPEN_PORTS tcp/22\n`, /line 1: SOURCE: .*bad prefix length/);
    bad(`SOURCE ANY\nKEY_BASE64 ${keys.keyBase64}\nHMAC_KEY_BASE64 ${keys.hmacKeyBase64}\nOPEN_PORTS icmp/0\n`, /line 4: OPEN_PORTS item "icmp\/0"/);
  });
});
