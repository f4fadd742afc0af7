// IP address text <-> 16-byte form used by the program, the matchers and the event records.
// IPv4 occupies bytes 0-3 and the other 12 bytes are zero (docs/MATCHER.md §3).
import { isIPv4, isIPv6 } from 'node:net';

export interface Address {
  family: 4 | 6;
  bytes: Uint8Array; // always 16 bytes
}

export function parseAddress(text: string): Address | undefined {
  const t = text.trim();
  const bytes = new Uint8Array(16);
  if (isIPv4(t)) {
    t.split('.').forEach((part, i) => (bytes[i] = Number(part)));
    return { family: 4, bytes };
  }
  const bare = t.replace(/%.*$/, ''); // scope suffix (fe80::1%eth0)
  if (!isIPv6(bare)) return undefined;
  let head = bare;
  let tail = '';
  const dbl = bare.indexOf('::');
  if (dbl >= 0) {
    head = bare.slice(0, dbl);
    tail = bare.slice(dbl + 2);
  }
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const part of s.split(':')) {
      if (part.includes('.')) {
        const v4 = part.split('.').map(Number);
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else out.push(parseInt(part, 16));
    }
    return out;
  };
  const h = groups(head);
  const tl = groups(tail);
  const all = dbl >= 0 ? [...h, ...new Array(8 - h.length - tl.length).fill(0), ...tl] : h;
  all.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return { family: 6, bytes };
}

/** Canonical text: dotted quad, or RFC 5952 compressed lowercase IPv6 (as knockd's getnameinfo prints). */
export function formatAddress(family: number, bytes: Uint8Array, offset = 0): string {
  if (family === 4) return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((bytes[offset + i * 2] << 8) | bytes[offset + i * 2 + 1]);
  // IPv4-mapped addresses keep their dotted tail, as inet_ntop does
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${bytes[offset + 12]}.${bytes[offset + 13]}.${bytes[offset + 14]}.${bytes[offset + 15]}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/** The four big-endian words of an address, as the program stores them. */
export function addressWords(bytes: Uint8Array): [number, number, number, number] {
  const w = (i: number) => ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
  return [w(0), w(4), w(8), w(12)];
}

/** An address block: ADDR or ADDR/PREFIX (IPv4 masks may be dotted, 10.0.0.0/255.0.0.0), host bits cleared. */
export interface AddressBlock {
  family: 4 | 6;
  bytes: Uint8Array; // 16 bytes
  prefix: number;
}

/** Parses one block; a string is the reason it is not one. */
export function parseAddressBlock(text: string): AddressBlock | string {
  const slash = text.indexOf('/');
  const address = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!address) return `"${text}" is not an address`;
  const max = address.family === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1);
  const mask = address.family === 4 && prefixText.includes('.') ? parseAddress(prefixText) : undefined;
  let prefix: number;
  if (mask && mask.family === 4) {
    const bits = ((mask.bytes[0] << 24) | (mask.bytes[1] << 16) | (mask.bytes[2] << 8) | mask.bytes[3]) >>> 0;
    prefix = 32 - Math.log2(((~bits >>> 0) + 1) || 2 ** 32);
    if (!Number.isInteger(prefix)) return `"${prefixText}" is not a contiguous netmask`;
  } else {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return `"${text}" has a bad prefix length`;
    prefix = Number(prefixText);
  }
  const bytes = new Uint8Array(address.bytes);
  for (let bit = prefix; bit < 128; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  return { family: address.family, bytes, prefix };
}
