// Linux capabilities of this process, read from /proc/self/status (CapEff), so start-up can name a missing
// one and its fix before it installs anything, and `doctor` can report them.
import { readFileSync } from 'node:fs';

export const CAP_NET_ADMIN = 12;
export const CAP_NET_RAW = 13;

export const CAPABILITY_FIX =
  'run as root, or in the systemd unit: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW (see examples/knockd-fast.service)';

/** What the daemon is about to use, and the capability each needs. */
export interface CapabilityNeeds {
  /** AF_PACKET capture */
  capture: boolean;
  /** the nftables table and set elements */
  nft: boolean;
}

/** The effective capability set, as a bit mask indexed by CAP_* numbers. */
export function effectiveCapabilities(status = readFileSync('/proc/self/status', 'utf8')): bigint {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex ? BigInt(`0x${hex}`) : 0n;
}

/** The needed capabilities that are not effective, each with what needs it. */
export function missingCapabilities(needs: CapabilityNeeds, status = readFileSync('/proc/self/status', 'utf8')): string[] {
  const caps = effectiveCapabilities(status);
  const has = (bit: number) => ((caps >> BigInt(bit)) & 1n) === 1n;
  const missing: string[] = [];
  if (needs.nft && !has(CAP_NET_ADMIN)) missing.push('CAP_NET_ADMIN (nftables doors)');
  if (needs.capture && !has(CAP_NET_RAW)) missing.push('CAP_NET_RAW (packet capture)');
  return missing;
}

/** The start-up error for missing capabilities, or undefined when every needed one is effective. */
export function capabilityError(needs: CapabilityNeeds, status?: string): string | undefined {
  const missing = missingCapabilities(needs, status);
  if (missing.length === 0) return undefined;
  return `knockd-fast cannot start: missing ${missing.join(' and ')}; nothing was installed. To fix: ${CAPABILITY_FIX}`;
}
