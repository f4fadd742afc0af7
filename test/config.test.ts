// The knockd.conf parser: knockd 0.8's grammar and error texts (byte for byte), one-time sequence
// files (README.md deviation 6), the extension and derived-door directives, and compileProgram
// on parsed configs. The last suite compares error texts and sequences with the installed reference.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { captureInterfaces, ConfigError, defaultDoor, parseConfig, parseConfigText } from '../src/config/parse.js';
import { markOneTimeSequenceUsed, readNextOneTimeSequence } from '../src/config/onetime.js';
import { DEFAULTS, TCP_FLAG, type KnockdConfig, type Step } from '../src/config/types.js';
import { compileProgram, DOOR_HEADER_WORDS, Header, HEADER_WORDS, ADDRESS_WORDS, ProgramError, stepWord } from '../src/config/program.js';
import { parseAddress } from '../src/address.js';
import { isRoot } from './helpers/env.js';

const dir = mkdtempSync(join(tmpdir(), 'kf-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function file(content: string | Buffer, mode = 0o600): string {
  const p = join(dir, `f${++fileNo}`);
  writeFileSync(p, content, { mode });
  chmodSync(p, mode);
  return p;
}

const parse = (text: string): KnockdConfig => parseConfigText(text, 'test.conf');
const seq = (text: string): string => steps(parse(`[A]\nsequence = ${text}\n`).doors[0].sequence);
const steps = (s: Step[]): string => s.map((x) => `${x.port}:${x.proto}`).join(',');

/** Asserts that parsing fails with exactly `message` (and `line`, when given). */
function fails(text: string, message: string, line?: number): void {
  assert.throws(
    () => parse(text),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
      assert.equal(err.message, message);
      if (line !== undefined) assert.equal(err.line, line);
      return true;
    },
  );
}

describe('lexical rules', () => {
  test('# starts a comment only at the start of a trimmed line; later it is part of the value', () => {
    const c = parse('# top\n[A]\n   # indented comment\nsequence = 7000,8000 # x\ncommand = echo a # b\n');
    assert.equal(steps(c.doors[0].sequence), '7000:tcp,8000:tcp');
    assert.equal(c.doors[0].startCommand, 'echo a # b');
    fails('[A]\nsequence=1\nx # y\n', 'config: line 3: syntax error', 3);
  });

  test('CRLF files and every C isspace character are trimmed', () => {
    const c = parse('[A]\r\n\tsequence\v=\f1 , 2:udp\r\n seq_timeout = 7 \r\n');
    assert.equal(steps(c.doors[0].sequence), '1:tcp,2:udp');
    assert.equal(c.doors[0].seqTimeout, 7);
  });

  test('a line longer than 4095 bytes is cut into chunks that count as lines', () => {
    // 4095 bytes then "\n": the newline is read as a line of its own, so "bad" is line 4
    fails(`[A]\n#${'x'.repeat(4094)}\nbad\n`, 'config: line 4: syntax error', 4);
    fails(`[A]\n#${'x'.repeat(4093)}\nbad\n`, 'config: line 3: syntax error', 3);
    // the remainder of a long sequence line is parsed as a line of its own
    fails(`[A]\nsequence=1${' '.repeat(4090)},2\n`, 'config: line 3: syntax error', 3);
    // a long command is cut at the chunk boundary (4095 bytes in all) and the rest is a new line
    const long = `[A]\ncommand=${'y'.repeat(5000)}\n`;
    fails(long, 'config: line 3: syntax error', 3);
    const c = parse(`[A]\nsequence=1\ncommand=${'y'.repeat(4095 - 8)}\n`);
    assert.equal(c.doors[0].startCommand, 'y'.repeat(4087));
  });

  test('chunking counts bytes, not characters', () => {
    // 2-byte characters: 2047 of them plus "#" is 4095 bytes, so the newline is a line of its own
    fails(`[A]\n#${'é'.repeat(2047)}\nbad\n`, 'config: line 4: syntax error', 4);
  });

  test('directives are split at the first = and keys are upper-cased', () => {
    const c = parse('[A]\nSeQuEnCe = 1\nCOMMAND = a=b==c\nstop_command =\n');
    assert.equal(c.doors[0].startCommand, 'a=b==c');
    assert.equal(c.doors[0].stopCommand, '');
    fails('[A]\n=5\n', 'config: line 2: syntax error', 2);
    fails('[A]\nseq timeout = 5\n', 'config: line 2: syntax error', 2);
  });

  test('a directive before any section', () => {
    fails('sequence = 1\n[A]\n', 'config: line 1: all directives must belong to a section', 1);
    fails('\n# c\nUseSyslog\n[A]\nsequence=1\n', 'config: line 3: all directives must belong to a section', 3);
    fails('[A\nsequence=1\n', 'config: line 1: all directives must belong to a section', 1);
  });

  test('bare UseSyslog in any section; any other bare word or UseSyslog = yes is a syntax error', () => {
    assert.equal(parse('[A]\nusesyslog\nsequence=1\n').options.useSyslog, true);
    assert.equal(parse('[options]\n  UseSyslog  \n[A]\nsequence=1\n').options.useSyslog, true);
    assert.equal(parse('[A]\nsequence=1\n').options.useSyslog, false);
    fails('[options]\nUseSyslog = yes\n', 'config: line 2: syntax error', 2);
    fails('[A]\nsequence=1\nverbose\n', 'config: line 3: syntax error', 3);
  });
});

