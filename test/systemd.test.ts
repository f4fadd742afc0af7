// examples/knockd-fast.service: systemd accepts it (systemd-analyze verify), its directories hold every file
// the example config names, and the daemon runs every documented feature with exactly the unit's
// credentials — root bounded to the unit's CapabilityBoundingSet, no new privileges — on a private network:
// a 600 key file read, a one-time sequence used and its file rewritten, the log file written, the state
// file kept.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MANUAL, VERSION } from '../src/cli.js';
import { packageRoot } from '../src/native.js';
import { cliPath, GatewayLab, NET } from '../src/tools/demo.js';
import { manualToRoff } from '../src/tools/manpage.js';
import { isRoot as root } from './helpers/env.js';

const unitText = readFileSync(join(packageRoot, 'examples', 'knockd-fast.service'), 'utf8');
const exampleConf = readFileSync(join(packageRoot, 'examples', 'knockd-fast.conf'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'kf-systemd-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The unit's [Service] settings, each key with its values in order. */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) section = line;
    else if (section === '[Service]') {
      const eq = line.indexOf('=');
      const key = line.slice(0, eq);
      out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
    }
  }
  return out;
}
const service = serviceSettings(unitText);
const one = (key: string): string => {
  const values = service.get(key);
  assert.equal(values?.length, 1, `one ${key}= line`);
  return values![0];
};
const systemdAnalyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;

test('systemd-analyze verify accepts the unit (its man page found through man)', { skip: !systemdAnalyze && 'systemd-analyze is not installed (apt-get install systemd)' }, () => {
  const execStart = one('ExecStart').split(' ')[0];
  // verify checks that ExecStart's file exists: where npm has not installed knockd-fast, point it at this checkout
  const unit = join(dir, 'knockd-fast.service');
  writeFileSync(unit, existsSync(execStart) ? unitText : unitText.replace(`ExecStart=${execStart} `, `ExecStart=${cliPath()} `));
  const man = join(dir, 'man', 'man8');
  mkdirSync(man, { recursive: true });
  writeFileSync(join(man, 'knockd-fast.8'), manualToRoff(MANUAL, VERSION));
  const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', env: { ...process.env, MANPATH: `${join(dir, 'man')}:` } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});

test('the unit: -i on the command line, two capabilities, and a directory for every file the example config names', () => {
  assert.match(one('ExecStart'), /^\/usr\/bin\/knockd-fast --config \/etc\/knockd\.conf -i \$\{KNOCKD_FAST_INTERFACE\}$/);
  assert.equal(one('Environment'), 'KNOCKD_FAST_INTERFACE=eth0');
  assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_RAW CAP_NET_ADMIN');
  assert.equal(service.get('User'), undefined, 'runs as root: the key and one-time files are root\'s');
  assert.equal(service.get('DynamicUser'), undefined);
  assert.equal(one('ProtectSystem'), 'strict');
  const writable = [
    `/etc/${one('ConfigurationDirectory')}/`,
    `/var/lib/${one('StateDirectory')}/`,
    `/var/log/${one('LogsDirectory')}/`,
    ...one('ReadWritePaths').split(' ').map((p) => `${p.replace(/^-/, '')}/`),
  ];
  const named = [...exampleConf.matchAll(/^\s*(LogFile|StateFile|One_Time_Sequences|Secret_File)\s*=\s*(\S+)/gim)].map((m) => [m[1], m[2]]);
  assert.equal(named.length, 4, 'the example names a log, a state, a one-time and a key file');
  for (const [key, path] of named) assert.ok(writable.some((d) => path.startsWith(d)), `${key} = ${path} lies in a directory the unit makes writable`);
  assert.ok(writable.includes('/etc/knockd-fast/'), 'one-time files are rewritten in place: their directory is writable');
});

const client = NET.client.replace(/\./g, '\\.');

test('with the unit\'s credentials the daemon reads a 600 key, uses a one-time sequence, writes its log and state', { skip: !root && 'needs root (network namespaces, and root is what the unit runs as)', timeout: 120_000 }, async () => {
  const caps = one('CapabilityBoundingSet').split(' ').map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`);
  const launcher = ['setpriv', `--bounding-set=-all,${caps.join(',')}`, '--inh-caps=-all', ...(one('NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : [])];
  const lab = new GatewayLab('unit');
  try {
    await lab.startEchoServers(22);
    const etc = join(lab.dir, 'etc');
    const logs = join(lab.dir, 'log');
    const state = join(lab.dir, 'lib');
    for (const d of [etc, logs, state]) {
      mkdirSync(d);
      chmodSync(d, 0o700);
    }
    const key = join(etc, 'derived.key');
    execFileSync(process.execPath, [cliPath(), 'secret', '--out', key]);
    const once = join(etc, 'once.txt');
    writeFileSync(once, '7100,7200,7300\n7400,7500,7600\n');
    chmodSync(once, 0o600);
    const conf = lab.writeConfig(
      'knockd.conf',
      `[options]\n  LogFile = ${join(logs, 'knockd.log')}\n  StateFile = ${join(state, 'state.json')}\n  NftTable = kf_unit\n` +
        `[once]\n  one_time_sequences = ${once}\n  Open = 22/tcp\n` +
        `[derived]\n  Secret_File = ${key}\n  Port_Range = 20000-29999\n  Open = 2022/tcp\n` +
        `[cmd]\n  sequence = 6100,6200\n  start_command = nft add element inet kf_unit d_once_v4 { 192.0.2.99 timeout 60s }\n  cmd_timeout = 3600\n  stop_command = true\n`,
    );
    const daemon = await lab.startDaemon(conf, [], launcher);
    try {
      const status = readFileSync(`/proc/${daemon.child.pid}/status`, 'utf8');
      // the launcher execs: the daemon's process is node itself, with the bounded capability set
      const bounding = BigInt(`0x${/^CapBnd:\s*([0-9a-f]+)$/m.exec(status)![1]}`);
      assert.equal(bounding, (1n << 12n) | (1n << 13n), 'CAP_NET_ADMIN and CAP_NET_RAW only');
      lab.knock([NET.gateway, '7100', '7200', '7300']);
      await daemon.waitFor(new RegExp(`${client}: once: OPEN SESAME`));
      assert.equal(readFileSync(once, 'utf8'), '#100,7200,7300\n7400,7500,7600\n', 'the used sequence is struck out');
      lab.knock(['--secret-file', key, '--port-range', '20000-29999', NET.gateway]);
      await daemon.waitFor(new RegExp(`${client}: derived: OPEN SESAME`));
      assert.equal(lab.probe(NET.gateway, 22), 'open');
      lab.knock([NET.gateway, '6100', '6200']);
      await daemon.waitFor(/^cmd: running command: nft add element/);
      await new Promise((r) => setTimeout(r, 500));
      assert.match(lab.nft(['list', 'set', 'inet', 'kf_unit', 'd_once_v4']), /192\.0\.2\.99/, 'start_command ran nft with the unit\'s capabilities');
    } finally {
      assert.equal(await daemon.stop(), 15);
      lab.nft(['delete', 'table', 'inet', 'kf_unit']);
    }
    const log = readFileSync(join(logs, 'knockd.log'), 'utf8');
    assert.match(log, new RegExp(`${client}: once: OPEN SESAME`));
    assert.match(log, new RegExp(`${client}: derived: OPEN SESAME`));
    const saved = JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')) as { stops: { door: string }[] };
    assert.deepEqual(saved.stops.map((s) => s.door), ['cmd'], 'the pending stop command is kept for the next start');
  } finally {
    lab.destroy();
  }
});
