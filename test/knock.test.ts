// The knock client: argument parsing and port resolution in-process; the packets on the wire in a
// private network namespace captured with tcpdump on its loopback, compared with Debian's knock.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { knockUsage, parseKnockArgs, parseServices, resolvePortArg, type KnockCommand } from '../src/tools/knock.js';
import { Lab } from '../src/tools/netns.js';
import { isRoot } from './helpers/env.js';

const BIN = fileURLToPath(new URL('../bin/knock-fast.js', import.meta.url));
const hasTools = ['/usr/sbin/ip', '/usr/bin/tcpdump', '/usr/sbin/nft'].every((p) => existsSync(p));
const netnsSkip = !isRoot ? 'needs root (network namespaces, tcpdump)' : !hasTools ? 'needs ip, tcpdump and nft' : false;
const debianKnockSkip = netnsSkip || (existsSync('/usr/bin/knock') ? false : 'needs /usr/bin/knock (apt-get install -y knockd)');

function knockOptions(command: KnockCommand) {
  assert.equal(command.kind, 'knock', JSON.stringify(command));
  return command.kind === 'knock' ? command : assert.fail('unreachable');
}

describe('parseKnockArgs', () => {
  test('host and ports with defaults', () => {
    const c = knockOptions(parseKnockArgs(['gw.example', '1:udp', '2']));
    assert.equal(c.host, 'gw.example');
    assert.deepEqual(c.portArgs, ['1:udp', '2']);
    assert.deepEqual(c.options, { udp: false, delayMs: 0, verbose: false });
  });

  test('short, bundled, long and attached forms, options after positionals', () => {
    const c = knockOptions(parseKnockArgs(['-uv', 'h', '--delay=250', '1', '-6', '--source', '::1', '2']));
    assert.deepEqual(c.options, { udp: true, delayMs: 250, verbose: true, family: 6, source: '::1' });
    assert.deepEqual(c.portArgs, ['1', '2']);
    assert.equal(knockOptions(parseKnockArgs(['-d100', 'h', '1'])).options.delayMs, 100);
    assert.equal(knockOptions(parseKnockArgs(['-d', '7', 'h', '1'])).options.delayMs, 7);
    assert.equal(knockOptions(parseKnockArgs(['--ipv4', '--udp', '--verbose', 'h', '1'])).options.family, 4);
  });

  test('-- ends the options', () => {
    assert.deepEqual(knockOptions(parseKnockArgs(['--', 'h', '-1'])).portArgs, ['-1']);
  });

  test('-h, fewer than two positionals: usage', () => {
    assert.deepEqual(parseKnockArgs(['-h', 'h', '1']), { kind: 'usage' });
    assert.deepEqual(parseKnockArgs(['--help']), { kind: 'usage' });
    assert.deepEqual(parseKnockArgs(['h']), { kind: 'usage' });
    assert.deepEqual(parseKnockArgs([]), { kind: 'usage' });
  });

  test('-V: version', () => {
    assert.deepEqual(parseKnockArgs(['-V']), { kind: 'version' });
  });

  test('unknown options and missing values show the usage', () => {
    for (const argv of [['-x', 'h', '1'], ['--nope', 'h', '1'], ['h', '1', '-d'], ['--udp=yes', 'h', '1']]) {
      const c = parseKnockArgs(argv);
      assert.equal(c.kind, 'error', argv.join(' '));
      assert.ok(c.kind === 'error' && c.showUsage);
    }
  });

  test('negative delay is the reference error', () => {
    assert.deepEqual(parseKnockArgs(['-d', '-5', 'h', '1']), {
      kind: 'error',
      message: 'error: delay cannot be negative',
      showUsage: false,
    });
  });

  test('a delay that is not a number is refused, not read as 0', () => {
    const c = parseKnockArgs(['-d', '2s', 'h', '1']);
    assert.ok(c.kind === 'error' && /whole number of milliseconds, got '2s'/.test(c.message), JSON.stringify(c));
  });

  test('--source must be an IP address of the forced family', () => {
    const bad = parseKnockArgs(['--source', 'eth0', 'h', '1']);
    assert.ok(bad.kind === 'error' && /needs a local IP address, got 'eth0'/.test(bad.message));
    const clash = parseKnockArgs(['-6', '--source', '10.0.0.1', 'h', '1']);
    assert.ok(clash.kind === 'error' && /not an IPv6 address but -6 was given/.test(clash.message));
  });

  test('the usage lists every option', () => {
    const usage = knockUsage('knock-fast');
    assert.match(usage, /^usage: knock-fast \[options\] <host> <port\[:proto\]> \[port\[:proto\]\] \.\.\.\n/);
    for (const flag of ['-u, --udp', '-d, --delay <t>', '-4, --ipv4', '-6, --ipv6', '--source <addr>', '-v, --verbose', '-V, --version', '-h, --help']) {
      assert.ok(usage.includes(flag), flag);
    }
  });
});