describe('sections', () => {
  test('only exact "options" is global; [Options] and [ options ] are doors', () => {
    const c = parse('[Options]\nsequence=1\n[ options ]\nsequence=2\n[options]\nlogfile=/tmp/x\n');
    assert.deepEqual(
      c.doors.map((d) => [d.name, d.line]),
      [
        ['Options', 1],
        [' options ', 3],
      ],
    );
    assert.equal(c.options.logFile, '/tmp/x');
  });

  test('duplicate door names are independent doors; [options] may repeat and takes directives back', () => {
    const c = parse('[options]\nlogfile=a\n[A]\nsequence=1\n[options]\npidfile=p\n[A]\nsequence=2\n[options]\nlogfile=b\n');
    assert.deepEqual(
      c.doors.map((d) => steps(d.sequence)),
      ['1:tcp', '2:tcp'],
    );
    assert.equal(c.options.logFile, 'b');
    assert.equal(c.options.pidFile, 'p');
    // after [options], a door directive is an options syntax error even though a door came before
    fails('[A]\nsequence=1\n[options]\nsequence=2\n', 'config: line 4: syntax error', 4);
    fails('[A]\nsequence=1\nlogfile=x\n', 'config: line 3: syntax error', 3);
  });

  test('[] is a bad section name; [] inside is verbatim', () => {
    fails('[A]\nsequence=1\n  []  \n', 'config: line 3: bad section name', 3);
    assert.equal(parse('[]]\nsequence=1\n').doors[0].name, ']');
    assert.equal(parse('[a [b] c]\nsequence=1\n').doors[0].name, 'a [b] c');
  });

  test('door names are cut to 127 bytes; non-ASCII names survive', () => {
    assert.equal(parse(`[${'x'.repeat(300)}]\nsequence=1\n`).doors[0].name, 'x'.repeat(127));
    assert.equal(parse('[Tür ü]\nsequence=1\n').doors[0].name, 'Tür ü');
    // "options" compares the first 254 bytes of the name
    assert.equal(parse(`[${'o'.repeat(400)}]\nsequence=1\n`).doors.length, 1);
  });
});

describe('door directives', () => {
  test('defaults', () => {
    const d = parse('[A]\nsequence=1\n').doors[0];
    assert.deepEqual(d, { ...defaultDoor('A', 1), sequence: [{ port: 1, proto: 'tcp' }] });
    assert.equal(d.seqTimeout, 25);
    assert.equal(d.cmdTimeout, 10);
    assert.deepEqual(d.tcpFlags, { mustSet: 0, mustClear: 0 });
    assert.equal(d.openTimeout, 30);
    assert.equal(d.hook, 'input');
    for (const k of ['startCommand', 'startCommand6', 'stopCommand', 'stopCommand6', 'target', 'oneTimeSequences', 'nftSet', 'derived'] as const) {
      assert.equal(d[k], undefined, k);
    }
    const o = parse('[A]\nsequence=1\n').options;
    assert.deepEqual(o, { useSyslog: false, maxTracked: 1_048_576, nftTable: 'knockd_fast' });
  });

  test('last value wins; aliases Timeout, Command, Command_6', () => {
    const d = parse(
      '[A]\nsequence=1,2\nsequence=3\nseq_timeout=5\ntimeout=6\ncommand=c1\nstart_command=c2\nstart_command_6=s6\ncommand_6=c6\n' +
        'cmd_timeout=4\ncmd_timeout=9\nstop_command=x\nstop_command=y\nstop_command_6=z\n',
    ).doors[0];
    assert.equal(steps(d.sequence), '3:tcp');
    assert.equal(d.seqTimeout, 6);
    assert.equal(d.startCommand, 'c2');
    assert.equal(d.startCommand6, 'c6');
    assert.equal(d.cmdTimeout, 9);
    assert.equal(d.stopCommand, 'y');
    assert.equal(d.stopCommand6, 'z');
    fails('[A]\nsequence=1\nstop_command6=x\n', 'config: line 3: syntax error', 3);
  });

  test('_6 commands: undefined falls back, an empty value means nothing', () => {
    const d = parse('[A]\nsequence=1\ncommand=echo %IP%\nstart_command_6=\n').doors[0];
    assert.equal(d.startCommand6, '');
    assert.equal(d.stopCommand6, undefined);
  });

  test('numbers use atoi: blanks, sign, trailing junk, non-numeric 0, 32-bit wrap', () => {
    const t = (v: string) => parse(`[A]\nsequence=1\nseq_timeout = ${v}\n`).doors[0].seqTimeout;
    assert.equal(t('\t-3x'), -3);
    assert.equal(t('+7s'), 7);
    assert.equal(t('abc'), 0);
    assert.equal(t(''), 0);
    assert.equal(t('0x10'), 0);
    assert.equal(t('4294967301'), 5);
    assert.equal(t('99999999999999999999'), -1);
    assert.equal(parse('[A]\nsequence=1\ncmd_timeout= 12abc\n').doors[0].cmdTimeout, 12);
  });

  test('door without a sequence, checked after the whole file in door order', () => {
    fails('[A]\nseq_timeout=5\n[B]\nsequence=1\n', "error: section 'A' has an empty knock sequence", 1);
    fails('[A]\nsequence=1\n[B]\n[C]\n', "error: section 'B' has an empty knock sequence", 3);
    // a syntax error later in the file wins over the missing sequence, as the check comes last
    fails('[A]\n[B]\nbad\n', 'config: line 3: syntax error', 3);
  });

  test('Target: IP literals get an address; a host name is kept with a warning', () => {
    const c = parse('[A]\nsequence=1\ntarget=192.0.2.77\n[B]\nsequence=1\ntarget = fd00::2\n[C]\nsequence=1\ntarget=gw.example\n');
    assert.deepEqual(c.doors[0].targetAddress, parseAddress('192.0.2.77'));
    assert.deepEqual(c.doors[1].targetAddress, parseAddress('fd00::2'));
    assert.equal(c.doors[2].target, 'gw.example');
    assert.equal(c.doors[2].targetAddress, undefined);
    assert.deepEqual(c.warnings, [
      'config: line 9: door C: Target "gw.example" is not an IP address; knockd 0.8 compared it as a string, so it ' +
        'could never match, and knockd-fast ignores this door until Target is an IP address',
    ]);
  });

  test('Target written in a form knockd never matched (upper-case IPv6) is matched by value, with a warning', () => {
    const c = parse('[A]\nsequence=1\ntarget=FD00:0::2\n');
    assert.deepEqual(c.doors[0].targetAddress, parseAddress('fd00::2'));
    assert.match(c.warnings[0], /^config: line 3: door A: Target "FD00:0::2" .*"fd00::2".*matches the address fd00::2$/);
  });
});

