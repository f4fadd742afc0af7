// `knockd-fast doctor`: checks what a deployment needs before the daemon is started, one line per check
// with the fix. The addon is loaded in a child process (node-llama-cpp's testBindingBinary idea), so a
// broken or crashing build is reported instead of taking the doctor down with it.
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { delimiter, join } from 'node:path';
import { CAP_NET_ADMIN, CAP_NET_RAW, effectiveCapabilities } from '../capabilities.js';
import { DEFAULTS, type FleetConfig } from '../config/types.js';
import { connectStore, roundTripMs } from '../fleet/status.js';
import { describeStore, parseStoreUrl } from '../config/store-url.js';

export interface DoctorOptions {
  /** the config's Fleet (doctor -c FILE): its store is checked too */
  fleet?: FleetConfig;
  /** interfaces the daemon will capture on (-i / Interface=); default knockd's `eth0` */
  interfaces?: string[];
  /** environment whose PATH is searched for nft; default process.env */
  env?: NodeJS.ProcessEnv;
  /** where the report goes; default process.stdout */
  out?: (text: string) => void;
}

export interface DoctorCheck {
  name: string;
  ok: boolean;
  /** what was found */
  detail: string;
  /** how to fix it, when it failed */
  fix?: string;
}

const IFF_UP = 0x1;
const CHILD_TIMEOUT_MS = 30_000;

interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
}

function run(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: CHILD_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      const e = error as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout,
        stderr,
        ...(e && typeof e.code === 'string' ? { error: e } : {}),
      });
    });
  });
}

/** What the child reports after loading the addon and opening a capture ring on each interface. */
interface AddonReport {
  file: string | null;
  rings: Record<string, { ok: true } | { ok: false; code: string; message: string }> | null;
}

// Runs in the child: loads the addon through src/native.ts (the only loader), then opens the daemon's own
// capture Engine (AF_PACKET socket, TPACKET_V3 ring, filter) on each interface with a door-less program and
// closes it again. The module URLs come in as argv so nothing is spliced into the source.
const CHILD_SCRIPT = `
const [nativeUrl, programUrl, interfacesJson] = process.argv.slice(1);
const { loadBinding, packageRoot } = await import(nativeUrl);
let binding;
try {
  binding = loadBinding();
} catch (e) {
  process.stdout.write(JSON.stringify({ loadError: String(e.message) }));
  process.exit(2);
}
const { createRequire } = await import('node:module');
let file = null;
try { file = createRequire(nativeUrl)('node-gyp-build').resolve(packageRoot); } catch {}
let rings = null;
if (typeof binding.Engine === 'function') {
  const { compileProgram } = await import(programUrl);
  const config = { path: '', options: { useSyslog: false, maxTracked: 1024, nftTable: 'knockd_fast' }, doors: [], warnings: [] };
  const { words } = compileProgram(config, { localAddresses: [] });
  rings = {};
  for (const name of JSON.parse(interfacesJson)) {
    try {
      new binding.Engine({ interfaces: [name], threads: 1 }, words, () => {}).close();
      rings[name] = { ok: true };
    } catch (e) {
      rings[name] = { ok: false, code: String(e.code ?? ''), message: String(e.message) };
    }
  }
}
process.stdout.write(JSON.stringify({ file, rings }));
`;

const REBUILD_FIX = 'rebuild the addon: `npm rebuild knockd-fast` (needs `apt-get install -y cmake g++`), or `npm run build:native` in a checkout';

/** The `SomeError: message` line of an uncaught exception's report, without the source excerpt around it. */
function stderrError(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((line) => line.trim());
  return lines.find((line) => /^\w*Error\b/.test(line)) ?? lines.find(Boolean);
}

