// SPA keys in the form `fwknop --key-gen` prints them (`KEY_BASE64: ...` and `HMAC_KEY_BASE64: ...`, one
// per line; access.conf's `KEY_BASE64   ...` spacing works too), from a file only root may read.
import { readPrivateFile, SecretFileError } from '../match/derive.js';
import type { SpaKeys } from './packet.js';

/** fwknop's limits: Rijndael keys up to 32 bytes (RIJNDAEL_MAX_KEYSIZE), HMAC keys up to 128. */
const MAX_ENC_KEY = 32;
const MAX_HMAC_KEY = 128;
const MIN_KEY = 1;

export class SpaKeyError extends Error {}

/** A base64 key value as written in fwknop files; '=' padding optional. */
export function decodeKeyBase64(value: string, name: string, max: number): Uint8Array {
  const v = value.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(v) || v.replace(/=+$/, '').length % 4 === 1) {
    throw new SpaKeyError(`${name} is not base64 (generate keys with: fwknop --key-gen)`);
  }
  const key = Buffer.from(v, 'base64');
  if (key.length < MIN_KEY || key.length > max) throw new SpaKeyError(`${name} decodes to ${key.length} bytes; fwknop accepts 1 to ${max}`);
  return new Uint8Array(key);
}

export const decodeEncKey = (value: string): Uint8Array => decodeKeyBase64(value, 'KEY_BASE64', MAX_ENC_KEY);
export const decodeHmacKey = (value: string): Uint8Array => decodeKeyBase64(value, 'HMAC_KEY_BASE64', MAX_HMAC_KEY);

/** Reads both keys; throws SpaKeyError / SecretFileError saying what is wrong and how to fix it. */
export function readSpaKeyFile(path: string): SpaKeys {
  const text = readPrivateFile(path).toString('latin1');
  const found: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(KEY_BASE64|HMAC_KEY_BASE64)\s*[:\s]\s*(\S+)\s*$/.exec(line);
    if (m) found[m[1]] = m[2];
  }
  const missing = ['KEY_BASE64', 'HMAC_KEY_BASE64'].filter((k) => found[k] === undefined);
  if (missing.length > 0) {
    throw new SpaKeyError(`${path}: no ${missing.join(' and no ')} line; write the file with: fwknop --key-gen --key-gen-file ${path}`);
  }
  try {
    return { encKey: decodeEncKey(found.KEY_BASE64), hmacKey: decodeHmacKey(found.HMAC_KEY_BASE64) };
  } catch (err) {
    if (err instanceof SpaKeyError) throw new SpaKeyError(`${path}: ${err.message}`);
    throw err;
  }
}

export { SecretFileError };