describe('sequence syntax', () => {
  test('PORT[:PROTO], protocol case-insensitive and trimmed, text after a second colon ignored', () => {
    assert.equal(seq('7000:UDP, 8000 : Tcp,9000'), '7000:udp,8000:tcp,9000:tcp');
    assert.equal(seq('7000:udp:foo,8000'), '7000:udp,8000:tcp');
    assert.equal(seq('7000,7000,8000'), '7000:tcp,7000:tcp,8000:tcp');
  });

  test('atoi ports: negative wraps mod 65536, junk is 0, empty items are 0/tcp', () => {
    assert.equal(seq('-1,abc,,'), '65535:tcp,0:tcp,0:tcp,0:tcp');
    assert.equal(seq('-70000,2147483648,99999999999999999999,-99999999999999999999'), '61072:tcp,0:tcp,65535:tcp,0:tcp');
    assert.equal(seq('+7000, \t8000x'), '7000:tcp,8000:tcp');
    assert.equal(seq('4294967296'), '0:tcp');
    assert.equal(steps(parse('[A]\nsequence =\n').doors[0].sequence), '0:tcp');
  });

  test('port > 65535 is invalid, shown as written', () => {
    fails('[A]\nsequence = 7000, 70000 :udp\n', 'config: section A: port  70000  is invalid', 2);
    fails('[A]\nsequence=65536\n', 'config: section A: port 65536 is invalid', 2);
    fails('[A]\nsequence=99999999999\n', 'config: section A: port 99999999999 is invalid', 2);
    // the port is checked before the protocol
    fails('[A]\nsequence=70000:foo\n', 'config: section A: port 70000 is invalid', 2);
  });

  test('unknown protocol', () => {
    fails('[A]\nsequence=7000:sctp\n', 'config: section A: unknown protocol in knock sequence', 2);
    fails('[A]\nsequence=7000:\n', 'config: section A: unknown protocol in knock sequence', 2);
  });

  test('extension: LEN:icmp is an ICMP echo request with LEN bytes of payload (knockd 0.8 refuses icmp)', () => {
    assert.deepEqual(parse('[A]\nsequence=7000, 1200:ICMP ,0:icmp,65527:icmp\n').doors[0].sequence, [
      { port: 7000, proto: 'tcp' },
      { port: 1200, proto: 'icmp' },
      { port: 0, proto: 'icmp' },
      { port: 65527, proto: 'icmp' },
    ]);
    const forms = 'expected LEN:icmp with LEN 0 to 65527 (65507 over IPv4), the size given to ping -s';
    fails('[A]\nsequence=65528:icmp\n', `config: section A: ICMP payload length 65528 is invalid; ${forms}`, 2);
    fails('[A]\nsequence=-1:icmp\n', `config: section A: ICMP payload length -1 is invalid; ${forms}`, 2);
    assert.equal(stepWord({ port: 1200, proto: 'icmp' }), 1200 | (1 << 16), 'the program stores proto 1 (MATCHER.md §6)');
  });

  test('at most 32 steps; a 33rd item, even an empty one, is an error', () => {
    const ports = Array.from({ length: 32 }, (_, i) => i + 1).join(',');
    assert.equal(parse(`[A]\nsequence=${ports}\n`).doors[0].sequence.length, 32);
    fails(`[Door X]\nsequence=${ports},\n`, 'config: section Door X: too many ports in knock sequence', 2);
    fails(`[A]\nsequence=${ports},33\n`, 'config: section A: too many ports in knock sequence', 2);
  });
});

describe('TCPFlags', () => {
  const flags = (v: string) => parse(`[A]\nsequence=1\n${v}\n`).doors[0].tcpFlags;
  const { FIN, SYN, RST, PSH, ACK, URG } = TCP_FLAG;

  test('upper-cased, ! negates, every flag', () => {
    assert.deepEqual(flags('tcpflags=syn,!ack'), { mustSet: SYN, mustClear: ACK });
    assert.deepEqual(flags('TCPFlags=fin,Rst,psh,urg,!SYN,!ack'), { mustSet: FIN | RST | PSH | URG, mustClear: SYN | ACK });
  });

  test('tri-state: a later mention overrides, also on a later line', () => {
    assert.deepEqual(flags('tcpflags=syn,!syn,fin'), { mustSet: FIN, mustClear: SYN });
    assert.deepEqual(flags('tcpflags=syn\ntcpflags=ack,!fin'), { mustSet: SYN | ACK, mustClear: FIN });
    assert.deepEqual(flags('tcpflags=!ack\ntcpflags=ack'), { mustSet: ACK, mustClear: 0 });
  });

  test('no per-item trimming; empty items; unknown flags shown upper-cased', () => {
    fails('[A]\nsequence=1\ntcpflags = syn, ack\n', 'config: line 3: unrecognized flag " ACK"', 3);
    fails('[A]\nsequence=1\ntcpflags = syn,\n', 'config: line 3: unrecognized flag ""', 3);
    fails('[A]\nsequence=1\ntcpflags =\n', 'config: line 3: unrecognized flag ""', 3);
    fails('[A]\nsequence=1\ntcpflags = syn,xmas\n', 'config: line 3: unrecognized flag "XMAS"', 3);
    fails('[A]\nsequence=1\ntcpflags = !!syn\n', 'config: line 3: unrecognized flag "!!SYN"', 3);
  });
});

