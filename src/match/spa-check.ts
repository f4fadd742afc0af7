// The matcher's SPA step (docs/SPA.md §4; native twin: native/core/spa.cc): a UDP packet to an SPA door's
// port whose payload has a length fwknop produces is checked against the keys of the doors on that port;
// an authentic one becomes an SPA event carrying its payload, anything else one budgeted FAILED/SPA_AUTH
// event. Packets that are no SPA candidate go on to knock matching.
import { DOOR_HEADER_WORDS, PROTO_UDP, SPA_DOOR_WORDS } from '../config/program.js';
import { SPA_MAX_PAYLOAD, SPA_MIN_PAYLOAD, spaAuthentic } from '../spa/packet.js';

export interface SpaDoorEntry {
  door: number;
  group: number;
  port: number;
  key: Uint8Array;
}

/** Decodes the SPA door at words[o] (its header already checked by the caller). */
export function readSpaDoor(w: Uint32Array, o: number, door: number, group: number, fail: (what: string) => never): SpaDoorEntry {
  const words = w[o];
  if (words < DOOR_HEADER_WORDS + SPA_DOOR_WORDS || o + words > w.length) fail(`SPA door ${door} has a bad word count`);
  const portWord = w[o + DOOR_HEADER_WORDS];
  if (portWord >>> 16 !== PROTO_UDP || (portWord & 0xffff) === 0) fail(`SPA door ${door} has port word 0x${portWord.toString(16)}`);
  const keyBytes = w[o + DOOR_HEADER_WORDS + 1];
  if (keyBytes < 1 || keyBytes > 128 || words !== DOOR_HEADER_WORDS + SPA_DOOR_WORDS + Math.ceil(keyBytes / 4)) {
    fail(`SPA door ${door} has a ${keyBytes}-byte key in ${words} words`);
  }
  const key = new Uint8Array(keyBytes);
  for (let i = 0; i < keyBytes; i++) key[i] = (w[o + DOOR_HEADER_WORDS + 2 + (i >> 2)] >>> (24 - 8 * (i & 3))) & 0xff;
  return { door, group, port: portWord & 0xffff, key };
}

/** Whether the payload length is one the SPA step looks at (the kernel filter admits the same). */
export const spaCandidateLength = (n: number): boolean => n >= SPA_MIN_PAYLOAD && n <= SPA_MAX_PAYLOAD;

/**
 * The first door (groups as given, doors in program order) on `port` whose key authenticates the payload;
 * -1 when a door is on the port but none authenticates (-1 - first such door), NO_SPA_DOOR when none is.
 */
export const NO_SPA_DOOR = -0x10000000;

export function spaAuthenticDoor(doors: readonly SpaDoorEntry[], accepting: Int32Array, nAccepting: number, port: number, payload: Uint8Array): number {
  let firstCandidate = NO_SPA_DOOR;
  for (const e of doors) {
    if (e.port !== port) continue;
    let visible = false;
    for (let i = 0; i < nAccepting && !visible; i++) visible = accepting[i] === e.group;
    if (!visible) continue;
    if (firstCandidate === NO_SPA_DOOR) firstCandidate = -1 - e.door;
    if (spaAuthentic(payload, e.key)) return e.door;
  }
  return firstCandidate;
}
