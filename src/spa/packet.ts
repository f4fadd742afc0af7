// fwknop's SPA packet (FKO protocol 3, Rijndael + HMAC), decoded from the UDP payload: the format is
// described in docs/SPA.md §2. Every way a payload can be wrong is a Refusal with a reason; nothing here
// throws on packet content.
import { createDecipheriv, createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { SpaKeys } from '../config/keys.js';

/** fwknopd ignores shorter payloads (MIN_SPA_DATA_SIZE) and longer ones (MAX_SPA_PACKET_LEN). */
export const SPA_MIN_PAYLOAD = 140;
export const SPA_MAX_PAYLOAD = 1500;
/** The HMAC-SHA256 digest as fwknop appends it: base64 of 32 bytes with the '=' stripped. */
export const SPA_HMAC_B64_LEN = 43;
/** "Salted__" in base64: fwknop strips it from the wire and adds it back before the HMAC and decryption. */
export const SALTED_B64 = 'U2FsdGVkX1';
export const SPA_DEFAULT_PORT = 62201;

export const MessageType = {
  COMMAND: 0,
  ACCESS: 1,
  NAT_ACCESS: 2,
  CLIENT_TIMEOUT_ACCESS: 3,
  CLIENT_TIMEOUT_NAT_ACCESS: 4,
  LOCAL_NAT_ACCESS: 5,
  CLIENT_TIMEOUT_LOCAL_NAT_ACCESS: 6,
} as const;

export interface AccessRequest {
  proto: 'tcp' | 'udp';
  port: number;
}

export interface SpaMessage {
  random: string;
  user: string;
  /** the client's clock, seconds since the epoch */
  timestamp: number;
  version: string;
  messageType: number;
  /** the address the client asks access for; 0.0.0.0 = "the packet's source" (fwknop -s) */
  allowAddress: string;
  access: AccessRequest[];
  /** seconds asked for (fwknop -f); 0 = none asked */
  clientTimeout: number;
}

/** Why a packet was refused: a code for machines and a sentence for people. */
export interface Refusal {
  ok: false;
  code: RefusalCode;
  reason: string;
}

export type RefusalCode =
  | 'length'
  | 'not_base64'
  | 'salted_prefix'
  | 'hmac'
  | 'decrypt'
  | 'malformed'
  | 'digest'
  | 'unsupported'
  | 'replay'
  | 'too_old'
  | 'too_new'
  | 'source'
  | 'wildcard_address'
  | 'address_mismatch'
  | 'user'
  | 'port'
  | 'ipv6';

export type Decoded = { ok: true; message: SpaMessage } | Refusal;

export const refuse = (code: RefusalCode, reason: string): Refusal => ({ ok: false, code, reason });

const BASE64_CHARS = /^[A-Za-z0-9+/]+$/;

/** fwknop's b64_decode: no '=' needed, stops at the first '='; undefined for any other character. */
function base64Loose(text: string): Buffer | undefined {
  const body = text.replace(/=+$/, '');
  if (body.length === 0 || !BASE64_CHARS.test(body) || body.length % 4 === 1) return undefined;
  return Buffer.from(body, 'base64');
}

const stripEquals = (b64: string): string => b64.replace(/=+$/, '');

/**
 * The check the capture threads make before anything reaches JS (native twin: native/core/spa.cc): the
 * payload is a candidate length, not prefixed with "Salted__", and its last 43 bytes are the base64
 * HMAC-SHA256, under the door's key, of "U2FsdGVkX1" + the rest. Compared in constant time.
 */
export function spaAuthentic(payload: Uint8Array, hmacKey: Uint8Array): boolean {
  return checkAuthentic(payload, hmacKey) === undefined;
}

function checkAuthentic(payload: Uint8Array, hmacKey: Uint8Array): Refusal | undefined {
  const n = payload.byteLength;
  if (n < SPA_MIN_PAYLOAD || n > SPA_MAX_PAYLOAD) {
    return refuse('length', `payload of ${n} bytes is outside ${SPA_MIN_PAYLOAD}..${SPA_MAX_PAYLOAD}`);
  }
  const bytes = Buffer.from(payload.buffer, payload.byteOffset, n);
  // fwknopd: a payload that starts with the salt prefix could be a replay with the prefix tacked on
  if (bytes.toString('latin1', 0, SALTED_B64.length) === SALTED_B64) return refuse('salted_prefix', 'payload starts with the "Salted__" prefix');
  const body = bytes.subarray(0, n - SPA_HMAC_B64_LEN);
  const mac = createHmac('sha256', hmacKey).update(SALTED_B64).update(body).digest('base64');
  const expected = Buffer.from(stripEquals(mac), 'latin1');
  if (!timingSafeEqual(expected, bytes.subarray(n - SPA_HMAC_B64_LEN))) return refuse('hmac', 'HMAC does not verify (wrong HMAC key, or not an SPA packet)');
  return undefined;
}

/** EVP_BytesToKey(MD5, 1 round) as fwknop's rij_salt_and_iv: a 32-byte AES key and a 16-byte IV. */
export function saltedKeyIv(password: Uint8Array, salt: Uint8Array): { key: Buffer; iv: Buffer } {
  const out: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let have = 0; have < 48; have += 16) {
    prev = createHash('md5').update(prev).update(password).update(salt).digest();
    out.push(prev);
  }
  const all = Buffer.concat(out);
  return { key: all.subarray(0, 32), iv: all.subarray(32, 48) };
}

const DIGESTS: Record<number, string[]> = {
  22: ['md5'],
  27: ['sha1'],
  43: ['sha256', 'sha3-256'],
  64: ['sha384'],
  86: ['sha512', 'sha3-512'],
};

