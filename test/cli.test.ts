import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { main, MANUAL, parseArgs, USAGE, VERSION } from '../src/cli.js';
import { packageRoot } from '../src/native.js';
import { Lab } from '../src/tools/netns.js';
import { writePcap } from '../src/capture/pcap.js';
import { knockFrame } from './helpers/packets.js';
import { needsRoot, T0 } from './helpers/env.js';

const dir = mkdtempSync(join(tmpdir(), 'kf-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function conf(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  return { code, out, err };
}

const C1 = conf('c1.conf', '[options]\n  logfile = /dev/null\n[A]\n  sequence = 7000,8000,9000\n  seq_timeout = 5\n  command = echo A %IP%\n');

function capture(name: string, knocks: [src: string, port: number, t: number][]): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    writePcap(
      knocks.map(([src, dport, t]) => ({ data: knockFrame({ src, dst: '192.0.2.2', dport }), timeUs: T0 + t * 1e6 })),
      1,
    ),
  );
  return path;
}

test('-h and --help print the manual on stdout and exit 0', async () => {
  for (const flag of ['-h', '--help']) {
    const r = await cli(flag);
    assert.equal(r.code, 0);
    assert.equal(r.out, MANUAL);
    assert.match(r.out, /^NAME\n {4}knockd-fast - /m);
    for (const section of ['SYNOPSIS', 'DESCRIPTION', 'OPTIONS (knockd)', 'SIGNALS', 'EXIT STATUS', 'FILES']) assert.ok(r.out.includes(`\n${section}\n`), section);
  }
});

test('-V and --version print the version and exit 0', async () => {
  for (const flag of ['-V', '--version']) {
    const r = await cli(flag);
    assert.equal(r.code, 0);
    assert.equal(r.out, `knockd-fast ${VERSION} (knockd 0.8 compatible)\n`);
  }
});

test('an unknown option prints the usage on stdout and exits 0, as knockd does', async () => {
  const r = await cli('--bogus');
  assert.equal(r.code, 0);
  assert.equal(r.out, USAGE);
  assert.match(r.err, /unknown option '--bogus'/);
  const extra = await cli('stray-argument');
  assert.equal(extra.code, 0);
  assert.equal(extra.out, USAGE);
});

test('a bad value of an extension option is an error naming the choices (exit 1)', async () => {
  for (const [argv, text] of [
    [['--matcher', 'fast'], /--matcher must be one of native, ts \(got "fast"\)/],
    [['--log-format', 'xml'], /--log-format must be one of knockd, json/],
    [['--threads', '0'], /--threads must be a whole number from 1 to 1024/],
    [['nft', 'explode'], /nft must be one of status, uninstall/],
  ] as const) {
    const r = await cli(...argv);
    assert.equal(r.code, 1, argv.join(' '));
    assert.match(r.err, text);
  }
});

test('every knockd flag and extension parses with knockd\'s meaning and defaults', () => {
  const io = { stdout: () => undefined, stderr: () => undefined };
  const plain = parseArgs([], io);
  assert.equal(plain.kind, 'run');
  assert.equal(plain.kind === 'run' && plain.options.config, '/etc/knockd.conf');
  const all = parseArgs(
    [
      '-i', 'eth1', '-d', '-c', '/x.conf', '-D', '-l', '-p', '/run/k.pid', '-g', '/var/log/k.log', '-v', '-4',
      '--threads', '3', '--matcher', 'ts', '--log-format', 'json', '--metrics', '127.0.0.1:9101',
      '--state-file', '/tmp/s.json', '--replay', 'x.pcap', '--json', '--local-address', '192.0.2.2', '--local-address', 'fd00::2',
    ],
    io,
  );
  assert.deepEqual(all.kind === 'run' && all.options, {
    interface: 'eth1',
    daemon: true,
    config: '/x.conf',
    debug: true,
    lookup: true,
    pidfile: '/run/k.pid',
    logfile: '/var/log/k.log',
    verbose: true,
    onlyIpV4: true,
    threads: 3,
    matcher: 'ts',
    logFormat: 'json',
    metrics: '127.0.0.1:9101',
    stateFile: '/tmp/s.json',
    replay: 'x.pcap',
    json: true,
    localAddress: ['192.0.2.2', 'fd00::2'],
  });
  const long = parseArgs(['--interface', 'eth2', '--daemon', '--config', '/y', '--debug', '--lookup', '--pidfile', '/p', '--logfile', '/l', '--verbose', '--only-ip-v4'], io);
  assert.deepEqual(long.kind === 'run' && long.options, {
    interface: 'eth2',
    daemon: true,
    config: '/y',
    debug: true,
    lookup: true,
    pidfile: '/p',
    logfile: '/l',
    verbose: true,
    onlyIpV4: true,
  });
  const nft = parseArgs(['-c', '/z', 'nft', 'uninstall'], io);
  assert.deepEqual(nft.kind === 'nft' && [nft.action, nft.options.config], ['uninstall', '/z']);
});

