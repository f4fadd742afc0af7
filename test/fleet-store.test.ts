// The fleet store's paged reads (one script call per page) against a real redis-server (unix socket, started
// and stopped here): every stored grant comes out exactly once over many pages, also when SCAN returns pages
// without matching keys (other keys in the database).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FleetStore } from '../src/fleet/store.js';
import { RedisServer } from '../src/tools/fleetlab.js';

describe('fleet store: paged reads of the stored grants', { timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kf-fleet-store-'));
  const redis = new RedisServer(dir);
  let store: FleetStore;

  before(async () => {
    await redis.start();
    let ready: () => void = () => undefined;
    const up = new Promise<void>((r) => (ready = r));
    store = new FleetStore(
      { url: redis.url, name: 'pages', member: 'm', keyFile: '(test)', key: new Uint8Array(32), offline: 'local', commands: 'local' },
      { ready: () => ready(), down: () => undefined, message: () => undefined },
    );
    store.start();
    await up;
    const exp = String(Date.now() + 600_000);
    // 2,500 grants of this fleet among 5,000 keys of another one: SCAN meets pages with no grant of ours
    for (let i = 0; i < 2500; i++) {
      await Promise.all([
        redis.command(['SET', store.grantKey('ssh', 4, `10.0.${i >> 8}.${i & 255}`), `grant ${i}`, 'PXAT', exp]),
        redis.command(['SET', `kf:{other}:g:ssh|4|10.1.${i >> 8}.${i & 255}`, 'x']),
        redis.command(['SET', `kf:{other}:g:ssh|4|10.2.${i >> 8}.${i & 255}`, 'x']),
      ]);
    }
  });
  after(async () => {
    await store?.close();
    await redis.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every grant is read once, whatever the page size', async () => {
    for (const pageSize of [7, 100, 1000, 10_000]) {
      const seen: string[] = [];
      let pages = 0;
      for await (const page of store.grantPages(pageSize)) {
        pages++;
        assert.ok(page.length > 0, 'no empty page is yielded');
        seen.push(...page);
      }
      assert.equal(seen.length, 2500, `page size ${pageSize}`);
      assert.equal(new Set(seen).size, 2500, `page size ${pageSize}: no grant twice`);
      assert.ok(seen.every((v) => /^grant \d+$/.test(v)), 'only this fleet\'s grants');
      if (pageSize === 7) assert.ok(pages > 100, `${pages} pages`);
    }
  });
});
