// The fleet on a real private network: a redis-server started here on a unix socket, gateway namespaces
// each with its own daemon and nftables, a client namespace reaching every gateway from the same
// addresses. Root only; the namespaces and the server are removed afterwards, also on failure.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FLEET_NET, FleetLab, sshDoor } from '../src/tools/fleetlab.js';
import type { Daemon } from '../src/tools/demo.js';
import { encodeMessage, newNonce, type FleetMessage } from '../src/fleet/message.js';
import { main } from '../src/cli.js';
import { join } from 'node:path';
import { chmodSync, readFileSync } from 'node:fs';
import { isRoot as root } from './helpers/env.js';

const LAB_KEY = new Uint8Array(Buffer.from('5a'.repeat(32), 'hex'));
const CHANNEL = 'kf:{test}:grants';

/** Prometheus text of the daemon in gateway i (MetricsListen 127.0.0.1:9101 inside its namespace). */
function scrape(lab: FleetLab, i: number): string {
  return lab.lab.exec(`gw${i}`, process.execPath, ['-e', "fetch('http://127.0.0.1:9101/metrics').then(r => r.text()).then(t => process.stdout.write(t))"]);
}

const skip = root ? false : 'needs root (network namespaces, AF_PACKET, nftables)';

const WEB = `
[web]
    Sequence = 6100,6200,6300
    Open = 443/tcp
`;

const SSH = sshDoor;