const PRINTABLE = /^[\x20-\x7e]*$/;
// validate_username: printable ASCII without " / \ [ ] : ; | = , + * ? < >
const USERNAME = /^[^"/\\[\]:;|=,+*?<>\x00-\x1f\x7f-\xff]{1,64}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Authenticates, decrypts and parses one payload. */
export function decodeSpa(payload: Uint8Array, keys: SpaKeys): Decoded {
  const unauthentic = checkAuthentic(payload, keys.hmacKey);
  if (unauthentic) return unauthentic;
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('latin1', 0, payload.byteLength - SPA_HMAC_B64_LEN);
  const raw = base64Loose(SALTED_B64 + text);
  if (!raw) return refuse('not_base64', 'the ciphertext is not base64');
  // "Salted__" (8 bytes), the salt (8), then whole AES blocks
  if (raw.length < 32 || (raw.length - 16) % 16 !== 0) return refuse('decrypt', `ciphertext of ${raw.length} bytes is not salt + whole AES blocks`);
  const { key, iv } = saltedKeyIv(keys.encKey, raw.subarray(8, 16));
  let plain: Buffer;
  try {
    const d = createDecipheriv('aes-256-cbc', key, iv);
    d.setAutoPadding(false);
    plain = Buffer.concat([d.update(raw.subarray(16)), d.final()]);
  } catch {
    return refuse('decrypt', 'AES-CBC decryption failed');
  }
  const pad = plain[plain.length - 1];
  if (pad < 1 || pad > 16 || !plain.subarray(plain.length - pad).every((b) => b === pad)) {
    return refuse('decrypt', 'bad padding after decryption (wrong encryption key)');
  }
  return parseFields(plain.toString('latin1', 0, plain.length - pad));
}

/** The decrypted text `random:user:timestamp:version:type:message[:nat][:auth][:timeout]:digest`. */
export function parseFields(text: string): Decoded {
  if (!/^\d{16}:/.test(text)) return refuse('decrypt', 'decrypted data does not start with 16 digits and a colon (wrong encryption key)');
  if (!PRINTABLE.test(text)) return refuse('malformed', 'decrypted data has non-printable characters');
  const cut = text.lastIndexOf(':');
  const encoded = text.slice(0, cut);
  const digest = text.slice(cut + 1);
  const algorithms = DIGESTS[digest.length];
  if (!algorithms) return refuse('malformed', `digest field of ${digest.length} characters is no digest fwknop makes`);
  if (!algorithms.some((a) => stripEquals(createHash(a).update(encoded, 'latin1').digest('base64')) === digest)) {
    return refuse('digest', 'the embedded digest does not match the message');
  }
  const f = encoded.split(':');
  if (f.length < 6) return refuse('malformed', `${f.length + 1} fields, fwknop sends at least 7`);
  const [random, userB64, tsText, version, typeText, messageB64] = f;
  if (random.length !== 16) return refuse('malformed', 'random field is not 16 digits');
  const user = userB64.length <= 88 ? base64Loose(userB64)?.toString('latin1') : undefined;
  if (user === undefined || !USERNAME.test(user)) return refuse('malformed', 'username field is not a valid base64 user name');
  if (!/^\d{1,12}$/.test(tsText)) return refuse('malformed', 'timestamp field is not a number');
  const timestamp = Number(tsText);
  if (version.length < 1 || version.length > 8) return refuse('malformed', 'version field is empty or too long');
  if (!/^\d{1,2}$/.test(typeText) || Number(typeText) > 6) return refuse('malformed', `message type "${typeText}" is unknown`);
  const messageType = Number(typeText);
  if (messageType === MessageType.COMMAND) return refuse('unsupported', 'command messages (fwknop --server-cmd) are not supported');
  if (messageType !== MessageType.ACCESS && messageType !== MessageType.CLIENT_TIMEOUT_ACCESS) {
    return refuse('unsupported', 'NAT access requests (fwknop -N / --nat-local) are not supported');
  }
  const rest = f.slice(6);
  let clientTimeout = 0;
  if (messageType === MessageType.CLIENT_TIMEOUT_ACCESS) {
    // [server_auth:]timeout
    if (rest.length < 1 || rest.length > 2) return refuse('malformed', 'client-timeout message has the wrong number of fields');
    const t = rest[rest.length - 1];
    if (!/^\d{1,5}$/.test(t) || Number(t) > 65536) return refuse('malformed', 'client timeout field is not a number up to 65536');
    clientTimeout = Number(t);
  } else if (rest.length > 1) return refuse('malformed', 'access message has too many fields');
  if (messageB64.length > 256) return refuse('malformed', 'message field is longer than 256 characters');
  const message = base64Loose(messageB64)?.toString('latin1');
  if (message === undefined || !PRINTABLE.test(message)) return refuse('malformed', 'message field is not base64 text');
  const parts = message.split(',');
  const allowAddress = parts[0];
  if (!IPV4.test(allowAddress)) return refuse('malformed', `access message address "${allowAddress}" is not an IPv4 address`);
  if (parts.length < 2) return refuse('malformed', 'access message names no proto/port');
  const access: AccessRequest[] = [];
  for (const spec of parts.slice(1)) {
    const m = /^(tcp|udp)\/(\d{1,5})$/.exec(spec);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      return refuse(/^(icmp|none)\//.test(spec) ? 'unsupported' : 'malformed', `access request "${spec}" is not tcp/PORT or udp/PORT`);
    }
    access.push({ proto: m[1] as 'tcp' | 'udp', port: Number(m[2]) });
  }
  return { ok: true, message: { random, user, timestamp, version, messageType, allowAddress, access, clientTimeout } };
}

/** The replay cache's key: SHA-256 of the payload as received (fwknopd keys its cache the same way). */
export function payloadDigest(payload: Uint8Array): string {
  return createHash('sha256').update(payload).digest('base64');
}
