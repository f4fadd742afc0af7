// An authenticated SPA payload -> a grant or a refusal with its reason, by the door's rules, in fwknopd's
// order: replay, source, HMAC, decryption, packet age, requested address, user, ports (docs/SPA.md §3).
// Doors that share the SPA port are tried in config order, as fwknopd tries its access.conf stanzas.
import { formatAddress, parseAddress, type AddressBlock } from '../address.js';
import type { DoorConfig } from '../config/types.js';
import { decodeSpa, payloadDigest, refuse, type AccessRequest, type Refusal, type SpaMessage } from './packet.js';
import type { ReplayCache } from './replay-cache.js';

export interface SpaPacket {
  payload: Uint8Array;
  family: 4 | 6;
  /** the packet's source address (16 bytes, IPv4 in the first 4) */
  sourceBytes: Uint8Array;
  source: string;
  /** capture time, seconds since the epoch */
  nowS: number;
}

export interface SpaGrant {
  ok: true;
  door: DoorConfig;
  /** the address to open for: the request's, or the packet's source for 0.0.0.0 */
  address: string;
  family: 4 | 6;
  ports: AccessRequest[];
  timeoutS: number;
  message: SpaMessage;
}

export type SpaDecision = SpaGrant | (Refusal & { door: DoorConfig });

export function inBlock(b: AddressBlock, family: 4 | 6, bytes: Uint8Array): boolean {
  if (b.family !== family) return false;
  for (let bit = 0; bit < b.prefix; bit += 8) {
    const mask = b.prefix - bit >= 8 ? 0xff : (0xff << (8 - (b.prefix - bit))) & 0xff;
    if ((bytes[bit >> 3] & mask) !== b.bytes[bit >> 3]) return false;
  }
  return true;
}

/**
 * Decides a payload for `doors` (the SPA doors on the packet's port, the one whose HMAC matched first).
 * The first door that grants wins; otherwise the refusal of the first door whose keys opened the packet
 * (or of the first door, when none did).
 */
export function decideSpa(doors: readonly DoorConfig[], pkt: SpaPacket, cache: ReplayCache): SpaDecision {
  let first: (Refusal & { door: DoorConfig }) | undefined;
  let firstOpened: (Refusal & { door: DoorConfig }) | undefined;
  const digest = payloadDigest(pkt.payload);
  // one check before any door, as fwknopd's precheck (the digest is added once, at the first decryption)
  if (cache.has(digest, pkt.nowS)) return { ...refuse('replay', 'replayed packet (its digest is in the replay cache)'), door: doors[0] };
  let cached = false;
  for (const door of doors) {
    const spa = door.spa!;
    const refused = (r: Refusal, opened: boolean): void => {
      const withDoor = { ...r, door };
      first ??= withDoor;
      if (opened) firstOpened ??= withDoor;
    };
    if (spa.sources.length > 0 && !spa.sources.some((b) => inBlock(b, pkt.family, pkt.sourceBytes))) {
      refused(refuse('source', `source ${pkt.source} is not in the door's Source list`), false);
      continue;
    }
    const decoded = decodeSpa(pkt.payload, spa);
    if (!decoded.ok) {
      refused(decoded, decoded.code !== 'hmac' && decoded.code !== 'length' && decoded.code !== 'salted_prefix');
      continue;
    }
    // authenticated and decrypted: never again, whatever the rules below say (fwknopd does the same)
    if (!cached) cache.add(digest, pkt.nowS + Math.max(...doors.map((d) => d.spa!.maxPacketAge)) * 2);
    cached = true;
    const verdict = checkRules(door, decoded.message, pkt);
    if (verdict.ok) return verdict;
    refused(verdict, true);
  }
  return firstOpened ?? first ?? { ...refuse('hmac', 'no SPA door on this port'), door: doors[0] };
}

function checkRules(door: DoorConfig, m: SpaMessage, pkt: SpaPacket): SpaGrant | Refusal {
  const spa = door.spa!;
  const skew = pkt.nowS - m.timestamp;
  if (Math.abs(skew) > spa.maxPacketAge) {
    return skew > 0
      ? refuse('too_old', `packet timestamp is ${Math.round(skew)} s old (Max_Packet_Age ${spa.maxPacketAge})`)
      : refuse('too_new', `packet timestamp is ${Math.round(-skew)} s in the future (Max_Packet_Age ${spa.maxPacketAge})`);
  }
  let address = m.allowAddress;
  let family: 4 | 6 = 4;
  if (address === '0.0.0.0') {
    if (spa.requireSourceAddress) return refuse('wildcard_address', 'request for "the packet source" (0.0.0.0, fwknop -s) while Require_Source_Address = yes');
    address = pkt.source;
    family = pkt.family;
  } else if (spa.requireSourceAddress) {
    const asked = parseAddress(address)!;
    if (pkt.family !== 4 || !asked.bytes.every((b, i) => b === pkt.sourceBytes[i])) {
      return refuse('address_mismatch', `request names ${address} but the packet comes from ${pkt.source} (Require_Source_Address = yes)`);
    }
  } else {
    address = formatAddress(4, parseAddress(address)!.bytes);
  }
  if (spa.users.length > 0 && !spa.users.includes(m.user)) return refuse('user', `user "${m.user}" is not in Require_Username`);
  if (door.open.length > 0) {
    const denied = m.access.filter((a) => !door.open.some((o) => o.port === a.port && o.proto === a.proto));
    if (denied.length > 0) return refuse('port', `requested ${denied.map((a) => `${a.proto}/${a.port}`).join(',')} not in the door's Open list`);
  }
  const timeoutS = m.clientTimeout > 0 ? Math.min(m.clientTimeout, spa.maxTimeout) : door.openTimeout;
  return { ok: true, door, address, family, ports: m.access, timeoutS, message: m };
}
