// Log sinks of the daemon: the knockd log file (`[YYYY-MM-DD HH:MM] message`), syslog (identity `knockd`,
// LOG_NOTICE, one datagram per message to /dev/log), `-v` lines on stdout, and JSON lines
// (`--log-format json`). Message texts are knockd 0.8's. This file is the one formatter of
// event lines: the daemon and `--replay` both write through a Logger, so their text lines and their JSON
// records (the versioned schema of docs/EVENTS.md) cannot drift apart.
import { closeSync, fstatSync, ftruncateSync, writeSync } from 'node:fs';
import { openAppendNoFollow } from '../config/files.js';
import { strerror } from '../config/lexical.js';
import { loadBinding } from '../native.js';

export type LogFormat = 'knockd' | 'json';

/** Version of the JSON record (docs/EVENTS.md): bumped when a field changes meaning or goes away. */
export const EVENT_SCHEMA_VERSION = 1;

/**
 * Structured fields that accompany a message in JSON output (docs/EVENTS.md): `event` names the record,
 * `timeUs` is when it happened (the packet's or the timeout's time, µs since the epoch; default: when
 * the line is written), the rest (source, host, door, stage, count, ...) are copied as they are.
 */
export type LogFields = { event?: string; timeUs?: number } & Record<string, string | number | boolean | undefined>;

/** knockd truncates each message to 1023 bytes (logprint's buffer). */
const MAX_MESSAGE_BYTES = 1023;

const pad2 = (n: number): string => (n < 10 ? `0${n}` : String(n));

