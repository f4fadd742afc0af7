// Terse DoorConfig / KnockdConfig construction for tests, and the reference configs C1..C15 (each checked against knockd 0.8).
import { parseAddress, type Address } from '../../src/address.js';
import { defaultDoor, parseConfigText } from '../../src/config/parse.js';
import { DEFAULTS, TCP_FLAG, type DoorConfig, type KnockdConfig, type OptionsConfig, type StepProto, type Step } from '../../src/config/types.js';
import { compileProgram, type CompiledProgram, type CompileOptions } from '../../src/config/program.js';

/** `7000,8000:udp,1200:icmp,9000` -> steps (the knockd sequence syntax, without its atoi leniency); '' -> none
 * (an exhausted one-time sequences file). */
export function steps(sequence: string): Step[] {
  if (sequence === '') return [];
  return sequence.split(',').map((item) => {
    const [port, proto = 'tcp'] = item.trim().split(':');
    const p = proto.trim().toLowerCase();
    if (p !== 'tcp' && p !== 'udp' && p !== 'icmp') throw new Error(`test helper: bad protocol in ${sequence}`);
    return { port: Number(port), proto: p as StepProto };
  });
}

/** `syn,!ack` -> the flag rule. */
export function tcpFlags(text = ''): DoorConfig['tcpFlags'] {
  let mustSet = 0;
  let mustClear = 0;
  for (const item of text.split(',').filter((s) => s !== '')) {
    const bit = TCP_FLAG[item.replace('!', '').toUpperCase() as keyof typeof TCP_FLAG];
    if (bit === undefined) throw new Error(`test helper: bad flag ${item}`);
    if (item.startsWith('!')) mustClear |= bit;
    else mustSet |= bit;
  }
  return { mustSet, mustClear };
}

export interface DoorShape extends Partial<Omit<DoorConfig, 'tcpFlags' | 'sequence'>> {
  tcpflags?: string;
}

/** A door with knockd's defaults and the conformance table's `echo <DOOR> %IP%` command. */
export function door(name: string, sequence: string, shape: DoorShape = {}): DoorConfig {
  const { tcpflags, ...rest } = shape;
  const d: DoorConfig = { ...defaultDoor(name, 1), sequence: steps(sequence), startCommand: `echo ${name} %IP%`, tcpFlags: tcpFlags(tcpflags), ...rest };
  if (d.target !== undefined && d.targetAddress === undefined) {
    const a = parseAddress(d.target);
    if (a) d.targetAddress = a;
  }
  return d;
}

export function config(doors: DoorConfig[], options: Partial<OptionsConfig> = {}): KnockdConfig {
  return {
    path: '/test/knockd.conf',
    options: { useSyslog: false, maxTracked: DEFAULTS.maxTracked, nftTable: DEFAULTS.nftTable, ...options },
    doors,
    warnings: [],
  };
}

/** The conformance setup's capture addresses (the conformance suite, test/matcher-suite/). */
export const LOCAL_ADDRESSES: Address[] = [parseAddress('192.0.2.2')!, parseAddress('fd00::2')!];

/** Compiles for the conformance setup: stage events on, no event budget, unless opts say otherwise. */
export function compile(cfg: KnockdConfig, opts: Partial<CompileOptions> = {}): CompiledProgram {
  return compileProgram(cfg, { localAddresses: LOCAL_ADDRESSES, stageEvents: true, eventBudget: 0, ...opts });
}

/** knockd.conf text, one section per array: `['A', 'sequence=…', 'seq_timeout=5']`, each door with the
 * table's `command=echo <DOOR> %IP%` first (a later command line overrides it). */
function conf(...sections: string[][]): KnockdConfig {
  const text = sections.map(([name, ...directives]) => [`[${name}]`, `command=echo ${name} %IP%`, ...directives].join('\n')).join('\n');
  return parseConfigText(text, '/test/knockd.conf');
}

const C1 = ['A', 'sequence=7000,8000,9000', 'seq_timeout=5'];

