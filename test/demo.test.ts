// `knockd-fast demo` (the README's quick start): every check holds, the commands a user would type are
// shown, a dropped connection is called dropped (it times out: nothing answers), the IPv6 step says it is
// IPv6, and the nftables listing is whole.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NET, runDemo } from '../src/tools/demo.js';
import { needsRoot } from './helpers/env.js';

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
