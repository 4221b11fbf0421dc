/**
 * The live page served at GET / on the admin listener: one self-contained
 * HTML document (inline CSS and JS, no external requests, no build step).
 *
 * It draws what GET /admin/history holds: one sample a second for the last
 * 5 minutes, kept by the server (history.ts), so a tab opened now shows the
 * past too, and any number of open tabs cost the proxy only their polls. It
 * asks for the whole history once, then only for samples newer than the last
 * one it has. Per route:
 *   - badges: circuit breaker (closed / half-open / open: a route whose
 *     upstream is down is red), shed state (normal / overloaded);
 *   - figures: limit, in flight, queued, admitted/s, refused/s, upstream
 *     errors/s, upstream p99, backlog, open WebSockets of maxOpen (routes
 *     with websocket: only);
 *   - charts, each with its unit on the y axis and seconds-ago on the x axis:
 *     limit and in-flight, queue depth per lane, refusals per second by
 *     reason, queue wait p50/p99 per lane, upstream latency p50/p99 per lane,
 *     upstream errors per second by kind (and 5xx);
 *   - a table per lane (queue wait and upstream latency p50/p99 in it too).
 * The header shows readiness and, when not ready, why; and the proxy
 * listener: https or http, HTTP/2 client connections and rapid-reset closes,
 * the certificate's expiry (warned under 14 days).
 *
 * Query parameters: `every` (poll interval in ms, default 1000, min 100) and
 * `window` (seconds of history shown, default 300, the most the server keeps).
 *
 * Kept as a TypeScript string so it ships inside dist/ with no copy step; the
 * page's script therefore uses no template literals.
 */
export const LIVE_PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice live</title>
<style>
  :root { --bg: #0f1419; --card: #171d24; --fg: #e6e6e6; --dim: #8b949e; --grid: #2a323c; --ok: #3fb950; --bad: #f85149; --warn: #d29922; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
  header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; border-bottom: 1px solid var(--grid); flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  .dim { color: var(--dim); }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; margin-right: 6px; }
  .badge.ok { background: rgba(63,185,80,.15); color: var(--ok); }
  .badge.bad { background: rgba(248,81,73,.18); color: var(--bad); }
  .badge.warn { background: rgba(210,153,34,.15); color: var(--warn); }
  .badge.dim { background: rgba(139,148,158,.15); color: var(--dim); }
  #why, .warn-text { color: var(--warn); }
  #error { display: none; margin: 12px 20px; padding: 8px 12px; border: 1px solid var(--bad); color: var(--bad); border-radius: 6px; }
  main { padding: 12px 20px; display: grid; gap: 16px; }
  .route { background: var(--card); border: 1px solid var(--grid); border-radius: 8px; padding: 12px 16px; }
  .route.down { border-color: var(--bad); box-shadow: inset 4px 0 0 var(--bad); }
  .route h2 { font-size: 16px; margin: 0 10px 0 0; display: inline; }
  .stats { display: flex; gap: 20px; flex-wrap: wrap; margin: 8px 0; }
  .stat b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--dim); font-size: 12px; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; }
  .chart h3 { font-size: 12px; font-weight: 600; color: var(--dim); margin: 4px 0; }
  .chart canvas { width: 100%; height: 150px; display: block; }
  .legend { font-size: 12px; color: var(--dim); display: flex; gap: 10px; flex-wrap: wrap; min-height: 18px; }
  .legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle; margin-right: 4px; }
  table { border-collapse: collapse; width: 100%; margin-top: 8px; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: 3px 8px; border-bottom: 1px solid var(--grid); }
  th:first-child, td:first-child { text-align: left; }
  th { color: var(--dim); font-weight: 600; font-size: 12px; }
</style>
</head>
<body data-samples="0">
<header>
  <h1>Sluice live</h1>
  <span id="ready" class="badge warn">connecting</span>
  <span id="why"></span>
  <span id="listener" class="dim"></span>
  <span class="dim">updated <span id="updated">never</span></span>
  <span class="dim">one sample a second, last <span id="window"></span> s</span>