describe('[options]', () => {
  test('LogFile, PidFile last wins (an empty value is kept: it overrides -g / -p with nothing)', () => {
    const o = parse('[options]\nlogfile=/a\nLogFile = /var/log/knockd.log\npidfile=\n[A]\nsequence=1\n').options;
    assert.equal(o.logFile, '/var/log/knockd.log');
    assert.equal(o.pidFile, '');
  });

  test('Interface: the first non-empty value wins; a comma list names several', () => {
    assert.deepEqual(parse('[options]\ninterface=\ninterface = eth1\ninterface=eth2\n[A]\nsequence=1\n').options.interfaces, ['eth1']);
    assert.deepEqual(parse('[options]\nInterface = eth0, wan.10\n[A]\nsequence=1\n').options.interfaces, ['eth0', 'wan.10']);
  });

  test('Interface is checked where it is used: with -i it is ignored (as knockd); without, a bad name fails with knockd\'s open error and the line', () => {
    const forms = 'expected Interface = NAME[,NAME...] (Linux interface names, at most 15 bytes each; a # starts a comment only at the start of a line)';
    const knockdOpen = (name: string) => `could not open ${name}: ${name}: No such device exists (No such device exists)`;
    for (const [value, name, why] of [
      ['eth0,', '', 'the list has an empty item'],
      ['eth0,eth0', 'eth0', '"eth0" is listed twice'],
      ['averyveryverylongname', 'averyveryverylongname', '"averyveryverylongname" is not a valid interface name'],
      ['eth 0', 'eth 0', '"eth 0" is not a valid interface name'],
      ['eth0  # comment', 'eth0  # comment', '"eth0  # comment" is not a valid interface name'],
    ]) {
      const options = parse(`[options]\ninterface=${value}\n[A]\nsequence=1\n`).options;
      assert.deepEqual(captureInterfaces('lo', options), ['lo'], `-i wins over Interface = ${value}`);
      assert.throws(
        () => captureInterfaces(undefined, options),
        (err: unknown) => err instanceof ConfigError && err.line === 2 && err.message === `${knockdOpen(name)}\nconfig: line 2: Interface: ${why}; ${forms}`,
        value,
      );
    }
    assert.deepEqual(captureInterfaces(undefined, parse('[options]\nInterface = eth0, wan.10\n[A]\nsequence=1\n').options), ['eth0', 'wan.10']);
    assert.deepEqual(captureInterfaces(undefined, parse('[A]\nsequence=1\n').options), ['eth0']);
    assert.deepEqual(captureInterfaces('eth1,eth2', parse('[A]\nsequence=1\n').options), ['eth1', 'eth2']);
  });

  test('MaxTracked', () => {
    assert.equal(parse('[options]\nMaxTracked = 2147483647\n').options.maxTracked, 2147483647);
    const forms = 'expected a whole number from 1 to 2147483647';
    fails('[options]\nmaxtracked=0\n', `config: line 2: MaxTracked: 0 is out of range; ${forms}`, 2);
    fails('[options]\nmaxtracked=2147483648\n', `config: line 2: MaxTracked: 2147483648 is out of range; ${forms}`, 2);
    fails('[options]\nmaxtracked=1e6\n', `config: line 2: MaxTracked: "1e6" is not a whole number; ${forms}`, 2);
    fails('[options]\nmaxtracked=\n', `config: line 2: MaxTracked: the value is empty; ${forms}`, 2);
  });

  test('NftTable', () => {
    assert.equal(parse('[options]\nNftTable = my_fw\n').options.nftTable, 'my_fw');
    fails(
      '[options]\nnfttable=1abc\n',
      'config: line 2: NftTable: table name "1abc" is not an nft identifier; expected NftTable = NAME (letters, digits, _ . / -; not starting with a digit)',
      2,
    );
    fails(
      '[options]\nnfttable=a;b\n',
      'config: line 2: NftTable: table name "a;b" is not an nft identifier; expected NftTable = NAME (letters, digits, _ . / -; not starting with a digit)',
      2,
    );
  });

  test('Threads', () => {
    assert.equal(parse('[options]\nthreads=256\n').options.threads, 256);
    fails('[options]\nthreads=257\n', 'config: line 2: Threads: 257 is out of range; expected a whole number from 1 to 256', 2);
    fails('[options]\nthreads=-1\n', 'config: line 2: Threads: "-1" is not a whole number; expected a whole number from 1 to 256', 2);
  });

  test('LogFormat', () => {
    assert.equal(parse('[options]\nlogformat=JSON\n').options.logFormat, 'json');
    assert.equal(parse('[options]\nlogformat=knockd\n').options.logFormat, 'knockd');
    fails('[options]\nlogformat=xml\n', 'config: line 2: LogFormat: "xml" is not accepted; expected knockd or json', 2);
  });

  test('MetricsListen', () => {
    for (const v of ['127.0.0.1:9100', '[::1]:9100', 'localhost:9100', '0.0.0.0:1']) {
      assert.equal(parse(`[options]\nmetricslisten=${v}\n`).options.metricsListen, v);
    }
    const forms = 'expected MetricsListen = ADDR:PORT (ADDR an IPv4 address, [IPv6 address] or host name; PORT 1-65535)';
    fails('[options]\nmetricslisten=9100\n', `config: line 2: MetricsListen: "9100" has no ADDR:PORT form; ${forms}`, 2);
    fails('[options]\nmetricslisten=::1:9100\n', `config: line 2: MetricsListen: "::1" is not an address or host name; ${forms}`, 2);
    fails('[options]\nmetricslisten=127.0.0.1:70000\n', `config: line 2: MetricsListen: port 70000 is out of range; ${forms}`, 2);
    fails('[options]\nmetricslisten=127.0.0.1:http\n', `config: line 2: MetricsListen: "http" is not a port number; ${forms}`, 2);
  });

  test('StateFile', () => {
    assert.equal(parse('[options]\nstatefile = /var/lib/knockd-fast/state.json\n').options.stateFile, '/var/lib/knockd-fast/state.json');
    fails('[options]\nstatefile=\n', 'config: line 2: StateFile: the value is empty; expected StateFile = PATH', 2);
  });

  test('extension keys stay syntax errors in the wrong section', () => {
    fails('[A]\nsequence=1\nthreads=2\n', 'config: line 3: syntax error', 3);
    fails('[options]\nopen=22\n', 'config: line 2: syntax error', 2);
    fails('[A]\nsequence=1\nAllowDuplicates=yes\n', 'config: line 3: syntax error', 3);
  });
});

