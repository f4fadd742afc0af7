// `knockd-fast fleet status` and doctor's store check: connect, read the heartbeats and the open grants,
// time a round trip. Read-only: nothing is written to the store.
import type { DoorConfig, FleetConfig } from '../config/types.js';
import { decodeMessage, MessageRefused } from './message.js';
import { doorFingerprint, type MemberRecord } from './link.js';
import { FleetStore } from './store.js';
import { describeStore, parseStoreUrl } from '../config/store-url.js';

/** Connects within timeoutMs; resolves the store, or rejects with the last connection error. */
export async function connectStore(cfg: FleetConfig, timeoutMs = 3000): Promise<FleetStore> {
  let lastError = 'no answer';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const store = new FleetStore(cfg, { ready: () => onReady(), down: (m) => (lastError = m), message: () => undefined });
  store.start();
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  const ok = await Promise.race([ready.then(() => true), timedOut]);
  clearTimeout(timer);
  if (!ok) {
    await store.close();
    throw new Error(`cannot reach the fleet store ${describeStore(parseStoreUrl(cfg.url))} within ${timeoutMs} ms: ${lastError}`);
  }
  return store;
}

/** Median of five round trips, ms. */
export async function roundTripMs(store: FleetStore): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push(await store.ping());
  return times.sort((a, b) => a - b)[2];
}

// a heartbeat written after `now` was taken, or a member's clock slightly ahead, is "0s ago"
const ago = (ms: number): string => (ms < 120_000 ? `${Math.max(0, Math.round(ms / 1000))}s` : ms < 7_200_000 ? `${Math.round(ms / 60_000)}m` : `${Math.round(ms / 3_600_000)}h`);

/** What differs between a member's doors and this config's: empty when they are the same. */
export function doorDifferences(mine: readonly DoorConfig[], theirs: Record<string, string>): string[] {
  const out: string[] = [];
  for (const d of mine) {
    const fp = theirs[d.name];
    if (fp === undefined) out.push(`${d.name} missing`);
    else if (fp !== doorFingerprint(d)) out.push(`${d.name} differs`);
  }
  for (const name of Object.keys(theirs)) if (!mine.some((d) => d.name === name)) out.push(`${name} extra`);
  return out;
}

/** The report of `knockd-fast fleet status`. */
export async function fleetStatus(cfg: FleetConfig, doors: readonly DoorConfig[], now = Date.now()): Promise<string> {
  const store = await connectStore(cfg);
  try {
    const rtt = await roundTripMs(store);
    const out = [`fleet ${cfg.name} on ${describeStore(parseStoreUrl(cfg.url))}: store round trip ${rtt.toFixed(2)} ms`];
    const members = (await store.members()).flatMap((raw): MemberRecord[] => {
      try {
        return [JSON.parse(raw) as MemberRecord];
      } catch {
        return [];
      }
    });
    members.sort((a, b) => a.member.localeCompare(b.member));
    out.push(`members (${members.length} seen in the last 15 s):`);
    for (const m of members) {
      const diff = doorDifferences(doors, m.doors ?? {});
      const doorsText = diff.length === 0 ? 'doors as in this config' : `DOORS DIFFER: ${diff.join(', ')}`;
      out.push(`  ${m.member.padEnd(16)} version ${m.version}  seen ${ago(now - m.seenMs)} ago  up ${ago(now - m.startedMs)}  ${m.queued ? `${m.queued} queued  ` : ''}${doorsText}`);
    }
    const perDoor = new Map<string, number>();
    let unverified = 0;
    for await (const page of store.grantPages()) {
      for (const raw of page) {
        try {
          const m = decodeMessage(cfg.key, cfg.name, raw);
          if (m.expiryMs > now) perDoor.set(m.door, (perDoor.get(m.door) ?? 0) + 1);
        } catch (err) {
          if (err instanceof MessageRefused) unverified++;
          else throw err;
        }
      }
    }
    const total = [...perDoor.values()].reduce((a, b) => a + b, 0);
    out.push(`open grants (${total}):`);
    for (const [door, n] of [...perDoor].sort()) out.push(`  ${door.padEnd(16)} ${n}`);
    if (unverified > 0) out.push(`  (${unverified} stored message(s) do not verify with this key and are ignored by every member)`);
    return `${out.join('\n')}\n`;
  } finally {
    await store.close();
  }
}