</header>
<div id="error" role="alert"></div>
<main id="routes"></main>
<script>
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var EVERY = Math.max(100, Number(params.get('every')) || 1000);
  var WINDOW_S = Math.min(300, Math.max(10, Number(params.get('window')) || 300));
  var COLORS = ['#58a6ff', '#d2a8ff', '#3fb950', '#ffa657', '#ff7b72', '#79c0ff', '#e3b341', '#f778ba'];
  var REASONS = ['queue_full', 'queue_timeout', 'shed_batch', 'deadline', 'circuit_open', 'draining', 'client_share', 'client_rate'];
  var KINDS = ['refused', 'reset', 'timeout', 'connect_timeout', 'unreachable', 'bad_response', 'body_timeout', 'body_reset', 'deadline_exceeded', 'other'];
  document.getElementById('window').textContent = String(WINDOW_S);

  var samples = [];   // oldest first, each with byName: {route name: route sample}
  var lastSeq = 0;
  var cards = {};     // route name -> DOM and charts

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function stat(parent, field, label) {
    var d = el('div', { 'class': 'stat' });
    d.appendChild(el('b', { 'data-field': field }, '-'));
    d.appendChild(el('span', {}, label));
    parent.appendChild(d);
  }

  function chart(parent, key, title, unit) {
    var d = el('div', { 'class': 'chart' });
    d.appendChild(el('h3', {}, title));
    var c = el('canvas', { 'data-chart': key, 'data-drawn': '0' });
    d.appendChild(c);
    var legend = el('div', { 'class': 'legend' });
    d.appendChild(legend);
    parent.appendChild(d);
    return { canvas: c, legend: legend, unit: unit };
  }

  function makeCard(name) {
    var sec = el('section', { 'class': 'route', 'data-route': name });
    var head = el('div');
    head.appendChild(el('h2', {}, name));
    head.appendChild(el('span', { 'class': 'badge ok', 'data-field': 'breaker' }, 'breaker closed'));
    head.appendChild(el('span', { 'class': 'badge ok', 'data-field': 'state', title: 'shed state: overloaded refuses batch at the door' }, 'normal'));
    head.appendChild(el('span', { 'class': 'dim', 'data-field': 'upstream' }));
    sec.appendChild(head);
    var stats = el('div', { 'class': 'stats' });
    stat(stats, 'limit', 'limit');
    stat(stats, 'inflight', 'in flight');
    stat(stats, 'queued', 'queued');
    stat(stats, 'admitted', 'admitted/s');
    stat(stats, 'refused', 'refused/s');
    stat(stats, 'errors', 'upstream errors/s');
    stat(stats, 'p99', 'upstream p99 ms');
    stat(stats, 'backlog', 'backlog s');
    stat(stats, 'websockets', 'WebSockets open');
    sec.appendChild(stats);
    var charts = el('div', { 'class': 'charts' });
    var card = {
      section: sec,
      limit: chart(charts, 'limit', 'limit and in-flight', 'requests'),
      queue: chart(charts, 'queue', 'queue depth per lane', 'requests'),
      refused: chart(charts, 'refused', 'refused per second by reason', 'req/s'),
      wait: chart(charts, 'wait', 'queue wait p50 / p99 per lane', 'ms'),
      latency: chart(charts, 'latency', 'upstream latency p50 / p99 per lane', 'ms'),
      errors: chart(charts, 'errors', 'upstream errors per second', 'req/s'),
      table: el('table')
    };
    sec.appendChild(charts);
    card.table.innerHTML = '<thead><tr><th>lane</th><th>in flight</th><th>max slots</th><th>queued</th><th>oldest queued ms</th>' +
      '<th>admitted/s</th><th>refused/s</th><th>wait p50 ms</th><th>wait p99 ms</th><th>upstream p50 ms</th><th>upstream p99 ms</th></tr></thead><tbody></tbody>';
    sec.appendChild(card.table);
    document.getElementById('routes').appendChild(sec);
    return card;
  }

  function setField(card, field, text) {
    var e = card.section.querySelector('[data-field="' + field + '"]');
    if (e) e.textContent = text;
  }

  function fmt(n) {
    if (n === null || n === undefined) return '\u221e';
    if (Math.abs(n) >= 100) return String(Math.round(n));
    return String(Math.round(n * 10) / 10);
  }

  function sum(obj) {
    var t = 0;
    for (var k in obj) t += obj[k];
    return t;
  }

  function niceCeil(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function tickText(v) {
    return String(Math.round(v * 100) / 100);
  }

  // Draws series (value(sample) -> number or null: a gap) over the window ending at the newest sample.
  function draw(target, series) {
    var c = target.canvas;
    var dpr = window.devicePixelRatio || 1;
    var w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    var g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    var max = 0;
    for (var i = 0; i < samples.length; i++) {
      for (var s = 0; s < series.length; s++) {
        var v = series[s].value(samples[i]);
        if (v !== null && v > max && isFinite(v)) max = v;
      }
    }
    max = max > 0 ? niceCeil(max) : 1;
    // Round ticks: 1, 2 and 10 (x 10^n) in quarters, 5 in fifths.
    var divisions = Math.round(max / Math.pow(10, Math.floor(Math.log10(max)))) === 5 ? 5 : 4;
    var left = 46, top = 20, bottom = h - 16, right = w - 8;
    g.font = '10px system-ui, sans-serif';
    g.lineWidth = 1;
    // y axis: four grid lines with values, the unit above them.
    for (var k = 0; k <= divisions; k++) {
      var y = bottom - (bottom - top) * k / divisions;
      g.strokeStyle = '#2a323c';
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.fillStyle = '#8b949e';
      var label = tickText(max * k / divisions);
      g.fillText(label, left - 6 - g.measureText(label).width, y + 3);
    }
    g.fillText(target.unit, 2, 10);
    // x axis: seconds before the newest sample.
    var tNow = samples.length ? samples[samples.length - 1].t : 0;
    var spanMs = WINDOW_S * 1000;
    var step = [5, 10, 15, 30, 60, 120].filter(function (x) { return WINDOW_S / x <= 6; })[0] || 60;
    for (var a = 0; a <= WINDOW_S; a += step) {
      var x = right - (right - left) * a / WINDOW_S;
      var text = a === 0 ? 'now' : '-' + a + ' s';
      var tw = g.measureText(text).width;
      g.fillStyle = '#8b949e';
      g.fillText(text, Math.min(right - tw, Math.max(left, x - tw / 2)), h - 3);
      g.strokeStyle = '#2a323c';
      g.beginPath(); g.moveTo(x, bottom); g.lineTo(x, bottom + 3); g.stroke();
    }
    var drawn = 0;
    for (var s2 = 0; s2 < series.length; s2++) {
      g.strokeStyle = series[s2].color;
      g.lineWidth = series[s2].width || 1.5;
      if (series[s2].dash) g.setLineDash([4, 3]); else g.setLineDash([]);
      g.beginPath();
      var pen = false;
      for (var j = 0; j < samples.length; j++) {
        var age = tNow - samples[j].t;
        var val = series[s2].value(samples[j]);
        if (age > spanMs || val === null || val === undefined || !isFinite(val)) { pen = false; continue; }
        var xx = right - (right - left) * age / spanMs;
        var yy = bottom - (bottom - top) * Math.min(val, max) / max;
        if (!pen) { g.moveTo(xx, yy); pen = true; } else g.lineTo(xx, yy);
        // A lone point still shows.
        if (j === samples.length - 1 || series[s2].value(samples[j + 1]) === null) g.rect(xx - 1, yy - 1, 2, 2);
        drawn++;
      }
      g.stroke();
    }
    g.setLineDash([]);
    c.setAttribute('data-drawn', String(drawn));
    var key = series.map(function (s) { return s.label + '|' + s.color; }).join(',');
    if (target.legend.getAttribute('data-key') !== key) {
      target.legend.setAttribute('data-key', key);
      target.legend.innerHTML = '';
      series.forEach(function (s) {
        var item = el('span');
        var sw = el('i');
        sw.style.background = s.color;
        item.appendChild(sw);
        item.appendChild(document.createTextNode(s.label));
        target.legend.appendChild(item);
      });
    }
  }

  // Accessors into a sample for one route (null when the route was not there).
  function routeOf(name) { return function (sample) { return sample.byName[name] || null; }; }
  function laneOf(r, lane) {
    if (!r) return null;
    for (var i = 0; i < r.lanes.length; i++) if (r.lanes[i].name === lane) return r.lanes[i];
    return null;
  }

  // The keys of a per-reason / per-kind map that appear anywhere in the window, in a fixed order.
  function keysSeen(route, field, order) {
    var seen = {};
    samples.forEach(function (s) {
      var r = route(s);
      if (r) for (var k in r[field]) seen[k] = true;
    });
    return order.filter(function (k) { return seen[k]; }).concat(Object.keys(seen).filter(function (k) { return order.indexOf(k) < 0; }));
  }

  function drawRoute(card, name, lanes) {
    var route = routeOf(name);
    var laneSeries = function (pick, suffix, dash) {
      return lanes.map(function (lane, i) {
        return { label: lane + suffix, color: COLORS[i % COLORS.length], dash: dash, value: function (s) { var l = laneOf(route(s), lane); return l ? pick(l) : null; } };
      });
    };
    draw(card.limit, [
      { label: 'limit', color: '#e6e6e6', width: 2, value: function (s) { var r = route(s); return r ? r.limit : null; } },
      { label: 'in flight', color: '#3fb950', width: 2, value: function (s) { var r = route(s); return r ? r.inflight : null; } }
    ].concat(laneSeries(function (l) { return l.inflight; }, ' in flight').map(function (x) { x.width = 1; return x; })));
    draw(card.queue, laneSeries(function (l) { return l.queued; }, ''));
    var reasons = keysSeen(route, 'refusedPerSecond', REASONS);
    draw(card.refused, reasons.map(function (k) {
      return { label: k, color: k === 'circuit_open' ? '#f85149' : COLORS[REASONS.indexOf(k) % COLORS.length], value: function (s) { var r = route(s); return r ? (r.refusedPerSecond[k] || 0) : null; } };
    }));
    draw(card.wait, laneSeries(function (l) { return l.queueWaitMs ? l.queueWaitMs.p50 : null; }, ' p50', true)
      .concat(laneSeries(function (l) { return l.queueWaitMs ? l.queueWaitMs.p99 : null; }, ' p99')));
    draw(card.latency, laneSeries(function (l) { return l.upstreamLatencyMs ? l.upstreamLatencyMs.p50 : null; }, ' p50', true)
      .concat(laneSeries(function (l) { return l.upstreamLatencyMs ? l.upstreamLatencyMs.p99 : null; }, ' p99').map(function (x) { x.width = 2; return x; })));
    var kinds = keysSeen(route, 'upstreamErrorsPerSecond', KINDS);
    draw(card.errors, kinds.map(function (k, i) {
      return { label: k, color: COLORS[(i + 4) % COLORS.length], value: function (s) { var r = route(s); return r ? (r.upstreamErrorsPerSecond[k] || 0) : null; } };
    }).concat([{ label: '5xx responses', color: '#ff7b72', dash: true, value: function (s) { var r = route(s); return r ? r.upstream5xxPerSecond : null; } }]));
  }

  var BREAKER = { closed: ['breaker closed', 'ok'], half_open: ['breaker half-open (probing)', 'warn'], open: ['breaker open', 'bad'] };

  function showRoute(card, r) {
    var b = card.section.querySelector('[data-field="breaker"]');
    if (r.breaker === null) { b.style.display = 'none'; b.removeAttribute('data-state'); }
    else {
      var look = BREAKER[r.breaker.state];
      b.style.display = '';
      b.textContent = look[0] + (r.breaker.state === 'open' ? ', probing in ' + Math.ceil(r.breaker.openRemainingMs / 1000) + ' s' : '');
      b.className = 'badge ' + look[1];
      b.setAttribute('data-state', r.breaker.state);
    }
    card.section.className = 'route' + (r.breaker && r.breaker.state === 'open' ? ' down' : '');
    // The shed state; on a route whose breaker is not closed, "normal" is no good news: grey, not green.
    var st = card.section.querySelector('[data-field="state"]');
    st.textContent = r.state;
    st.className = 'badge ' + (r.state === 'overloaded' ? 'bad' : r.breaker && r.breaker.state !== 'closed' ? 'dim' : 'ok');
    setField(card, 'upstream', r.algorithm + ' \u2192 ' + r.upstream);
    setField(card, 'limit', fmt(r.limit));
    setField(card, 'inflight', String(r.inflight));
    // Routes with websocket: only: open sockets of maxOpen (they hold no request permit).
    var ws = card.section.querySelector('[data-field="websockets"]');
    ws.parentNode.style.display = r.websockets ? '' : 'none';
    if (r.websockets) ws.textContent = r.websockets.open + ' / ' + r.websockets.maxOpen;
    setField(card, 'queued', String(r.queued));
    setField(card, 'admitted', fmt(r.admittedPerSecond));
    setField(card, 'refused', fmt(sum(r.refusedPerSecond)));
    setField(card, 'errors', fmt(sum(r.upstreamErrorsPerSecond) + r.upstream5xxPerSecond));
    setField(card, 'p99', r.upstreamLatencyMs ? fmt(r.upstreamLatencyMs.p99) : '-');
    setField(card, 'backlog', fmt(r.backlogSeconds));
    var rows = '';
    r.lanes.forEach(function (l) {
      var w = l.queueWaitMs, u = l.upstreamLatencyMs;
      rows += '<tr data-lane="' + escapeHtml(l.name) + '"><td>' + escapeHtml(l.name) + '</td><td>' + l.inflight + '</td><td>' + l.maxSlots +
        '</td><td>' + l.queued + '</td><td>' + l.oldestQueuedMs + '</td><td>' + fmt(l.admittedPerSecond) + '</td><td>' + fmt(l.refusedPerSecond) +
        '</td><td>' + (w ? fmt(w.p50) : '-') + '</td><td>' + (w ? fmt(w.p99) : '-') +
        '</td><td>' + (u ? fmt(u.p50) : '-') + '</td><td>' + (u ? fmt(u.p99) : '-') + '</td></tr>';
    });
    card.table.tBodies[0].innerHTML = rows;
  }

  function whyText(s) {
    if (s.draining) return 'draining: shutting down';
    var n = s.notReady;
    if (n === null) return '';
    if (typeof n === 'string') return n;
    var parts = [n.reason];
    (n.routes || []).forEach(function (r) {
      parts.push(r.route + ' (' + r.queued + ' queued, backlog ' + (r.backlogSeconds === null ? '\u221e' : r.backlogSeconds + ' s') + ')');
    });
    return parts.join(': ');
  }

  function listenerText(l) {
    if (!l) return '';
    var parts = [l.scheme + (l.http2 ? ' + HTTP/2' : '')];
    var h = l.http2Clients;
    if (h) parts.push('h2 connections ' + h.sessions + ', rapid-reset closes ' + h.rapidResetCloses);
    if (l.tls) {
      var days = Math.floor((Date.parse(l.tls.notAfter) - Date.now()) / 86400000);
      parts.push('certificate expires in ' + days + ' d');
    }
    return parts.join(' \u00b7 ');
  }

  function render() {
    if (samples.length === 0) return;
    var latest = samples[samples.length - 1];
    var ready = document.getElementById('ready');
    ready.textContent = latest.draining ? 'draining' : latest.ready ? 'ready' : 'not ready';
    ready.className = 'badge ' + (latest.draining ? 'bad' : latest.ready ? 'ok' : 'warn');
    document.getElementById('why').textContent = whyText(latest);
    var lt = document.getElementById('listener');
    lt.textContent = listenerText(latest.listener);
    var tls = latest.listener && latest.listener.tls;
    lt.className = tls && Date.parse(tls.notAfter) - Date.now() < 14 * 86400000 ? 'warn-text' : 'dim';
    var seen = {};
    latest.routes.forEach(function (r) {
      seen[r.name] = true;
      var card = cards[r.name] || (cards[r.name] = makeCard(r.name));
      showRoute(card, r);
      drawRoute(card, r.name, r.lanes.map(function (l) { return l.name; }));
    });
    Object.keys(cards).forEach(function (name) {
      if (!seen[name]) { cards[name].section.remove(); delete cards[name]; }
    });
    document.body.setAttribute('data-samples', String(samples.length));
    document.body.setAttribute('data-span-s', String(Math.round((latest.t - samples[0].t) / 1000)));
    document.getElementById('updated').textContent = new Date(latest.t).toLocaleTimeString();
  }

  function add(batch) {
    // The server restarted (its sequence went back): start over with what it has.
    if (batch.latest < lastSeq) { samples = []; lastSeq = 0; }
    // What the tab got before it had seen anything itself: the server's history.
    if (!document.body.hasAttribute('data-first-batch')) document.body.setAttribute('data-first-batch', String(batch.samples.length));
    batch.samples.forEach(function (s) {
      if (s.seq <= lastSeq) return;
      s.byName = {};
      s.routes.forEach(function (r) { s.byName[r.name] = r; });
      samples.push(s);
      lastSeq = s.seq;
    });
    var keep = Math.max(1, Math.min(batch.capacity, Math.ceil(WINDOW_S * 1000 / batch.everyMs) + 1));
    if (samples.length > keep) samples = samples.slice(samples.length - keep);
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; });
  }

  var errorBox = document.getElementById('error');
  function poll() {
    var started = performance.now();
    fetch('admin/history?since=' + lastSeq, { cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (batch) {
        errorBox.style.display = 'none';
        add(batch);
        render();
      })
      .catch(function (err) {
        errorBox.textContent = 'Cannot read admin/history: ' + err.message + ' (retrying)';
        errorBox.style.display = 'block';
        var ready = document.getElementById('ready');
        ready.textContent = 'unreachable';
        ready.className = 'badge bad';
      })
      .then(function () {
        setTimeout(poll, Math.max(0, EVERY - (performance.now() - started)));
      });
  }
  poll();
})();
</script>
</body>
</html>
`;
