// What bench/fleet.bench.ts and its member processes (bench/fleet-member.ts) share: the door, the key,
// the sources, and the messages over the IPC channel.
import { door } from '../test/helpers/doors.js';

export const BENCH_FLEET = 'bench';
export const BENCH_KEY = new Uint8Array(32).fill(0x5a);
export const benchDoor = door('ssh', '7000', { open: [{ port: 22, proto: 'tcp' }], openTimeout: 600, startCommand: undefined });
/** grant i's source: 10.x.y.z, one per i below 2^24 */
export const benchSource = (i: number): string => `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
export const benchIndex = (source: string): number => {
  const [, x, y, z] = source.split('.').map(Number);
  return (x << 16) | (y << 8) | z;
};

export type MemberRequest =
  | { kind: 'share'; start: number; end: number; step: number; rate: number; t0: number }
  | { kind: 'notify'; on: boolean }
  | { kind: 'cpu-start' }
  | { kind: 'stats' }
  | { kind: 'report' }
  | { kind: 'clear' }
  | { kind: 'stop' };

export type MemberReply =
  | { kind: 'ready'; catchUp: { grants: number; ms: number; complete: boolean }; catchUpCpuUs: number }
  | { kind: 'committed'; sources: string[] }
  | { kind: 'shared' }
  | { kind: 'ok' }
  | { kind: 'stats'; applied: number; cpuUs: number; systemUs: number }
  | { kind: 'report'; committed: [string, number][]; sharedAt: [number, number][] };