describe('door extensions', () => {
  const door = (lines: string) => parse(`[A]\nsequence=1\n${lines}\n`).doors[0];

  test('Open', () => {
    assert.deepEqual(door('Open = 22/tcp, 53/UDP ,2222,22').open, [
      { port: 22, proto: 'tcp' },
      { port: 53, proto: 'udp' },
      { port: 2222, proto: 'tcp' },
    ]);
    assert.deepEqual(door('open=22\nopen=443/tcp').open, [{ port: 443, proto: 'tcp' }]);
    const forms = 'expected Open = PORT/PROTO[,PORT/PROTO...] with PORT 1-65535 and PROTO tcp or udp (a bare PORT means tcp)';
    fails('[A]\nsequence=1\nopen=22/icmp\n', `config: line 3: Open: "22/icmp" has an unknown protocol; ${forms}`, 3);
    fails('[A]\nsequence=1\nopen=0\n', `config: line 3: Open: port 0 is out of range; ${forms}`, 3);
    fails('[A]\nsequence=1\nopen=ssh\n', `config: line 3: Open: "ssh" is not a port number; ${forms}`, 3);
    fails('[A]\nsequence=1\nopen=22,,80\n', `config: line 3: Open: the list has an empty item; ${forms}`, 3);
    fails('[A]\nsequence=1\nopen=\n', `config: line 3: Open: the value is empty; ${forms}`, 3);
  });

  test('Open_Timeout (default 30)', () => {
    assert.equal(door('open_timeout=600').openTimeout, 600);
    fails('[A]\nsequence=1\nopen_timeout=0\n', 'config: line 3: Open_Timeout: 0 is out of range; expected a whole number of seconds from 1 up', 3);
    fails('[A]\nsequence=1\nopen_timeout=30s\n', 'config: line 3: Open_Timeout: "30s" is not a whole number; expected a whole number of seconds from 1 up', 3);
  });

  test('NftSet', () => {
    assert.deepEqual(door('NftSet = inet filter knock_ok').nftSet, { family: 'inet', table: 'filter', set: 'knock_ok' });
    assert.deepEqual(door('nftset=IP6\tfw  allowed6').nftSet, { family: 'ip6', table: 'fw', set: 'allowed6' });
    const forms = 'expected NftSet = FAMILY TABLE SET with FAMILY one of ip, ip6, inet, bridge, arp, netdev';
    fails('[A]\nsequence=1\nnftset=inet filter\n', `config: line 3: NftSet: "inet filter" does not have three words; ${forms}`, 3);
    fails('[A]\nsequence=1\nnftset=ipx filter s\n', `config: line 3: NftSet: "ipx" is not an nft family; ${forms}`, 3);
    fails('[A]\nsequence=1\nnftset=inet filter s;drop\n', `config: line 3: NftSet: set name "s;drop" is not an nft identifier; ${forms}`, 3);
  });

  test('Hook', () => {
    assert.equal(door('hook=forward').hook, 'forward');
    assert.equal(door('Hook = Input').hook, 'input');
    fails('[A]\nsequence=1\nhook=output\n', 'config: line 3: Hook: "output" is not accepted; expected input or forward', 3);
  });

  test('Allow_Duplicates, Dedupe (yes|no)', () => {
    assert.equal(door('allow_duplicates=yes').allowDuplicates, true);
    assert.equal(door('Allow_Duplicates = No').allowDuplicates, false);
    assert.equal(door('dedupe=YES').dedupe, true);
    fails('[A]\nsequence=1\nallow_duplicates=1\n', 'config: line 3: Allow_Duplicates: "1" is not yes or no; expected yes or no', 3);
    fails('[A]\nsequence=1\ndedupe=\n', 'config: line 3: Dedupe: the value is empty; expected yes or no', 3);
  });

  test('Cooldown (0 = off)', () => {
    assert.equal(door('cooldown=60').cooldown, 60);
    assert.equal(door('cooldown=0').cooldown, 0);
    fails('[A]\nsequence=1\ncooldown=-5\n', 'config: line 3: Cooldown: "-5" is not a whole number; expected a whole number of seconds (0 = off)', 3);
  });
});