test('a config error prints knockd\'s line on stderr and the usage on stdout, exit 1', async () => {
  const bad = conf('bad.conf', '[A]\n  sequence = 7000\n  bogus = 1\n');
  const r = await cli('-c', bad);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'config: line 3: syntax error\n');
  assert.equal(r.out, USAGE);
  const missing = await cli('-c', join(dir, 'nope.conf'));
  assert.equal(missing.code, 1);
  assert.equal(missing.err, `${join(dir, 'nope.conf')}: No such file or directory\n`);
});

test('--test on a good config: the doors, the nft ruleset, exit 0', async () => {
  const path = conf('nft.conf', '[options]\n  NftTable = kf_test\n[ssh]\n  sequence = 7000,8000:udp\n  tcpflags = syn,!ack\n  Open = 22/tcp\n  Open_Timeout = 15\n  Cooldown = 5\n');
  const r = await cli('-c', path, '--test');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^door \[ssh\] \(line 3\)$/m);
  assert.match(r.out, /^ {2}sequence {9}7000:tcp,8000:udp$/m);
  assert.match(r.out, /^ {2}tcpflags {9}syn,!ack$/m);
  assert.match(r.out, /^ {2}open {13}22\/tcp for 15s \(hook input\)$/m);
  assert.match(r.out, /^ {2}cooldown {9}5s$/m);
  assert.match(r.out, /add table inet kf_test/);
  assert.match(r.out, /test is successful\n$/);
});

test('--test on a bad config: knockd\'s error, exit 1, no usage', async () => {
  const bad = conf('bad2.conf', '[A]\n  sequence = 70000\n');
  const r = await cli('-c', bad, '--test');
  assert.equal(r.code, 1);
  assert.equal(r.out, '');
  assert.match(r.err, /^config: section A: port 70000 is invalid\n/);
  assert.match(r.err, /test failed\n$/);
});

test('--replay -v prints knockd\'s -v lines from a pcap file; --json one object per event', async () => {
  const pcap = capture('row1.pcap', [['198.51.100.1', 7000, 0], ['198.51.100.1', 8000, 1], ['198.51.100.1', 9000, 2], ['198.51.100.2', 7000, 3]]);
  for (const matcher of ['ts', 'native']) {
    const r = await cli('-c', C1, '--replay', pcap, '-v', '--matcher', matcher, '--local-address', '192.0.2.2');
    assert.equal(r.code, 0, r.err);
    assert.equal(
      r.out,
      [
        '198.51.100.1: A: Stage 1',
        '198.51.100.1: A: Stage 2',
        '198.51.100.1: A: Stage 3',
        '198.51.100.1: A: OPEN SESAME',
        '198.51.100.2: A: Stage 1',
        '198.51.100.2: A: sequence timeout (stage 1)',
        '',
      ].join('\n'),
      matcher,
    );
  }
  const j = await cli('-c', C1, '--replay', pcap, '--json', '--matcher', 'ts');
  const events = j.out.trim().split('\n').map((l) => JSON.parse(l) as { v: number; event: string });
  assert.deepEqual(events.map((e) => e.event), ['stage', 'stage', 'stage', 'open', 'stage', 'timeout']);
  assert.ok(events.every((e) => e.v === 1));
});

test('--replay with a local address that is not the destination sees nothing; a bad capture is an error', async () => {
  const pcap = capture('row1b.pcap', [['198.51.100.1', 7000, 0], ['198.51.100.1', 8000, 1], ['198.51.100.1', 9000, 2]]);
  const other = await cli('-c', C1, '--replay', pcap, '--local-address', '192.0.2.99', '--matcher', 'ts');
  assert.equal(other.out, '');
  const junk = join(dir, 'junk.pcap');
  writeFileSync(junk, 'not a capture');
  const r = await cli('-c', C1, '--replay', junk);
  assert.equal(r.code, 1);
  assert.match(r.err, /^knockd-fast: .*junk\.pcap/);
  const badAddr = await cli('-c', C1, '--replay', pcap, '--local-address', 'x');
  assert.equal(badAddr.code, 1);
  assert.match(badAddr.err, /--local-address "x" is not an IPv4 or IPv6 address/);
});

test('-D with --replay reports where the local addresses came from and the counters', async () => {
  const pcap = capture('row1c.pcap', [['198.51.100.1', 7000, 0]]);
  const r = await cli('-c', C1, '--replay', pcap, '-D', '--matcher', 'ts');
  assert.match(r.err, /replay: local addresses from every destination/);
  assert.match(r.err, /frames=1 /);
});

