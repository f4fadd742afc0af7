// nftables doors, uninstall: `knockd-fast nft uninstall` removes the knockd-fast table and so every open door.
import { NftError, runNft, tableExists, type NftTableOptions } from './process.js';
import { checkTableName } from './ruleset.js';

/** Removes the knockd-fast table. Returns false when it was not installed. */
export async function nftUninstall(opts: NftTableOptions): Promise<boolean> {
  const table = checkTableName(opts.table ?? 'knockd_fast');
  const { code, output } = await runNft(opts, ['delete', 'table', 'inet', table]);
  if (code === 0) return true;
  if (!(await tableExists(opts, 'inet', table))) return false;
  throw new NftError(`nft delete table inet ${table} failed: ${output.trim()}`);
}
