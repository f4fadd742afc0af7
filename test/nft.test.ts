// nftables backend against the real nft, inside a private network namespace per test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  NftBackend,
  NftError,
  formatNftStatus,
  nftInstallScript,
  nftStatus,
  nftUninstall,
  planNft,
  type NftBackendOptions,
} from '../src/actions/nft.js';
import { main } from '../src/cli.js';
import type { DoorConfig } from '../src/config/types.js';
import { loadBinding } from '../src/native.js';
import { Lab } from '../src/tools/netns.js';
import { door as doorConfig } from './helpers/doors.js';
import { isRoot as root } from './helpers/env.js';

/** How set elements are written: netlink from the addon (the default) and the nft -i fallback. */
const WRITERS = ['netlink', 'nft'] as const;

const ssh = doorConfig('ssh', '7000', { open: [{ port: 22, proto: 'tcp' }], openTimeout: 30 });

test('install script: sets per door and family, established first, accepts before the drop', () => {
  const web = doorConfig('web door', '7000', { open: [{ port: 443, proto: 'tcp' }, { port: 53, proto: 'udp' }, { port: 22, proto: 'tcp' }] });
  const fwd = doorConfig('fwd', '7000', { open: [{ port: 8080, proto: 'tcp' }], hook: 'forward' });
  assert.equal(
    nftInstallScript(planNft([ssh, web, fwd, doorConfig('plain', '7000')])),
    [
      'add table inet knockd_fast',
      'add set inet knockd_fast d_ssh_v4 { type ipv4_addr; flags timeout; comment "knockd-fast door ssh"; }',
      'add set inet knockd_fast d_ssh_v6 { type ipv6_addr; flags timeout; comment "knockd-fast door ssh"; }',
      'add set inet knockd_fast d_web_door_v4 { type ipv4_addr; flags timeout; comment "knockd-fast door web door"; }',
      'add set inet knockd_fast d_web_door_v6 { type ipv6_addr; flags timeout; comment "knockd-fast door web door"; }',
      'add set inet knockd_fast d_fwd_v4 { type ipv4_addr; flags timeout; comment "knockd-fast door fwd"; }',
      'add set inet knockd_fast d_fwd_v6 { type ipv6_addr; flags timeout; comment "knockd-fast door fwd"; }',
      'add chain inet knockd_fast input { type filter hook input priority filter - 10; policy accept; }',
      'flush chain inet knockd_fast input',
      'add rule inet knockd_fast input ct state established,related accept',
      'add rule inet knockd_fast input tcp dport { 22 } ip saddr @d_ssh_v4 accept',
      'add rule inet knockd_fast input tcp dport { 22 } ip6 saddr @d_ssh_v6 accept',
      'add rule inet knockd_fast input tcp dport { 22, 443 } ip saddr @d_web_door_v4 accept',
      'add rule inet knockd_fast input tcp dport { 22, 443 } ip6 saddr @d_web_door_v6 accept',
      'add rule inet knockd_fast input udp dport { 53 } ip saddr @d_web_door_v4 accept',
      'add rule inet knockd_fast input udp dport { 53 } ip6 saddr @d_web_door_v6 accept',
      'add rule inet knockd_fast input tcp dport { 22, 443 } drop',
      'add rule inet knockd_fast input udp dport { 53 } drop',
      'add chain inet knockd_fast forward { type filter hook forward priority filter - 10; policy accept; }',
      'flush chain inet knockd_fast forward',
      'add rule inet knockd_fast forward ct state established,related accept',
      'add rule inet knockd_fast forward tcp dport { 8080 } ip saddr @d_fwd_v4 accept',
      'add rule inet knockd_fast forward tcp dport { 8080 } ip6 saddr @d_fwd_v6 accept',
      'add rule inet knockd_fast forward tcp dport { 8080 } drop',
      '',
    ].join('\n'),
  );
});