test('knockd-fast knock runs the knock client (its usage and exit code)', async () => {
  const r = spawnSync(process.execPath, [join(packageRoot, 'bin', 'knockd-fast.js'), 'knock'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stdout + r.stderr, /usage: knockd-fast knock/);
});

test('bin/knockd-fast.js: -V through the real entry point, exit code 0', () => {
  const r = spawnSync(process.execPath, [join(packageRoot, 'bin', 'knockd-fast.js'), '-V'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `knockd-fast ${VERSION} (knockd 0.8 compatible)\n`);
});

const nftPresent = spawnSync('nft', ['--version'], { encoding: 'utf8' }).status === 0;

test('nft status|uninstall inside a private netns: shows and removes the knockd-fast table', { skip: needsRoot('to create a network namespace') || (!nftPresent && 'the nft tool is not installed') }, () => {
  const lab = new Lab('clinft');
  try {
    lab.ns('n');
    const path = conf('nftcli.conf', '[options]\n  NftTable = kf_cli\n[ssh]\n  sequence = 7000\n  Open = 22/tcp\n');
    const run = (...args: string[]) =>
      lab.run('n', process.execPath, [join(packageRoot, 'bin', 'knockd-fast.js'), '-c', path, 'nft', ...args], { timeout: 30_000 });
    const before = run('status');
    assert.equal(before.status, 0, before.stderr);
    assert.equal(before.stdout, 'table inet kf_cli: not installed\n');
    lab.exec('n', 'nft', ['-f', '-'], 'add table inet kf_cli\nadd set inet kf_cli probe { type ipv4_addr; flags timeout; }\nadd element inet kf_cli probe { 192.0.2.7 timeout 60s }\n');
    const during = run('status');
    assert.equal(during.status, 0, during.stderr);
    assert.match(during.stdout, /^table inet kf_cli\n {2}set probe: ipv4_addr, 1 element\(s\)\n {4}192\.0\.2\.7 {2}expires in \d+s of 60s\n/);
    const removed = run('uninstall');
    assert.equal(removed.status, 0, removed.stderr);
    assert.equal(removed.stdout, 'removed table inet kf_cli\n');
    assert.equal(run('uninstall').stdout, 'table inet kf_cli was not installed\n');
  } finally {
    lab.destroy();
  }
});

test('--test names the config line of an error in a file the config refers to (knockd\'s text has none)', async () => {
  const missing = join(dir, 'once-missing.txt');
  const path = conf('once.conf', `[options]\n  logfile = /dev/null\n[once]\n  one_time_sequences = ${missing}\n  Open = 8443/tcp\n`);
  const r = await cli('-c', path, '--test');
  assert.equal(r.code, 1);
  assert.equal(r.err, `${missing}: No such file or directory\nknockd-fast: the error is on line 4 of ${path}\nknockd-fast: configuration file ${path} test failed\n`);
});

test('secret: a key on stdout, or with --out a new file of mode 600 that a derived door accepts; never overwrites', async () => {
  const printed = await cli('secret');
  assert.equal(printed.code, 0);
  assert.match(printed.out, /^[0-9a-f]{64}\n$/);
  const key = join(dir, 'door.key');
  const saved = spawnSync(process.execPath, [join(packageRoot, 'bin', 'knockd-fast.js'), 'secret', '--out', key], { encoding: 'utf8' });
  assert.equal(saved.status, 0, saved.stderr);
  assert.equal(saved.stdout, '');
  assert.equal(statSync(key).mode & 0o777, 0o600);
  assert.match(readFileSync(key, 'utf8'), /^[0-9a-f]{64}\n$/);
  const door = conf('derived.conf', `[d]\n  Secret_File = ${key}\n  Port_Range = 20000-29999\n  Open = 22/tcp\n`);
  assert.equal((await cli('-c', door, '--test')).code, 0);
  const again = await cli('secret', '--out', key);
  assert.equal(again.code, 1);
  assert.equal(again.err, `knockd-fast secret: cannot create ${key}: the file exists (a key is never overwritten; remove it first to replace it)\n`);
  const stray = await cli('secret', 'extra');
  assert.equal(stray.code, 1);
  assert.match(stray.err, /^knockd-fast secret: too many arguments.*\nusage: knockd-fast secret \[--out FILE\]\n$/);
});

test('doctor and demo refuse unknown options with their usage (exit 1)', async () => {
  for (const [name, usage] of [['doctor', 'usage: knockd-fast doctor [-i IF[,IF...]] [-c FILE]'], ['demo', 'usage: knockd-fast demo [--fleet]']]) {
    const r = await cli(name, '--bogus');
    assert.equal(r.code, 1, name);
    assert.equal(r.err, `knockd-fast ${name}: unknown option '--bogus'\n${usage}\n`);
    const help = await cli(name, '-h');
    assert.deepEqual([help.code, help.out], [0, `${usage}\n`]);
  }
});

test('a closed pipe on stdout is not an error: --test | true keeps --test\'s exit code', () => {
  const bin = join(packageRoot, 'bin', 'knockd-fast.js');
  for (const [path, code] of [[C1, 0], [conf('pipe-bad.conf', '[A]\n  sequence = 70000\n'), 1]] as const) {
    // `true` exits without reading, so every write of knockd-fast meets a closed pipe (EPIPE)
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${bin}" -c "${path}" --test | true; exit "\${PIPESTATUS[0]}"`], { encoding: 'utf8' });
    assert.equal(r.status, code, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE|Error/);
  }
});

const nobodySkip = needsRoot('runs the daemon as nobody in a private netns');

test('as a user without capabilities the cause comes first, and a failed start keeps the previous state file', { skip: nobodySkip }, () => {
  const open = mkdtempSync(join(tmpdir(), 'kf-cli-nobody-'));
  chmodSync(open, 0o755);
  const lab = new Lab('clinobody');
  try {
    lab.ns('n');
    const stateDir = join(open, 'state');
    mkdirSync(stateDir);
    chownSync(stateDir, 65534, 65534);
    const state = join(stateDir, 'state.json');
    const previous = '{"version":1,"stops":[{"door":"A","source":"198.51.100.1","family":4,"command":"echo stop","dueMs":1}]}\n';
    writeFileSync(state, previous);
    chownSync(state, 65534, 65534);
    const asNobody = (config: string) => {
      const path = join(open, 'k.conf');
      writeFileSync(path, config);
      chmodSync(path, 0o644);
      return lab.run('n', 'setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(packageRoot, 'bin', 'knockd-fast.js'), '-c', path, '-i', 'lo'], { timeout: 30_000 });
    };
    // the missing capability is found before anything is opened or written (issue 14 findings 2 and 8): the
    // cause is the first line and no state file is touched
    const capture = asNobody(`[options]\n  StateFile = ${join(open, 'elsewhere', 'state.json')}\n[A]\n  sequence = 7000,8000\n  command = echo %IP%\n`);
    assert.equal(capture.status, 1);
    const lines = capture.stderr.split('\n');
    assert.match(lines[0], /^knockd-fast cannot start: missing CAP_NET_RAW \(packet capture\); nothing was installed\. To fix: run as root/);
    assert.doesNotMatch(capture.stderr, /error during shutdown/);
    assert.ok(!existsSync(join(open, 'elsewhere')), 'nothing was written for a start that failed');
    // nft fails before the state file is read: the previous run's pending stop command must survive
    const nft = asNobody(`[options]\n  StateFile = ${state}\n[ssh]\n  sequence = 7000,8000\n  Open = 22/tcp\n`);
    assert.equal(nft.status, 1);
    assert.doesNotMatch(nft.stderr, /error during shutdown/);
    assert.equal(readFileSync(state, 'utf8'), previous);
  } finally {
    lab.destroy();
    rmSync(open, { recursive: true, force: true });
  }
});

test('bin/ runs the sources in a checkout (src/ present), never a dist/ left from a build; the package (no src/) runs dist/', () => {
  const tree = mkdtempSync(join(tmpdir(), 'kf-bin-'));
  try {
    for (const sub of ['bin', 'src', 'src/tools', 'dist', 'dist/tools']) mkdirSync(join(tree, sub), { recursive: true });
    symlinkSync(join(packageRoot, 'node_modules'), join(tree, 'node_modules'));
    for (const name of ['knockd-fast.js', 'knock-fast.js']) writeFileSync(join(tree, 'bin', name), readFileSync(join(packageRoot, 'bin', name)));
    writeFileSync(join(tree, 'package.json'), '{"type":"module"}\n');
    for (const [file, fn] of [['cli', 'main'], ['tools/knock', 'runKnockCli']]) {
      writeFileSync(join(tree, 'src', `${file}.ts`), `export async function ${fn}(): Promise<number> { process.stdout.write('src\\n'); return 0; }\n`);
      writeFileSync(join(tree, 'dist', `${file}.js`), `export async function ${fn}() { process.stdout.write('dist\\n'); return 0; }\n`);
    }
    const ran = (name: string) => spawnSync(process.execPath, [join(tree, 'bin', name)], { encoding: 'utf8' }).stdout;
    assert.deepEqual([ran('knockd-fast.js'), ran('knock-fast.js')], ['src\n', 'src\n']);
    rmSync(join(tree, 'src'), { recursive: true });
    assert.deepEqual([ran('knockd-fast.js'), ran('knock-fast.js')], ['dist\n', 'dist\n']);
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
});
