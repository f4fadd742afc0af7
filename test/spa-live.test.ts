// SPA live: the stock fwknop client in the client namespace sends to the daemon capturing on the gateway
// over a veth pair; real nftables, real TCP connections. Root only; the namespaces go away afterwards.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GatewayLab, NET } from '../src/tools/demo.js';
import { gatewayConfig } from './helpers/gateway.js';
import { fwknopArgs, keyGen, writeKeyFile, type FwknopKeys, type FwknopRequest } from './helpers/spa.js';
import { isRoot as root } from './helpers/env.js';

const skip = root ? false : 'needs root (network namespaces, AF_PACKET, nftables)';

// sends a payload saved by fwknop -B (one line) again from the client namespace (a replay), to udp/62201
const SEND = `const s=require('dgram').createSocket('udp4');s.send(require('fs').readFileSync(process.argv[1],'latin1').trim(),62201,process.argv[2],()=>s.close());`;

describe('SPA with the stock fwknop client across namespaces', { skip, timeout: 180_000 }, () => {
  let lab: GatewayLab;
  let keys: FwknopKeys;
  let rc: string;
  before(async () => {
    lab = new GatewayLab('spa');
    await lab.startEchoServers(22);
    keys = keyGen();
    rc = join(lab.dir, 'fwknoprc');
    writeFileSync(rc, '', { mode: 0o600 });
  });
  after(() => lab?.destroy());

  const fwknop = (r: Partial<FwknopRequest>, save?: string) =>
    lab.lab.exec('client', 'fwknop', [...fwknopArgs({ keys, destination: NET.gateway, ...r }, rc), ...(save ? ['-B', save] : [])]);

  test('-s and -a open the door for the right address only; forged and replayed packets are refused, also after a restart', async () => {
    const keyFile = writeKeyFile(lab.dir, keys);
    const conf = gatewayConfig(lab, 'spa.conf', `[ssh]\n    SPA_Key_File = ${keyFile}\n    Open = 22/tcp\n    Open_Timeout = 30\n`, 'kf_spa');
    let daemon = await lab.startDaemon(conf);
    const saved = join(lab.dir, 'first.spa');
    try {
      assert.equal(lab.probe(NET.gateway), 'closed', 'closed before the SPA packet');
      fwknop({}, saved);
      await daemon.waitFor(/198\.51\.100\.10: ssh: OPEN SESAME \(SPA user root, tcp\/22, 30 s\)/);
      assert.equal(lab.probe(NET.gateway), 'open', 'a real TCP connection succeeds');
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'closed', 'not for another address');

      fwknop({ allow: NET.client2 });
      await daemon.waitFor(/198\.51\.100\.10: ssh: OPEN SESAME \(SPA user root, tcp\/22, 30 s for 198\.51\.100\.11\)/);
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'open', '-a opens for the address it names');

      fwknop({ keys: { ...keys, hmacKeyBase64: keyGen().hmacKeyBase64 } });
      await daemon.waitFor(/ssh: SPA packet refused: HMAC does not verify/);

      lab.lab.exec('client', process.execPath, ['-e', SEND, saved, NET.gateway]);
      await daemon.waitFor(/ssh: SPA packet refused: replayed packet/);
    } finally {
      await daemon.stop();
    }
    daemon = await lab.startDaemon(conf);
    try {
      lab.lab.exec('client', process.execPath, ['-e', SEND, saved, NET.gateway]);
      await daemon.waitFor(/ssh: SPA packet refused: replayed packet/);
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_spa']);
    }
  });

  test('refusals leave the set empty (a port not allowed, an unknown user, an old timestamp); -f is honoured up to Max_Open_Timeout', async () => {
    const keyFile = writeKeyFile(lab.dir, keys, 'capped.keys');
    const conf = gatewayConfig(
      lab,
      'spa-capped.conf',
      `[ssh]\n    SPA_Key_File = ${keyFile}\n    Open = 22/tcp\n    Open_Timeout = 30\n    Max_Open_Timeout = 120\n    Require_Username = alice\n`,
      'kf_spa_cap',
    );
    // the door's nftables set: its elements with the timeout each was given
    const elements = () =>
      (JSON.parse(lab.nft(['-j', 'list', 'set', 'inet', 'kf_spa_cap', 'd_ssh_v4'])).nftables as { set?: { elem?: { elem: { val: string; timeout: number } }[] } }[])
        .find((i) => i.set)!
        .set!.elem?.map((e) => e.elem) ?? [];
    const daemon = await lab.startDaemon(conf);
    try {
      fwknop({ user: 'alice', access: 'tcp/23' });
      await daemon.waitFor(/198\.51\.100\.10: ssh: SPA packet refused: requested tcp\/23 not in the door's Open list/);
      fwknop({ user: 'mallory' });
      await daemon.waitFor(/198\.51\.100\.10: ssh: SPA packet refused: user "mallory" is not in Require_Username/);
      fwknop({ user: 'alice', offsetMinus: '300s' });
      await daemon.waitFor(/198\.51\.100\.10: ssh: SPA packet refused: packet timestamp is 30\d s old \(Max_Packet_Age 120\)/);
      assert.deepEqual(elements(), [], 'no refusal adds an element');
      assert.equal(lab.probe(NET.gateway), 'closed');

      fwknop({ user: 'alice', timeout: 60 });
      await daemon.waitFor(/198\.51\.100\.10: ssh: OPEN SESAME \(SPA user alice, tcp\/22, 60 s\)/);
      fwknop({ user: 'alice', timeout: 1000, allow: NET.client2 });
      await daemon.waitFor(/198\.51\.100\.10: ssh: OPEN SESAME \(SPA user alice, tcp\/22, 120 s for 198\.51\.100\.11\)/);
      const timeouts = Object.fromEntries(elements().map((e) => [e.val, e.timeout]));
      assert.deepEqual(timeouts, { [NET.client]: 60, [NET.client2]: 120 }, 'under the cap as asked, over it the cap');
      assert.equal(lab.probe(NET.gateway), 'open');
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'open');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_spa_cap']);
    }
  });
});