describe('ports and services', () => {
  const services = parseServices(
    [
      '# comment line',
      'ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol',
      'domain\t\t53/tcp',
      'domain\t\t53/udp',
      'www\t\t80/tcp\t\thttp\t# WorldWideWeb',
      'ntp\t\t123/udp',
      'bogus\t\t70000/tcp',
      'first\t\t1000/tcp',
      'first\t\t1001/tcp',
    ].join('\n'),
  );

  test('parseServices reads names, aliases and protocols; the first entry wins', () => {
    assert.equal(services.get('tcp/ssh'), 22);
    assert.equal(services.get('udp/domain'), 53);
    assert.equal(services.get('tcp/http'), 80);
    assert.equal(services.get('tcp/first'), 1000);
    assert.equal(services.has('udp/ssh'), false);
    assert.equal(services.has('tcp/bogus'), false);
  });

  test(':udp exactly is UDP, any other suffix TCP, -u forces UDP', () => {
    assert.deepEqual(resolvePortArg('7:udp', false, services), { text: '7', port: 7, proto: 'udp' });
    for (const arg of ['7', '7:tcp', '7:UDP', '7:foo', '7:']) {
      assert.equal(resolvePortArg(arg, false, services).proto, 'tcp', arg);
    }
    assert.equal(resolvePortArg('7:tcp', true, services).proto, 'udp');
  });

  test('extension: LEN:icmp (exact lowercase) is an echo request with LEN bytes of payload, -u or not', () => {
    assert.deepEqual(resolvePortArg('1200:icmp', false, services), { text: '1200', port: 1200, proto: 'icmp' });
    assert.deepEqual(resolvePortArg('0:icmp', true, services), { text: '0', port: 0, proto: 'icmp' });
    assert.equal(resolvePortArg('1200:ICMP', false, services).proto, 'tcp', 'as knock reads any other suffix');
    const forms = /needs a payload length from 0 to 65527 before :icmp \(65507 over IPv4\), e\.g\. 1200:icmp/;
    assert.throws(() => resolvePortArg('65528:icmp', false, services), forms);
    assert.throws(() => resolvePortArg('ssh:icmp', false, services), forms);
    assert.throws(() => resolvePortArg(':icmp', false, services), forms);
  });

  test('service names resolve per protocol, aliases included', () => {
    assert.deepEqual(resolvePortArg('ssh', false, services), { text: 'ssh', port: 22, proto: 'tcp' });
    assert.deepEqual(resolvePortArg('http', false, services), { text: 'http', port: 80, proto: 'tcp' });
    assert.deepEqual(resolvePortArg('ntp:udp', false, services), { text: 'ntp', port: 123, proto: 'udp' });
    assert.equal(resolvePortArg('domain', true, services).port, 53);
  });

  test('bad ports are clear errors', () => {
    assert.throws(() => resolvePortArg('0', false, services), /port 0 in '0' is out of range; ports are 1 to 65535/);
    assert.throws(() => resolvePortArg('65536:udp', false, services), /out of range/);
    assert.throws(() => resolvePortArg(':udp', false, services), /has no port/);
    assert.throws(() => resolvePortArg('0x10', false, services), /unknown port '0x10'/);
    assert.throws(() => resolvePortArg('ssh:udp', false, services), /'ssh' is not a udp service .*it is tcp port 22/);
    assert.throws(() => resolvePortArg('ntp', false, services), /'ntp' is not a tcp service .*it is udp port 123/);
  });

  test('the system /etc/services resolves ssh', { skip: existsSync('/etc/services') ? false : 'no /etc/services' }, () => {
    assert.equal(resolvePortArg('ssh', false, parseServices(readFileSync('/etc/services', 'utf8'))).port, 22);
  });
});

