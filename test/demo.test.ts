// `knockd-fast demo` (the README's quick start): every check holds, the commands a user would type are
// shown, a dropped connection is called dropped (it times out: nothing answers), the IPv6 step says it is
// IPv6, and the nftables listing is whole.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { NET, runDemo } from '../src/tools/demo.js';
import { needsRoot } from './helpers/env.js';
import { runFleetDemo } from '../src/tools/fleetdemo.js';
import { gatewayAddress } from '../src/tools/fleetlab.js';

const skip = needsRoot('network namespaces, nftables');

test('the demo tells the whole story and every check holds', { skip, timeout: 180_000 }, async () => {
  const lines: string[] = [];
  const code = await runDemo({ out: (l) => lines.push(l), openTimeout: 4 });
  const text = lines.join('\n');
  assert.equal(code, 0, text);
  assert.match(text, /^Summary: 8 of 8 checks held\.$/m);
  assert.match(text, /^ {3}gateway# knockd-fast -c \S+knockd\.conf -i \S+ -v$/m);
  assert.ok(lines.includes(`   client$ knock-fast ${NET.gateway} 7000 8000 9000`));
  assert.ok(lines.includes(`   client$ knock-fast -6 ${NET.gateway6} 7000 9000 8000`));
  assert.match(text, /^7\. Over IPv6/m);
  assert.doesNotMatch(text, /refused/);
  assert.match(text, /dropped \(times out\) after Open_Timeout/);
  const listing = lines.slice(lines.indexOf('   gateway# nft list table inet knockd_fast_demo') + 1, lines.findIndex((l) => l.startsWith('9. ')));
  assert.equal(listing[0], '   | table inet knockd_fast_demo {');
  assert.equal(listing.at(-1), '   | }', 'the listing is not cut');
  assert.ok(listing.some((l) => l.includes('chain forward')), 'both chains are shown');
});

test('the fleet demo tells the failover story on two gateways, every check holds, and nothing is left behind', { skip, timeout: 300_000 }, async () => {
  const lines: string[] = [];
  const code = await runFleetDemo({ out: (l) => lines.push(l), openTimeout: 20 });
  const text = lines.join('\n');
  assert.equal(code, 0, text);
  assert.match(text, /^Summary: 7 of 7 checks held\.$/m);
  assert.ok(lines.includes(`4. The client knocks on A only: knock-fast ${gatewayAddress(0)} 7000 8000 9000`));
  assert.match(text, /^ {3}\| +Fleet = unix:\/\/\S+redis\.sock$/m, 'the Fleet lines of the config are shown');
  assert.match(text, /^ {3}B: .*ssh: opened by fleet member gw0/m);
  assert.match(text, /^ {3}A: .*ssh: opened by fleet member gw0 \(\d+s left\)/m, 'A caught up after its restart');
  assert.match(text, /^ {3}\| +gw0 +version/m, 'fleet status is shown');
  assert.match(text, /^9\. Removing/m);
  const dir = /Fleet_Key_File = (\S+)\/fleet\.key/.exec(text)?.[1];
  assert.ok(dir && !existsSync(dir), `the temporary directory ${dir} is removed`);
  assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(`kf-fleetdemo-${process.pid}-`), 'no namespace left');
});
