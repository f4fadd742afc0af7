// The validated knockd.conf model: what src/config/parse.ts produces and src/config/program.ts compiles.
// Field names follow the directives; defaults are knockd 0.8's and, for the extensions, README.md's.
import type { AddressBlock } from '../address.js';

export type Proto = 'tcp' | 'udp';
/** A knock step's protocol: `icmp` (an extension) is an ICMP/ICMPv6 echo request, `port` its payload length. */
export type StepProto = Proto | 'icmp';

export interface Step {
  port: number; // 0..65535; icmp: 0..MAX_ICMP_PAYLOAD
  proto: StepProto;
}

/** The largest echo payload an IPv6 packet carries (65,535 − 8); over IPv4 it is 65,507. */
export const MAX_ICMP_PAYLOAD = 65527;

/** TCP flag bits as on the wire (byte 13 of the TCP header). */
export const TCP_FLAG = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32 } as const;

export interface TcpFlagRule {
  mustSet: number; // bit set of TCP_FLAG values that must be present
  mustClear: number; // bit set that must be absent
}

/**
 * What a derived door's TCP knocks must carry on top of its TCPFlags (the program compiler adds it): only
 * a client's SYN counts. The kernel's RST (and a SYN+ACK) answering a knock goes to the client's port,
 * which can lie inside the door's Port_Range (docs/MATCHER.md §10).
 */
export const DERIVED_TCP_FLAGS: TcpFlagRule = { mustSet: TCP_FLAG.SYN, mustClear: TCP_FLAG.ACK | TCP_FLAG.RST };

export interface NftSetRef {
  family: 'ip' | 'ip6' | 'inet' | 'bridge' | 'arp' | 'netdev';
  table: string;
  set: string;
}

export interface GuardedPort {
  port: number;
  proto: Proto;
}

/** Derived (replay-resistant) door settings; see issue 7 / README "Derived doors". */
export interface DerivedDoor {
  secretFile: string;
  /** the key read from secretFile (src/config/keys.ts readSecretFile): 16..64 bytes */
  key: Uint8Array;
  sequenceLength: number;
  ports: number[]; // the port range, expanded and sorted
  protocols: Proto[];
  timeStep: number; // seconds
  bindSource: boolean;
}

/** Single Packet Authorization door (fwknop client); see docs/SPA.md. */
export interface SpaDoor {
  keyFile: string;
  encKey: Uint8Array;
  hmacKey: Uint8Array;
  port: number; // UDP port, default 62201
  /** a client-requested access time is honoured up to this many seconds */
  maxTimeout: number;
  /** the request must name the packet's own source (no 0.0.0.0, no other address) */
  requireSourceAddress: boolean;
  /** allowed user names; empty = any */
  users: string[];
  /** allowed packet sources; empty = any */
  sources: AddressBlock[];
  /** seconds the client's timestamp may differ from ours */
  maxPacketAge: number;
}

export interface DoorConfig {
  name: string;
  /** line of the section header, for messages */
  line: number;
  sequence: Step[];
  /** path of the one-time sequences file, when the door uses one */
  oneTimeSequences?: string;
  seqTimeout: number; // seconds (atoi; may be <= 0)
  startCommand?: string;
  /** undefined: fall back to startCommand; '' : run nothing for IPv6 */
  startCommand6?: string;
  cmdTimeout: number; // seconds
  stopCommand?: string;
  stopCommand6?: string;
  tcpFlags: TcpFlagRule;
  /** Target as written; targetAddress is its parsed form (undefined if it is not an IP literal) */
  target?: string;
  targetAddress?: { family: 4 | 6; bytes: Uint8Array };
  // --- extensions (README.md, Configuration) ---
  open: GuardedPort[];
  openTimeout: number; // seconds, default 30
  nftSet?: NftSetRef;
  hook: 'input' | 'forward';
  allowDuplicates: boolean;
  cooldown: number; // seconds, 0 = off
  dedupe: boolean;
  derived?: DerivedDoor;
  spa?: SpaDoor;
}

/** The door adds elements to an nftables set when it opens: its own guard sets (Open) or the operator's (NftSet). */
export const hasNftAction = (door: DoorConfig): boolean => door.open.length > 0 || door.nftSet !== undefined;

/** nft's identifier syntax (letters, digits, `_ . / -`, not starting with a digit), up to 255 bytes (the
 * kernel's name limit less the terminating NUL); ASCII only, so characters are bytes. */
export const NFT_IDENTIFIER = /^[A-Za-z_.][A-Za-z0-9_./-]{0,254}$/;

export interface OptionsConfig {
  useSyslog: boolean;
  logFile?: string;
  pidFile?: string;
  /** Interface names as written (checked only where used: captureInterfaces); the first Interface
   * directive wins (knockd), a value may list several. */
  interfaces?: string[];
  /** the line of that Interface directive */
  interfaceLine?: number;
  // --- extensions ---
  maxTracked: number; // default 1,048,576
  nftTable: string; // default knockd_fast
  threads?: number;
  logFormat?: 'knockd' | 'json';
  metricsListen?: string;
  stateFile?: string;
  /** fwknopd's access.conf, whose stanzas become SPA doors (docs/SPA.md §6) */
  fwknopAccess?: { path: string; line: number };
  /** Fleet = ...: grants and single-use state shared with other members through Redis (docs/FLEET.md) */
  fleet?: FleetConfig;
}

/** Where the fleet's store is and how this member joins it. */
export interface FleetConfig {
  /** Fleet as written: may carry a password, so print it only through src/config/store-url.ts redactStoreUrl */
  url: string;
  /** Fleet_Name: the namespace of the keys (several fleets may share one Redis); default knockd-fast */
  name: string;
  /** Fleet_Member: this member's name; default the host name */
  member: string;
  keyFile: string;
  /** the shared HMAC key read from keyFile (16..64 bytes) */
  key: Uint8Array;
  /** Fleet_Offline: single-use doors with the store unreachable decide locally, or refuse */
  offline: 'local' | 'deny';
  /** Fleet_Commands: start_command doors run on the member that saw the knock only, or on every member */
  commands: 'local' | 'all';
  /** Fleet_Password_File: the store's password (never printed) */
  passwordFile?: string;
  password?: string;
}

export interface KnockdConfig {
  path: string;
  options: OptionsConfig;
  doors: DoorConfig[];
  /** non-fatal remarks (e.g. a Target that is not an IP address and so can never match) */
  warnings: string[];
}

export const DEFAULTS = {
  seqTimeout: 25,
  cmdTimeout: 10,
  openTimeout: 30,
  maxTracked: 1_048_576,
  nftTable: 'knockd_fast',
  interface: 'eth0',
  pidFile: '/var/run/knockd.pid',
  configPath: '/etc/knockd.conf',
  timeStep: 30,
  spaPort: 62201,
  spaMaxTimeout: 300,
  spaMaxPacketAge: 120,
} as const;