/** A packet as seen on the namespace's loopback, reduced to what a knock is made of. */
interface WirePacket {
  src: string;
  dst: string;
  proto: 'tcp' | 'udp';
  sport: number;
  dport: number;
  /** TCP flags as tcpdump letters (S, R, F, P, .), or the UDP payload in hex */
  detail: string;
  timeUs: number;
}

function ipText(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

function tcpFlags(flags: number): string {
  return ['F', 'S', 'R', 'P', '.'].filter((_, bit) => flags & (1 << bit)).join('');
}

/** Decodes a little-endian microsecond pcap of Ethernet frames (tcpdump -w on lo). */
function readPcap(path: string): WirePacket[] {
  const file = readFileSync(path);
  assert.equal(file.readUInt32LE(0), 0xa1b2c3d4, 'expected a microsecond little-endian pcap');
  assert.equal(file.readUInt32LE(20), 1, 'expected Ethernet link type');
  const packets: WirePacket[] = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const timeUs = file.readUInt32LE(at) * 1e6 + file.readUInt32LE(at + 4);
    const captured = file.readUInt32LE(at + 8);
    const frame = file.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    const etherType = frame.readUInt16BE(12);
    let l4: Buffer, proto: number, src: Buffer, dst: Buffer;
    if (etherType === 0x0800) {
      const ihl = (frame[14]! & 0x0f) * 4;
      proto = frame[23]!;
      src = frame.subarray(26, 30);
      dst = frame.subarray(30, 34);
      l4 = frame.subarray(14 + ihl, 14 + frame.readUInt16BE(16));
    } else if (etherType === 0x86dd) {
      proto = frame[20]!;
      src = frame.subarray(22, 38);
      dst = frame.subarray(38, 54);
      l4 = frame.subarray(54, 54 + frame.readUInt16BE(18));
    } else continue;
    if (proto !== 6 && proto !== 17) continue;
    const detail = proto === 6 ? tcpFlags(l4[13]!) : l4.subarray(8).toString('hex');
    packets.push({ src: ipText(src), dst: ipText(dst), proto: proto === 6 ? 'tcp' : 'udp', sport: l4.readUInt16BE(0), dport: l4.readUInt16BE(2), detail, timeUs });
  }
  return packets;
}

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

const SENTINEL = { dst: '127.0.0.9', port: 9 };

/** A private namespace (a Lab's) with loopback up; every command runs inside it. */
class KnockNamespace {
  private lab: Lab | undefined;
  dir = '';

  create(): void {
    this.dir = mkdtempSync(join(tmpdir(), 'kf-knock-'));
    this.lab = new Lab('knock');
    this.lab.ns('k');
  }

