// nftables doors, the ruleset: which sets and guard chains the doors need (the plan) and the nft script that
// installs them. Pure functions of the config; nothing here runs nft.
import { NFT_IDENTIFIER, type DoorConfig, type NftSetRef, type Proto } from '../../config/types.js';
import { NftError } from './process.js';

/** A set of the knockd-fast table, or the operator's set for NftSet doors. */
export interface DoorSet {
  door: string;
  family: 4 | 6;
  ref: NftSetRef;
  /** false for NftSet doors: the set belongs to the operator */
  owned: boolean;
}

interface GuardPlan {
  hook: 'input' | 'forward';
  proto: Proto;
  ports: number[];
  v4: string;
  v6: string;
}

export interface NftPlan {
  table: string;
  /** per door (index as in the config), its sets; empty for doors without Open/NftSet */
  doorSets: DoorSet[][];
  /** per door (index as in the config), a key that names the same door in the next config (SIGHUP): the set
   * stem for Open doors (name plus a counter for repeated names), the door name and set for NftSet doors;
   * '' for doors without Open/NftSet */
  doorKeys: string[];
  guards: GuardPlan[];
}

export function checkTableName(table: string): string {
  if (!NFT_IDENTIFIER.test(table)) {
    throw new NftError(
      `NftTable = ${table} is not a valid nftables table name: use letters, digits and _ . / -, not starting with a digit`,
    );
  }
  return table;
}

/** Set names derived from door names: stable across restarts, unique within the table. */
export function planNft(doors: readonly DoorConfig[], table = 'knockd_fast'): NftPlan {
  checkTableName(table);
  const used = new Set<string>();
  const guards: GuardPlan[] = [];
  const doorKeys: string[] = [];
  const doorSets = doors.map((door): DoorSet[] => {
    if (door.nftSet) {
      const r = door.nftSet;
      doorKeys.push(`${door.name} -> ${r.family} ${r.table} ${r.set}`);
      // the family of an operator's set is learned at install time; both candidates point at the same set
      return [4, 6].map((family) => ({ door: door.name, family: family as 4 | 6, ref: door.nftSet!, owned: false }));
    }
    if (door.open.length === 0) {
      doorKeys.push('');
      return [];
    }
    const base = `d_${door.name.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 200)}`;
    let stem = base;
    for (let n = 2; used.has(stem); n++) stem = `${base}_${n}`;
    used.add(stem);
    doorKeys.push(stem);
    const v4 = `${stem}_v4`;
    const v6 = `${stem}_v6`;
    for (const proto of ['tcp', 'udp'] as const) {
      const ports = [...new Set(door.open.filter((o) => o.proto === proto).map((o) => o.port))].sort((a, b) => a - b);
      if (ports.length > 0) guards.push({ hook: door.hook, proto, ports, v4, v6 });
    }
    return [
      { door: door.name, family: 4, ref: { family: 'inet', table, set: v4 }, owned: true },
      { door: door.name, family: 6, ref: { family: 'inet', table, set: v6 }, owned: true },
    ];
  });
  return { table, doorSets, doorKeys, guards };
}

const HOOK_PRIORITY = 'priority filter - 10';

/** nft refuses a comment longer than this many bytes (NFTNL_UDATA_COMMENT_MAXLEN; UTF-8, not characters). */
const NFT_COMMENT_MAX_BYTES = 128;

/** The set's comment, cut to NFT_COMMENT_MAX_BYTES of UTF-8 at a character boundary. */
function comment(door: string): string {
  let text = '';
  let bytes = 0;
  for (const ch of `knockd-fast door ${door}`.replace(/["\\\n]/g, "'")) {
    bytes += Buffer.byteLength(ch);
    if (bytes > NFT_COMMENT_MAX_BYTES) break;
    text += ch;
  }
  return text;
}

/** The base chains the plan installs (one per hook that guards a port), with the number of rules in each. */
export function plannedChains(plan: NftPlan): Map<string, number> {
  const chains = new Map<string, number>();
  for (const hook of ['input', 'forward'] as const) {
    const guards = plan.guards.filter((g) => g.hook === hook);
    if (guards.length === 0) continue;
    // as nftInstallScript writes them: established, two accepts per guard, one drop per protocol
    chains.set(hook, 1 + 2 * guards.length + new Set(guards.map((g) => g.proto)).size);
  }
  return chains;
}

/** The sets of the knockd-fast table that the plan installs. */
export function plannedSets(plan: NftPlan): Set<string> {
  return new Set(plan.doorSets.flat().filter((s) => s.owned).map((s) => s.ref.set));
}

/**
 * The install script: creates the table, sets and chains if missing (keeping existing elements) and
 * replaces the chains' rules, in one nft transaction. This is what `--test` prints.
 */
export function nftInstallScript(plan: NftPlan): string {
  const t = `inet ${plan.table}`;
  if (!plan.doorSets.some((sets) => sets.some((s) => s.owned))) {
    return '# no door has Open: knockd-fast installs no table (NftSet doors add to the operator\'s sets)\n';
  }
  const lines = [`add table ${t}`];
  for (const sets of plan.doorSets) {
    for (const s of sets) {
      if (!s.owned) continue;
      const type = s.family === 4 ? 'ipv4_addr' : 'ipv6_addr';
      lines.push(`add set ${t} ${s.ref.set} { type ${type}; flags timeout; comment "${comment(s.door)}"; }`);
    }
  }
  for (const hook of ['input', 'forward'] as const) {
    const guards = plan.guards.filter((g) => g.hook === hook);
    if (guards.length === 0) continue;
    lines.push(`add chain ${t} ${hook} { type filter hook ${hook} ${HOOK_PRIORITY}; policy accept; }`);
    lines.push(`flush chain ${t} ${hook}`);
    lines.push(`add rule ${t} ${hook} ct state established,related accept`);
    // a source granted by any door guarding a port may connect; every other new connection is dropped
    for (const g of guards) {
      const ports = `{ ${g.ports.join(', ')} }`;
      lines.push(`add rule ${t} ${hook} ${g.proto} dport ${ports} ip saddr @${g.v4} accept`);
      lines.push(`add rule ${t} ${hook} ${g.proto} dport ${ports} ip6 saddr @${g.v6} accept`);
    }
    for (const proto of ['tcp', 'udp'] as const) {
      const ports = [...new Set(guards.filter((g) => g.proto === proto).flatMap((g) => g.ports))].sort((a, b) => a - b);
      if (ports.length > 0) lines.push(`add rule ${t} ${hook} ${proto} dport { ${ports.join(', ')} } drop`);
    }
  }
  return lines.join('\n') + '\n';
}
