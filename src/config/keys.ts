// Key files: a derived door's Secret_File and an SPA door's SPA_Key_File (in the form `fwknop --key-gen`
// prints, `KEY_BASE64: ...` and `HMAC_KEY_BASE64: ...` one per line; access.conf's `KEY_BASE64   ...`
// spacing works too). Both must be private files, like an ssh private key.
import { statSync } from 'node:fs';
import { checkTrusted, FileSafetyError, readRegularFile } from './files.js';

/** An SPA door's two keys. */
export interface SpaKeys {
  /** the Rijndael key (KEY_BASE64 decoded) */
  encKey: Uint8Array;
  /** the HMAC-SHA256 key (HMAC_KEY_BASE64 decoded) */
  hmacKey: Uint8Array;
}

export class SecretFileError extends Error {}

/** A key file holds at most 64 bytes, or their hex text: anything much longer is not a key file. */
const SECRET_FILE_MAX_BYTES = 4096;

/**
 * Reads a key file that must not be readable by group or others, like an ssh private key (derived doors'
 * Secret_File, SPA doors' SPA_Key_File). Throws SecretFileError naming the file and the fix.
 */
export function readPrivateFile(path: string, opts: { requirePrivate?: boolean; maxBytes?: number } = {}): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new SecretFileError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  if ((opts.requirePrivate ?? true) && (st.mode & 0o077) !== 0) {
    throw new SecretFileError(
      `${path}: the secret file is readable by other users (mode ${(st.mode & 0o777).toString(8)}); fix with: chmod 600 ${path}`,
    );
  }
  try {
    // owned by root or this user, and nobody else can change it or its directories (StrictModes)
    const raw = readRegularFile(path, { what: 'secret file', maxBytes: opts.maxBytes ?? SECRET_FILE_MAX_BYTES });
    checkTrusted(path, 'secret file');
    return raw;
  } catch (err) {
    if (err instanceof FileSafetyError) throw new SecretFileError(err.message);
    throw new SecretFileError(`${path}: ${(err as Error).message}`);
  }
}

/**
 * Reads a derived door's key: hex text (at least 32 hex digits, as `knockd-fast secret` writes) or raw
 * bytes (at least 16), from a private file (readPrivateFile).
 */
export function readSecretFile(path: string, opts: { requirePrivate?: boolean } = {}): Uint8Array {
  const raw = readPrivateFile(path, opts);
  const text = raw.toString('latin1').trim();
  const key = /^([0-9a-fA-F]{2}){16,}$/.test(text) ? Buffer.from(text, 'hex') : raw;
  if (key.length < 16) {
    throw new SecretFileError(`${path}: the key is ${key.length} bytes; at least 16 bytes (128 bits) are needed — generate one with: knockd-fast secret --out ${path} (after removing this one)`);
  }
  if (key.length > 64) {
    throw new SecretFileError(`${path}: the key is ${key.length} bytes; at most 64 bytes are supported`);
  }
  return new Uint8Array(key);
}


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
