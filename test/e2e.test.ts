// End to end on a real (private) network: client and gateway namespaces joined by a veth pair, a server
// behind the gateway, the daemon capturing live on the gateway's interface, real nftables and real TCP
// connections. Root only; every namespace is removed afterwards, also on failure.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { GatewayLab, NET, type Daemon } from '../src/tools/demo.js';
import { sshDoor } from '../src/tools/fleetlab.js';
import { gatewayConfig } from './helpers/gateway.js';
import { isRoot as root } from './helpers/env.js';

const skip = root ? false : 'needs root (network namespaces, AF_PACKET, nftables)';

describe('end to end across namespaces', { skip, timeout: 240_000 }, () => {
  let lab: GatewayLab;
  before(async () => {
    lab = new GatewayLab('e2e');
    await lab.startEchoServers(22);
  });
  after(() => lab?.destroy());

  test('closed, knock, open for that client only, closed after Open_Timeout while the session lives (IPv4 and IPv6)', async () => {
    const daemon = await lab.startDaemon(gatewayConfig(lab, 'story.conf', sshDoor(4), 'kf_story'));
    try {
      assert.equal(lab.probe(NET.gateway), 'closed', 'closed before knocking');
      assert.equal(lab.probe(NET.gateway6), 'closed', 'closed over IPv6 before knocking');
      lab.knock([NET.gateway, '7000', '8000', '9000']);
      await daemon.waitFor(new RegExp(`${NET.client.replace(/\./g, '\\.')}: ssh: OPEN SESAME`));
      assert.equal(lab.probe(NET.gateway), 'open', 'open after the knock');
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'closed', 'not open for another address');
      assert.equal(lab.probe(NET.gateway6), 'closed', 'not open for the IPv6 address of the same host');
      const session = await lab.openSession(NET.gateway);
      try {
        assert.ok(session.lines.includes('connected'));
        await sleep(5000);
        assert.equal(lab.probe(NET.gateway), 'closed', 'a new connection fails after Open_Timeout');
        const mark = session.lines.length;
        await sleep(1000);
        const later = session.lines.slice(mark);
        assert.ok(later.includes('alive') && !later.includes('dead'), `the established session keeps working: ${later.join(',')}`);
      } finally {
        session.child.kill();
      }
      lab.knock(['-6', NET.gateway6, '7000', '8000', '9000']);
      await daemon.waitFor(/2001:db8:1::10: ssh: OPEN SESAME/);
      assert.equal(lab.probe(NET.gateway6), 'open', 'open over IPv6 after an IPv6 knock');
      assert.equal(lab.probe(NET.gateway), 'closed', 'the IPv4 address stays closed');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_story']);
    }
  });

  test('a knock from one address opens for that address only, and vice versa', async () => {
    const daemon = await lab.startDaemon(gatewayConfig(lab, 'two.conf', sshDoor(30), 'kf_two'));
    try {
      lab.knock(['--source', NET.client2, NET.gateway, '7000', '8000', '9000']);
      await daemon.waitFor(/198\.51\.100\.11: ssh: OPEN SESAME/);
      assert.equal(lab.probe(NET.gateway, 22, NET.client2), 'open');
      assert.equal(lab.probe(NET.gateway, 22, NET.client), 'closed');
      lab.knock(['--source', NET.client, NET.gateway, '7000', '8000', '9000']);
      await daemon.waitFor(/198\.51\.100\.10: ssh: OPEN SESAME/);
      assert.equal(lab.probe(NET.gateway, 22, NET.client), 'open');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_two']);
    }
  });

  test('a knockd-style config whose start_command/stop_command call nft', async () => {
    // the operator's own ruleset: a set of allowed sources and a chain that guards port 22
    lab.lab.exec(
      'gw',
      'nft',
      ['-f', '-'],
      `table inet opfw {
  set allowed4 { type ipv4_addr; }
  chain input { type filter hook input priority 0; policy accept;
    ct state established,related accept
    tcp dport 22 ip saddr @allowed4 accept
    tcp dport 22 drop
  }
}
`,
    );
    const conf = lab.writeConfig(
      'classic.conf',
      `[options]
    LogFile = ${lab.dir}/classic.log
    StateFile = ${lab.dir}/classic.state
[openSSH]
    sequence    = 7000,8000,9000
    seq_timeout = 5
    tcpflags    = syn
    start_command = nft add element inet opfw allowed4 { %IP% }
    cmd_timeout = 3
    stop_command = nft delete element inet opfw allowed4 { %IP% }
`,
    );
    const daemon = await lab.startDaemon(conf);
    try {
      assert.equal(lab.probe(NET.gateway), 'closed');
      lab.knock([NET.gateway, '7000', '8000', '9000']);
      await daemon.waitFor(/openSSH: running command: nft add element inet opfw allowed4 \{ 198\.51\.100\.10 \}/);
      await sleep(300);
      assert.equal(lab.probe(NET.gateway), 'open');
      await daemon.waitFor(/198\.51\.100\.10: openSSH: command timeout/, 8000);
      await sleep(500);
      assert.equal(lab.probe(NET.gateway), 'closed', 'the stop command closed it again');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'opfw']);
    }
  });

  test('Hook = forward: a knock on the gateway opens the path to the server behind it', async () => {
    const conf = gatewayConfig(
      lab,
      'fwd.conf',
      `
[server]
    Sequence = 7100:udp,8100,9100
    Seq_Timeout = 5
    Open = 22/tcp
    Open_Timeout = 30
    Hook = forward
`,
      'kf_fwd',
    );
    const daemon = await lab.startDaemon(conf);
    try {
      assert.equal(lab.probe(NET.server), 'closed');
      assert.equal(lab.probe(NET.gateway), 'open', 'the gateway itself is not guarded by a forward door');
      lab.knock([NET.gateway, '7100:udp', '8100', '9100']);
      await daemon.waitFor(/server: OPEN SESAME/);
      assert.equal(lab.probe(NET.server), 'open');
      assert.equal(lab.probe(NET.server6), 'closed', 'the IPv6 source did not knock');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_fwd']);
    }
  });

  test("Debian's knock client opens the door exactly like ours", { skip: existsSync('/usr/bin/knock') ? false : 'apt-get install knockd for /usr/bin/knock' }, async () => {
    const daemon = await lab.startDaemon(gatewayConfig(lab, 'debian.conf', sshDoor(30), 'kf_debian'));
    try {
      assert.equal(lab.probe(NET.gateway), 'closed');
      lab.knock([NET.gateway, '7000', '8000', '9000'], ['/usr/bin/knock']);
      await daemon.waitFor(/198\.51\.100\.10: ssh: OPEN SESAME/);
      assert.equal(lab.probe(NET.gateway), 'open');
      lab.knock(['-6', NET.gateway6, '7000', '8000', '9000'], ['/usr/bin/knock']);
      await daemon.waitFor(/2001:db8:1::10: ssh: OPEN SESAME/);
      assert.equal(lab.probe(NET.gateway6), 'open');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_debian']);
    }
  });

  test('restarting the daemon while a door is open keeps it open until its timeout', async () => {
    const conf = gatewayConfig(lab, 'restart.conf', sshDoor(6), 'kf_restart');
    let daemon: Daemon = await lab.startDaemon(conf);
    try {
      lab.knock([NET.gateway, '7000', '8000', '9000']);
      await daemon.waitFor(/ssh: OPEN SESAME/);
      assert.equal(lab.probe(NET.gateway), 'open');
      await daemon.stop();
      assert.equal(lab.probe(NET.gateway), 'open', 'still open with the daemon stopped (the kernel holds the element)');
      daemon = await lab.startDaemon(conf);
      assert.equal(lab.probe(NET.gateway), 'open', 'still open after the restart (start-up keeps existing elements)');
      await sleep(6500);
      assert.equal(lab.probe(NET.gateway), 'closed', 'closed once the timeout passed');
    } finally {
      await daemon.stop();
      lab.nft(['delete', 'table', 'inet', 'kf_restart']);
    }
  });
});
