// Fleet messages: what one member tells the others through the store (a grant, a one-time line used), as
// signed JSON. The HMAC-SHA256 under Fleet_Key_File covers the fleet name and every field, so write access
// to the store alone cannot open a door: a member installs only what verifies (docs/FLEET.md "Trust").
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { formatAddress, parseAddress } from '../address.js';
import { hasNftAction, type DoorConfig, type Step } from '../config/types.js';

export const MESSAGE_VERSION = 1;
/** a real message is about 300 bytes; anything much larger is refused before parsing */
export const MAX_MESSAGE_BYTES = 2048;
/** how far a member's clock may be ahead of another's: a grant may end this much after its door's window */
export const CLOCK_SKEW_MS = 5000;

export type MessageType = 'grant' | 'used';

export interface FleetMessage {
  type: MessageType;
  /** the member that sent it */
  member: string;
  door: string;
  /** grant: 4 or 6; used: 0 */
  family: 0 | 4 | 6;
  /** grant: the source address; used: the digest of the one-time line (src/fleet/link.ts lineDigest) */
  subject: string;
  /** grant: wall-clock ms at which the door closes for the source; used: when the record may be dropped */
  expiryMs: number;
  /** random per message: a command door runs its start command once per nonce */
  nonce: string;
  /** the sender's message counter (ordering within one member, for logs) */
  seq: number;
}

export type RefusalReason =
  | 'oversize'
  | 'unparsable'
  | 'unsigned'
  | 'bad_signature'
  | 'unknown_door'
  | 'bad_address'
  | 'expired'
  | 'too_long';

export const REFUSAL_REASONS: readonly RefusalReason[] = ['oversize', 'unparsable', 'unsigned', 'bad_signature', 'unknown_door', 'bad_address', 'expired', 'too_long'];

export class MessageRefused extends Error {
  constructor(
    readonly reason: RefusalReason,
    detail: string,
  ) {
    super(detail);
  }
}

const field = (f: string): string => `${Buffer.byteLength(f)}:${f}`;

/** Length-prefixed fields: no field can be shifted into another. Concatenated in one string (this runs for
 * every message sent and received), hashed with one HMAC call. */
function mac(key: Uint8Array, fleet: string, m: FleetMessage): Buffer {
  const signed =
    field(`v${MESSAGE_VERSION}`) + field(fleet) + field(m.type) + field(m.member) + field(m.door) + field(String(m.family)) + field(m.subject) + field(String(m.expiryMs)) + field(m.nonce) + field(String(m.seq));
  return createHmac('sha256', key).update(signed).digest();
}

/** A nonce must be unique (a grant is applied and its command run once per nonce), not secret (the MAC
 * covers it): 64 random bits per process and a counter, instead of reading the random source per message. */
const NONCE_PREFIX = randomBytes(8).toString('hex');
let nonces = 0;
export const newNonce = (): string => `${NONCE_PREFIX}${(++nonces).toString(36)}`;

/** The signed wire form. */
export function encodeMessage(key: Uint8Array, fleet: string, m: FleetMessage): string {
  return JSON.stringify({ v: MESSAGE_VERSION, t: m.type, m: m.member, d: m.door, f: m.family, a: m.subject, e: m.expiryMs, n: m.nonce, s: m.seq, h: mac(key, fleet, m).toString('hex') });
}

const str = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parses and verifies the signature; throws MessageRefused. The door and time checks are checkGrant's. */
export function decodeMessage(key: Uint8Array, fleet: string, raw: string | Buffer): FleetMessage {
  if (raw.length > MAX_MESSAGE_BYTES) throw new MessageRefused('oversize', `${raw.length} bytes (at most ${MAX_MESSAGE_BYTES})`);
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(raw.toString()) as Record<string, unknown>;
  } catch {
    throw new MessageRefused('unparsable', 'not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new MessageRefused('unparsable', 'not a JSON object');
  if (o.v !== MESSAGE_VERSION) throw new MessageRefused('unparsable', `version ${JSON.stringify(o.v)} (this member reads ${MESSAGE_VERSION})`);
  if (
    (o.t !== 'grant' && o.t !== 'used') ||
    !str(o.m, 64) ||
    !str(o.d, 256) ||
    (o.f !== 0 && o.f !== 4 && o.f !== 6) ||
    !str(o.a, 64) ||
    !int(o.e) ||
    !str(o.n, 64) ||
    !int(o.s)
  ) {
    throw new MessageRefused('unparsable', 'a field is missing or has the wrong type');
  }
  const m: FleetMessage = { type: o.t, member: o.m, door: o.d, family: o.f, subject: o.a, expiryMs: o.e, nonce: o.n, seq: o.s };
  if (o.h === undefined) throw new MessageRefused('unsigned', `from "${m.member}"`);
  if (typeof o.h !== 'string' || !/^[0-9a-f]{64}$/.test(o.h)) throw new MessageRefused('bad_signature', `from "${m.member}": the signature is not 64 hex digits`);
  if (!timingSafeEqual(Buffer.from(o.h, 'hex'), mac(key, fleet, m))) {
    throw new MessageRefused('bad_signature', `from "${m.member}": signed with another key or altered`);
  }
  return m;
}

/** How long a grant of this door may last on any member: the longest of its actions' windows. */
export function doorWindowMs(door: DoorConfig): number {
  return Math.max(hasNftAction(door) ? door.openTimeout : 0, door.startCommand ? door.cmdTimeout : 0) * 1000;
}

/** A verified message that passed checkGrant: its door, and for a grant the address parsed (16 bytes). */
export interface CheckedGrant {
  door: DoorConfig;
  address?: Uint8Array;
}

/** A verified message against this member's doors and clock; throws MessageRefused. */
export function checkGrant(m: FleetMessage, doors: readonly DoorConfig[], nowMs: number): CheckedGrant {
  const door = doors.find((d) => d.name === m.door);
  if (!door) throw new MessageRefused('unknown_door', `door "${m.door}" from "${m.member}" is not in this member's config`);
  if (m.type !== 'grant') return { door };
  const address = m.family === 0 ? undefined : parseAddress(m.subject);
  if (!address || address.family !== m.family || formatAddress(address.family, address.bytes) !== m.subject) {
    throw new MessageRefused('bad_address', `"${m.subject}" from "${m.member}" is not a canonical IPv${m.family} address`);
  }
  if (m.expiryMs <= nowMs) throw new MessageRefused('expired', `${door.name} ${m.subject} from "${m.member}" ended ${nowMs - m.expiryMs} ms ago`);
  if (m.expiryMs - nowMs > doorWindowMs(door) + CLOCK_SKEW_MS) {
    throw new MessageRefused('too_long', `${door.name} ${m.subject} from "${m.member}" lasts ${m.expiryMs - nowMs} ms, more than the door's ${doorWindowMs(door)} ms + ${CLOCK_SKEW_MS} ms skew`);
  }
  return { door, address: address.bytes };
}

/** The digest that names a one-time line in the store (the line itself never leaves the member). */
export function lineDigest(sequence: readonly Step[]): string {
  return createHash('sha256')
    .update(sequence.map((s) => `${s.port}:${s.proto}`).join(','))
    .digest('hex')
    .slice(0, 32);
}
