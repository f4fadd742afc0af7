// knockd-fast doctor: every check passes where the deployment is sound and fails, with its fix, where it
// is not (no nft on PATH, missing / down / address-less interface, no capabilities, a broken addon).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { doctorChecks, formatCheck, type DoctorCheck } from '../src/tools/doctor.js';
import { loadBinding } from '../src/native.js';
import { Lab } from '../src/tools/netns.js';
import { isRoot } from './helpers/env.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const netnsSkip = !isRoot ? 'needs root (network namespaces)' : !existsSync('/usr/sbin/nft') ? 'needs nft' : false;

function addonLoads(): boolean {
  try {
    loadBinding();
    return true;
  } catch {
    return false;
  }
}
const addonSkip = addonLoads() ? false : 'the addon is not built (npm run build:native)';

const byName = (checks: DoctorCheck[], name: string): DoctorCheck => {
  const found = checks.find((c) => c.name === name);
  return found ?? assert.fail(`no check named '${name}' in ${checks.map((c) => c.name).join(', ')}`);
};

describe('doctor checks in this process', () => {
  test('nft missing from PATH fails with the install command', async () => {
    const checks = await doctorChecks({ interfaces: ['lo'], env: { ...process.env, PATH: '/nonexistent-kf' } });
    const nft = byName(checks, 'nft');
    assert.equal(nft.ok, false);
    assert.equal(nft.detail, 'not found on PATH (/nonexistent-kf)');
    assert.match(nft.fix ?? '', /apt-get install -y nftables/);
  });

  test('a missing interface fails and lists the ones that exist', async () => {
    const checks = await doctorChecks({ interfaces: ['kf-missing0'], env: { ...process.env, PATH: '/nonexistent-kf' } });
    const iface = byName(checks, 'interface kf-missing0');
    assert.equal(iface.ok, false);
    assert.equal(iface.detail, 'does not exist');
    assert.match(iface.fix ?? '', /-i or Interface= \(here: .*\blo\b/);
  });

  test('one line per check: pass with what was found, FAIL with the fix', () => {
    assert.equal(formatCheck({ name: 'nft', ok: true, detail: '/usr/sbin/nft list tables works' }), 'pass  nft: /usr/sbin/nft list tables works\n');
    assert.equal(formatCheck({ name: 'nft', ok: false, detail: 'not found on PATH (/x)', fix: 'install it' }), 'FAIL  nft: not found on PATH (/x); fix: install it\n');
  });

  test('the addon is loaded in a child process', { skip: addonSkip }, async () => {
    const addon = byName(await doctorChecks({ interfaces: ['lo'] }), 'addon');
    assert.equal(addon.ok, true, addon.detail);
    assert.match(addon.detail, /^loads \(.*(knockd_fast|knockd-fast\.glibc)\.node\)$/);
  });
});

test('run the way bin/knockd-fast.js runs a checkout (tsx tsImport), the addon still loads', { skip: addonSkip }, () => {
  const script = `const { tsImport } = await import('tsx/esm/api');
const { runDoctor } = await tsImport(${JSON.stringify(join(ROOT, 'src', 'tools', 'doctor.ts'))}, ${JSON.stringify(new URL('../bin/', import.meta.url).href)});
process.exitCode = await runDoctor({ interfaces: ['lo'], env: { ...process.env, PATH: '/nonexistent-kf' } });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.match(r.stdout.split('\n')[0]!, /^pass  addon: loads \(.*(knockd_fast|knockd-fast\.glibc)\.node\)$/, r.stdout + r.stderr);
});

describe('a broken addon build', { skip: addonSkip }, () => {
  // A copy of the package whose build/Release/knockd_fast.node is not a shared object.
  let copy = '';
  before(() => {
    copy = mkdtempSync(join(tmpdir(), 'kf-doctor-pkg-'));
    cpSync(join(ROOT, 'src'), join(copy, 'src'), { recursive: true });
    copyFileSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    mkdirSync(join(copy, 'build', 'Release'), { recursive: true });
    writeFileSync(join(copy, 'build', 'Release', 'knockd_fast.node'), 'not an ELF file\n');
  });
  after(() => copy && rmSync(copy, { recursive: true, force: true }));

  test('fails the addon line with the rebuild fix and skips the ring', () => {
    const script = `const { runDoctor } = await import(${JSON.stringify(join(copy, 'src', 'tools', 'doctor.ts'))}); process.exitCode = await runDoctor({ interfaces: ['lo'] });`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, /^FAIL  addon: does not load: could not load the knockd-fast native addon: .*; fix: rebuild the addon: `npm rebuild knockd-fast`/);
    assert.ok(lines.includes('FAIL  kernel ring: not checked: the addon does not load; fix: fix the addon first (see above)'), r.stdout);
    // capabilities and nft depend on who runs the suite; the two addon lines always fail here
    assert.match(lines.at(-2)!, /^[2-5] of 5 checks failed$/);
  });
});

/** Runs `knockd-fast doctor` (runDoctor) inside the lab's namespace, optionally under a wrapper such as setpriv. */
function doctorIn(lab: Lab, interfaces: string[], opts: { path?: string; wrapper?: string[] } = {}) {
  const script = `const { runDoctor } = await import(${JSON.stringify(join(ROOT, 'src', 'tools', 'doctor.ts'))}); process.exitCode = await runDoctor({ interfaces: ${JSON.stringify(interfaces)} });`;
  const [cmd, ...args] = [...(opts.wrapper ?? []), process.execPath, '--import', 'tsx', '--input-type=module', '-e', script];
  const env = { ...process.env, PATH: opts.path ?? process.env.PATH };
  const r = lab.run('d', cmd, args, { cwd: ROOT, env });
  const lines = r.stdout.split('\n').filter(Boolean);
  const line = (prefix: string): string => lines.find((l) => l.slice(6).startsWith(prefix)) ?? assert.fail(`no '${prefix}' line in:\n${r.stdout}${r.stderr}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, line };
}

describe('doctor in a namespace', { skip: netnsSkip || addonSkip }, () => {
  let lab: Lab;
  before(() => {
    lab = new Lab('doctor');
    lab.ns('d');
    const ip = (...args: string[]) => lab.exec('d', 'ip', args);
    // kfup0: the gateway's interface (up, carrier, addressed). kfdown0: down, which leaves its peer kfnc0
    // up without carrier. kfbare0: up with carrier but no address at all.
    ip('link', 'add', 'kfup0', 'type', 'veth', 'peer', 'name', 'kfup1');
    ip('link', 'add', 'kfdown0', 'type', 'veth', 'peer', 'name', 'kfnc0');
    ip('link', 'add', 'kfbare0', 'type', 'veth', 'peer', 'name', 'kfbare1');
    ip('addr', 'add', '192.0.2.1/24', 'dev', 'kfup0');
    // No IPv6 link-local addresses, so the address lists are exact.
    for (const dev of ['kfup0', 'kfbare0']) ip('link', 'set', dev, 'addrgenmode', 'none');
    for (const dev of ['kfup0', 'kfup1', 'kfnc0', 'kfbare0', 'kfbare1']) ip('link', 'set', dev, 'up');
  });
  after(() => lab?.destroy());

  test('a sound deployment: every check passes and the exit code is 0', () => {
    const r = doctorIn(lab, ['kfup0', 'lo']);
    assert.match(r.line('addon:'), /^pass  addon: loads/);
    assert.equal(r.line('capabilities:'), 'pass  capabilities: CAP_NET_RAW and CAP_NET_ADMIN are effective');
    assert.equal(r.line('interface kfup0:'), 'pass  interface kfup0: up, addresses 192.0.2.1');
    assert.equal(r.line('interface lo:'), 'pass  interface lo: up, addresses 127.0.0.1, ::1');
    assert.match(r.line('nft:'), /^pass  nft: \S*nft list tables works$/);
    assert.equal(r.line('kernel ring on kfup0:'), 'pass  kernel ring on kfup0: a TPACKET_V3 capture ring opens and closes');
    assert.equal(r.line('kernel ring on lo:'), 'pass  kernel ring on lo: a TPACKET_V3 capture ring opens and closes');
    assert.ok(!r.stdout.includes('FAIL'), r.stdout);
    assert.match(r.stdout, /all 7 checks passed\n$/);
    assert.equal(r.status, 0, r.stdout);
  });

  test('PATH without nft: the nft line fails and the exit code is 1', () => {
    const r = doctorIn(lab, ['kfup0'], { path: '/usr/bin:/bin' });
    assert.equal(r.line('nft:'), 'FAIL  nft: not found on PATH (/usr/bin:/bin); fix: install nftables: `apt-get install -y nftables` (or add the directory of nft to PATH)');
    assert.equal(r.status, 1);
  });

  test('missing, down, carrier-less and address-less interfaces each fail with their fix', () => {
    const r = doctorIn(lab, ['kfnone0', 'kfdown0', 'kfnc0', 'kfbare0']);
    assert.equal(r.line('interface kfnone0:'), 'FAIL  interface kfnone0: does not exist; fix: capture on an existing interface with -i or Interface= (here: kfbare0, kfbare1, kfdown0, kfnc0, kfup0, kfup1, lo)', r.stdout);
    assert.equal(r.line('interface kfdown0:'), 'FAIL  interface kfdown0: is down; fix: bring it up: `ip link set kfdown0 up`');
    assert.equal(r.line('interface kfnc0:'), 'FAIL  interface kfnc0: is up but has no carrier, so nothing arrives on it; fix: check the cable or the peer of kfnc0 (`ip link show kfnc0`)');
    assert.match(r.line('interface kfbare0:'), /^FAIL  interface kfbare0: has no addresses, so no knock can be addressed to this host; fix: give it an address/);
    assert.match(r.line('kernel ring on kfnone0:'), /^FAIL  kernel ring on kfnone0: cannot be opened: .*does not exist; fix: capture on an existing interface/);
    assert.equal(r.status, 1);
  });

  test('without CAP_NET_RAW and CAP_NET_ADMIN: capabilities and nft fail', () => {
    const drop = ['setpriv', '--bounding-set=-net_raw,-net_admin', '--inh-caps=-net_raw,-net_admin'];
    const r = doctorIn(lab, ['kfup0'], { wrapper: drop });
    assert.equal(
      r.line('capabilities:'),
      'FAIL  capabilities: missing CAP_NET_RAW and CAP_NET_ADMIN (capture needs CAP_NET_RAW, nftables CAP_NET_ADMIN); fix: run as root, or in the systemd unit set `AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN`',
    );
    assert.match(r.line('nft:'), /^FAIL  nft: `\S*nft list tables` failed: .*not permitted.*; fix: run as root or with CAP_NET_ADMIN$/);
    assert.match(r.line('kernel ring on kfup0:'), /^FAIL  kernel ring on kfup0: cannot be opened: .*; fix: grant CAP_NET_RAW/);
    assert.equal(r.status, 1);
  });
});
