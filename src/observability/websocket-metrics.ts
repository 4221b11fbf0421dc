/**
 * The WebSocket series of /metrics, read at scrape time from the route view
 * (./state.ts, RouteState.websocket; proxy/websocket.ts counts them): no
 * metric is touched per upgrade or per message.
 *
 *   sluice_websockets_open{route}               open now (they hold no request permit)
 *   sluice_websockets_max_open{route}           the route's websocket.maxOpen
 *   sluice_websocket_upgrades_total{route,result}
 *       opened      the upstream answered 101
 *       refused     503 websocket_limit: the route had maxOpen open or opening
 *       not_opened  admitted to the socket bound but no WebSocket came of it:
 *                   refused by the gate, another upstream answer, an upstream
 *                   fault, the client left
 *   sluice_websockets_closed_total{route,reason}
 *       client | upstream (that side closed first), idle (websocket.idleTimeoutMs),
 *       drain (1001 at shutdown), error (a socket failed)
 */
import { Gauge, type Registry } from 'prom-client';
import { SOCKET_CLOSE_REASONS } from '../core/limiter/open-sockets.js';
import { CounterFamily } from './families.js';
import type { RouteState } from './state.js';

function gauge(r: Registry, name: string, help: string, routes: () => readonly RouteState[], value: (ws: NonNullable<RouteState['websocket']>) => number): void {
  new Gauge({
    name,
    help,
    labelNames: ['route'],
    registers: [r],
    collect() {
      this.reset();
      for (const s of routes()) if (s.websocket !== null) this.set({ route: s.name }, value(s.websocket));
    },
  });
}

export function registerWebSocketMetrics(r: Registry, routes: () => readonly RouteState[]): void {
  gauge(r, 'sluice_websockets_open', 'Open WebSockets per route (counted apart from the request limit: they hold no permit).', routes, (ws) => ws.open);
  gauge(r, 'sluice_websockets_max_open', "The route's websocket.maxOpen: upgrades past it are refused 503 websocket_limit.", routes, (ws) => ws.maxOpen);
  const upgrades = new CounterFamily(
    'sluice_websocket_upgrades_total',
    'WebSocket upgrades on websocket routes, by result: opened (the upstream answered 101), refused (503 websocket_limit: maxOpen reached), not_opened (no WebSocket came of it: refused by the gate, another upstream answer, an upstream fault, the client left).',
    ['route', 'result'],
  );
  upgrades.collect = () => {
    for (const s of routes()) {
      const ws = s.websocket;
      if (ws === null) continue;
      upgrades.cell(s.name, 'opened').value = ws.opened;
      upgrades.cell(s.name, 'refused').value = ws.refused;
      upgrades.cell(s.name, 'not_opened').value = ws.released;
    }
  };
  const closed = new CounterFamily(
    'sluice_websockets_closed_total',
    'WebSockets closed, by reason: client or upstream (that side closed first), idle (websocket.idleTimeoutMs without a byte), drain (1001 at shutdown), error (a socket failed).',
    ['route', 'reason'],
  );
  closed.collect = () => {
    for (const s of routes()) {
      const ws = s.websocket;
      if (ws !== null) for (const reason of SOCKET_CLOSE_REASONS) closed.cell(s.name, reason).value = ws.closed[reason];
    }
  };
  r.registerMetric(upgrades.asMetric());
  r.registerMetric(closed.asMetric());
}
