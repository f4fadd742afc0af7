// nftables doors, the element writers: how one batch of grants reaches the kernel. Netlink from the addon
// (native/core/nft_elements.h) by default; one long-lived `nft -i` when the addon cannot load.
import type { NftSetRef } from '../../config/types.js';
import { loadBinding, type NftElementsHandle } from '../../native.js';
import type { LogFn } from '../types.js';
import { NftError, NftShell, firstLine, setsMissing, type NftRunner } from './process.js';

/** The elements of one batch that go to one set. */
export interface SetBatch {
  ref: NftSetRef;
  family: 4 | 6;
  addresses: string[];
  /** the same addresses, 16 bytes each (src/address.ts) */
  bytes: Uint8Array[];
  timeoutsMs: number[];
}

/** Why a batch was not applied; `missing`: a table or set is gone, so the table is installed again. */
export interface WriteFailure {
  missing: boolean;
  message: string;
}

/**
 * Applies one batch as one transaction, all or nothing. `add element` does not restart the timeout of an
 * element already there (checked on 6.18 with nft 1.0.6), so each element is added (so that it exists),
 * deleted and added again in the same transaction: its timeout restarts and no packet sees it missing.
 */
export interface ElementWriter {
  /** default wait for more grants before a batch is applied (0: the end of the event-loop turn) */
  readonly coalesceMs: number;
  write(sets: SetBatch[]): Promise<WriteFailure | undefined>;
  close(): void;
}

/** The kernel's nftables API over NETLINK_NETFILTER, from the addon: microseconds per batch. */
class NetlinkWriter implements ElementWriter {
  // a transaction costs ~0.1 ms, so a batch is whatever arrived in the same turn: grants of one event batch
  readonly coalesceMs = 0;

  constructor(private readonly handle: NftElementsHandle) {}

  async write(sets: SetBatch[]): Promise<WriteFailure | undefined> {
    const native = sets.map(({ ref, family, bytes, timeoutsMs }) => {
      const width = family === 4 ? 4 : 16;
      const packed = new Uint8Array(width * bytes.length);
      for (let i = 0; i < bytes.length; i++) packed.set(width === 16 ? bytes[i] : bytes[i].subarray(0, width), i * width);
      return { family: ref.family, table: ref.table, set: ref.set, addresses: packed, timeoutsMs: Float64Array.from(timeoutsMs) };
    });
    try {
      this.handle.refresh(native);
      return undefined;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return { missing: e.code === 'ENOENT', message: `netlink: ${e.message}` };
    }
  }

  close(): void {
    this.handle.close();
  }
}

/** `nft -i` fed the equivalent script: the fallback when the addon cannot load. */
class NftShellWriter implements ElementWriter {
  // each transaction is a round trip through another process: wait a little for more grants
  readonly coalesceMs = 2;
  private shell: NftShell | undefined;

  // started at once, so the first grant does not wait for nft to start
  constructor(private readonly runner: NftRunner) {
    this.shell = new NftShell(runner);
  }

  async write(sets: SetBatch[]): Promise<WriteFailure | undefined> {
    let script = '';
    for (const { ref, addresses, timeoutsMs } of sets) {
      const set = `${ref.family} ${ref.table} ${ref.set}`;
      const add = `add element ${set} { ${addresses.map((a, i) => `${a} timeout ${timeoutsMs[i]}ms`).join(', ')} }\n`;
      script += `${add}delete element ${set} { ${addresses.join(', ')} }\n${add}`;
    }
    if (!this.shell?.alive) {
      this.shell?.close();
      this.shell = new NftShell(this.runner);
    }
    let result;
    try {
      result = await this.shell.run(script);
    } catch (err) {
      return { missing: false, message: (err as Error).message };
    }
    if (result.code === 0) return undefined;
    // nft -i reports no error code: a listing tells whether a set is gone
    const missing = await setsMissing(this.runner, sets.map((s) => s.ref)).catch(() => false);
    return { missing, message: result.output };
  }

  close(): void {
    this.shell?.close();
    this.shell = undefined;
  }
}

/** The netlink writer, or `nft -i` when asked for or when the addon cannot load (said once in the log). */
export function openWriter(kind: 'netlink' | 'nft', runner: NftRunner, log: LogFn): ElementWriter {
  if (kind === 'nft') return new NftShellWriter(runner);
  let binding;
  try {
    binding = loadBinding();
  } catch (err) {
    log(`nft: ${firstLine((err as Error).message)}; set elements go through nft -i instead (slower)`);
    return new NftShellWriter(runner);
  }
  try {
    return new NetlinkWriter(new binding.NftElements(runner.netns ? `/run/netns/${runner.netns}` : undefined));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const fix = e.code === 'EPERM' ? '; knockd-fast needs CAP_NET_ADMIN (see examples/knockd-fast.service)' : '';
    throw new NftError(`cannot open the netlink socket for nftables set elements: ${e.message}${fix}`);
  }
}
