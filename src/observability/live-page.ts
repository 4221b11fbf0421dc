/**
 * The live page served at GET / on the admin listener: one self-contained
 * HTML document (inline CSS and JS, no external requests, no build step)
 * that polls /admin/state and draws, per route, moving charts of limit vs
 * in-flight, queue depth per lane and admitted/refused per second, with the
 * route's state. Rates are derived in the page from the cumulative
 * admitted/refused totals in /admin/state, so any number of open pages cost
 * the proxy nothing but their polls.
 *
 * Query parameters: `every` (poll interval in ms, default 1000, min 100) and
 * `window` (seconds of history shown, default 120).
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
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
  .badge.ok { background: rgba(63,185,80,.15); color: var(--ok); }
  .badge.bad { background: rgba(248,81,73,.15); color: var(--bad); }
  .badge.warn { background: rgba(210,153,34,.15); color: var(--warn); }
  #error { display: none; margin: 12px 20px; padding: 8px 12px; border: 1px solid var(--bad); color: var(--bad); border-radius: 6px; }
  main { padding: 12px 20px; display: grid; gap: 16px; }
  .route { background: var(--card); border: 1px solid var(--grid); border-radius: 8px; padding: 12px 16px; }
  .route h2 { font-size: 16px; margin: 0 8px 0 0; display: inline; }
  .stats { display: flex; gap: 20px; flex-wrap: wrap; margin: 8px 0; }
  .stat b { display: block; font-size: 20px; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--dim); font-size: 12px; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 12px; }
  .chart h3 { font-size: 12px; font-weight: 600; color: var(--dim); margin: 4px 0; }
  .chart canvas { width: 100%; height: 140px; display: block; }
  .legend { font-size: 12px; color: var(--dim); display: flex; gap: 10px; flex-wrap: wrap; }
  .legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle; margin-right: 4px; }
  table { border-collapse: collapse; width: 100%; margin-top: 8px; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: 3px 8px; border-bottom: 1px solid var(--grid); }
  th:first-child, td:first-child { text-align: left; }
  th { color: var(--dim); font-weight: 600; font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>Sluice live</h1>
  <span id="ready" class="badge warn">connecting</span>
  <span class="dim">updated <span id="updated">never</span></span>
  <span class="dim">every <span id="every"></span> ms, last <span id="window"></span> s</span>
</header>
<div id="error" role="alert"></div>
<main id="routes"></main>
<script>
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var EVERY = Math.max(100, Number(params.get('every')) || 1000);
  var WINDOW_S = Math.max(10, Number(params.get('window')) || 120);
  var MAX_POINTS = Math.ceil(WINDOW_S * 1000 / EVERY) + 1;
  var COLORS = ['#58a6ff', '#d2a8ff', '#3fb950', '#ffa657', '#ff7b72', '#79c0ff', '#e3b341'];
  var LIMIT_COLOR = '#e6e6e6';
  document.getElementById('every').textContent = String(EVERY);
  document.getElementById('window').textContent = String(WINDOW_S);

  // Per route: its DOM and a bounded history of samples { t, limit, inflight, lanes: {name: {inflight, queued, admittedPerS, refusedPerS}} }.
  var routes = {};
  var lastTotals = {};
  var lastT = 0;

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

  function chart(parent, title) {
    var d = el('div', { 'class': 'chart' });
    d.appendChild(el('h3', {}, title));
    var c = el('canvas', {});
    d.appendChild(c);
    var legend = el('div', { 'class': 'legend' });
    d.appendChild(legend);
    parent.appendChild(d);
    return { canvas: c, legend: legend };
  }

  function makeRoute(name) {
    var sec = el('section', { 'class': 'route', 'data-route': name });
    var head = el('div');
    head.appendChild(el('h2', {}, name));
    var state = el('span', { 'class': 'badge ok', 'data-field': 'state' }, 'normal');
    head.appendChild(state);
    head.appendChild(el('span', { 'class': 'dim', 'data-field': 'upstream' }));
    sec.appendChild(head);
    var stats = el('div', { 'class': 'stats' });
    stat(stats, 'limit', 'limit');
    stat(stats, 'inflight', 'in flight');
    stat(stats, 'queued', 'queued');
    stat(stats, 'completions', 'completions/s');
    stat(stats, 'refused', 'refused/s');
    stat(stats, 'backlog', 'backlog s');
    sec.appendChild(stats);
    var charts = el('div', { 'class': 'charts' });
    var r = {
      name: name, section: sec, state: state, history: [],
      inflightChart: chart(charts, 'limit and in-flight'),
      queueChart: chart(charts, 'queue depth per lane'),
      refusedChart: chart(charts, 'refused per second per lane'),
      table: el('table')
    };
    sec.appendChild(charts);
    r.table.innerHTML = '<thead><tr><th>lane</th><th>in flight</th><th>max slots</th><th>queued</th><th>oldest queued ms</th><th>admitted/s</th><th>refused/s</th></tr></thead><tbody></tbody>';
    sec.appendChild(r.table);
    document.getElementById('routes').appendChild(sec);
    return r;
  }

  function setField(r, field, text) {
    var e = r.section.querySelector('[data-field="' + field + '"]');
    if (e) e.textContent = text;
  }

  function fmt(n) {
    if (n === null || n === undefined) return '\u221e';
    if (Math.abs(n) >= 100) return String(Math.round(n));
    return String(Math.round(n * 10) / 10);
  }

  function draw(target, history, series) {
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
    var max = 1;
    for (var i = 0; i < history.length; i++) {
      for (var s = 0; s < series.length; s++) {
        var v = series[s].value(history[i]);
        if (v > max) max = v;
      }
    }
    max = niceCeil(max);
    var left = 34, top = 6, bottom = h - 14, right = w - 4;
    g.strokeStyle = '#2a323c';
    g.fillStyle = '#8b949e';
    g.font = '10px system-ui, sans-serif';
    g.lineWidth = 1;
    for (var k = 0; k <= 4; k++) {
      var y = bottom - (bottom - top) * k / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      var tick = max * k / 4;
      g.fillText(String(tick < 10 ? Math.round(tick * 100) / 100 : Math.round(tick)), 2, y + 3);
    }
    g.fillText('-' + WINDOW_S + 's', left, h - 2);
    g.fillText('now', right - 18, h - 2);
    var span = (MAX_POINTS - 1) * EVERY;
    var tNow = history.length ? history[history.length - 1].t : 0;
    for (var s2 = 0; s2 < series.length; s2++) {
      g.strokeStyle = series[s2].color;
      g.lineWidth = series[s2].width || 1.5;
      g.beginPath();
      for (var j = 0; j < history.length; j++) {
        var x = right - (right - left) * (tNow - history[j].t) / span;
        var yy = bottom - (bottom - top) * series[s2].value(history[j]) / max;
        if (j === 0) g.moveTo(x, yy); else g.lineTo(x, yy);
      }
      g.stroke();
    }
    var legend = series.map(function (s) { return s.label + '|' + s.color; }).join(',');
    if (target.legend.getAttribute('data-key') !== legend) {
      target.legend.setAttribute('data-key', legend);
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

  function niceCeil(v) {
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function laneSeries(laneNames, key) {
    return laneNames.map(function (n, i) {
      return { label: n, color: COLORS[i % COLORS.length], value: function (p) { var l = p.lanes[n]; return l ? l[key] : 0; } };
    });
  }

  function update(state, t) {
    var dt = lastT ? (t - lastT) / 1000 : 0;
    var ready = document.getElementById('ready');
    ready.textContent = state.draining ? 'draining' : state.ready ? 'ready' : 'not ready';
    ready.className = 'badge ' + (state.draining ? 'bad' : state.ready ? 'ok' : 'warn');
    var seen = {};
    state.routes.forEach(function (rs) {
      seen[rs.name] = true;
      var r = routes[rs.name] || (routes[rs.name] = makeRoute(rs.name));
      var point = { t: t, limit: rs.limit, inflight: rs.inflight, lanes: {} };
      var refusedPerS = 0;
      var rows = '';
      rs.lanes.forEach(function (l) {
        var key = rs.name + '\u0000' + l.name;
        var prev = lastTotals[key];
        var a = 0, f = 0;
        if (prev && dt > 0) {
          a = Math.max(0, l.admitted - prev.admitted) / dt;
          f = Math.max(0, l.refused - prev.refused) / dt;
        }
        lastTotals[key] = { admitted: l.admitted, refused: l.refused };
        refusedPerS += f;
        point.lanes[l.name] = { inflight: l.inflight, queued: l.queued, admittedPerS: a, refusedPerS: f };
        rows += '<tr data-lane="' + escapeHtml(l.name) + '"><td>' + escapeHtml(l.name) + '</td><td>' + l.inflight + '</td><td>' + l.maxSlots +
          '</td><td>' + l.queued + '</td><td>' + Math.round(l.oldestQueuedMs) + '</td><td>' + fmt(a) + '</td><td>' + fmt(f) + '</td></tr>';
      });
      r.history.push(point);
      while (r.history.length > MAX_POINTS) r.history.shift();
      r.table.tBodies[0].innerHTML = rows;
      r.state.textContent = rs.state;
      r.state.className = 'badge ' + (rs.state === 'overloaded' ? 'bad' : 'ok');
      setField(r, 'upstream', ' ' + rs.algorithm + ' \u2192 ' + rs.upstream);
      setField(r, 'limit', fmt(rs.limit));
      setField(r, 'inflight', String(rs.inflight));
      setField(r, 'queued', String(rs.queued));
      setField(r, 'completions', fmt(rs.completionsPerSecond));
      setField(r, 'refused', fmt(refusedPerS));
      setField(r, 'backlog', fmt(rs.backlogSeconds));
      var names = rs.lanes.map(function (l) { return l.name; });
      draw(r.inflightChart, r.history, [{ label: 'limit', color: LIMIT_COLOR, width: 2, value: function (p) { return p.limit; } }]
        .concat([{ label: 'in flight', color: '#3fb950', width: 2, value: function (p) { return p.inflight; } }])
        .concat(laneSeries(names, 'inflight').map(function (s) { s.label = s.label + ' in flight'; s.width = 1; return s; })));
      draw(r.queueChart, r.history, laneSeries(names, 'queued'));
      draw(r.refusedChart, r.history, laneSeries(names, 'refusedPerS'));
    });
    Object.keys(routes).forEach(function (name) {
      if (!seen[name]) { routes[name].section.remove(); delete routes[name]; }
    });
    lastT = t;
    document.getElementById('updated').textContent = new Date().toLocaleTimeString();
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return '&#' + c.charCodeAt(0) + ';'; });
  }

  var errorBox = document.getElementById('error');
  function poll() {
    var started = performance.now();
    fetch('admin/state', { cache: 'no-store' })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (state) {
        errorBox.style.display = 'none';
        update(state, performance.now());
      })
      .catch(function (err) {
        errorBox.textContent = 'Cannot read admin/state: ' + err.message + ' (retrying)';
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