async function probeAddon(interfaces: string[], env: NodeJS.ProcessEnv): Promise<{ check: DoctorCheck; report?: AddonReport }> {
  // From dist/ the modules are .js files; from a checkout run through tsx it is native.ts and the child needs tsx too.
  // (tsx's tsImport adds a query string to the URL, hence the pathname)
  const fromSource = new URL(import.meta.url).pathname.endsWith('.ts');
  const sibling = (name: string): string => new URL(`./${name}${fromSource ? '.ts' : '.js'}`, import.meta.url).href;
  const args = [
    ...(fromSource ? ['--import', import.meta.resolve('tsx')] : []),
    '--input-type=module',
    '-e',
    CHILD_SCRIPT,
    sibling('../native'),
    sibling('../config/program'),
    JSON.stringify(interfaces),
  ];
  const result = await run(process.execPath, args, env);
  const name = 'addon';
  if (result.signal) {
    return { check: { name, ok: false, detail: `loading the addon killed the process (${result.signal})`, fix: REBUILD_FIX } };
  }
  let report: (AddonReport & { loadError?: undefined }) | { loadError: string } | undefined;
  try {
    report = JSON.parse(result.stdout) as typeof report;
  } catch {
    report = undefined;
  }
  if (result.code !== 0 || !report || report.loadError !== undefined) {
    // The loader's first line says what failed; the rest of its message repeats the fix given here.
    const reason = report?.loadError?.split('\n')[0] ?? (stderrError(result.stderr) ?? result.error?.message ?? `exit ${result.code}`);
    return { check: { name, ok: false, detail: `does not load: ${reason}`, fix: REBUILD_FIX } };
  }
  return { check: { name, ok: true, detail: `loads${report.file ? ` (${report.file})` : ''}` }, report };
}

function checkCapabilities(): DoctorCheck {
  const effective = effectiveCapabilities();
  const missing = [
    [CAP_NET_RAW, 'CAP_NET_RAW'],
    [CAP_NET_ADMIN, 'CAP_NET_ADMIN'],
  ].flatMap(([bit, capName]) => ((effective >> BigInt(bit!)) & 1n ? [] : [capName as string]));
  if (missing.length === 0) return { name: 'capabilities', ok: true, detail: 'CAP_NET_RAW and CAP_NET_ADMIN are effective' };
  return {
    name: 'capabilities',
    ok: false,
    detail: `missing ${missing.join(' and ')} (capture needs CAP_NET_RAW, nftables CAP_NET_ADMIN)`,
    fix: 'run as root, or in the systemd unit set `AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN`',
  };
}

function readSysfs(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    // sysfs refuses some attributes while the link is down (carrier: EINVAL)
    return undefined;
  }
}

function checkInterface(name: string): DoctorCheck {
  const check = `interface ${name}`;
  const sys = join('/sys/class/net', name);
  if (name.includes('/') || !existsSync(sys)) {
    const known = readdirSync('/sys/class/net').sort().join(', ');
    return { name: check, ok: false, detail: 'does not exist', fix: `capture on an existing interface with -i or Interface= (here: ${known || 'none'})` };
  }
  const flags = Number(readSysfs(join(sys, 'flags')));
  if (!(flags & IFF_UP)) return { name: check, ok: false, detail: 'is down', fix: `bring it up: \`ip link set ${name} up\`` };
  if (readSysfs(join(sys, 'carrier')) !== '1') {
    return { name: check, ok: false, detail: 'is up but has no carrier, so nothing arrives on it', fix: `check the cable or the peer of ${name} (\`ip link show ${name}\`)` };
  }
  const addresses = (networkInterfaces()[name] ?? []).map((a) => a.address);
  if (addresses.length === 0) {
    return {
      name: check,
      ok: false,
      detail: 'has no addresses, so no knock can be addressed to this host',
      fix: `give it an address (\`ip addr add ADDR/PREFIX dev ${name}\`) or name the knocked addresses with --local-address`,
    };
  }
  return { name: check, ok: true, detail: `up, addresses ${addresses.join(', ')}` };
}