  destroy(): void {
    this.lab?.destroy();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  exec(argv: string[], input?: string): string {
    const r = this.lab!.run('k', argv[0], argv.slice(1), { input, timeout: 20_000 });
    if (r.status !== 0) throw new Error(`${argv.join(' ')} exited with ${r.status ?? r.signal}: ${r.stderr}`);
    return r.stdout;
  }

  run(argv: string[]): RunResult {
    const r = this.lab!.run('k', argv[0], argv.slice(1), { timeout: 30_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /**
   * Runs `argv` while tcpdump records lo, then returns the packets it sent (the kernel's answers from
   * the knocked ports are left out). A sentinel datagram marks the end, so the capture stops only
   * after everything sent before it was written.
   */
  async capture(argv: string[]): Promise<{ result: RunResult; packets: WirePacket[] }> {
    const file = join(this.dir, `cap-${Date.now()}.pcap`);
    const tcpdump = this.lab!.spawn('k', 'tcpdump', ['-i', 'lo', '-nn', '-U', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<void>((resolve) => tcpdump.once('exit', () => resolve()));
    try {
      await new Promise<void>((resolve, reject) => {
        let stderr = '';
        const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
        tcpdump.stderr!.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
          if (stderr.includes('listening on')) {
            clearTimeout(timer);
            resolve();
          }
        });
        tcpdump.once('exit', () => reject(new Error(`tcpdump exited: ${stderr}`)));
      });
      const result = this.run(argv);
      this.exec(['bash', '-c', `printf x > /dev/udp/${SENTINEL.dst}/${SENTINEL.port}`]);
      for (let i = 0; i < 100 && !readPcap(file).some(isSentinel); i++) await new Promise((r) => setTimeout(r, 50));
      const all = readPcap(file);
      assert.ok(all.some(isSentinel), 'the sentinel datagram never reached the capture');
      return { result, packets: all.filter((p) => !isSentinel(p)) };
    } finally {
      tcpdump.kill('SIGTERM');
      await exited;
    }
  }
}

const isSentinel = (p: WirePacket): boolean => p.dst === SENTINEL.dst && p.dport === SENTINEL.port;

/** Only what the client sent: the knocked ports' own replies (RST from closed ports) are dropped. */
function sentTo(packets: WirePacket[], ports: number[]): WirePacket[] {
  return packets.filter((p) => !ports.includes(p.sport));
}

const shape = (p: WirePacket): string => `${p.proto} ${p.src}->${p.dst}:${p.dport} ${p.detail}`;

describe('knock-fast on the wire', { skip: netnsSkip }, () => {
  const ns = new KnockNamespace();
  before(() => ns.create());
  after(() => ns.destroy());

  test('one SYN per TCP hit and one 1-byte 0x00 datagram per UDP hit, in order', async () => {
    const ports = [7001, 7002, 7003, 7004];
    const { result, packets } = await ns.capture(['node', BIN, '127.0.0.1', '7001', '7002:udp', '7003:tcp', '7004:UDP']);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(sentTo(packets, ports).map(shape), [
      'tcp 127.0.0.1->127.0.0.1:7001 S',
      'udp 127.0.0.1->127.0.0.1:7002 00',
      'tcp 127.0.0.1->127.0.0.1:7003 S',
      'tcp 127.0.0.1->127.0.0.1:7004 S',
    ]);
  });

  test('-u makes every hit UDP; -v prints each hit', async () => {
    const { result, packets } = await ns.capture(['node', BIN, '-u', '-v', '127.0.0.1', '7101:tcp', '7102']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'hitting udp 127.0.0.1:7101\nhitting udp 127.0.0.1:7102\n');
    assert.deepEqual(sentTo(packets, [7101, 7102]).map(shape), ['udp 127.0.0.1->127.0.0.1:7101 00', 'udp 127.0.0.1->127.0.0.1:7102 00']);
  });

  test('service names resolve through /etc/services', async () => {
    const { result, packets } = await ns.capture(['node', BIN, '-v', '127.0.0.1', 'ssh', 'domain:udp']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, 'hitting tcp 127.0.0.1:ssh\nhitting udp 127.0.0.1:domain\n');
    assert.deepEqual(sentTo(packets, [22, 53]).map(shape), ['tcp 127.0.0.1->127.0.0.1:22 S', 'udp 127.0.0.1->127.0.0.1:53 00']);
  });

  test('-6 knocks ::1 over IPv6; localhost resolves; -4 refuses an IPv6 literal', async () => {
    const v6 = await ns.capture(['node', BIN, '-6', '::1', '7201', '7202:udp']);
    assert.equal(v6.result.status, 0, v6.result.stderr);
    assert.deepEqual(sentTo(v6.packets, [7201, 7202]).map(shape), ['tcp ::1->::1:7201 S', 'udp ::1->::1:7202 00']);
    const v4 = await ns.capture(['node', BIN, '-4', 'localhost', '7203']);
    assert.equal(v4.result.status, 0, v4.result.stderr);
    assert.deepEqual(sentTo(v4.packets, [7203]).map(shape), ['tcp 127.0.0.1->127.0.0.1:7203 S']);
    const refused = await ns.capture(['node', BIN, '-4', '::1', '7204']);
    assert.equal(refused.result.status, 1);
    assert.match(refused.result.stderr, /host '::1' is an IPv6 address but -4 was given/);
    assert.deepEqual(refused.packets, []);
  });

  test('--source sends from the given local address', async () => {
    const { result, packets } = await ns.capture(['node', BIN, '--source', '127.0.0.5', '127.0.0.1', '7301', '7302:udp']);
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(sentTo(packets, [7301, 7302]).map(shape), ['tcp 127.0.0.5->127.0.0.1:7301 S', 'udp 127.0.0.5->127.0.0.1:7302 00']);
    const missing = ns.run(['node', BIN, '--source', '10.77.0.1', '127.0.0.1', '7303']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /could not be sent: EADDRNOTAVAIL \(is the --source address configured on this host\?\)/);
  });

  test('unanswered SYNs are never retransmitted, and -d waits after each hit', async () => {
    // Drop the SYNs so nothing answers: a socket left open would retransmit after about 1 s, within the delay.
    ns.exec(['nft', '-f', '-'], 'table inet kf_knock_test {\n chain input {\n  type filter hook input priority 0;\n  tcp dport { 7401, 7402 } drop\n }\n}\n');
    try {
      const delayMs = 1500;
      const { result, packets } = await ns.capture(['node', BIN, '-d', String(delayMs), '127.0.0.1', '7401', '7402']);
      assert.equal(result.status, 0, result.stderr);
      const sent = sentTo(packets, [7401, 7402]);
      assert.deepEqual(sent.map(shape), ['tcp 127.0.0.1->127.0.0.1:7401 S', 'tcp 127.0.0.1->127.0.0.1:7402 S']);
      // A lower bound only: the delay separates the hits (sleeping longer is fine).
      assert.ok(sent[1]!.timeUs - sent[0]!.timeUs >= delayMs * 1000, `hits ${sent[1]!.timeUs - sent[0]!.timeUs} µs apart`);
    } finally {
      ns.exec(['nft', 'delete', 'table', 'inet', 'kf_knock_test']);
    }
  });

  test('errors: unknown host, bad port, negative delay, usage — and nothing is sent', async () => {
    const cases: Array<[string[], RegExp, RegExp | null]> = [
      [['nosuchhost.invalid', '7501'], /^error: cannot resolve host 'nosuchhost.invalid' \((no such host|the DNS server did not answer)\); check the name or give an IP address\n$/, null],
      [['127.0.0.1', '7501', '70000'], /^error: port 70000 in '70000' is out of range; ports are 1 to 65535\n$/, null],
      [['127.0.0.1', '7501', 'nosuchservice'], /^error: unknown port 'nosuchservice'/, null],
      [['-d', '-1', '127.0.0.1', '7501'], /^error: delay cannot be negative\n$/, null],
      [['127.0.0.1'], /^$/, /^usage: knock-fast /],
      [['-h'], /^$/, /^usage: knock-fast /],
      [['-q', '127.0.0.1', '7501'], /^knock-fast: unknown option '-q'\n$/, /^usage: knock-fast /],
    ];
    for (const [args, stderr, stdout] of cases) {
      const { result, packets } = await ns.capture(['node', BIN, ...args]);
      assert.equal(result.status, 1, args.join(' '));
      assert.match(result.stderr, stderr, args.join(' '));
      if (stdout) assert.match(result.stdout, stdout, args.join(' '));
      assert.deepEqual(sentTo(packets, [7501]), [], `${args.join(' ')} sent packets`);
    }
  });

  test('-V prints the version and exits 0', () => {
    const r = ns.run(['node', BIN, '-V']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^knock-fast \d+\.\d+\.\d+/);
  });
});

describe("same packets as Debian's knock", { skip: debianKnockSkip }, () => {
  const ns = new KnockNamespace();
  before(() => ns.create());
  after(() => ns.destroy());

  const argSets = [
    ['127.0.0.1', '7601', '7602:udp', '7603:tcp', '7604:UDP'],
    ['-u', '127.0.0.1', '7601', '7602:tcp'],
    ['-6', '::1', '7601:udp', '7602'],
    ['-v', '127.0.0.1', 'ssh', 'domain:udp'],
  ];
  for (const args of argSets) {
    test(`knock ${args.join(' ')}`, async () => {
      const ports = [7601, 7602, 7603, 7604, 22, 53];
      const theirs = await ns.capture(['/usr/bin/knock', ...args]);
      const ours = await ns.capture(['node', BIN, ...args]);
      assert.equal(ours.result.status, theirs.result.status);
      assert.equal(ours.result.stdout, theirs.result.stdout);
      const reference = sentTo(theirs.packets, ports).map(shape);
      assert.equal(reference.length, args.length - (args[0]!.startsWith('-') ? 2 : 1), 'the reference sent one packet per port');
      assert.deepEqual(sentTo(ours.packets, ports).map(shape), reference);
    });
  }
});
