// The config of a daemon run in a GatewayLab (src/tools/demo.ts): its own log, state file and nft table, so
// tests sharing one lab do not touch each other's.
import type { GatewayLab } from '../../src/tools/demo.js';

export function gatewayConfig(lab: GatewayLab, name: string, body: string, table: string): string {
  return lab.writeConfig(
    name,
    `[options]
    LogFile = ${lab.dir}/${name}.log
    StateFile = ${lab.dir}/${name}.state
    NftTable = ${table}
${body}`,
  );
}