test('install script: doors with the same name get distinct sets; a bad NftTable is refused', () => {
  const plan = planNft([ssh, doorConfig('ssh', '7000', { open: [{ port: 2222, proto: 'tcp' }] }), doorConfig('s-sh', '7000', { open: [{ port: 1, proto: 'udp' }] })]);
  assert.deepEqual(
    plan.doorSets.map((sets) => sets[0].ref.set),
    ['d_ssh_v4', 'd_ssh_2_v4', 'd_s_sh_v4'],
  );
  assert.throws(() => planNft([ssh], '9bad name'), /NftTable = 9bad name is not a valid nftables table name/);
});

/** `knockd-fast -c <config text> --test`, in process. */
async function testConfig(text: string): Promise<{ code: number; out: string; err: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'knockd-fast-nft-test-'));
  try {
    writeFileSync(join(dir, 'knockd.conf'), text);
    let out = '';
    let err = '';
    const code = await main(['-c', join(dir, 'knockd.conf'), '--test'], { stdout: (t) => (out += t), stderr: (t) => (err += t) });
    return { code, out, err };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const LONG_NAME = 'ä'.repeat(63); // 63 characters, 126 bytes of UTF-8

test('install script: limits counted in bytes as nft counts them: a set comment is at most 128 bytes of UTF-8', () => {
  const script = nftInstallScript(planNft([doorConfig(LONG_NAME, '7000', { open: [{ port: 22, proto: 'tcp' }] })]));
  const comments = [...script.matchAll(/comment "([^"]*)"/g)].map((m) => m[1]);
  assert.equal(comments.length, 2);
  for (const c of comments) {
    assert.equal(Buffer.byteLength(c), 127, 'cut to 128 bytes at a character boundary (an ä is 2 bytes)');
    assert.ok(c.startsWith('knockd-fast door ää'));
  }
});

test('--test checks the ruleset with nft -c: a door name of 63 x "ä" is accepted, a table named like an nft keyword is refused', { skip: root ? false : 'nft -c needs root or user namespaces' }, async () => {
  const good = await testConfig(`[${LONG_NAME}]\n    Sequence = 7000,8000\n    Open = 22/tcp\n`);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /nftables ruleset: accepted by nft -c in a private network namespace\n/);
  const keyword = await testConfig('[options]\n    NftTable = drop\n[ssh]\n    Sequence = 7000,8000\n    Open = 22/tcp\n');
  assert.equal(keyword.code, 1);
  assert.match(keyword.err, /^nft refused the ruleset above \(nft -c in a private network namespace\):\n.*Error: syntax error/s);
  assert.match(keyword.err, /configuration file .* test failed\n$/);
  const path = process.env.PATH;
  try {
    process.env.PATH = '/nonexistent';
    const unchecked = await testConfig(`[ssh]\n    Sequence = 7000,8000\n    Open = 22/tcp\n`);
    assert.equal(unchecked.code, 0);
    assert.match(unchecked.out, /nftables ruleset: not checked with nft \(cannot run nft: not found in PATH/);
  } finally {
    process.env.PATH = path;
  }
});


describe('nft backend in a network namespace', { skip: root ? false : 'needs root to create network namespaces' }, () => {
  const lab = root ? new Lab('nft') : undefined;
  after(() => lab?.destroy());
  let n = 0;

  /** A fresh namespace and backend options that run nft inside it. */
  function setup(doors: DoorConfig[], extra: Partial<NftBackendOptions> = {}) {
    const short = `t${n++}`;
    lab!.ns(short);
    const logs: string[] = [];
    const opts: NftBackendOptions = {
      doors,
      log: (m) => logs.push(m),
      netns: lab!.name(short),
      ...extra,
    };
    const nftJson = (...args: string[]) => JSON.parse(lab!.exec(short, 'nft', ['-j', ...args])).nftables as Record<string, any>[];
    const elements = (set: string, family = 'inet', table = 'knockd_fast') =>
      nftJson('list', 'set', family, table, set)
        .find((i) => i.set)!
        .set.elem?.map((e: any) => e.elem) ?? [];
    return { short, logs, opts, nftJson, elements, exec: (args: string[], input?: string) => lab!.exec(short, 'nft', args, input) };
  }

  for (const writer of WRITERS) {
    test(`${writer}: a grant installs the source with Open_Timeout; a re-grant refreshes it`, async () => {
      const t = setup([doorConfig('ssh', '7000', { open: [{ port: 22, proto: 'tcp' }], openTimeout: 5 })], { writer });
      const b = new NftBackend(t.opts);
      await b.start();
      try {
        assert.equal(await b.grant({ door: t.opts.doors[0], source: '198.51.100.1', family: 4 }), true);
        assert.equal(await b.grant({ door: t.opts.doors[0], source: '2001:db8::5', family: 6 }), true);
        const [e4] = t.elements('d_ssh_v4');
        assert.equal(e4.val, '198.51.100.1');
        assert.equal(e4.timeout, 5);
        assert.ok(e4.expires >= 3 && e4.expires <= 5, `expires ${e4.expires}`);
        assert.deepEqual(t.elements('d_ssh_v6').map((e: any) => e.val), ['2001:db8::5']);
        await sleep(2200);
        const before = t.elements('d_ssh_v4')[0].expires;
        assert.ok(before <= 3, `expires ${before} after 2.2 s`);
        await b.grant({ door: t.opts.doors[0], source: '198.51.100.1', family: 4 });
        const refreshed = t.elements('d_ssh_v4')[0].expires;
        assert.ok(refreshed > before, `refreshed expiry ${refreshed} > ${before}`);
      } finally {
        await b.close();
      }
    });
  }

  test('the kernel removes the element when the window ends', async () => {
    const t = setup([doorConfig('ssh', '7000', { open: [{ port: 22, proto: 'tcp' }], openTimeout: 2 })]);
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      await b.grant({ door: t.opts.doors[0], source: '198.51.100.7', family: 4 });
      assert.equal(t.elements('d_ssh_v4').length, 1);
      let left = 1;
      for (let i = 0; i < 50 && left > 0; i++) {
        await sleep(200);
        left = t.elements('d_ssh_v4').length;
      }
      assert.equal(left, 0, 'element still present 10 s after a 2 s window');
    } finally {
      await b.close();
    }
  });

  test('the guard drops new connections unless the source was granted', async () => {
    const t = setup([doorConfig('svc', '7000', { open: [{ port: 2222, proto: 'tcp' }] })]);
    const b = new NftBackend(t.opts);
    await b.start();
    // a listener on 127.0.0.1:2222 and one connection from 127.0.0.2, inside the namespace, bounded to 1.5 s
    const probe = () =>
      lab!.exec(t.short, process.execPath, [
        '-e',
        `const net = require('node:net');
         const srv = net.createServer((c) => c.end()).listen(2222, '127.0.0.1', () => {
           const c = net.connect({ port: 2222, host: '127.0.0.1', localAddress: '127.0.0.2' });
           const done = (r) => { console.log(r); c.destroy(); srv.close(); process.exit(0); };
           c.on('connect', () => done('connected'));
           c.on('error', (e) => done(e.code));
           setTimeout(() => done('timeout'), 1500);
         });`,
      ]).trim();
    try {
      assert.equal(probe(), 'timeout');
      await b.grant({ door: t.opts.doors[0], source: '127.0.0.2', family: 4 });
      assert.equal(probe(), 'connected');
    } finally {
      await b.close();
    }
  });

  test('guard tampering: a deleted chain and a deleted table are noticed and restored; the exposure is measured', async (ctx) => {
    const restored: string[][] = [];
    const t = setup([doorConfig('svc', '7000', { open: [{ port: 2222, proto: 'tcp' }] })], { onGuardRestored: (d) => restored.push(d) });
    const b = new NftBackend(t.opts);
    await b.start();
    // inside the namespace: a listener on 127.0.0.1:2222 and, every 10 ms for 8 s, a connection attempt from
    // 127.0.0.2 (never granted) that gives up after 50 ms; each success prints its wall-clock time
    const prober = lab!.spawn(t.short, process.execPath, [
      '-e',
      `const net = require('node:net');
       const srv = net.createServer((c) => c.destroy()).listen(2222, '127.0.0.1', () => {
         console.log('ready');
         const end = Date.now() + 8000;
         const attempt = () => {
           if (Date.now() > end) { srv.close(); process.exit(0); }
           const c = net.connect({ port: 2222, host: '127.0.0.1', localAddress: '127.0.0.2' });
           const next = () => { c.destroy(); setTimeout(attempt, 10); };
           const timer = setTimeout(next, 50);
           c.on('connect', () => { console.log('open ' + Date.now()); clearTimeout(timer); next(); });
           c.on('error', () => { clearTimeout(timer); next(); });
         };
         attempt();
       });`,
    ]);
    let out = '';
    prober.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((r) => prober.once('exit', r));
    try {
      for (let i = 0; i < 100 && !out.includes('ready'); i++) await sleep(50);
      await sleep(500);
      const chainDeleted = Date.now();
      t.exec(['-f', '-'], 'flush chain inet knockd_fast input\ndelete chain inet knockd_fast input\n');
      await sleep(2500);
      const tableDeleted = Date.now();
      t.exec(['delete', 'table', 'inet', 'knockd_fast']);
      await exited;
      const opens = [...out.matchAll(/^open (\d+)$/gm)].map((m) => Number(m[1]));
      const exposure = (from: number, to: number) => Math.max(0, ...opens.filter((o) => o >= from && o < to).map((o) => o - from));
      const exposedChain = exposure(chainDeleted, tableDeleted);
      const exposedTable = exposure(tableDeleted, Infinity);
      ctx.diagnostic(`port 2222 exposed ${exposedChain} ms after the chain was deleted, ${exposedTable} ms after the table was deleted`);
      assert.ok(opens.every((o) => o >= chainDeleted), 'nobody got in before the tampering');
      assert.ok(exposedChain < 3000 && exposedTable < 3000, `exposed ${exposedChain} ms and ${exposedTable} ms`);
      assert.deepEqual(restored, [['chain input deleted'], ['table inet knockd_fast deleted']]);
      assert.match(t.logs.join('\n'), /nft: WARNING: the knockd-fast guard was tampered with \(chain input deleted\); restoring table inet knockd_fast/);
      assert.match(t.logs.join('\n'), /nft: WARNING: the knockd-fast guard was tampered with \(table inet knockd_fast deleted\); restoring/);
      const rules = t.nftJson('list', 'chain', 'inet', 'knockd_fast', 'input').filter((i) => i.rule);
      assert.equal(rules.length, 4, 'the guard chain is whole again');
      assert.equal(await b.grant({ door: t.opts.doors[0], source: '127.0.0.3', family: 4 }), true);
    } finally {
      prober.kill();
      await b.close();
    }
  });

  test('guard tampering: a rule added to the guard chain is removed again; our own reloads are not tampering', async () => {
    const restored: string[][] = [];
    const t = setup([ssh], { onGuardRestored: (d) => restored.push(d) });
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      await b.reload([ssh]);
      await b.reload([ssh, doorConfig('web', '7000', { open: [{ port: 443, proto: 'tcp' }] })]);
      await sleep(500);
      assert.deepEqual(restored, [], 'reloads are not reported as tampering');
      t.exec(['insert', 'rule', 'inet', 'knockd_fast', 'input', 'accept']);
      for (let i = 0; i < 60 && restored.length === 0; i++) await sleep(50);
      assert.deepEqual(restored, [['chain input has 7 rule(s) instead of 6']]);
      await sleep(300);
      const rules = t.nftJson('list', 'chain', 'inet', 'knockd_fast', 'input').filter((i) => i.rule);
      assert.equal(rules.length, 6);
      assert.ok(!rules.some((r) => r.rule.expr.length === 1 && 'accept' in r.rule.expr[0]), 'the planted accept is gone');
    } finally {
      await b.close();
    }
  });

  test('the table stays after close, a restart keeps open doors, uninstall removes the table', async () => {
    const t = setup([ssh]);
    const first = new NftBackend(t.opts);
    await first.start();
    await first.grant({ door: ssh, source: '198.51.100.2', family: 4 });
    await first.close();
    assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.2']);

    const second = new NftBackend(t.opts);
    await second.start();
    try {
      assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.2']);
      const rules = t.nftJson('list', 'chain', 'inet', 'knockd_fast', 'input').filter((i) => i.rule);
      assert.equal(rules.length, 4, 'the chain was replaced, not appended to');
      const status = await nftStatus({ netns: t.opts.netns, doors: [ssh] });
      assert.equal(status.installed, true);
      const set = status.sets.find((s) => s.name === 'd_ssh_v4')!;
      assert.equal(set.elements[0].address, '198.51.100.2');
      assert.equal(set.elements[0].timeoutS, 30);
      assert.match(formatNftStatus(status), /198\.51\.100\.2 {2}expires in \d+s of 30s/);
    } finally {
      await second.close();
    }
    assert.equal(await nftUninstall({ netns: t.opts.netns }), true);
    assert.equal((await nftStatus({ netns: t.opts.netns })).installed, false);
    assert.equal(await nftUninstall({ netns: t.opts.netns }), false);
  });

  test('a door dropped from the config loses its sets on reload; kept doors keep their elements', async () => {
    const web = doorConfig('web', '7000', { open: [{ port: 443, proto: 'tcp' }], hook: 'forward' });
    const t = setup([ssh, web]);
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      await b.grant({ door: ssh, source: '198.51.100.3', family: 4 });
      await b.reload([ssh]);
      const items = t.nftJson('list', 'table', 'inet', 'knockd_fast');
      assert.deepEqual(items.filter((i) => i.set).map((i) => i.set.name), ['d_ssh_v4', 'd_ssh_v6']);
      assert.deepEqual(items.filter((i) => i.chain).map((i) => i.chain.name), ['input']);
      assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.3']);
    } finally {
      await b.close();
    }
  });

  test('reload: a knock completed under the previous config (its door object) still gets its element; a removed door says why not', async () => {
    const old = [ssh, doorConfig('web', '7000', { open: [{ port: 443, proto: 'tcp' }] })];
    const t = setup(old);
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      // the new config: same doors parsed again (new objects), in another order, web gone, a second "ssh"
      const next = [doorConfig('ssh', '7000', { open: [{ port: 2222, proto: 'tcp' }] }), { ...ssh }];
      await b.reload(next);
      assert.equal(await b.grant({ door: ssh, source: '198.51.100.20', family: 4 }), true);
      assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.20']);
      assert.deepEqual(t.elements('d_ssh_2_v4'), [], 'the first "ssh" door is still the first one');
      assert.equal(await b.openDoor('ssh', 4, '198.51.100.21', 40), true);
      const added = t.elements('d_ssh_v4').find((e: any) => e.val === '198.51.100.21');
      assert.equal(added.timeout, 40);
      assert.equal(await b.grant({ door: old[1], source: '198.51.100.22', family: 4 }), false);
      assert.match(t.logs.join('\n'), /web: no nftables element for 198\.51\.100\.22: the door is not in the running config/);
      assert.equal(await b.openDoor('nosuch', 4, '198.51.100.23', 10), false);
      assert.match(t.logs.join('\n'), /nosuch: no nftables element for 198\.51\.100\.23/);
    } finally {
      await b.close();
    }
  });

  test('a door name of 63 x "ä" installs and opens (its comment fits nft\'s 128 bytes)', async () => {
    const door = doorConfig(LONG_NAME, '7000', { open: [{ port: 22, proto: 'tcp' }] });
    const t = setup([door]);
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      const set = planNft([door]).doorSets[0][0].ref.set;
      assert.equal(await b.grant({ door, source: '198.51.100.30', family: 4 }), true);
      assert.deepEqual(t.elements(set).map((e: any) => e.val), ['198.51.100.30']);
    } finally {
      await b.close();
    }
  });

  test('Hook = forward puts the guard on the forward hook', async () => {
    const fwd = doorConfig('fwd', '7000', { open: [{ port: 8080, proto: 'tcp' }], hook: 'forward' });
    const t = setup([fwd]);
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      const chains = t.nftJson('list', 'table', 'inet', 'knockd_fast').filter((i) => i.chain).map((i) => i.chain);
      assert.deepEqual(chains.map((c) => [c.name, c.hook, c.prio]), [['forward', 'forward', -10]]);
      assert.equal(await b.grant({ door: fwd, source: '203.0.113.9', family: 4 }), true);
      assert.deepEqual(t.elements('d_fwd_v4').map((e: any) => e.val), ['203.0.113.9']);
    } finally {
      await b.close();
    }
  });

  test('NftSet mode adds elements to the operator set only, and refuses a missing or wrong set', async () => {
    const door = doorConfig('op', '7000', { nftSet: { family: 'ip', table: 'filter', set: 'knocked' }, openTimeout: 20 });
    const t = setup([door]);
    const missing = new NftBackend(t.opts);
    await assert.rejects(missing.start(), (err: Error) => {
      assert.ok(err instanceof NftError);
      assert.match(err.message, /NftSet = ip filter knocked \(door op\): the set does not exist/);
      assert.match(err.message, /create the set first/);
      return true;
    });
    await missing.close();

    t.exec(['-f', '-'], 'add table ip filter\nadd set ip filter knocked { type ipv4_addr; }\n');
    const noTimeout = new NftBackend(t.opts);
    await assert.rejects(noTimeout.start(), /has no 'flags timeout'/);
    await noTimeout.close();

    t.exec(['-f', '-'], 'delete set ip filter knocked\nadd set ip filter knocked { type ipv4_addr; flags timeout; }\n');
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      assert.equal(await b.grant({ door, source: '198.51.100.4', family: 4 }), true);
      assert.equal(await b.grant({ door, source: '2001:db8::4', family: 6 }), false);
      assert.match(t.logs.join('\n'), /op: NftSet ip filter knocked holds IPv4 addresses; not adding 2001:db8::4/);
      const [e] = t.elements('knocked', 'ip', 'filter');
      assert.equal(e.val, '198.51.100.4');
      assert.equal(e.timeout, 20);
      assert.equal(t.exec(['list', 'tables']).includes('knockd_fast'), false, 'no table of our own');
    } finally {
      await b.close();
    }
  });

  for (const writer of WRITERS) {
    test(`${writer}: grants arriving together are applied in one batch`, async () => {
      const other = doorConfig('other', '7000', { open: [{ port: 25, proto: 'tcp' }] });
      const batches: number[] = [];
      const t = setup([ssh, other], { onBatch: (elements) => batches.push(elements), writer });
      const b = new NftBackend(t.opts);
      await b.start();
      try {
        const done: Promise<boolean>[] = [];
        for (let i = 0; i < 40; i++) done.push(b.grant({ door: i % 2 ? ssh : other, source: `198.51.100.${i}`, family: 4 }));
        done.push(b.grant({ door: ssh, source: '2001:db8::1', family: 6 }));
        assert.deepEqual(await Promise.all(done), done.map(() => true));
        assert.deepEqual(batches, [41]);
        assert.equal(t.elements('d_ssh_v4').length + t.elements('d_other_v4').length + t.elements('d_ssh_v6').length, 41);
      } finally {
        await b.close();
      }
    });
  }

  for (const writer of WRITERS) {
    test(`${writer}: a set removed at run time is logged, counted as a failed batch, re-installed and the grant retried`, async () => {
      const failures: number[] = [];
      // the writer's own recovery: without the guard watch, which would restore the table before the grant
      const t = setup([ssh], { writer, guard: false, onBatchFailure: (elements) => failures.push(elements) });
      const b = new NftBackend(t.opts);
      await b.start();
      try {
        t.exec(['delete', 'table', 'inet', 'knockd_fast']);
        assert.equal(await b.grant({ door: ssh, source: '198.51.100.5', family: 4 }), true);
        assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.5']);
        assert.match(t.logs.join('\n'), /nft: a set of knockd-fast is gone \(.*No such file or directory\); re-installing table inet knockd_fast/);
        assert.deepEqual(failures, [1]);
      } finally {
        await b.close();
      }
    });
  }

  test('nft writer: a killed nft process is restarted and the pending grant retried', async () => {
    // without the guard watch, whose nft monitor would be a second process in the namespace
    const t = setup([ssh], { retryMs: 50, writer: 'nft', guard: false });
    const b = new NftBackend(t.opts);
    await b.start();
    try {
      // the nft process is the only process inside this test's namespace
      const pids = execFileSync('ip', ['netns', 'pids', lab!.name(t.short)], { encoding: 'utf8' }).split('\n').filter(Boolean);
      assert.equal(pids.length, 1);
      process.kill(Number(pids[0]), 'SIGKILL');
      assert.equal(await b.grant({ door: ssh, source: '198.51.100.6', family: 4 }), true);
      assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.6']);
    } finally {
      await b.close();
    }
  });

  test('netlink writer: malformed batches, a missing set and a missing namespace are clear errors', async () => {
    const t = setup([ssh]);
    const { NftElements } = loadBinding();
    assert.throws(() => new NftElements('/run/netns/knockd-fast-no-such-ns'), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOENT');
      assert.match(err.message, /^cannot open network namespace \/run\/netns\/knockd-fast-no-such-ns: No such file or directory/);
      return true;
    });
    const writer = new NftElements(`/run/netns/${t.opts.netns}`);
    const one = (extra: object) => [{ family: 'inet', table: 'knockd_fast', set: 'd_ssh_v4', addresses: new Uint8Array(4), timeoutsMs: new Float64Array([1000]), ...extra }];
    try {
      assert.throws(() => writer.refresh('x' as never), TypeError);
      assert.throws(() => writer.refresh(one({ family: 'inet6' }) as never), /unknown nft family inet6/);
      assert.throws(() => writer.refresh(one({ addresses: new Uint8Array(5) }) as never), RangeError);
      assert.throws(() => writer.refresh(one({ addresses: [1, 2, 3, 4] }) as never), TypeError);
      assert.throws(() => writer.refresh(one({ timeoutsMs: new Float64Array([0]) }) as never), RangeError);
      assert.throws(() => writer.refresh(one({ timeoutsMs: new Float64Array([1.5]) }) as never), RangeError);
      assert.throws(() => writer.refresh(one({}) as never), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ENOENT'); // nothing is installed in this namespace yet
        assert.match(err.message, /^set knockd_fast d_ssh_v4: No such file or directory$/);
        return true;
      });
      t.exec(['-f', '-'], nftInstallScript(planNft([ssh])));
      writer.refresh(one({ addresses: new Uint8Array([198, 51, 100, 9]) }) as never);
      assert.deepEqual(t.elements('d_ssh_v4').map((e: any) => e.val), ['198.51.100.9']);
    } finally {
      writer.close();
    }
    assert.throws(() => writer.refresh(one({}) as never), /the netlink writer is closed/);
  });

  test('a refused rule is reported with nft error text and the ruleset', async () => {
    const t = setup([ssh]);
    // an operator chain named like ours but without a hook makes our base-chain definition fail
    t.exec(['-f', '-'], 'add table inet knockd_fast\nadd chain inet knockd_fast input\n');
    const b = new NftBackend(t.opts);
    await assert.rejects(b.start(), (err: Error) => {
      assert.ok(err instanceof NftError);
      assert.match(err.message, /^nft refused the knockd-fast ruleset:\n.*Error: /s);
      assert.match(err.message, /add chain inet knockd_fast input \{ type filter hook input/);
      return true;
    });
    await b.close();
  });

  test('nft missing from PATH: a clear error naming the package', async () => {
    const b = new NftBackend({ doors: [ssh], log: () => {}, env: { PATH: '/nonexistent' } });
    await assert.rejects(b.start(), (err: Error) => {
      assert.ok(err instanceof NftError);
      assert.match(err.message, /cannot run nft: not found in PATH \(\/nonexistent\); .*apt-get install nftables/);
      return true;
    });
    await b.close();
  });
});