/** knockd's log file prefix: local time at write time, minute resolution, no seconds. */
export function knockdTimestamp(d: Date): string {
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 3164 datagram as glibc's syslog(3) builds it: `<PRI>Mmm dd hh:mm:ss knockd: message`. */
export function syslogDatagram(message: string, d: Date, ident = 'knockd'): Buffer {
  const LOG_USER = 1 << 3;
  const LOG_NOTICE = 5;
  const day = d.getDate() < 10 ? ` ${d.getDate()}` : String(d.getDate());
  const stamp = `${MONTHS[d.getMonth()]} ${day} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return Buffer.from(`<${LOG_USER | LOG_NOTICE}>${stamp} ${ident}: ${message}`);
}

/** ISO 8601 UTC with microseconds: `2026-12-06T04:30:00.123456Z`. */
export function isoMicros(timeUs: number): string {
  const second = Math.floor(timeUs / 1e6);
  const iso = new Date(second * 1000).toISOString(); // ...HH:MM:SS.000Z
  return `${iso.slice(0, 19)}.${String(timeUs - second * 1e6).padStart(6, '0')}Z`;
}

/** One JSON record of docs/EVENTS.md, newline-terminated. */
export function jsonRecord(message: string, fields: LogFields, now: Date): string {
  const { event, timeUs, ...rest } = fields;
  const time = isoMicros(timeUs ?? now.getTime() * 1000);
  return `${JSON.stringify({ v: EVENT_SCHEMA_VERSION, time, event, message, ...rest })}\n`;
}

export function truncateMessage(message: string): string {
  if (Buffer.byteLength(message) <= MAX_MESSAGE_BYTES) return message;
  return Buffer.from(message).subarray(0, MAX_MESSAGE_BYTES).toString('utf8').replace(/\uFFFD$/, '');
}

/** Sends one syslog datagram; the default is the addon's unix-datagram helper (Node has no AF_UNIX datagrams). */
export type SyslogTransport = (datagram: Buffer) => void;

/** knockd's syslog(3) target. */
export const SYSLOG_SOCKET = '/dev/log';

/**
 * A connected datagram socket to the log daemon (through the addon). Throws when the addon cannot load or
 * the socket cannot be reached. A message the log daemon has no room for is dropped, never waited for.
 */
export function unixDatagramTransport(path = SYSLOG_SOCKET): SyslogTransport {
  const socket = new (loadBinding().UnixDatagram)(path);
  return (datagram) => void socket.send(datagram);
}

export interface LoggerOptions {
  /** knockd `LogFile` / `-g`; relative paths resolve against the start-up directory */
  logFile?: string;
  /** knockd `UseSyslog` */
  syslog?: SyslogTransport;
  /** `-v`: every message also goes to stdout */
  verbose?: boolean;
  format?: LogFormat;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  now?: () => Date;
}

export class Logger {
  private fd: number | undefined;
  private readonly opts: LoggerOptions;
  private readonly stdout: (text: string) => void;
  private readonly stderr: (text: string) => void;
  private readonly now: () => Date;
  private syslogBroken = false;
  /** lines the log file could not take since the current failure episode began, and why */
  private lostLines = 0;
  private lostReason = '';
  /** inside batch(): the log file's lines, appended together when it ends */
  private gathered: string[] | undefined;

  constructor(opts: LoggerOptions) {
    this.opts = opts;
    this.stdout = opts.stdout ?? ((t) => void process.stdout.write(t));
    this.stderr = opts.stderr ?? ((t) => void process.stderr.write(t));
    this.now = opts.now ?? (() => new Date());
    this.openFile();
  }

  get format(): LogFormat {
    return this.opts.format ?? 'knockd';
  }

  /** One message to every sink. `fields` enrich the JSON form only. */
  log(message: string, fields: LogFields = {}): void {
    const text = truncateMessage(message);
    const now = this.now();
    const json = this.format === 'json' ? jsonRecord(text, fields, now) : undefined;
    if (this.fd !== undefined) {
      const line = json ?? `[${knockdTimestamp(now)}] ${text}\n`;
      if (this.gathered) this.gathered.push(line);
      else this.writeLine(this.fd, line);
    }
    if (this.opts.syslog && !this.syslogBroken) {
      try {
        this.opts.syslog(syslogDatagram(text, now));
      } catch (err) {
        // one warning, then syslog stays off instead of failing on every line
        this.syslogBroken = true;
        this.stderr(`warning: cannot write to syslog: ${strerror(err)}\n`);
      }
    }
    if (this.opts.verbose) this.stdout(json ?? `${text}\n`);
  }

  /** Runs `fn` with the log file's lines gathered and appended in one write (a batch of other members'
   * grants: one system call instead of one per line); the lines and their order are the same. */
  batch(fn: () => void): void {
    if (this.gathered) return fn();
    this.gathered = [];
    try {
      fn();
    } finally {
      const lines = this.gathered;
      this.gathered = undefined;
      if (lines.length > 0 && this.fd !== undefined) this.writeLine(this.fd, lines.join(''), lines.length);
    }
  }

  /** After SIGHUP: the config may name another log file (knockd re-opens it). */
  reopen(logFile: string | undefined): void {
    this.close();
    this.opts.logFile = logFile;
    this.openFile();
  }

  close(): void {
    if (this.lostLines > 0) this.stderr(`warning: ${this.lostLines} line(s) could not be written to the logfile (${this.lostReason})\n`);
    this.lostLines = 0;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /**
   * Whole lines only: a line the file cannot take (a full disk) is cut back off, never left torn. One
   * warning when the failures begin; once the file takes lines again, one line (in the file, before the
   * next line, and on stderr) says how many were lost. `text` is `lines` whole lines (batch()).
   */
  private writeLine(fd: number, text: string, lines = 1): void {
    if (this.lostLines > 0) {
      const note = `warning: ${this.lostLines} line(s) could not be written to the logfile (${this.lostReason})`;
      if (this.append(fd, this.format === 'json' ? jsonRecord(note, {}, this.now()) : `[${knockdTimestamp(this.now())}] ${note}\n`) !== undefined) {
        this.lostLines += lines;
        return;
      }
      this.lostLines = 0;
      this.stderr(`${note}\n`);
    }
    const err = this.append(fd, text);
    if (err !== undefined && (this.lostLines += lines) === lines) {
      this.lostReason = strerror(err);
      this.stderr(`warning: cannot write logfile: ${this.lostReason}; lines are dropped until it can be written again\n`);
    }
  }

  /** Appends all of `text` or nothing; returns the error when it could not. */
  private append(fd: number, text: string): unknown {
    const bytes = Buffer.from(text);
    let written = 0;
    try {
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      return undefined;
    } catch (err) {
      if (written > 0) {
        try {
          ftruncateSync(fd, fstatSync(fd).size - written); // O_APPEND wrote the piece at the end
        } catch {
          // the piece stays; nothing better can be done
        }
      }
      return err;
    }
  }

  private openFile(): void {
    if (!this.opts.logFile) return;
    try {
      // not through a symbolic link: one planted in a writable directory would redirect root's appends
      this.fd = openAppendNoFollow(this.opts.logFile, 0o640);
    } catch (err) {
      // knockd's start-up warning; the daemon keeps running without the file
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ELOOP' ? `${this.opts.logFile} is a symbolic link, which is not followed; give the path of the file itself` : code ? strerror(err) : (err as Error).message;
      this.stderr(`warning: cannot open logfile: ${why}\n`);
    }
  }
}

/** knockd's event texts, `<src>[ (<host>)]: <door>: ...`. */
export function knockerLabel(source: string, host: string | undefined): string {
  return host ? `${source} (${host})` : source;
}

/** The texts of the event records (docs/EVENTS.md); the first five are knockd's or modelled on them. */
export const eventText = {
  stage: (who: string, door: string, stage: number) => `${who}: ${door}: Stage ${stage}`,
  open: (who: string, door: string) => `${who}: ${door}: OPEN SESAME`,
  timeout: (who: string, door: string, stage: number) => `${who}: ${door}: sequence timeout (stage ${stage})`,
  suppressed: (count: number) => `${count} events suppressed`,
  evicted: (count: number) => `${count} knock attempts evicted (MaxTracked reached)`,
  wrongPort: (who: string, door: string, stage: number) => `${who}: ${door}: wrong knock after stage ${stage}, attempt dropped`,
  cooldown: (who: string, door: string, secondsLeft: number) => `${who}: ${door}: sequence completed during cooldown (${secondsLeft}s left), not opening`,
  extended: (who: string, door: string) => `${who}: ${door}: already open, window extended`,
  commandTimeout: (who: string, door: string) => `${who}: ${door}: command timeout`,
  captureError: (shard: number, code: number, errno: number) => `error: capture thread ${shard} failed (code ${code}, errno ${errno})`,
  // SPA (docs/SPA.md): the open keeps knockd's words, so log watchers see SPA grants as opens
  spaOpen: (who: string, door: string, user: string, ports: string, seconds: number, forAddress?: string) =>
    `${who}: ${door}: OPEN SESAME (SPA user ${user}, ${ports}, ${seconds} s${forAddress ? ` for ${forAddress}` : ''})`,
  spaRefused: (who: string, door: string, reason: string) => `${who}: ${door}: SPA packet refused: ${reason}`,
};
