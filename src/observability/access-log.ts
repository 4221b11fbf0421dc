/**
 * The access log (log.access): one JSON line per request the proxy chose to
 * log (src/proxy/access.ts decides and builds the record; enabled and
 * sample are read per request, so a reload applies them at once). Lines go
 * to the process logger with msg "access" at info, whatever log.level says:
 * asking for an access log is asking for its lines.
 */
import type { Logger } from 'pino';
import type { AccessRecord, ProxyEvents } from '../proxy/events.js';

export class AccessLog implements ProxyEvents {
  private readonly out: Logger;

  constructor(logger: Logger) {
    this.out = logger.child({}, { level: 'info' });
  }

  onAccess(record: AccessRecord): void {
    this.out.info(record, 'access');
  }
}
