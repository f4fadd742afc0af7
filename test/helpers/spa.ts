// The stock fwknop client as a packet source for tests: keys from `fwknop --key-gen`, packets built in its
// test mode (-T, nothing sent) and saved with --save-packet, or sent for real inside a test namespace.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultDoor } from '../../src/config/parse.js';
import type { DoorConfig, GuardedPort, SpaDoor } from '../../src/config/types.js';
import type { CapturedFrame } from '../../src/match/frame.js';
import { LinkType } from '../../src/match/matcher-api.js';
import { decodeEncKey, decodeHmacKey } from '../../src/config/keys.js';
import { knockFrame } from './packets.js';
import { T0 } from './env.js';

export interface FwknopKeys {
  keyBase64: string;
  hmacKeyBase64: string;
}

export function keyGen(): FwknopKeys {
  const out = execFileSync('fwknop', ['--key-gen'], { encoding: 'utf8' });
  const key = /KEY_BASE64: (\S+)/.exec(out.split('\n').find((l) => l.startsWith('KEY_BASE64')) ?? '');
  const hmac = /HMAC_KEY_BASE64: (\S+)/.exec(out);
  if (!key || !hmac) throw new Error(`fwknop --key-gen printed no keys: ${out}`);
  return { keyBase64: key[1], hmacKeyBase64: hmac[1] };
}

/** A key file as `fwknop --key-gen --key-gen-file` writes it, made private. */
export function writeKeyFile(dir: string, keys: FwknopKeys, name = 'spa.keys'): string {
  const path = join(dir, name);
  writeFileSync(path, `KEY_BASE64: ${keys.keyBase64}\nHMAC_KEY_BASE64: ${keys.hmacKeyBase64}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}

export interface FwknopRequest {
  keys: FwknopKeys;
  /** -A, default tcp/22 */
  access?: string;
  /** -a ADDRESS; without it -s (0.0.0.0: "use the packet source") */
  allow?: string;
  /** -f seconds */
  timeout?: number;
  /** -U user name */
  user?: string;
  /** --time-offset-plus / --time-offset-minus, e.g. '300s' */
  offsetPlus?: string;
  offsetMinus?: string;
  /** -D, default 127.0.0.1 (only where the packet would go) */
  destination?: string;
  /** extra arguments (e.g. --server-port) */
  extra?: string[];
}

export function fwknopArgs(r: FwknopRequest, rcFile: string): string[] {
  const args = ['-A', r.access ?? 'tcp/22', ...(r.allow ? ['-a', r.allow] : ['-s']), '-D', r.destination ?? '127.0.0.1'];
  args.push('--key-base64-rijndael', r.keys.keyBase64, '--key-base64-hmac', r.keys.hmacKeyBase64, '--use-hmac');
  args.push('--rc-file', rcFile, '--no-save-args');
  if (r.timeout !== undefined) args.push('-f', String(r.timeout));
  if (r.user) args.push('-U', r.user);
  if (r.offsetPlus) args.push('--time-offset-plus', r.offsetPlus);
  if (r.offsetMinus) args.push('--time-offset-minus', r.offsetMinus);
  return [...args, ...(r.extra ?? [])];
}

/** The UDP payload the stock client builds for this request (test mode: nothing is sent). */
export function fwknopPayload(r: FwknopRequest): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), 'kf-fwknop-'));
  try {
    const rc = join(dir, 'rc');
    writeFileSync(rc, '', { mode: 0o600 });
    const out = join(dir, 'packet');
    execFileSync('fwknop', [...fwknopArgs(r, rc), '-T', '-B', out], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Uint8Array(Buffer.from(readFileSync(out, 'latin1').trim(), 'latin1'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An SPA door with these keys and rules. */
export function spaDoor(name: string, keys: FwknopKeys, rules: Partial<SpaDoor> = {}, open: GuardedPort[] = [{ port: 22, proto: 'tcp' }], more: Partial<DoorConfig> = {}): DoorConfig {
  return {
    ...defaultDoor(name, 1),
    open,
    ...more,
    spa: {
      keyFile: '(test)',
      encKey: decodeEncKey(keys.keyBase64),
      hmacKey: decodeHmacKey(keys.hmacKeyBase64),
      port: 62201,
      maxTimeout: 300,
      requireSourceAddress: false,
      users: [],
      sources: [],
      maxPacketAge: 120,
      ...rules,
    },
  };
}

/** Authentic payloads of the stock client for each key set, built once per process (fwknop takes ~0.1 s). */
export function payloadPool(keySets: FwknopKeys[], perKey = 3): Uint8Array[][] {
  return keySets.map((keys) => Array.from({ length: perKey }, (_, i) => fwknopPayload({ keys, access: i === 0 ? 'tcp/22' : 'tcp/22,udp/53', timeout: i === 2 ? 60 : undefined })));
}

/**
 * SPA frames spliced into a knock trace at random places (timestamps of their neighbours): authentic
 * payloads, forged ones (random bytes, bit flips, truncation), short payloads, other ports, other
 * destinations, IPv6 sources — what the SPA step must treat identically in both matchers.
 */
export function withSpaFrames(trace: CapturedFrame[], pool: Uint8Array[][], rand: () => number, count: number, spaPort = 62201): CapturedFrame[] {
  const out = [...trace];
  const all = pool.flat();
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)];
  for (let i = 0; i < count; i++) {
    let data: Uint8Array = pick(all);
    const roll = rand();
    if (roll < 0.15) data = Uint8Array.from({ length: 140 + Math.floor(rand() * 300) }, () => 43 + Math.floor(rand() * 80));
    else if (roll < 0.3) {
      data = new Uint8Array(data);
      data[Math.floor(rand() * data.length)] ^= 1 << Math.floor(rand() * 8);
    } else if (roll < 0.4) data = data.subarray(0, Math.floor(rand() * data.length));
    const v6 = rand() < 0.25;
    const src = v6 ? `2001:db8::${1 + Math.floor(rand() * 20)}` : `198.51.100.${1 + Math.floor(rand() * 20)}`;
    const dst = rand() < 0.1 ? (v6 ? 'fd00::99' : '192.0.2.99') : v6 ? 'fd00::2' : '192.0.2.2';
    const dport = rand() < 0.1 ? spaPort + 1 : spaPort;
    const at = Math.floor(rand() * (out.length + 1));
    const timeUs = out[Math.min(at, out.length - 1)]?.timeUs ?? T0;
    out.splice(at, 0, { data: knockFrame({ src, dst, dport, proto: 'udp' }, { data }), timeUs, linkType: LinkType.ETHERNET });
  }
  return out;
}