/** The reference configs C1..C15, parsed from knockd.conf text. C12 takes the sequence its one-time file
 * currently yields ('' once it is exhausted) and is built directly, as the file is the controller's. */
export const CONFIGS = {
  C1: () => conf(C1),
  C2: () => conf([...C1, 'tcpflags=syn']),
  C3: () => conf(['A', 'sequence=7000,8000,9000', 'tcpflags=syn'], ['B', 'sequence=8000,5555']),
  C4: () => conf(['A', 'sequence=7000,8000,9000'], ['B', 'sequence=7000,8000,10000']),
  C5: () => conf(['A', 'sequence=7000,8000'], ['B', 'sequence=7000,8000,9000']),
  C5r: () => conf(['B', 'sequence=7000,8000,9000'], ['A', 'sequence=7000,8000']),
  C6: () => conf(['A', 'sequence=7000,8000,9000'], ['B', 'sequence=5000,6000']),
  C7: () => conf(['A', 'sequence=7000:udp,8000:tcp,9000:udp']),
  C7b: () => conf(['A', 'sequence=7000:udp,8000:tcp,9000:udp'], ['B', 'sequence=8000:udp,1:udp']),
  C8: () => conf(['A', 'sequence=7000,7000,8000']),
  C9: () => conf(['A', 'sequence=7000']),
  C10: () => conf([...C1, 'command_6 = echo A6 %IP%']),
  C11: () => conf([...C1, 'target=192.0.2.77']),
  C12: (sequence: string) => config([door('A', sequence, { seqTimeout: 5, oneTimeSequences: '/test/F' })]),
  C13: () => conf(['A', 'sequence=7000', 'start_command=echo START %IP%', 'cmd_timeout=1', 'stop_command=echo STOP %IP%']),
  C15: () => conf([...C1, 'tcpflags=syn,!ack']),
} as const;

/** The knock-door configs of the seeded random traces (the differential test, test/matcher.parity.test.ts, and
 * the live-vs-replay test): they stress cohorts, flags, protocols, targets, duplicates and timeouts at ≤ 0 s. */
export const KNOCK_TRACE_CONFIGS: (() => KnockdConfig)[] = [
  CONFIGS.C1,
  CONFIGS.C3,
  CONFIGS.C4,
  CONFIGS.C5,
  CONFIGS.C5r,
  CONFIGS.C6,
  CONFIGS.C7b,
  CONFIGS.C8,
  CONFIGS.C11,
  CONFIGS.C15,
  () =>
    config([
      door('A', '7000,8000,9000', { seqTimeout: 5, allowDuplicates: true }),
      door('B', '7000,8000', { seqTimeout: 2, tcpflags: 'syn' }),
      door('C', '7000', { seqTimeout: 1 }),
      door('D', '8000:udp,9000,7000', { seqTimeout: 0 }),
      door('E', '9000,9000,9000', { seqTimeout: -1, allowDuplicates: true }),
    ]),
  // ICMP echo steps (their "port" is the payload length): a length equal to a TCP and a UDP port, a first
  // step shared with a TCP door's, ICMP between TCP steps, and flags that ICMP must ignore
  () =>
    config([
      door('I', '7000,1200:icmp,9000', { seqTimeout: 5, tcpflags: 'syn,!ack' }),
      door('J', '56:icmp,8000:udp,56:icmp', { seqTimeout: 3, allowDuplicates: true }),
      door('K', '7000:icmp,7000', { seqTimeout: 2 }),
      door('L', '7000,8000:icmp', { seqTimeout: 4, target: 'fd00::2' }),
    ]),
  () =>
    config([
      door('A', '7000,8000,9000', { seqTimeout: 70 }),
      door('B', '7000,8000,9000', { seqTimeout: 3, target: 'fd00::2' }),
      door('C', '5000,6000', { seqTimeout: 4, target: '192.0.2.2', tcpflags: 'syn,!ack' }),
    ]),
];
