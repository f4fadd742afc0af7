// Files the daemon trusts or replaces (issue 14 findings 3, 9, 10, 11): StrictModes-like owner and mode
// checks on state, one-time and key files and their directories, atomic replacement through an
// unpredictable O_EXCL temporary file, a log file not followed through a symbolic link, regular files of
// bounded size only, and a full disk (a small tmpfs in a private mount namespace) that leaves no temporary
// file, no torn log line and one warning with a count.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseConfig } from '../src/config/parse.js';
import { readState, writeState } from '../src/control/state.js';
import { readCaptureFile } from '../src/capture/pcap.js';
import { Logger } from '../src/report/log.js';
import { readSecretFile } from '../src/config/keys.js';
import { packageRoot } from '../src/native.js';
import { isRoot as root } from './helpers/env.js';

const rootOnly = root ? false : 'needs root (files owned by another user, mount namespaces)';
const dir = mkdtempSync(join(tmpdir(), 'kf-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (name: string) => {
  const d = join(dir, `${n++}`);
  mkdirSync(d);
  return join(d, name);
};
const NOBODY = 65534;
const STOP = '{"version":1,"stops":[{"door":"A","source":"198.51.100.1","family":4,"command":"touch /tmp/pwned","dueMs":1}]}\n';

test('a state file planted by another user, or in a directory others can write, is refused with the fix', { skip: rootOnly }, () => {
  const planted = fresh('state.json');
  writeFileSync(planted, STOP);
  chownSync(planted, NOBODY, NOBODY);
  assert.throws(() => readState(planted), new RegExp(`^Error: state file ${planted} is owned by uid ${NOBODY}, not by root; .* Fix: chown root ${planted}$`));
  const open = fresh('state.json');
  writeFileSync(open, STOP);
  chmodSync(join(open, '..'), 0o777);
  assert.throws(() => readState(open), new RegExp(`state file ${open}: directory ${join(open, '..')} is writable by its group and by others \\(mode 0777\\); .* Fix: chmod go-w ${join(open, '..')}$`));
  // a sticky world-writable directory (like /tmp) above a directory of our own is fine
  const safe = fresh('state.json');
  writeFileSync(safe, STOP);
  assert.equal(readState(safe).stops.length, 1);
});

test('the state file\'s temporary file is unpredictable and never follows a planted symbolic link', () => {
  const state = fresh('state.json');
  const victim = fresh('victim');
  writeFileSync(victim, 'root-owned content\n');
  // the name the old writer used: <state>.<pid>.tmp
  symlinkSync(victim, `${state}.${process.pid}.tmp`);
  writeState(state, { version: 1, stops: [] });
  assert.equal(readFileSync(victim, 'utf8'), 'root-owned content\n');
  assert.equal(readFileSync(state, 'utf8'), '{"version":1,"stops":[]}\n');
  assert.deepEqual(readdirSync(join(state, '..')).sort(), ['state.json', `state.json.${process.pid}.tmp`]);
});

test('a LogFile that is a symbolic link is not followed; the warning says why', () => {
  const victim = fresh('victim');
  writeFileSync(victim, 'untouched\n');
  const link = fresh('knockd.log');
  symlinkSync(victim, link);
  const stderr: string[] = [];
  const log = new Logger({ logFile: link, stderr: (t) => stderr.push(t) });
  log.log('hello');
  log.close();
  assert.equal(readFileSync(victim, 'utf8'), 'untouched\n');
  assert.deepEqual(stderr, [`warning: cannot open logfile: ${link} is a symbolic link, which is not followed; give the path of the file itself\n`]);
});

test('one-time sequence files: another user\'s file, /dev/zero and a FIFO are refused at once with clear errors', { skip: rootOnly }, () => {
  const conf = (path: string) => {
    const c = fresh('knockd.conf');
    writeFileSync(c, `[A]\n  one_time_sequences = ${path}\n`);
    return c;
  };
  const theirs = fresh('onetime');
  writeFileSync(theirs, '7000,8000\n');
  chownSync(theirs, NOBODY, NOBODY);
  assert.throws(() => parseConfig(conf(theirs)), new RegExp(`one-time sequences file ${theirs} is owned by uid ${NOBODY}`));
  assert.throws(() => parseConfig(conf('/dev/zero')), /one-time sequences file \/dev\/zero is a character device; give the path of a regular file/);
  const fifo = fresh('fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  assert.throws(() => parseConfig(conf(fifo)), /is a named pipe; give the path of a regular file/);
});

test('--replay of /dev/zero ends at once with one clear line, no stack trace', () => {
  const r = spawnSync(process.execPath, [join(packageRoot, 'bin', 'knockd-fast.js'), '-c', writeConf(), '--replay', '/dev/zero'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /\/dev\/zero: is a character device; give the path of a regular file/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.throws(() => [...readCaptureFile('/dev/zero')], /is a character device/);
});

function writeConf(): string {
  const c = fresh('knockd.conf');
  writeFileSync(c, '[A]\n  sequence = 7000\n');
  return c;
}

test('a key file owned by another user is refused even with mode 600 (issue 14 finding 11)', { skip: rootOnly }, () => {
  const key = fresh('door.key');
  writeFileSync(key, 'a'.repeat(64), { mode: 0o600 });
  chownSync(key, NOBODY, NOBODY);
  assert.throws(() => readSecretFile(key), new RegExp(`secret file ${key} is owned by uid ${NOBODY}, not by root; .* Fix: chown root ${key}`));
  assert.throws(() => readSecretFile('/dev/zero', { requirePrivate: false }), /secret file \/dev\/zero is a character device/);
});

// A tmpfs of 16 KiB in a private mount namespace: the rest of the machine never sees it.
test('a full disk: no temporary file left, whole log lines only, one warning with a count', { skip: rootOnly }, () => {
  const mnt = fresh('mnt');
  mkdirSync(mnt);
  const script = `
    import { appendFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
    import { Logger } from ${JSON.stringify(join(packageRoot, 'src/report/log.ts'))};
    import { writeState } from ${JSON.stringify(join(packageRoot, 'src/control/state.ts'))};
    const mnt = ${JSON.stringify(mnt)};
    const stderr = [];
    const log = new Logger({ logFile: mnt + '/knockd.log', stderr: (t) => stderr.push(t), now: () => new Date(2026, 0, 1) });
    let i = 0;
    for (; i < 400; i++) log.log('line ' + i + ' ' + 'x'.repeat(60));
    let stateError = '';
    try { writeState(mnt + '/state.json', { version: 1, stops: Array.from({ length: 500 }, (_, j) => ({ door: 'A', source: '198.51.100.' + (j % 250), family: 4, command: 'echo ' + 'y'.repeat(40), dueMs: 1 })) }); } catch (err) { stateError = err.code; }
    const files = readdirSync(mnt).sort();
    rmSync(mnt + '/filler', { force: true });
    log.log('after the disk has room again');
    log.close();
    process.stdout.write(JSON.stringify({ stderr, stateError, files, log: readFileSync(mnt + '/knockd.log', 'utf8') }));
  `;
  const r = spawnSync('unshare', ['-m', 'sh', '-c', `mount --make-rprivate / && mount -t tmpfs -o size=16k tmpfs "${mnt}" && head -c 4096 /dev/zero > "${mnt}/filler" && exec "${process.execPath}" --import tsx --input-type=module -e "$0"`, script], {
    encoding: 'utf8',
    cwd: packageRoot,
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { stderr: string[]; stateError: string; files: string[]; log: string };
  assert.equal(res.stateError, 'ENOSPC');
  assert.deepEqual(res.files, ['filler', 'knockd.log'], 'no temporary state file is left behind');
  const lines = res.log.split('\n');
  assert.equal(lines.pop(), '', 'the log ends with a whole line');
  const written = lines.filter((l) => / line \d+ x{60}$/.test(l)).length;
  assert.ok(written > 10 && written < 400, `${written} lines fit`);
  for (const l of lines) assert.match(l, /^\[2026-01-01 00:00\] (line \d+ x{60}|warning: \d+ line\(s\) could not be written to the logfile \(No space left on device\)|after the disk has room again)$/);
  const lost = 400 - written;
  assert.deepEqual(res.stderr, [
    'warning: cannot write logfile: No space left on device; lines are dropped until it can be written again\n',
    `warning: ${lost} line(s) could not be written to the logfile (No space left on device)\n`,
  ]);
  assert.deepEqual(lines.slice(-2), [`[2026-01-01 00:00] warning: ${lost} line(s) could not be written to the logfile (No space left on device)`, '[2026-01-01 00:00] after the disk has room again']);
  assert.ok(!existsSync(join(mnt, 'knockd.log')), 'the tmpfs stayed in its own mount namespace');
});