describe('derived doors', () => {
  const key = file(Buffer.alloc(32, 7), 0o600);
  const secretForms = 'expected Secret_File = PATH of a key file readable only by root (chmod 600) holding 16 to 64 bytes of key';

  test('Secret_File with defaults needs no Sequence', () => {
    const d = parse(`[D]\nsecret_file = ${key}\nport_range = 40000-40009\n`).doors[0];
    assert.deepEqual(d.sequence, []);
    assert.deepEqual(d.derived, {
      secretFile: key,
      key: new Uint8Array(Buffer.alloc(32, 7)),
      sequenceLength: 4,
      ports: Array.from({ length: 10 }, (_, i) => 40000 + i),
      protocols: ['tcp'],
      timeStep: DEFAULTS.timeStep,
      bindSource: true,
    });
  });

  test('every derived directive', () => {
    const d = parse(
      `[D]\nSecret_File=${key}\nSequence_Length = 32\nPort_Range = 2000, 1000-1002 ,1001\nProtocols = udp, TCP\nTime_Step = 60\nBind_Source = no\n`,
    ).doors[0];
    assert.equal(d.derived!.sequenceLength, 32);
    assert.deepEqual(d.derived!.ports, [1000, 1001, 1002, 2000]);
    assert.deepEqual(d.derived!.protocols, ['tcp', 'udp']);
    assert.equal(d.derived!.timeStep, 60);
    assert.equal(d.derived!.bindSource, false);
  });

  test('Secret_File must exist, be private and hold 16 to 64 bytes', () => {
    const open = file(Buffer.alloc(32, 1), 0o644);
    const short = file(Buffer.alloc(15, 1), 0o600);
    const long = file(Buffer.alloc(65, 1), 0o600);
    const missing = join(dir, 'no-such-key');
    const at = (p: string) => `[D]\nsecret_file=${p}\nport_range=1000-2000\n`;
    assert.throws(() => parse(at(open)), (e: ConfigError) => {
      assert.equal(
        e.message,
        `config: line 2: Secret_File: ${open}: the secret file is readable by other users (mode 644); fix with: chmod 600 ${open}; ${secretForms}`,
      );
      return e.line === 2;
    });
    assert.throws(() => parse(at(short)), (e: ConfigError) => e.message.startsWith(`config: line 2: Secret_File: ${short}: the key is 15 bytes; at least 16`));
    assert.throws(() => parse(at(long)), (e: ConfigError) => e.message.startsWith(`config: line 2: Secret_File: ${long}: the key is 65 bytes; at most 64`));
    assert.throws(() => parse(at(missing)), (e: ConfigError) => e.message.startsWith(`config: line 2: Secret_File: ${missing}: no such file`));
    fails('[D]\nsecret_file=\n', `config: line 2: Secret_File: the value is empty; ${secretForms}`, 2);
  });

  test('derived directives need Secret_File; Secret_File excludes Sequence and needs Port_Range', () => {
    fails('[A]\nsequence=1\ntime_step=30\n', 'config: line 3: Time_Step: door A is not a derived door; expected Secret_File = PATH in the same section', 3);
    fails('[A]\nsequence=1\nbind_source=yes\n', 'config: line 3: Bind_Source: door A is not a derived door; expected Secret_File = PATH in the same section', 3);
    fails(
      `[D]\nsequence=1\nsecret_file=${key}\nport_range=1-9\n`,
      'config: line 3: Secret_File: the door also has a fixed Sequence (line 2); expected either Secret_File (a derived door) or Sequence / One_Time_Sequences, not both',
      3,
    );
    fails(`[D]\nsecret_file=${key}\n`, 'config: line 2: Secret_File: door D has no Port_Range to derive its knocks from; expected Port_Range = LOW-HIGH in the same section', 2);
  });

  test('value errors', () => {
    const pre = `[D]\nsecret_file=${key}\n`;
    fails(`${pre}sequence_length=33\n`, 'config: line 3: Sequence_Length: 33 is out of range; expected a whole number of steps from 1 to 32', 3);
    fails(`${pre}sequence_length=0\n`, 'config: line 3: Sequence_Length: 0 is out of range; expected a whole number of steps from 1 to 32', 3);
    const rangeForms = 'expected Port_Range = LOW-HIGH or a comma list of ports and LOW-HIGH ranges (ports 1-65535)';
    fails(`${pre}port_range=2000-1000\n`, `config: line 3: Port_Range: range 2000-1000 runs backwards; ${rangeForms}`, 3);
    fails(`${pre}port_range=0-10\n`, `config: line 3: Port_Range: port 0 is out of range; ${rangeForms}`, 3);
    fails(`${pre}port_range=1000-\n`, `config: line 3: Port_Range: "" is not a port number; ${rangeForms}`, 3);
    fails(`${pre}protocols=tcp,icmp\n`, 'config: line 3: Protocols: "icmp" is not tcp or udp; expected Protocols = tcp, udp or tcp,udp', 3);
    fails(`${pre}time_step=0\n`, 'config: line 3: Time_Step: 0 is out of range; expected a whole number of seconds from 1 up', 3);
    fails(`${pre}bind_source=maybe\n`, 'config: line 3: Bind_Source: "maybe" is not yes or no; expected yes or no', 3);
  });

  test("a derived door counts only a client's SYN: TCPFlags may narrow that, not contradict it", () => {
    const pre = `[D]\nsecret_file=${key}\nport_range=40000-49999\n`;
    const why = 'door D is a derived door, which counts only what a client sends: SYN without ACK or RST';
    const forms = 'expected no TCPFlags, or only flags that such a SYN can carry (e.g. TCPFlags = syn,!fin)';
    fails(`${pre}tcpflags=syn,ack\n`, `config: line 4: TCPFlags: ${why}; ${forms}`, 4);
    fails(`${pre}tcpflags=rst\n`, `config: line 4: TCPFlags: ${why}; ${forms}`, 4);
    fails(`${pre}tcpflags=!syn\n`, `config: line 4: TCPFlags: ${why}; ${forms}`, 4);
    const flagsWord = (text: string) => compileProgram(parse(text), { localAddresses: [] }).words[HEADER_WORDS + 4];
    const SYN = 2, RST = 4, ACK = 16, FIN = 1;
    assert.equal(flagsWord(pre), SYN | ((ACK | RST) << 8), 'the compiler adds SYN, !ACK, !RST');
    assert.equal(flagsWord(`${pre}tcpflags=!fin\n`), SYN | ((ACK | RST | FIN) << 8));
    assert.equal(flagsWord('[A]\nsequence=7000\n'), 0, 'a knockd door keeps counting every TCP packet, as knockd does');
  });
});

