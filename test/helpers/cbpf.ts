// A small classic BPF interpreter (Linux socket-filter semantics) for testing the filters
// native/core/bpf.cc builds: loads outside the packet end the program with 0, as in the kernel, and
// the ancillary loads the builder uses (protocol, packet type, VLAN tag present) come from `meta`.

export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export interface PacketMeta {
  protocol?: number; // skb->protocol (host order), e.g. 0x0800
  pktType?: number; // PACKET_HOST 0 … PACKET_OUTGOING 4
  vlanTagPresent?: boolean;
}

const SKF_AD_OFF = 0xfffff000;
const AD_PROTOCOL = 0;
const AD_PKTTYPE = 4;
const AD_VLAN_TAG_PRESENT = 48;

/** Decodes the 8-byte little-endian sock_filter records of Engine.compileFilter / fanoutFilter. */
export function decodeFilter(bytes: Uint8Array): Insn[] {
  if (bytes.length % 8 !== 0) throw new RangeError(`filter of ${bytes.length} bytes is not a multiple of 8`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Insn[] = [];
  for (let o = 0; o < bytes.length; o += 8) out.push({ code: v.getUint16(o, true), jt: v.getUint8(o + 2), jf: v.getUint8(o + 3), k: v.getUint32(o + 4, true) });
  return out;
}

/**
 * What the kernel's classic checker (bpf_check_classic) insists on: every jump lands inside the
 * program, the last instruction returns, scratch memory indices are < 16 and no scratch word is
 * read on a path where it was not written. Throws with the offending instruction otherwise.
 */
export function checkFilter(prog: Insn[]): void {
  if (prog.length === 0 || prog.length > 4096) throw new Error(`filter length ${prog.length} is not 1..4096`);
  const last = prog[prog.length - 1].code & 0x07;
  if (last !== 0x06) throw new Error('filter does not end with a return');
  // written-memory masks per instruction (intersection over all paths reaching it)
  const masks = new Array<number>(prog.length).fill(-1);
  masks[0] = 0;
  for (let pc = 0; pc < prog.length; pc++) {
    const { code, jt, jf, k } = prog[pc];
    let mask = masks[pc];
    if (mask === -1) continue; // unreachable
    const cls = code & 0x07;
    const mode = code & 0xe0;
    const isMemRead = (cls === 0x00 || cls === 0x01) && mode === 0x60;
    if (isMemRead || cls === 0x02 || cls === 0x03) {
      if (k >= 16) throw new Error(`insn ${pc}: scratch index ${k}`);
    }
    if (isMemRead && !(mask & (1 << k))) throw new Error(`insn ${pc}: reads M[${k}] before it is written`);
    if (cls === 0x02 || cls === 0x03) mask |= 1 << k;
    const flow = (to: number) => {
      if (to >= prog.length) throw new Error(`insn ${pc}: jump to ${to} is outside the program`);
      masks[to] = masks[to] === -1 ? mask : masks[to] & mask;
    };
    if (cls === 0x06) continue;
    if (cls === 0x05) {
      if ((code & 0xf0) === 0x00) flow(pc + 1 + k);
      else {
        flow(pc + 1 + jt);
        flow(pc + 1 + jf);
      }
    } else flow(pc + 1);
  }
}

/** Runs a filter on a packet; returns what the kernel would keep (0 = dropped). */
export function runFilter(prog: Insn[], pkt: Uint8Array, meta: PacketMeta = {}): number {
  let A = 0;
  let X = 0;
  const M = new Uint32Array(16);
  const len = pkt.length;
  const load = (off: number, size: number): number | undefined => {
    if (off >= SKF_AD_OFF) {
      const ad = off - SKF_AD_OFF;
      if (size !== 4) return undefined;
      if (ad === AD_PROTOCOL) return meta.protocol ?? 0;
      if (ad === AD_PKTTYPE) return meta.pktType ?? 0;
      if (ad === AD_VLAN_TAG_PRESENT) return meta.vlanTagPresent ? 1 : 0;
      throw new Error(`ancillary load ${ad} is not modelled`);
    }
    if (off + size > len) return undefined;
    let v = 0;
    for (let i = 0; i < size; i++) v = v * 256 + pkt[off + i];
    return v >>> 0;
  };
  for (let pc = 0, steps = 0; pc < prog.length; pc++, steps++) {
    if (steps > 100_000) throw new Error('filter does not terminate');
    const { code, jt, jf, k } = prog[pc];
    const cls = code & 0x07;
    const size = [4, 2, 1][(code >> 3) & 0x03] ?? 4;
    const mode = code & 0xe0;
    const src = code & 0x08 ? X : k;
    switch (cls) {
      case 0x00: {
        // LD
        let v: number | undefined;
        if (mode === 0x00) v = k; // IMM
        else if (mode === 0x20) v = load(k, size); // ABS
        else if (mode === 0x40) v = load((X + k) >>> 0, size); // IND
        else if (mode === 0x60) v = M[k]; // MEM
        else if (mode === 0x80) v = len; // LEN
        else throw new Error(`insn ${pc}: unknown LD mode ${mode}`);
        if (v === undefined) return 0;
        A = v >>> 0;
        break;
      }
      case 0x01: {
        // LDX
        if (mode === 0x00) X = k >>> 0;
        else if (mode === 0x60) X = M[k];
        else if (mode === 0x80) X = len;
        else if (mode === 0xa0) {
          const b = load(k, 1);
          if (b === undefined) return 0;
          X = (b & 0x0f) * 4;
        } else throw new Error(`insn ${pc}: unknown LDX mode ${mode}`);
        break;
      }
      case 0x02:
        M[k] = A;
        break;
      case 0x03:
        M[k] = X;
        break;
      case 0x04: {
        // ALU
        const op = code & 0xf0;
        switch (op) {
          case 0x00: A = (A + src) >>> 0; break;
          case 0x10: A = (A - src) >>> 0; break;
          case 0x20: A = Math.imul(A, src) >>> 0; break;
          case 0x30: if (src === 0) return 0; A = Math.floor(A / src) >>> 0; break;
          case 0x40: A = (A | src) >>> 0; break;
          case 0x50: A = (A & src) >>> 0; break;
          case 0x60: A = src >= 32 ? 0 : (A << src) >>> 0; break;
          case 0x70: A = src >= 32 ? 0 : A >>> src; break;
          case 0x80: A = -A >>> 0; break;
          case 0x90: if (src === 0) return 0; A = (A % src) >>> 0; break;
          case 0xa0: A = (A ^ src) >>> 0; break;
          default: throw new Error(`insn ${pc}: unknown ALU op ${op}`);
        }
        break;
      }
      case 0x05: {
        // JMP
        const op = code & 0xf0;
        if (op === 0x00) {
          pc += k;
          break;
        }
        let cond: boolean;
        if (op === 0x10) cond = A === src;
        else if (op === 0x20) cond = A > src;
        else if (op === 0x30) cond = A >= src;
        else if (op === 0x40) cond = (A & src) !== 0;
        else throw new Error(`insn ${pc}: unknown JMP op ${op}`);
        pc += cond ? jt : jf;
        break;
      }
      case 0x06:
        return (code & 0x18) === 0x10 ? A : k; // RET A | RET K
      case 0x07:
        if ((code & 0xf8) === 0x00) X = A; // TAX
        else A = X; // TXA
        break;
    }
  }
  throw new Error('filter ran off its end');
}
