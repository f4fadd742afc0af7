// Property-based fuzzing (fast-check) of what runs in TypeScript on untrusted or semi-trusted input: the
// config parser, the capture-file reader behind --replay, and the door controller's handling of event
// batches. Bounded for CI: FUZZ_RUNS (default 300) cases per property, fixed seed unless FUZZ_SEED is set.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Grant, PendingStop } from '../src/actions/types.js';
import { CaptureFileError, readCapture, writePcap } from '../src/capture/pcap.js';
import { decodeEvents, EVENT_RECORD_SIZE } from '../src/match/events.js';
import { ConfigError, parseConfigText } from '../src/config/parse.js';
import type { CommandActions } from '../src/actions/types.js';
import { DoorController } from '../src/control/controller.js';
import { knockFrame } from './helpers/packets.js';
import { door } from './helpers/doors.js';
import { T0 } from './helpers/env.js';

const runs = Number(process.env.FUZZ_RUNS ?? 300);
const params = { numRuns: runs, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 0x14 };

// ------------------------------------------------------------------ config parser

const DIRECTIVES = [
  'Sequence', 'One_Time_Sequences', 'Seq_Timeout', 'Timeout', 'Start_Command', 'Command', 'Cmd_Timeout', 'Stop_Command',
  'Start_Command_6', 'Stop_Command_6', 'TCPFlags', 'Open', 'Open_Timeout', 'NftSet', 'Hook', 'Allow_Duplicates', 'Cooldown',
  'Dedupe', 'Target', 'Secret_File', 'Sequence_Length', 'Port_Range', 'Protocols', 'Time_Step', 'Bind_Source',
  'UseSyslog', 'LogFile', 'PidFile', 'Interface', 'MaxTracked', 'Threads', 'StateFile', 'NftTable', 'LogFormat', 'MetricsListen',
];
const VALUES = ['7000,8000,9000', '7000:udp', '1:icmp', '0', '-1', '2147483647', '2147483648', '99999999999999999999', '', 'yes', 'no',
  'syn,!ack', '22/tcp', 'input', 'forward', 'inet filter allowed', '198.51.100.1', '2001:db8::1', '/nonexistent', '%IP%', 'ä'.repeat(70)];

const configLine = fc.oneof(
  fc.constantFrom('[options]', '[A]', '[B]', '[]', '[ä]', '#', ''),
  fc.tuple(fc.constantFrom(...DIRECTIVES), fc.constantFrom(' = ', '=', ' '), fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 40 }))).map(([k, eq, v]) => `  ${k}${eq}${v}`),
  fc.string({ maxLength: 80, unit: 'binary' }),
);

test('config parser: any text is a config or a ConfigError, never another exception', () => {
  fc.assert(
    fc.property(fc.array(configLine, { maxLength: 25 }), (lines) => {
      try {
        const cfg = parseConfigText(lines.join('\n'));
        assert.ok(Array.isArray(cfg.doors));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        assert.ok(err.message.length > 0 && !err.message.includes('\n    at '));
      }
    }),
    params,
  );
});

// ------------------------------------------------------------------ capture files

const validPcap = writePcap(
  [7000, 8000, 9000].map((dport, i) => ({ data: knockFrame({ src: '198.51.100.1', dst: '198.51.100.2', dport, proto: 'tcp' }), timeUs: T0 + i })),
  1,
);

/** Reads everything; a malformed file may only end in CaptureFileError. */
function readAll(bytes: Uint8Array): void {
  try {
    for (const batch of readCapture(bytes, 'fuzz.pcap')) assert.ok(batch);
  } catch (err) {
    if (!(err instanceof CaptureFileError)) throw err;
  }
}

test('capture reader: random bytes, and valid captures with bytes changed or cut, never end in anything but CaptureFileError', () => {
  const pcapngHead = Uint8Array.of(0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0);
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 512 }),
        fc.tuple(fc.constantFrom(validPcap, pcapngHead), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat()).map(([base, edits, cut]) => {
          const b = Uint8Array.from(base);
          for (const [at, v] of edits) b[at % b.length] = v;
          return b.subarray(0, cut % (b.length + 1));
        }),
        fc.tuple(fc.uint8Array({ maxLength: 256 })).map(([tail]) => Uint8Array.of(...pcapngHead, ...tail)),
      ),
      (bytes) => readAll(bytes),
    ),
    params,
  );
});

// ------------------------------------------------------------------ the controller and event batches

const recordOf = (kind: fc.Arbitrary<number>) =>
  fc
    .record({
      kind,
      reason: fc.integer({ min: 0, max: 8 }),
      family: fc.constantFrom(4, 6),
      stage: fc.integer({ min: 0, max: 255 }),
      door: fc.integer({ min: 0, max: 4 }),
      generation: fc.integer({ min: 0, max: 3 }),
      count: fc.nat(),
      timeUs: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      address: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    })
    .map((r) => {
      const b = new Uint8Array(EVENT_RECORD_SIZE);
      const v = new DataView(b.buffer);
      v.setUint8(0, r.kind);
      v.setUint8(1, r.reason);
      v.setUint8(2, r.family);
      v.setUint8(3, r.stage);
      v.setUint16(4, r.door, true);
      v.setUint32(8, r.generation, true);
      v.setUint32(12, r.count, true);
      v.setBigInt64(16, r.timeUs, true);
      b.set(r.address, 24);
      return b;
    });
/** the kinds the capture side emits */
const record = recordOf(fc.integer({ min: 1, max: 5 }));

test('event batches: records of any kind decode or end in a RangeError naming the byte, nothing else', () => {
  fc.assert(
    fc.property(fc.array(recordOf(fc.integer({ min: 0, max: 255 })), { maxLength: 20 }), fc.nat({ max: 39 }), (records, extra) => {
      const batch = new Uint8Array(records.length * EVENT_RECORD_SIZE + (extra % 2 === 0 ? 0 : extra));
      records.forEach((r, i) => batch.set(r, i * EVENT_RECORD_SIZE));
      try {
        decodeEvents(batch);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        assert.match(err.message, /byte|multiple of 40/);
      }
    }),
    params,
  );
});

test('controller: any batch of event records is handled without an exception; every start is for a known door and an OPEN line', () => {
  fc.assert(
    fc.property(fc.array(record, { maxLength: 60 }), (records) => {
      const batch = new Uint8Array(records.length * EVENT_RECORD_SIZE);
      records.forEach((r, i) => batch.set(r, i * EVENT_RECORD_SIZE));
      const lines: string[] = [];
      const starts: string[] = [];
      const commands: CommandActions = {
        start(g: Grant): PendingStop | undefined {
          starts.push(g.door.name);
          return { door: g.door.name, source: g.source, family: g.family, dueMs: Date.now() + 3_600_000, command: 'true' };
        },
        stop: () => undefined,
      };
      const doors = [door('A', '7000', { startCommand: 'true', stopCommand: 'true' }), door('B', '8000,9000', { startCommand: 'true', cooldown: 5, dedupe: true })];
      const c = new DoorController({ log: (m) => lines.push(m), commands });
      c.setProgram({ words: new Uint32Array(0), doors, generation: 1 });
      c.handleBatch(batch);
      const opens = lines.filter((l) => l.endsWith(': OPEN SESAME')).length;
      assert.ok(starts.length <= opens, `${starts.length} starts for ${opens} OPEN lines`);
      assert.ok(starts.every((n) => n === 'A' || n === 'B'));
      assert.equal(decodeEvents(batch).length <= records.length, true);
      void c.close();
    }),
    params,
  );
});