function findOnPath(command: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

async function checkNft(env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const nft = findOnPath('nft', env);
  if (!nft) {
    return { name: 'nft', ok: false, detail: `not found on PATH (${env.PATH ?? ''})`, fix: 'install nftables: `apt-get install -y nftables` (or add the directory of nft to PATH)' };
  }
  const result = await run(nft, ['list', 'tables'], env);
  if (result.code === 0) return { name: 'nft', ok: true, detail: `${nft} list tables works` };
  const why = result.stderr.trim().split('\n')[0] || result.error?.message || `exit ${result.code ?? result.signal}`;
  return {
    name: 'nft',
    ok: false,
    detail: `\`${nft} list tables\` failed: ${why}`,
    fix: /permission|not permitted/i.test(why)
      ? 'run as root or with CAP_NET_ADMIN'
      : 'check that the kernel has nf_tables (`modprobe nf_tables`) and that nft runs by hand',
  };
}

function checkRings(interfaces: string[], report: AddonReport | undefined): DoctorCheck[] {
  if (!report) {
    return [{ name: 'kernel ring', ok: false, detail: 'not checked: the addon does not load', fix: 'fix the addon first (see above)' }];
  }
  if (!report.rings) {
    return [{ name: 'kernel ring', ok: false, detail: 'not checked: this addon build has no capture Engine', fix: REBUILD_FIX }];
  }
  return interfaces.map((name) => {
    const ring = report.rings![name];
    const check = `kernel ring on ${name}`;
    if (!ring) return { name: check, ok: false, detail: 'the addon returned no answer for this interface', fix: REBUILD_FIX };
    if (ring.ok) return { name: check, ok: true, detail: 'a TPACKET_V3 capture ring opens and closes' };
    const fix =
      ring.code === 'EPERM' || ring.code === 'EACCES'
        ? 'grant CAP_NET_RAW (run as root or `AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN`)'
        : ring.code === 'ENODEV'
          ? 'capture on an existing interface with -i or Interface='
          : 'the kernel must support AF_PACKET with TPACKET_V3 (Linux >= 3.2, CONFIG_PACKET); check `dmesg`';
    return { name: check, ok: false, detail: `cannot be opened: ${ring.message}`, fix };
  });
}

/** Runs every check; the addon and ring checks share one child process. */
export async function doctorChecks(options: DoctorOptions = {}): Promise<DoctorCheck[]> {
  const interfaces = options.interfaces?.length ? options.interfaces : [DEFAULTS.interface];
  const env = options.env ?? process.env;
  const [addon, nft] = await Promise.all([probeAddon(interfaces, env), checkNft(env)]);
  const checks = [addon.check, checkCapabilities(), ...interfaces.map(checkInterface), nft, ...checkRings(interfaces, addon.report)];
  if (options.fleet) checks.push(await checkStore(options.fleet));
  return checks;
}

/** The fleet's store answers (connect, authenticate, select the database, subscribe, PING). */
async function checkStore(fleet: FleetConfig): Promise<DoctorCheck> {
  const name = `fleet store ${describeStore(parseStoreUrl(fleet.url))}`;
  try {
    const store = await connectStore(fleet);
    try {
      return { name, ok: true, detail: `answers, round trip ${(await roundTripMs(store)).toFixed(2)} ms` };
    } finally {
      await store.close();
    }
  } catch (err) {
    return {
      name,
      ok: false,
      detail: (err as Error).message,
      fix: 'start the store or correct Fleet= (and Fleet_Password_File=); meanwhile the daemon runs local-only and retries',
    };
  }
}

export function formatCheck(check: DoctorCheck): string {
  return check.ok ? `pass  ${check.name}: ${check.detail}\n` : `FAIL  ${check.name}: ${check.detail}; fix: ${check.fix}\n`;
}

/** `knockd-fast doctor`: prints one line per check and returns 0 when all pass, 1 otherwise. */
export async function runDoctor(options: DoctorOptions = {}): Promise<number> {
  const out = options.out ?? ((text: string) => void process.stdout.write(text));
  const checks = await doctorChecks(options);
  for (const check of checks) out(formatCheck(check));
  const failed = checks.filter((c) => !c.ok).length;
  out(failed === 0 ? `all ${checks.length} checks passed\n` : `${failed} of ${checks.length} checks failed\n`);
  return failed === 0 ? 0 : 1;
}
