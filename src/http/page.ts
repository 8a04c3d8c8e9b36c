/**
 * The dashboard page: one self-contained HTML document (no build step, no CDN),
 * polling /api/dashboard every 2 s and drawing with inline SVG.
 *
 * Everything that comes from an order (and so from whoever sent it) reaches the
 * document either through esc() into markup or through textContent, and control
 * and bidirectional-override characters are shown as \\uXXXX escapes, so a value
 * can neither add markup nor disguise itself.
 */
export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fraud-sql</title>
<style>
  :root { --bg:#0f1420; --panel:#171e2e; --text:#dfe6f3; --muted:#8b96ab; --accent:#4fa3ff; --warn:#ff7a59; --ok:#3ecf8e; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", "Noto Sans KR", sans-serif; background:var(--bg); color:var(--text); }
  header { display:flex; align-items:baseline; gap:16px; padding:14px 20px; border-bottom:1px solid #232c40; }
  header h1 { font-size:18px; margin:0; }
  .muted { color:var(--muted); font-size:12px; }
  main { display:grid; grid-template-columns:repeat(12, 1fr); gap:14px; padding:14px 20px; }
  .panel { background:var(--panel); border-radius:8px; padding:12px 14px; min-height:90px; overflow-x:auto; }
  .panel h2 { font-size:12px; font-weight:600; color:var(--muted); margin:0 0 8px; text-transform:uppercase; letter-spacing:.04em; }
  .stat { grid-column:span 2; } .stat .v { font-size:26px; font-weight:600; }
  .wide { grid-column:span 6; } .full { grid-column:span 12; } .half { grid-column:span 6; }
  @media (max-width: 1000px) { .stat { grid-column:span 4; } .wide, .half { grid-column:span 12; } }
  svg { width:100%; height:170px; display:block; }
  table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { text-align:left; padding:4px 6px; border-bottom:1px solid #232c40; white-space:nowrap; }
  th { color:var(--muted); font-weight:500; font-size:12px; } td.n { text-align:right; }
  .bar { height:8px; background:var(--accent); border-radius:4px; }
  .tag { font-size:11px; padding:1px 6px; border-radius:10px; background:#2a3550; color:var(--muted); }
  .tag.open, .tag.high { background:rgba(255,122,89,.18); color:var(--warn); }
  .empty { color:var(--muted); font-style:italic; }
  details.rule { border-top:1px solid #232c40; padding:8px 0; }
  details.rule summary { cursor:pointer; display:flex; gap:10px; align-items:baseline; flex-wrap:wrap; }
  details.rule summary b { font-weight:600; }
  details.rule .body { margin-top:6px; }
  tr.detection { cursor:pointer; } tr.detection:hover td { background:#1d2638; }
</style>
</head>
<body>
<header><h1>fraud-sql</h1><span class="muted" id="updated">loading…</span></header>
<main>
  <section class="panel stat"><h2>Orders</h2><div class="v" id="t-orders">–</div></section>
  <section class="panel stat"><h2>Sales (KRW)</h2><div class="v" id="t-sales">–</div></section>
  <section class="panel stat"><h2>Avg order value</h2><div class="v" id="t-avg">–</div></section>
  <section class="panel stat"><h2>Suspicious IPs</h2><div class="v" id="t-sus">–</div></section>
  <section class="panel stat"><h2>High-value orders</h2><div class="v" id="t-hv">–</div></section>
  <section class="panel stat"><h2>Dead letters / late</h2><div class="v" id="t-dl">–</div></section>
  <div class="muted full" id="t-range"></div>
  <section class="panel wide" id="p-orders"><h2>Orders per second (30 s windows)</h2><svg id="c-orders"></svg></section>
  <section class="panel wide" id="p-sales"><h2>Sales per window (million KRW)</h2><svg id="c-sales"></svg></section>
  <div class="muted full" id="c-note">Each point is a window, labelled with its start. ○ = partial window: still open, or the first or last of a run, so it holds only part of its 30 s.</div>
  <section class="panel half" id="p-top"><h2>Top 5 products (last 5 min)</h2><div id="top"></div></section>
  <section class="panel half" id="p-sus"><h2>Suspicious IPs (>= 10 orders in 60 s) · click for the orders</h2><div id="sus"></div></section>
  <section class="panel full" id="p-hv"><h2>High-value orders (>= 500,000 KRW)</h2><div id="hv"></div></section>
  <section class="panel full" id="p-rules"><h2>Every rule: latest rows, newest first (click a detection for its orders)</h2><div id="rules"></div></section>
  <section class="panel full" id="p-evidence" hidden><h2>Evidence: the orders behind a detection</h2><div id="evidence"></div></section>
</main>
<script>
// The four rules the panels above show: their generic tables start folded.
const PANELLED = ['popular_products', 'suspicious_ips', 'high_value_orders', 'realtime_stats'];
const fmt = (n) => Math.round(n).toLocaleString('en-US');
// Exact integers arrive as decimal strings (past 2^53 a number would round): group their digits as text.
const fmtInt = (v) => /^-?\\d+$/.test(String(v)) ? String(v).replace(/\\B(?=(\\d{3})+(?!\\d))/g, ',') : shown(v);
const shown = (s) => String(s).replace(/[\\u0000-\\u001f\\u007f-\\u009f\\u200b-\\u200f\\u2028-\\u202e\\u2066-\\u2069\\ufeff]/g,
  (c) => '\\\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
// attr() keeps a value exact (a key sent back to the server) and only makes it inert markup.
const attr = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&':'&amp;', '<':'&lt;', '>':'&gt;', '"':'&quot;', "'":'&#39;' }[c]));
const esc = (s) => attr(shown(s));
// One time format for the whole page: the viewer's local time, HH:MM:SS, with the date when it is not today.
const pad = (n) => String(n).padStart(2, '0');
const day = (d) => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
function when(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return shown(t);
  const clock = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  return day(d) === day(new Date()) ? clock : day(d) + ' ' + clock;
}
function zone() {
  const m = -new Date().getTimezoneOffset();
  return 'UTC' + (m < 0 ? '-' : '+') + pad(Math.floor(Math.abs(m) / 60)) + ':' + pad(Math.abs(m) % 60);
}
/** A line over complete windows, x by time (a gap between runs stays a gap); partial windows as hollow points. */
function chart(svg, points, color) {
  const el = document.getElementById(svg);
  const w = el.clientWidth || 600, h = 170, pad = 30, bottom = h - 22;
  if (points.length === 0) { el.innerHTML = '<text x="10" y="20" fill="#8b96ab">waiting for the first window…</text>'; return; }
  const t0 = points[0].start, t1 = points[points.length - 1].start;
  const max = Math.max(1, ...points.map((p) => p.y));
  const x = (t) => pad + (t1 === t0 ? 0 : ((t - t0) * (w - pad - 40)) / (t1 - t0));
  const y = (v) => bottom - (v / max) * (bottom - 14);
  let d = '', prev = null;
  for (const p of points) {
    if (p.partial) { prev = null; continue; }
    d += (prev && prev.end === p.start ? 'L' : 'M') + x(p.start).toFixed(1) + ' ' + y(p.y).toFixed(1) + ' ';
    prev = p;
  }
  const step = Math.max(1, Math.ceil(points.length / 6));
  const ticks = points.filter((_, i) => i % step === 0);
  el.innerHTML =
    '<text x="0" y="12" fill="#8b96ab" font-size="10">' + fmt(max) + '</text>' +
    '<line x1="' + pad + '" x2="' + w + '" y1="' + bottom + '" y2="' + bottom + '" stroke="#2a3550"/>' +
    '<path d="' + d + '" fill="none" stroke="' + color + '" stroke-width="2"/>' +
    points.map((p) =>
      '<circle class="' + (p.partial ? 'partial' : 'complete') + '" cx="' + x(p.start).toFixed(1) + '" cy="' + y(p.y).toFixed(1) + '" r="3"' +
      (p.partial ? ' fill="none" stroke="' + color + '" stroke-dasharray="2 1.5"' : ' fill="' + color + '"') +
      '><title>' + esc(when(p.start)) + ' – ' + esc(when(p.end)) + (p.partial ? ' (partial window)' : '') + ': ' + fmt(p.y) + '</title></circle>').join('') +
    ticks.map((p) =>
      '<line x1="' + x(p.start).toFixed(1) + '" x2="' + x(p.start).toFixed(1) + '" y1="' + bottom + '" y2="' + (bottom + 4) + '" stroke="#8b96ab"/>' +
      '<text class="tick" x="' + x(p.start).toFixed(1) + '" y="' + (h - 6) + '" fill="#8b96ab" font-size="10" text-anchor="middle">' + esc(when(p.start)) + '</text>').join('');
}
function table(id, head, rows) {
  document.getElementById(id).innerHTML = rows.length === 0
    ? '<div class="empty">nothing yet</div>'
    : '<table><thead><tr>' + head.map((h) => '<th>' + h + '</th>').join('') + '</tr></thead><tbody>' + rows.join('') + '</tbody></table>';
}
/** One folding section per loaded rule, kept across refreshes so that what the viewer opened stays open. */
const ruleViews = new Map();
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function cell(kind, v) {
  if (v === null || v === undefined) return el('td', '', kind === 'number' ? 'n' : undefined);
  if (kind === 'time') return el('td', when(v));
  if (kind === 'number') return el('td', fmtInt(v), 'n');
  return el('td', shown(v));
}
function rules(list) {
  const box = document.getElementById('rules');
  for (const [name, view] of ruleViews) if (!list.some((r) => r.name === name)) { view.remove(); ruleViews.delete(name); }
  if (list.length === 0) { box.textContent = 'no rules loaded'; return; }
  for (const r of list) {
    let view = ruleViews.get(r.name);
    if (!view) {
      view = el('details', undefined, 'rule');
      view.dataset.rule = r.name;
      view.open = !PANELLED.includes(r.name);
      view.append(el('summary'), el('div', undefined, 'body'));
      ruleViews.set(r.name, view);
    }
    box.append(view);
    const summary = view.querySelector('summary');
    summary.replaceChildren(el('b', shown(r.name)), el('span', shown(r.severity), 'tag ' + r.severity), el('span', shown(r.description)),
      el('span', 'table ' + shown(r.target) + ', key ' + shown(r.key.join(', ')) + ' · rows shown: ' + r.rows.length, 'muted'));
    const body = view.querySelector('.body');
    if (r.error) { body.replaceChildren(el('div', 'cannot read its rows: ' + shown(r.error), 'empty')); continue; }
    if (r.rows.length === 0) { body.replaceChildren(el('div', 'no rows yet', 'empty')); continue; }
    const t = el('table'), head = el('tr'), tbody = el('tbody');
    for (const c of r.columns) head.append(el('th', shown(c.name)));
    r.rows.forEach((row, j) => {
      const tr = el('tr');
      row.forEach((v, i) => tr.append(cell(r.columns[i].kind, v)));
      const d = r.detections && r.detections[j];
      if (d) {
        tr.className = 'detection';
        tr.title = 'show the orders behind this detection';
        tr.addEventListener('click', () => showEvidence(r.name, d.key, d.windowStart));
      }
      tbody.append(tr);
    });
    t.append(el('thead'), tbody);
    t.tHead.append(head);
    body.replaceChildren(t);
  }
}
/** Opens the evidence panel on one detection: its count and its first orders by event time. */
async function showEvidence(rule, key, windowStart) {
  const panel = document.getElementById('p-evidence'), box = document.getElementById('evidence');
  panel.hidden = false;
  const head = el('div', rule + ' · ' + shown(key) + (windowStart ? ' · since ' + when(windowStart) : ''));
  box.replaceChildren(head, el('div', 'loading…', 'empty'));
  panel.scrollIntoView({ block: 'nearest' });
  const qs = new URLSearchParams({ rule: rule, key: key });
  if (windowStart) qs.set('window_start', windowStart);
  try {
    const res = await fetch('/api/evidence?' + qs.toString());
    const body = await res.json().catch(() => ({}));
    if (!res.ok) { box.replaceChildren(head, el('div', body.message || res.statusText, 'empty')); return; }
    const note = el('div', fmt(body.orderCount) + (body.orderCount === 1 ? ' order' : ' orders') +
      (body.orders.length < body.orderCount ? ', the first ' + fmt(body.orders.length) + ' by event time' : ''), 'muted');
    const t = el('table'), tbody = el('tbody'), hr = el('tr');
    hr.append(el('th', 'Event time'), el('th', 'Order'));
    for (const o of body.orders) {
      const tr = el('tr');
      tr.append(el('td', when(o.eventTime)), el('td', shown(o.orderId)));
      tbody.append(tr);
    }
    t.append(el('thead'), tbody);
    t.tHead.append(hr);
    box.replaceChildren(head, note, t);
  } catch (e) {
    box.replaceChildren(head, el('div', 'cannot read the evidence: ' + e.message, 'empty'));
  }
}
document.getElementById('sus').addEventListener('click', (ev) => {
  const tr = ev.target.closest('tr[data-key]');
  if (tr) showEvidence('suspicious_ips', tr.dataset.key, tr.dataset.since);
});
async function refresh() {
  try {
    const res = await fetch('/api/dashboard');
    // A failed read (PostgreSQL down under run) is one line, not a script error.
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).message || res.statusText);
    const d = await res.json();
    document.getElementById('updated').textContent = 'updated ' + when(d.generatedAt) + ' · refreshes every 2 s · times are local (' + zone() + ')';
    document.getElementById('t-orders').textContent = fmt(d.totals.orders);
    document.getElementById('t-sales').textContent = fmt(d.totals.sales);
    document.getElementById('t-avg').textContent = d.totals.orders ? fmt(d.totals.sales / d.totals.orders) : '–';
    document.getElementById('t-sus').textContent = fmt(d.totals.suspiciousIps);
    document.getElementById('t-hv').textContent = fmt(d.totals.highValue);
    document.getElementById('t-dl').textContent = fmt(d.totals.deadLetters) + ' / ' + fmt(d.totals.lateEvents);
    document.getElementById('t-range').textContent = d.totals.from === null ? 'Totals: no orders yet'
      : 'Totals cover every order kept in this database: the windows from ' + when(d.totals.from) + ' to ' + when(d.totals.to) + ' (event time)' +
        (d.totals.stretches > 1 ? ', in ' + d.totals.stretches + ' runs with gaps between them (a restart keeps the earlier results)' : '');
    const points = (f) => d.series.map((s) => ({ start: Date.parse(s.start), end: Date.parse(s.end), partial: s.partial, y: f(s) }));
    chart('c-orders', points((s) => s.ordersPerSecond), '#4fa3ff');
    chart('c-sales', points((s) => s.sales / 1e6), '#3ecf8e');
    const maxTop = Math.max(1, ...d.topProducts.map((p) => p.orders));
    table('top', ['Product', 'Orders', '', 'Sales (KRW)'], d.topProducts.map((p) =>
      '<tr><td>' + esc(p.product) + '</td><td class="n">' + fmt(p.orders) + '</td><td style="width:40%"><div class="bar" style="width:' + (100 * p.orders / maxTop) + '%"></div></td><td class="n">' + fmt(p.sales) + '</td></tr>'));
    table('sus', ['IP', 'Orders', 'Spent (KRW)', 'Since', ''], d.suspiciousIps.map((s) =>
      '<tr class="detection" title="show the orders behind this detection" data-key="' + attr(s.ip) + '" data-since="' + attr(s.since) + '"><td>' + esc(s.ip) + '</td><td class="n">' + fmt(s.orders) + '</td><td class="n">' + fmt(s.spent) + '</td><td>' + esc(when(s.since)) + '</td><td><span class="tag ' + (s.final ? '' : 'open') + '">' + (s.final ? 'ended' : 'active') + '</span></td></tr>'));
    table('hv', ['Time', 'Order', 'Product', 'Qty', 'Total (KRW)', 'IP'], d.highValueOrders.map((o) =>
      '<tr><td>' + esc(when(o.time)) + '</td><td>' + esc(o.orderId) + '</td><td>' + esc(o.product) + '</td><td class="n">' + fmt(o.quantity) + '</td><td class="n">' + fmt(o.total) + '</td><td>' + esc(o.ip) + '</td></tr>'));
    rules(d.rules);
  } catch (e) {
    document.getElementById('updated').textContent = 'cannot read the results: ' + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
