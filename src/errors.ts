// KnockdError: a refused syscall or a capture failure, with Node's ErrnoException fields (code,
// syscall, errno) and a hint saying how to fix it. Native errors (native/binding/engine.cc) and the
// engine's error records (src/capture/engine.ts) are mapped here so every message names the cause and the fix.

export class KnockdError extends Error {
  readonly code: string;
  readonly syscall?: string;
  /** negative, as Node reports it (-2 for ENOENT) */
  readonly errno?: number;
  readonly interface?: string;
  readonly hint?: string;

  constructor(message: string, fields: { code: string; syscall?: string; errno?: number; interface?: string; hint?: string; cause?: unknown }) {
    super(fields.hint ? `${message}\n${fields.hint}` : message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = 'KnockdError';
    this.code = fields.code;
    this.syscall = fields.syscall;
    this.errno = fields.errno;
    this.interface = fields.interface;
    this.hint = fields.hint;
  }
}

const NODE_PATH = '$(readlink -f $(which node))';

/** How to fix a capture error with this errno code, or undefined when there is nothing to add. */
export function captureHint(code: string, iface?: string): string | undefined {
  const name = iface ?? 'IFACE';
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return (
        'Capturing packets needs the CAP_NET_RAW capability (CAP_NET_ADMIN too for nftables doors). Either run as root, ' +
        `or grant it to node: setcap cap_net_raw,cap_net_admin+ep ${NODE_PATH}, ` +
        'or, in a systemd unit, keep both in CapabilityBoundingSet= (with a non-root User=, also in AmbientCapabilities=)'
      );
    case 'ENODEV':
    case 'ENXIO':
      return `There is no interface "${name}": list them with \`ip link\` and pick one with -i or Interface = (or use "any").`;
    case 'ENETDOWN':
      return `Bring the interface up first: ip link set ${name} up`;
    case 'ENOMEM':
    case 'ENOBUFS':
      return 'The kernel could not allocate the capture ring: free memory or use fewer threads.';
    case 'EAFNOSUPPORT':
    case 'ESOCKTNOSUPPORT':
      return 'This kernel has no AF_PACKET support (CONFIG_PACKET); knockd-fast needs it.';
    default:
      return undefined;
  }
}

/** Wraps an error thrown by the native Engine constructor (it carries code, errno, syscall, interface). */
export function fromNativeError(err: unknown): KnockdError {
  if (err instanceof KnockdError) return err;
  const e = err as Error & { code?: string; errno?: number; syscall?: string; interface?: string };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_CAPTURE';
  return new KnockdError(e?.message ?? String(err), {
    code,
    syscall: e?.syscall,
    errno: e?.errno,
    interface: e?.interface,
    hint: captureHint(code, e?.interface),
    cause: err,
  });
}
