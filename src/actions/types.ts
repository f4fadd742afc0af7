// The small interfaces through which the door controller drives the action backends
// (src/actions/nft.ts and src/actions/commands.ts).
import type { DoorConfig } from '../config/types.js';

/** Where log lines go; src/report/log.ts supplies the real sink (file, syslog, -v, JSON). */
export type LogFn = (message: string) => void;

/** One opened door for one source, as the controller hands it to a backend. */
export interface Grant {
  door: DoorConfig;
  /** source address text as logged (dotted quad / RFC 5952) */
  source: string;
  family: 4 | 6;
  /** how long the door stays open; default the door's Open_Timeout (a fleet grant gets the time it has left) */
  timeoutMs?: number;
  /** the source in 16-byte form, when the caller parsed it already (a fleet grant: src/fleet/message.ts) */
  address?: Uint8Array;
}

/** A stop command waiting for its cmd_timeout; persisted in the state file across restarts. */
export interface PendingStop {
  door: string;
  source: string;
  family: 4 | 6;
  /** wall-clock time (ms since the epoch) at which the stop command is due */
  dueMs: number;
  /** the stop command with %IP% already expanded */
  command: string;
}

/** The command backend as the controller drives it (src/actions/commands.ts). */
export interface CommandActions {
  /** runs the door's start command for the grant; returns the stop to schedule when one is configured */
  start(grant: Grant): PendingStop | undefined;
  /** runs a stop command that is due */
  stop(stop: PendingStop): void;
  /** due stops that have not started yet: they stay in the state file */
  unrunStops?(): PendingStop[];
}

/** The nftables backend (src/actions/nft.ts): adds or refreshes the source in the door's set. */
export interface NftActions {
  /** may resolve once the element is installed */
  grant(grant: Grant): unknown;
  /** many grants at once (a fleet catch-up page); resolves once every element is installed or refused */
  grantAll(grants: readonly Grant[]): Promise<unknown>;
  /** applies whatever is still batched */
  flush(): Promise<void>;
}
