/**
 * The process logger: pino JSON on stdout. Every line about a request carries
 * `requestId` (fastify's child logger; the request's x-request-id); refusals
 * are logged by the proxy at warn, sampled.
 *
 * `log.pretty: true` turns each line into one human-readable line instead
 * (time, level, message, then key=value fields; lists of objects are left
 * out), written synchronously by a
 * small formatter here rather than by a pino transport: no extra dependency,
 * no worker thread, and it works in a production image too. It exists for
 * people reading a terminal; keep JSON for anything that parses logs
 * (`node dist/cli.js ... | npx pino-pretty` also works on the JSON output).
 */
import { pino, type Logger } from 'pino';
import type { Config } from '../config/types.js';

export function createLogger(cfg: Pick<Config['log'], 'level' | 'pretty'>, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level: cfg.level,
    base: { service: 'sluice' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (cfg.pretty) {
    const out = destination ?? process.stdout;
    return pino(options, prettyStream(out, destination === undefined && process.stdout.isTTY === true));
  }
  return destination ? pino(options, destination) : pino(options);
}

/** A pino destination that rewrites each JSON line with `formatLine` before passing it on. */
export function prettyStream(out: { write(s: string): unknown }, color = false): pino.DestinationStream {
  return { write: (line: string) => void out.write(formatLine(line, color)) };
}

const LEVELS: Readonly<Record<number, { name: string; color: string }>> = {
  10: { name: 'TRACE', color: '\x1b[90m' },
  20: { name: 'DEBUG', color: '\x1b[36m' },
  30: { name: 'INFO ', color: '\x1b[32m' },
  40: { name: 'WARN ', color: '\x1b[33m' },
  50: { name: 'ERROR', color: '\x1b[31m' },
  60: { name: 'FATAL', color: '\x1b[35m' },
};
const RESET = '\x1b[0m';
/** Fields every line has, or that say nothing to a person at a terminal. */
const HIDDEN = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname', 'err']);

/**
 * One pino JSON line -> `TIME LEVEL message key=value ...\n`, with an error's
 * stack indented below. A line that is not JSON is passed through as it is.
 */
export function formatLine(line: string, color = false): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  const level = LEVELS[rec.level as number] ?? { name: String(rec.level).toUpperCase(), color: '' };
  const parts: string[] = [];
  if (typeof rec.time === 'string' || typeof rec.time === 'number') parts.push(String(rec.time));
  parts.push(color ? `${level.color}${level.name}${RESET}` : level.name);
  if (typeof rec.msg === 'string') parts.push(rec.msg);
  for (const [k, v] of Object.entries(rec)) {
    if (HIDDEN.has(k) || v === undefined || isTable(v)) continue;
    parts.push(`${k}=${fieldValue(v)}`);
  }
  let out = parts.join(' ');
  const err = rec.err as { message?: unknown; stack?: unknown } | undefined;
  if (err !== undefined && err !== null) {
    const text = typeof err.stack === 'string' ? err.stack : typeof err.message === 'string' ? err.message : JSON.stringify(err);
    out += `\n    ${text.split('\n').join('\n    ')}`;
  }
  return `${out}\n`;
}

/**
 * A list of objects (the start-up line's routes) is a table for programs; the
 * message of a line that carries one says it in words, so a terminal line
 * leaves it out.
 */
function isTable(v: unknown): boolean {
  return Array.isArray(v) && v.length > 0 && v.every((x) => x !== null && typeof x === 'object');
}

function fieldValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]*$/.test(v) && v !== '' ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v);
}
