// nftables doors, status: what `knockd-fast nft status` shows — the knockd-fast table and the NftSet doors'
// sets, with their elements and expiry.
import type { DoorConfig } from '../../config/types.js';
import { listSet, listTable, type NftTableOptions } from './process.js';
import { checkTableName } from './ruleset.js';

export interface NftElementStatus {
  address: string;
  timeoutS?: number;
  expiresS?: number;
}

export interface NftSetStatus {
  family: string;
  table: string;
  name: string;
  type: string;
  comment?: string;
  elements: NftElementStatus[];
}

export interface NftStatus {
  table: string;
  installed: boolean;
  chains: { name: string; hook?: string; priority?: number }[];
  sets: NftSetStatus[];
  /** NftSet doors' sets that could not be listed, with nft's message */
  errors: string[];
}

/** A set as `nft -j list` describes it. */
export interface JsonSet {
  family: string;
  table: string;
  name: string;
  type: string | string[];
  comment?: string;
  flags?: string[];
  elem?: (string | { elem: { val: string; timeout?: number; expires?: number } })[];
}

function setStatus(s: JsonSet): NftSetStatus {
  return {
    family: s.family,
    table: s.table,
    name: s.name,
    type: Array.isArray(s.type) ? s.type.join(' . ') : s.type,
    comment: s.comment,
    elements: (s.elem ?? []).map((e) =>
      typeof e === 'string' ? { address: e } : { address: e.elem.val, timeoutS: e.elem.timeout, expiresS: e.elem.expires },
    ),
  };
}

/** The table knockd-fast owns (and the NftSet doors' sets, when doors are given), with elements and expiry. */
export async function nftStatus(opts: NftTableOptions & { doors?: readonly DoorConfig[] }): Promise<NftStatus> {
  const table = checkTableName(opts.table ?? 'knockd_fast');
  const status: NftStatus = { table, installed: false, chains: [], sets: [], errors: [] };
  const listed = await listTable(opts, 'inet', table, true);
  if (listed) {
    status.installed = true;
    for (const item of listed as { set?: JsonSet; chain?: { name: string; hook?: string; prio?: number } }[]) {
      if (item.set) status.sets.push(setStatus(item.set));
      if (item.chain) status.chains.push({ name: item.chain.name, hook: item.chain.hook, priority: item.chain.prio });
    }
  }
  const seen = new Set<string>();
  for (const door of opts.doors ?? []) {
    const ref = door.nftSet;
    if (!ref) continue;
    const key = `${ref.family} ${ref.table} ${ref.set}`;
    if (seen.has(key)) continue;
    seen.add(key);
    try {
      const one = await listSet(opts, ref);
      if (!one) status.errors.push(`door ${door.name}: NftSet ${key}: the set does not exist`);
      else for (const item of one as { set?: JsonSet }[]) if (item.set) status.sets.push(setStatus(item.set));
    } catch (err) {
      status.errors.push(`door ${door.name}: NftSet ${key}: ${(err as Error).message}`);
    }
  }
  return status;
}

export function formatNftStatus(status: NftStatus): string {
  const lines: string[] = [];
  lines.push(status.installed ? `table inet ${status.table}` : `table inet ${status.table}: not installed`);
  for (const c of status.chains) lines.push(`  chain ${c.name}${c.hook ? ` (hook ${c.hook}, priority ${c.priority})` : ''}`);
  for (const s of status.sets) {
    const where = s.table === status.table && s.family === 'inet' ? '' : ` (${s.family} ${s.table})`;
    lines.push(`  set ${s.name}${where}: ${s.type}, ${s.elements.length} element(s)${s.comment ? ` — ${s.comment}` : ''}`);
    for (const e of s.elements) {
      const expiry = e.expiresS !== undefined ? `expires in ${e.expiresS}s of ${e.timeoutS}s` : 'no timeout';
      lines.push(`    ${e.address}  ${expiry}`);
    }
  }
  for (const e of status.errors) lines.push(`  error: ${e}`);
  return lines.join('\n') + '\n';
}