describe('a fleet of gateways sharing grants through Redis', { skip, timeout: 900_000 }, () => {
  let lab: FleetLab;
  const daemons: Daemon[] = [];
  const start = async (i: number, conf: string): Promise<Daemon> => {
    const d = await lab.startDaemon(i, conf);
    daemons.push(d);
    return d;
  };
  const stopAll = async () => {
    for (const d of daemons.splice(0)) await d.stop('SIGKILL');
    for (let i = 0; i < 3; i++) {
      try {
        lab.nft(i, ['delete', 'table', 'inet', 'knockd_fast']);
      } catch {
        /* not there */
      }
    }
    await lab.redis.command(['FLUSHALL']).catch(() => undefined);
  };

  before(async () => {
    lab = new FleetLab('fleet', 3);
    await lab.redis.start();
    await lab.startEchoServers(22);
  });
  after(async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await lab?.destroy();
  });

  test('a knock on A opens 22/tcp on A and on B for that client only; both close after Open_Timeout', async () => {
    try {
      const a = await start(0, lab.writeConfig('a.conf', lab.options(0) + SSH(15)));
      const b = await start(1, lab.writeConfig('b.conf', lab.options(1) + SSH(15) + WEB));
      await a.waitFor(/fleet: catch-up \(connect\)/);
      await b.waitFor(/fleet: catch-up \(connect\)/);
      assert.equal(lab.probe(0), 'closed');
      assert.equal(lab.probe(1), 'closed');
      lab.knock(0, ['7000', '8000', '9000']);
      const knockedAt = Date.now();
      await a.waitFor(/203\.0\.113\.10: ssh: OPEN SESAME/);
      assert.equal(lab.probe(0), 'open', 'open on A, where the knock arrived');
      await b.waitFor(/203\.0\.113\.10: ssh: opened by fleet member gw0/);
      assert.equal(lab.probe(1), 'open', 'a real TCP connection through B succeeds');
      // fleet status, as the operator on A sees it: both members, B's extra door flagged, one open grant
      let out = '';
      const code = await main(['-c', join(lab.dir, 'a.conf'), 'fleet', 'status'], { stdout: (t) => (out += t), stderr: (t) => (out += t) });
      assert.equal(code, 0, out);
      assert.match(out, /^fleet test on unix:\/\/\S+redis\.sock: store round trip \d+\.\d\d ms$/m);
      assert.match(out, /members \(2 seen/);
      assert.match(out, /^  gw0 +version \S+ +seen \d+s ago +up \d+s +doors as in this config$/m);
      assert.match(out, /^  gw1 +version .*DOORS DIFFER: web extra$/m);
      assert.match(out, /open grants \(1\):\n  ssh +1\n/);
      let doctor = '';
      await main(['doctor', '-c', join(lab.dir, 'a.conf')], { stdout: (t) => (doctor += t), stderr: (t) => (doctor += t) });
      assert.match(doctor, /^pass  fleet store unix:\/\/\S+redis\.sock: answers, round trip \d+\.\d\d ms$/m);
      assert.equal(lab.probe(1, FLEET_NET.client2), 'closed', "another client's connection through B does not");
      assert.equal(lab.probe(0, FLEET_NET.client2), 'closed');
      await sleep(Math.max(0, knockedAt + 15_500 - Date.now()));
      assert.equal(lab.probe(0), 'closed', 'A closed after Open_Timeout');
      assert.equal(lab.probe(1), 'closed', 'B closed after Open_Timeout');
    } finally {
      await stopAll();
    }
  });

  test('forged or damaged messages written straight into Redis open nothing and are counted', async () => {
    try {
      const b = await start(1, lab.writeConfig('b2.conf', lab.options(1, '    MetricsListen = 127.0.0.1:9101\n') + SSH(30)));
      await b.waitFor(/fleet: catch-up \(connect\)/);
      const now = Date.now();
      const m = (over: Partial<FleetMessage>): FleetMessage => ({ type: 'grant', member: 'intruder', door: 'ssh', family: 4, subject: FLEET_NET.client, expiryMs: now + 20_000, nonce: newNonce(), seq: 1, ...over });
      const forged: [string, string | Buffer][] = [
        ['unsigned', JSON.stringify({ v: 1, t: 'grant', m: 'intruder', d: 'ssh', f: 4, a: FLEET_NET.client, e: now + 20_000, n: 'x', s: 1 })],
        ['bad_signature', encodeMessage(new Uint8Array(32).fill(1), 'test', m({}))],
        ['bad_signature', encodeMessage(LAB_KEY, 'other-fleet', m({}))],
        // in B's own name: only byte-identical echoes of what B published skip the checks
        ['bad_signature', encodeMessage(new Uint8Array(32).fill(1), 'test', m({ member: 'gw1' }))],
        ['expired', encodeMessage(LAB_KEY, 'test', m({ expiryMs: now - 1000 }))],
        ['too_long', encodeMessage(LAB_KEY, 'test', m({ expiryMs: now + 3_600_000 }))],
        ['unknown_door', encodeMessage(LAB_KEY, 'test', m({ door: 'backdoor' }))],
        ['unparsable', Buffer.from([1, 0xff, 0x80, 0, 0x7b, 0x22, 0])],
        ['oversize', 'x'.repeat(100_000)],
      ];
      // published (as they happen) and stored (read by the catch-up that a reload runs)
      for (const [, raw] of forged) await lab.redis.command(['PUBLISH', CHANNEL, raw]);
      for (const [k, [, raw]] of forged.entries()) await lab.redis.command(['SET', `kf:{test}:g:ssh|4|203.0.113.${20 + k}`, raw, 'PX', '60000']);
      b.child.kill('SIGHUP');
      await b.waitFor(/fleet: catch-up \(reload\)/);
      await sleep(500);
      assert.equal(lab.probe(1), 'closed', 'nothing opened for the client');
      assert.equal(lab.nft(1, ['list', 'set', 'inet', 'knockd_fast', 'd_ssh_v4']).includes('elements'), false, 'the set stays empty');
      const metrics = scrape(lab, 1);
      const expected = new Map<string, number>();
      for (const [reason] of forged) expected.set(reason, (expected.get(reason) ?? 0) + 2);
      for (const [reason, n] of expected) assert.match(metrics, new RegExp(`knockd_fleet_refused_total\\{reason="${reason}"\\} ${n}\\b`), reason);
      assert.ok(b.lines.some((l) => /fleet: refused 1 message\(s\) from the store: unsigned \(from "intruder"\)/.test(l)), 'the first refusal is logged at once (the others in a summary, rate-limited)');
      assert.ok(b.lines.length < 30, `no line per message: ${b.lines.join('\n')}`);
      assert.equal(b.child.exitCode, null, 'the daemon is still running');
    } finally {
      await stopAll();
    }
  });

  test('failover: A killed with -9 and its link down, B still admits; a member started later installs the open grants with their remaining time', async () => {
    try {
      const a = await start(0, lab.writeConfig('fa.conf', lab.options(0) + SSH(25)));
      const b = await start(1, lab.writeConfig('fb.conf', lab.options(1) + SSH(25)));
      await b.waitFor(/fleet: catch-up \(connect\)/);
      lab.knock(0, ['7000', '8000', '9000']);
      await a.waitFor(/ssh: OPEN SESAME/);
      await b.waitFor(/opened by fleet member gw0/);
      const knockedAt = Date.now();
      await a.stop('SIGKILL');
      lab.lab.exec('gw0', 'ip', ['link', 'set', 'to-client', 'down']);
      assert.equal(lab.probe(1), 'open', 'B admits the client with A gone');
      await sleep(3000);
      const c = await start(2, lab.writeConfig('fc.conf', lab.options(2) + SSH(25)));
      await c.waitFor(/fleet: catch-up \(connect\): 1 open grant\(s\)/);
      const line = await c.waitFor(/203\.0\.113\.10: ssh: opened by fleet member gw0 \((\d+)s left\)/);
      const left = Number(/\((\d+)s left\)/.exec(line)![1]);
      assert.ok(left <= 25 - Math.floor((Date.now() - knockedAt) / 1000) + 1 && left >= 1, `the remaining time, not a full window: ${left}s`);
      const element = lab.nft(2, ['list', 'set', 'inet', 'knockd_fast', 'd_ssh_v4']);
      const expires = /203\.0\.113\.10 timeout (\S+) expires/.exec(element);
      assert.ok(expires && expires[1] !== '25s', `C's element carries what was left, not a full Open_Timeout: ${element}`);
      assert.equal(lab.probe(2), 'open', 'the late member admits the client');
      assert.equal(lab.probe(2, FLEET_NET.client2), 'closed');
      await sleep(Math.max(0, knockedAt + 25_500 - Date.now()));
      assert.equal(lab.probe(1), 'closed', 'B closes when the grant ends');
      assert.equal(lab.probe(2), 'closed', 'so does C');
    } finally {
      lab.lab.exec('gw0', 'ip', ['link', 'set', 'to-client', 'up']);
      lab.lab.exec('gw0', 'ip', ['route', 'replace', '203.0.113.0/24', 'via', '198.51.100.2']); // gone with the link
      await stopAll();
    }
  });

  test('one-time lines and Cooldown are decided once for the fleet', async () => {
    try {
      const lines = '1111,2222,3333\n4444,5555,6666\n';
      const files = [0, 1].map((i) => lab.writeConfig(`once${i}.txt`, lines));
      const door = (i: number) => `
[once]
    One_Time_Sequences = ${files[i]}
    Seq_Timeout = 5
    TCPFlags = syn
    Open = 22/tcp
    Open_Timeout = 20
[cool]
    Sequence = 7100,7200,7300
    Seq_Timeout = 5
    TCPFlags = syn
    Open = 2222/tcp
    Open_Timeout = 5
    Cooldown = 30
`;
      const a = await start(0, lab.writeConfig('oa.conf', lab.options(0) + door(0)));
      const b = await start(1, lab.writeConfig('ob.conf', lab.options(1) + door(1)));
      await b.waitFor(/fleet: catch-up \(connect\)/);
      lab.knock(0, ['1111', '2222', '3333']);
      await a.waitFor(/203\.0\.113\.10: once: OPEN SESAME/);
      await b.waitFor(/once: one-time sequence used on fleet member gw0; moving to the next line/);
      lab.knock(1, ['1111', '2222', '3333'], FLEET_NET.client2);
      await sleep(1000);
      assert.equal(b.lines.some((l) => /203\.0\.113\.11: once: OPEN SESAME/.test(l)), false, 'the line used on A opens nothing on B');
      assert.equal(lab.probe(1, FLEET_NET.client2), 'closed');
      lab.knock(1, ['4444', '5555', '6666'], FLEET_NET.client2);
      await b.waitFor(/203\.0\.113\.11: once: OPEN SESAME/);
      assert.equal(lab.probe(1, FLEET_NET.client2), 'open', "B's next line works");

      lab.knock(0, ['7100', '7200', '7300']);
      await a.waitFor(/203\.0\.113\.10: cool: OPEN SESAME/);
      lab.knock(1, ['7100', '7200', '7300']);
      await b.waitFor(/203\.0\.113\.10: cool: sequence completed during cooldown \(\d+s left\), not opening/);
    } finally {
      await stopAll();
    }
  });

  test('a derived knock accepted on A and replayed to B is refused by the store, with the reason logged', async () => {
    try {
      const key = lab.writeConfig('otp.key', `${'3c'.repeat(32)}\n`);
      chmodSync(key, 0o600);
      const otp = `
[otp]
    Secret_File = ${key}
    Port_Range = 40000-49999
    Seq_Timeout = 5
    Open = 22/tcp
    Open_Timeout = 3
`;
      const a = await start(0, lab.writeConfig('da.conf', lab.options(0) + otp));
      const b = await start(1, lab.writeConfig('db.conf', lab.options(1) + otp));
      await a.waitFor(/fleet: catch-up \(connect\)/);
      await b.waitFor(/fleet: catch-up \(connect\)/);
      // well inside a 30 s window, so that the replay reaches B while the window is still accepted
      const intoWindow = Date.now() % 30_000;
      if (intoWindow > 15_000) await sleep(30_000 - intoWindow + 100);
      const said = lab.knock(0, [], FLEET_NET.client, ['-v', '--secret-file', key, '--port-range', '40000-49999']);
      const sniffed = /derived sequence for \S+: (.*)/.exec(said)?.[1].trim().split(' ');
      assert.ok(sniffed && sniffed.length === 4, `the client says what it sent: ${said}`);
      await a.waitFor(/203\.0\.113\.10: otp: OPEN SESAME/);
      await b.waitFor(/203\.0\.113\.10: otp: opened by fleet member gw0/);
      assert.ok(await lab.until(() => lab.probe(1) === 'closed', 15_000), "B's grant from A ends after Open_Timeout");
      // the same packets (same source, same ports, same window) sent to B: B's own matcher has never seen them
      lab.knock(1, sniffed);
      await b.waitFor(/203\.0\.113\.10: otp: this time window's derived sequence already used on fleet member gw0, not opening/);
      assert.equal(b.lines.some((l) => /203\.0\.113\.10: otp: OPEN SESAME/.test(l)), false, 'B does not open');
      assert.equal(lab.probe(1), 'closed', 'B stays closed for the replay');
      const used = (await lab.redis.command(['KEYS', 'kf:{test}:u:otp|4|203.0.113.10|*'])) as string[];
      assert.equal(used.length, 1, 'one used window in the store');
      const ttl = Number(await lab.redis.command(['PTTL', used[0]]));
      assert.ok(ttl > 0 && ttl <= 65_000, `the record ends with the window it names (2 time steps + skew at most): ${ttl} ms`);
    } finally {
      await stopAll();
    }
  });

  test('store outage: local doors keep opening, the grant reaches B when Redis returns (empty); Fleet_Offline = deny refuses single-use doors, local does not', async () => {
    const cool = (n: number) => `
[cool]
    Sequence = ${7100 + n},7200,7300
    Seq_Timeout = 5
    TCPFlags = syn
    Open = 2222/tcp
    Open_Timeout = 30
    Cooldown = 5
`;
    try {
      const a = await start(0, lab.writeConfig('ua.conf', lab.options(0, '    Fleet_Offline = deny\n') + SSH(120) + cool(0)));
      const b = await start(1, lab.writeConfig('ub.conf', lab.options(1, '    Fleet_Offline = local\n') + SSH(120) + cool(1)));
      await a.waitFor(/fleet: catch-up \(connect\)/);
      await b.waitFor(/fleet: catch-up \(connect\)/);
      // a grant before the outage: B has it; the store loses it with the restart
      lab.knock(0, ['7000', '8000', '9000'], FLEET_NET.client2);
      await b.waitFor(/203\.0\.113\.11: ssh: opened by fleet member gw0/);
      await lab.redis.kill();
      let doctor = '';
      await main(['doctor', '-c', join(lab.dir, 'ua.conf')], { stdout: (t) => (doctor += t), stderr: (t) => (doctor += t) });
      assert.match(doctor, /^FAIL  fleet store unix:\/\/\S+redis\.sock: cannot reach the fleet store .* within 3000 ms: .*; fix: start the store/m);
      await a.waitFor(/fleet: store .* unreachable/);
      await b.waitFor(/fleet: store .* unreachable/);
      lab.knock(0, ['7000', '8000', '9000']);
      await a.waitFor(/203\.0\.113\.10: ssh: OPEN SESAME/);
      assert.equal(lab.probe(0), 'open', 'A opens at once during the outage');
      assert.equal(lab.probe(1), 'closed', 'B cannot know yet');
      lab.knock(0, ['7100', '7200', '7300']);
      await a.waitFor(/203\.0\.113\.10: cool: fleet store unreachable and Fleet_Offline = deny, not opening/);
      lab.knock(1, ['7101', '7200', '7300']);
      await b.waitFor(/203\.0\.113\.10: cool: OPEN SESAME/);

      await lab.redis.start();
      await a.waitFor(/fleet: publishing 1 grant\(s\) made during the outage/, 15_000);
      await b.waitFor(/203\.0\.113\.10: ssh: opened by fleet member gw0/, 15_000);
      assert.equal(lab.probe(1), 'open', 'B admits the client once the store is back');
      // the restarted store is empty: each member wrote back its own open grants, so a catch-up finds them
      await a.waitFor(/fleet: 1 open grant\(s\) of this member written back/);
      await b.waitFor(/fleet: publishing 1 grant\(s\) made during the outage/, 15_000);
      await sleep(500);
      const keys = (await lab.redis.command(['KEYS', 'kf:{test}:g:*'])) as string[];
      assert.deepEqual(keys.sort(), ['kf:{test}:g:cool|4|203.0.113.10', 'kf:{test}:g:ssh|4|203.0.113.10', 'kf:{test}:g:ssh|4|203.0.113.11'].sort());
    } finally {
      if (!(await lab.redis.command(['PING']).catch(() => undefined))) await lab.redis.start().catch(() => undefined);
      await stopAll();
    }
  });

  test('Fleet_Commands = all: each member runs its start command exactly once per grant, and its own stop', async () => {
    try {
      const door = (i: number) => `
[cmd]
    Sequence = 5100,5200,5300
    Seq_Timeout = 5
    TCPFlags = syn
    Start_Command = echo start %IP% >> ${lab.dir}/cmd${i}.txt
    Cmd_Timeout = 4
    Stop_Command = echo stop %IP% >> ${lab.dir}/cmd${i}.txt
`;
      const a = await start(0, lab.writeConfig('ca.conf', lab.options(0, '    Fleet_Commands = all\n') + door(0)));
      const b = await start(1, lab.writeConfig('cb.conf', lab.options(1, '    Fleet_Commands = all\n') + door(1)));
      await b.waitFor(/fleet: catch-up \(connect\)/);
      lab.knock(0, ['5100', '5200', '5300']);
      await a.waitFor(/203\.0\.113\.10: cmd: OPEN SESAME/);
      await b.waitFor(/203\.0\.113\.10: cmd: opened by fleet member gw0/);
      // the same grant again: re-published as is (a replay by someone with store access) and read by a catch-up
      const stored = (await lab.redis.command(['GET', 'kf:{test}:g:cmd|4|203.0.113.10'])) as string;
      await lab.redis.command(['PUBLISH', CHANNEL, stored]);
      b.child.kill('SIGHUP');
      await b.waitFor(/fleet: catch-up \(reload\): 1 open grant/);
      assert.equal(b.lines.filter((l) => /fleet: connected/.test(l)).length, 1, 'the reload kept the connection');
      await sleep(5000);
      const cmds = (i: number) => readFileSync(join(lab.dir, `cmd${i}.txt`), 'utf8');
      assert.equal(cmds(0), 'start 203.0.113.10\nstop 203.0.113.10\n', 'A: once, then its stop');
      assert.equal(cmds(1), 'start 203.0.113.10\nstop 203.0.113.10\n', 'B: once, then its own stop');
    } finally {
      await stopAll();
    }
  });
});