describe('one-time sequences', () => {
  test('the first valid line becomes the sequence; bad lines are skipped with their error', () => {
    const f = file('# used\n\nfoo:bar\n70000\n 3000:UDP , 4000\n5000\n');
    const c = parse(`[A]\none_time_sequences = ${f}\n`);
    assert.equal(steps(c.doors[0].sequence), '3000:udp,4000:tcp');
    assert.equal(c.doors[0].oneTimeSequences, f);
    assert.deepEqual(c.warnings, ['config: section A: unknown protocol in knock sequence', 'config: section A: port 70000 is invalid']);
  });

  test('the file must open for writing: missing file, directory', () => {
    const missing = join(dir, 'missing');
    fails(`[A]\none_time_sequences=${missing}\n`, `${missing}: No such file or directory`, 2);
    fails(`[A]\none_time_sequences=${dir}\n`, `${dir}: Is a directory`, 2);
    fails('[A]\none_time_sequences=\n', 'No such file or directory', 2);
  });

  test('a read-only file is refused (as a user without CAP_DAC_OVERRIDE)', (t) => {
    if (isRoot) return t.skip('root can write a mode 0400 file');
    const f = file('7000\n', 0o400);
    fails(`[A]\none_time_sequences=${f}\n`, `${f}: Permission denied`, 2);
  });

  test('no valid line: the door stays, disabled, with the reference message (deviation 6)', () => {
    const f = file('# 7000\nfoo:bar\n');
    const c = parse(`[A]\none_time_sequences=${f}\n[B]\nsequence=9\n`);
    assert.deepEqual(c.doors[0].sequence, []);
    assert.deepEqual(c.warnings, [
      'config: section A: unknown protocol in knock sequence',
      'no more sequences left in the one time sequences file for door A --> disabling the door',
    ]);
    const program = compileProgram(c, { localAddresses: [] });
    assert.deepEqual(
      program.doors.map((d) => d.name),
      ['B'],
    );
  });

  test('Sequence and One_Time_Sequences: the later one sets the sequence', () => {
    const f = file('7000,8000\n');
    assert.equal(steps(parse(`[A]\none_time_sequences=${f}\nsequence=5\n`).doors[0].sequence), '5:tcp');
    assert.equal(steps(parse(`[A]\nsequence=5\none_time_sequences=${f}\n`).doors[0].sequence), '7000:tcp,8000:tcp');
  });

  test('rotation: the used line is found by value, its first byte becomes #, the next line is loaded', () => {
    const f = file('7000,8000,9000\n 1000:udp,2000\n3000,4000\n', 0o640);
    const door = parse(`[A]\none_time_sequences=${f}\n`).doors[0];
    assert.equal(markOneTimeSequenceUsed(f, door.sequence), true);
    assert.equal(readFileSync(f, 'latin1'), '#000,8000,9000\n 1000:udp,2000\n3000,4000\n');
    const next = readNextOneTimeSequence(f, 'A');
    assert.equal(steps(next.sequence), '1000:udp,2000:tcp');
    // values, not bytes: a differently written line with the same steps is the one disabled
    assert.equal(markOneTimeSequenceUsed(f, [{ port: 1000, proto: 'udp' }, { port: 2000, proto: 'tcp' }]), true);
    assert.equal(readFileSync(f, 'latin1'), '#000,8000,9000\n#1000:udp,2000\n3000,4000\n');
    assert.equal(steps(readNextOneTimeSequence(f, 'A').sequence), '3000:tcp,4000:tcp');
    assert.equal(markOneTimeSequenceUsed(f, [{ port: 3000, proto: 'tcp' }, { port: 4000, proto: 'tcp' }]), true);
    assert.deepEqual(readNextOneTimeSequence(f, 'A'), { sequence: [], errors: [] });
    assert.equal((statSync(f).mode & 0o777).toString(8), '640');
  });

  test('matching by value: protocol and length matter, a bad line before the used one is left alone', () => {
    const f = file('foo:bar\n7000:udp\n7000,8000\n 7000\n');
    assert.equal(markOneTimeSequenceUsed(f, [{ port: 7000, proto: 'tcp' }]), true);
    assert.equal(readFileSync(f, 'latin1'), 'foo:bar\n7000:udp\n7000,8000\n#7000\n');
    assert.equal(markOneTimeSequenceUsed(f, [{ port: 9999, proto: 'tcp' }]), false);
    assert.equal(readFileSync(f, 'latin1'), 'foo:bar\n7000:udp\n7000,8000\n#7000\n');
  });

  test('the write is atomic (new inode, no temp file left), keeps the owner, and follows a symlink', () => {
    const sub = join(dir, 'atomic');
    mkdirSync(sub);
    const real = join(sub, 'seqs');
    writeFileSync(real, '7000\n8000\n', { mode: 0o600 });
    const link = join(sub, 'link');
    symlinkSync(real, link);
    const before = statSync(real);
    assert.equal(markOneTimeSequenceUsed(link, [{ port: 7000, proto: 'tcp' }]), true);
    const afterSt = statSync(real);
    assert.notEqual(afterSt.ino, before.ino);
    assert.equal(afterSt.uid, before.uid);
    assert.equal(afterSt.gid, before.gid);
    assert.equal(afterSt.mode, before.mode);
    assert.equal(readFileSync(link, 'latin1'), '#000\n8000\n');
    assert.deepEqual(readdirSync(sub).sort(), ['link', 'seqs']);
  });

  test('readNextOneTimeSequence reports skipped lines and opening errors', () => {
    const f = file('\n# c\n1,2,x:y\n7\n');
    assert.deepEqual(readNextOneTimeSequence(f, 'Door'), {
      sequence: [{ port: 7, proto: 'tcp' }],
      errors: ['config: section Door: unknown protocol in knock sequence'],
    });
    assert.throws(() => readNextOneTimeSequence(join(dir, 'gone')), { message: `${join(dir, 'gone')}: No such file or directory` });
  });
});

describe('parseConfig (file)', () => {
  test('reads the file; the path is kept', () => {
    const p = file('[options]\nlogfile=/l\n[A]\nsequence=1\n');
    const c = parseConfig(p);
    assert.equal(c.path, p);
    assert.equal(c.options.logFile, '/l');
  });

  test('an unreadable config file: perror text', () => {
    const p = join(dir, 'nope.conf');
    assert.throws(() => parseConfig(p), (e: unknown) => e instanceof ConfigError && e.message === `${p}: No such file or directory` && e.line === undefined);
  });
});

describe('compileProgram on parsed configs', () => {
  const local = [parseAddress('192.0.2.2')!];

  test('door order and steps follow the config', () => {
    const c = parse('[B]\nsequence=7000,8000:udp\n[A]\nsequence=9000\n');
    const p = compileProgram(c, { localAddresses: local });
    assert.deepEqual(
      p.doors.map((d) => d.name),
      ['B', 'A'],
    );
    const first = HEADER_WORDS + ADDRESS_WORDS;
    assert.equal(p.words[Header.N_DOORS], 2);
    assert.equal(p.words[first + 6], 2);
    assert.equal(p.words[first + DOOR_HEADER_WORDS], stepWord({ port: 7000, proto: 'tcp' }));
    assert.equal(p.words[first + DOOR_HEADER_WORDS + 1], stepWord({ port: 8000, proto: 'udp' }));
    assert.equal(p.words[first + DOOR_HEADER_WORDS + 2 + DOOR_HEADER_WORDS], stepWord({ port: 9000, proto: 'tcp' }));
  });

  test('targets get groups in order of first use; host-name targets are left out', () => {
    const c = parse(
      '[A]\nsequence=1\n[B]\nsequence=1\ntarget=192.0.2.77\n[C]\nsequence=1\ntarget=fd00::9\n[D]\nsequence=1\ntarget=192.0.2.77\n[E]\nsequence=1\ntarget=gw.example\n',
    );
    const p = compileProgram(c, { localAddresses: local });
    assert.deepEqual(
      p.doors.map((d) => d.name),
      ['A', 'B', 'C', 'D'],
    );
    assert.equal(p.words[Header.N_TARGETS], 2);
    let o = HEADER_WORDS + (1 + 2) * ADDRESS_WORDS;
    const groups: number[] = [];
    for (let i = 0; i < 4; i++) {
      groups.push(p.words[o + 1]);
      o += p.words[o];
    }
    assert.deepEqual(groups, [0, 1, 2, 1]);
  });

  test('more than 8 doors starting with the same knock for one destination is refused', () => {
    const nine = Array.from({ length: 9 }, (_, i) => `[D${i}]\nsequence=7000,${8000 + i}\n`).join('');
    assert.throws(() => compileProgram(parse(nine), { localAddresses: local }), (e: unknown) => {
      assert.ok(e instanceof ProgramError);
      assert.match(e.message, /at most 8 doors may start with the same knock \(7000:tcp\)/);
      return true;
    });
    // the same nine doors split over two destinations are fine
    const split = nine.replace('[D8]\n', '[D8]\ntarget=192.0.2.9\n');
    assert.equal(compileProgram(parse(split), { localAddresses: local }).doors.length, 9);
  });

  test('MaxTracked from [options] reaches the program', () => {
    const p = compileProgram(parse('[options]\nmaxtracked=1000\n[A]\nsequence=1\n'), { localAddresses: local });
    assert.equal(p.words[Header.MAX_TRACKED], 1000);
  });
});

