// SPA events from either matcher -> decisions, for the daemon's controller and for --replay alike.
import { parseAddress } from '../address.js';
import type { KnockEvent } from '../match/events.js';
import type { DoorConfig } from '../config/types.js';
import { eventText, type LogFields } from '../report/log.js';
import { decideSpa, type SpaDecision } from './decide.js';
import { refuse } from './packet.js';
import type { ReplayCache } from './replay-cache.js';

type SpaEvent = Extract<KnockEvent, { kind: 'spa' }>;

export class SpaGate {
  constructor(private readonly cache: ReplayCache) {}

  /** `doors` is the program's door table the event's door index refers to. */
  decide(doors: readonly DoorConfig[], ev: SpaEvent): SpaDecision | undefined {
    const door = doors[ev.door];
    if (!door?.spa) return undefined;
    // the matched door first, then the other SPA doors on its port in config order (fwknopd's stanza loop)
    const candidates = [door, ...doors.filter((d) => d !== door && d.spa && d.spa.port === door.spa!.port)];
    return decideSpa(candidates, {
      payload: ev.payload,
      family: ev.family,
      sourceBytes: parseAddress(ev.source)!.bytes,
      source: ev.source,
      nowS: ev.timeUs / 1e6,
    }, this.cache);
  }

  /** The refusal a FAILED/SPA_AUTH event stands for (the capture threads already checked every key). */
  static unauthenticated(door: DoorConfig): SpaDecision {
    return { ...refuse('hmac', 'HMAC does not verify with any SPA door on this port (wrong HMAC key, or not an SPA packet)'), door };
  }
}

/** The log line and the JSON fields of a decision (docs/EVENTS.md: spa_open, spa_refused). */
export function spaLine(who: string, d: SpaDecision): { text: string; fields: LogFields } {
  if (d.ok) {
    const ports = d.ports.map((p) => `${p.proto}/${p.port}`).join(',');
    return {
      text: eventText.spaOpen(who, d.door.name, d.message.user, ports, d.timeoutS, d.address === who ? undefined : d.address),
      fields: { event: 'spa_open', door: d.door.name, user: d.message.user, address: d.address, ports, timeout: d.timeoutS },
    };
  }
  return { text: eventText.spaRefused(who, d.door.name, d.reason), fields: { event: 'spa_refused', door: d.door.name, reason: d.code } };
}
