// The SPA replay cache: digests of the packets already accepted, kept until the timestamp window alone
// would refuse them, and written to a file (atomically with src/config/files.ts replaceFile, coalesced to
// one write per turn of the event loop) so a restart does not reopen the replay window, as fwknopd's
// digest cache does.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { replaceFile } from '../config/files.js';

/** The daemon keeps the cache next to its state file (StateFile / --state-file). */
export const SPA_REPLAY_FILE_NAME = 'spa-replay.json';
const VERSION = 1;

export class ReplayCacheError extends Error {}

interface CacheFile {
  version: number;
  /** digest -> seconds since the epoch after which the entry may be forgotten */
  digests: Record<string, number>;
}

export class ReplayCache {
  private readonly digests = new Map<string, number>();
  private dirty = false;

  /** `path` undefined: in memory only (replay of a capture, tests). */
  constructor(
    private readonly path?: string,
    private readonly onWriteError: (message: string) => void = () => {},
  ) {
    if (path) this.load(path);
  }

  has(digest: string, nowS: number): boolean {
    const until = this.digests.get(digest);
    return until !== undefined && until >= nowS;
  }

  /** Remembers a digest until `untilS`; the file is rewritten once this turn of the event loop ends. */
  add(digest: string, untilS: number): void {
    this.digests.set(digest, untilS);
    this.persistSoon();
  }

  get size(): number {
    return this.digests.size;
  }

  /** Writes now (shutdown). */
  flush(): void {
    if (!this.path) return;
    this.dirty = false;
    this.write(this.path);
  }

  private persistSoon(): void {
    if (!this.path || this.dirty) return;
    this.dirty = true;
    setImmediate(() => {
      if (!this.dirty) return;
      this.dirty = false;
      this.write(this.path!);
    });
  }

  private write(path: string): void {
    const now = Date.now() / 1000;
    for (const [d, until] of this.digests) if (until < now) this.digests.delete(d);
    const file: CacheFile = { version: VERSION, digests: Object.fromEntries(this.digests) };
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      replaceFile(path, `${JSON.stringify(file)}\n`, { mode: 0o600 });
    } catch (err) {
      this.onWriteError(`error: cannot write the SPA replay cache ${path}: ${(err as Error).message}`);
    }
  }

  private load(path: string): void {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new ReplayCacheError(`cannot read the SPA replay cache ${path}: ${(err as Error).message}`);
    }
    let data: CacheFile;
    try {
      data = JSON.parse(text) as CacheFile;
    } catch (err) {
      throw new ReplayCacheError(`the SPA replay cache ${path} is not valid JSON (${(err as Error).message}); move it aside to start with an empty cache`);
    }
    const ok =
      typeof data === 'object' &&
      data !== null &&
      data.version === VERSION &&
      typeof data.digests === 'object' &&
      data.digests !== null &&
      Object.values(data.digests).every((v) => typeof v === 'number' && Number.isFinite(v));
    if (!ok) throw new ReplayCacheError(`${path} is not a knockd-fast SPA replay cache of version ${VERSION}; move it aside to start with an empty cache`);
    for (const [d, until] of Object.entries(data.digests)) this.digests.set(d, until);
  }
}
