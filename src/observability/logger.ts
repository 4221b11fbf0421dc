/**
 * The process logger: pino JSON on stdout. Every line about a request carries
 * `requestId` (fastify's child logger); refusals are logged by the proxy at
 * warn, sampled.
 */
import { pino, type Logger } from 'pino';
import type { Config } from '../config/types.js';

export function createLogger(cfg: Config['log'], destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level: cfg.level,
    base: { service: 'sluice' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
