// Actions step, nftables doors: the public face of src/actions/nft/. Doors with `Open` get timeout sets and
// guard rules in a table owned by knockd-fast; doors with `NftSet` only get elements added to the operator's
// set. By concern: nft/ruleset.ts (plan and install script), nft/process.ts (running nft, listings),
// nft/writers.ts (netlink or `nft -i` element batches), nft/status.ts, nft/uninstall.ts, nft/backend.ts
// (install, reload, grants). See README "nftables doors" and bench/nft.bench.ts.
export { NftBackend, type NftBackendOptions } from './nft/backend.js';
export { NftError, checkScript as checkNftScript, type NftCheck, type NftTableOptions } from './nft/process.js';
export { nftInstallScript, planNft, type DoorSet, type NftPlan } from './nft/ruleset.js';
export { formatNftStatus, nftStatus, type NftElementStatus, type NftSetStatus, type NftStatus } from './nft/status.js';
export { nftUninstall } from './nft/uninstall.js';