// The installed reference (Debian's knockd 0.8) parses each config with -D and a missing interface, so it
// prints its parse results or error and exits at once without capturing anything.
const KNOCKD = '/usr/sbin/knockd';
describe('against the reference knockd', { skip: existsSync(KNOCKD) ? false : `${KNOCKD} is not installed` }, () => {
  interface Outcome {
    error?: string;
    sequences: string[];
    warnings: string[];
  }
  function reference(text: string): Outcome {
    const r = spawnSync(KNOCKD, ['-c', file(text), '-i', 'kf-none0', '-D'], { encoding: 'latin1', timeout: 10_000 });
    const stderr = r.stderr.split('\n').filter((l) => l !== '');
    const last = stderr.pop() ?? '';
    if (!last.startsWith('could not open kf-none0')) return { error: last, sequences: [], warnings: [] };
    // debug lines come in file order: a door's sequence lines follow its section line
    const sequences: string[] = [];
    for (const l of r.stdout.split('\n')) {
      const section = /^config: new section: '(.*)'$/.exec(l);
      if (section && section[1] !== 'options') sequences.push('');
      const s = /^(?:config: .*: sequence|new sequence for door .*): (.*)$/.exec(l);
      if (s) sequences[sequences.length - 1] = s[1];
    }
    return { sequences, warnings: stderr };
  }
  function ours(text: string): Outcome {
    try {
      const c = parse(text);
      return { sequences: c.doors.map((d) => steps(d.sequence)), warnings: c.warnings };
    } catch (e) {
      return { error: (e as Error).message, sequences: [], warnings: [] };
    }
  }
  const ots = file('# x\nfoo:bar\n 3000:udp,4000\n');
  const cases = [
    '[A]\nsequence = 7000:UDP, 8000 : Tcp,-1,,\n',
    '[A]\nsequence = -70000,2147483648,99999999999999999999,+12x, \t9\n',
    '[A]\nsequence = 7000, 70000 :udp\n',
    '[A]\nsequence = 7000:udp:x,8000:\n',
    `[A]\nsequence=${Array.from({ length: 32 }, (_, i) => i).join(',')},\n`,
    '[A]\nsequence=1\ntcpflags = syn, ack\n',
    '[A]\nsequence=1\ntcpflags = syn,!ack,\n',
    '[A]\nsequence=1\ntcpflags=fin,urg,!psh,rst\n',
    '[Options]\nsequence=1\n[ options ]\nsequence=2\n[options]\nsequence=3\n',
    '[options]\nUseSyslog = yes\n',
    '[A]\nusesyslog\nsequence=1\nbogus\n',
    'UseSyslog\n',
    '[A]\r\nsequence = 1 , 2:udp\r\nseq_timeout = 7\r\n',
    `[A]\n#${'x'.repeat(4094)}\nbad\n`,
    `[A]\nsequence=1${' '.repeat(4090)},2\n`,
    '[]\n',
    '[A]\n=5\n',
    '[A]\nseq_timeout=5\n[B]\nsequence=1\n',
    '[A]\nsequence=1\ncommand_6=\nstop_command6=x\n',
    `[A]\none_time_sequences=${ots}\n[B]\nsequence=5\n`,
    `[A]\none_time_sequences=${join(dir, 'absent')}\n`,
    '[A]\nsequence=1\0,2\nbad\0\n',
    // reference configs C3, C7b, C10, C12, C13, C15
    '[A]\nsequence=7000,8000,9000\ntcpflags=syn\n[B]\nsequence=8000,5555\n',
    '[A]\nsequence=7000:udp,8000:tcp,9000:udp\n[B]\nsequence=8000:udp,1:udp\n',
    '[A]\nsequence=7000,8000,9000\nseq_timeout=5\ncommand = echo A %IP% >> out\ncommand_6 = echo A6 %IP% >> out\n',
    `[A]\none_time_sequences=${file('7000,8000,9000\n 1000:udp,2000\n3000,4000\n')}\nseq_timeout=5\n`,
    '[A]\nsequence=7000\nstart_command=echo START %IP%\ncmd_timeout=1\nstop_command=echo STOP %IP%\n',
    '[A]\nsequence=7000,8000,9000\nseq_timeout=5\ntcpflags=syn,!ack\n',
  ];
  for (const [i, text] of cases.entries()) {
    test(`case ${i + 1}: ${JSON.stringify(text.length > 60 ? text.slice(0, 60) + '…' : text)}`, () => {
      assert.deepEqual(ours(text), reference(text));
    });
  }
});

test('the reference binary is really exercised', { skip: existsSync(KNOCKD) ? false : `${KNOCKD} is not installed` }, () => {
  // guards the differential suite above against comparing two empty results
  const out = execFileSync('sh', ['-c', `${KNOCKD} -c /dev/null -i kf-none0 -D 2>&1 || true`], { encoding: 'latin1' });
  assert.match(out, /could not open kf-none0/);
});
