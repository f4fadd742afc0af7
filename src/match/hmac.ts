// HMAC-SHA256 for the matcher's hot path: the key's inner and outer pad blocks are hashed once per
// program load, so one MAC of a short message (≤ 55 bytes) costs two compressions and allocates nothing.
// node:crypto's createHmac allocates an object and a Buffer per call; src/match/derive.ts uses it where speed
// does not matter (client, tests), and the tests hold both to the same vectors.
import { createHash } from 'node:crypto';

const K = Uint32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);
const IV = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19);

const schedule = new Uint32Array(64);

/** out[0..8) = compress(state, block), the 16 big-endian words of one 64-byte block. */
function compress(state: Uint32Array, block: Uint32Array, out: Uint32Array): void {
  const w = schedule;
  for (let i = 0; i < 16; i++) w[i] = block[i];
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15];
    const b = w[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0] | 0;
  let b = state[1] | 0;
  let c = state[2] | 0;
  let d = state[3] | 0;
  let e = state[4] | 0;
  let f = state[5] | 0;
  let g = state[6] | 0;
  let h = state[7] | 0;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  out[0] = state[0] + a;
  out[1] = state[1] + b;
  out[2] = state[2] + c;
  out[3] = state[3] + d;
  out[4] = state[4] + e;
  out[5] = state[5] + f;
  out[6] = state[6] + g;
  out[7] = state[7] + h;
}

const MAX_MESSAGE = 55; // what fits in one final block with its padding

export class HmacSha256Key {
  private readonly inner = new Uint32Array(8);
  private readonly outer = new Uint32Array(8);
  private readonly block = new Uint32Array(16);
  private readonly innerDigest = new Uint32Array(8);

  constructor(key: Uint8Array) {
    const k = new Uint8Array(64);
    k.set(key.length > 64 ? createHash('sha256').update(key).digest() : key);
    const pad = new Uint32Array(16);
    const padWith = (x: number): Uint32Array => {
      for (let i = 0; i < 16; i++) {
        pad[i] = (((k[4 * i] ^ x) << 24) | ((k[4 * i + 1] ^ x) << 16) | ((k[4 * i + 2] ^ x) << 8) | (k[4 * i + 3] ^ x)) >>> 0;
      }
      return pad;
    };
    compress(IV, padWith(0x36), this.inner);
    compress(IV, padWith(0x5c), this.outer);
  }

  /** out (8 big-endian words) = HMAC-SHA256(key, message[0..length)); length ≤ 55. */
  mac(message: Uint8Array, length: number, out: Uint32Array): void {
    if (length > MAX_MESSAGE) throw new RangeError(`HmacSha256Key.mac takes at most ${MAX_MESSAGE} bytes (got ${length})`);
    const blk = this.block;
    blk.fill(0);
    for (let i = 0; i < length; i++) blk[i >> 2] |= message[i] << (24 - 8 * (i & 3));
    blk[length >> 2] |= 0x80 << (24 - 8 * (length & 3));
    blk[15] = (64 + length) * 8;
    compress(this.inner, blk, this.innerDigest);
    for (let i = 0; i < 8; i++) blk[i] = this.innerDigest[i];
    blk[8] = 0x80000000;
    for (let i = 9; i < 15; i++) blk[i] = 0;
    blk[15] = (64 + 32) * 8;
    compress(this.outer, blk, out);
  }
}
