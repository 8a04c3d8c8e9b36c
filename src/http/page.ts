/**
 * The dashboard page: one self-contained HTML document (no build step, no CDN),
 * polling /api/dashboard every 2 s and drawing with inline SVG.
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
  header .muted { color:var(--muted); font-size:12px; }
  main { display:grid; grid-template-columns:repeat(12, 1fr); gap:14px; padding:14px 20px; }
  .panel { background:var(--panel); border-radius:8px; padding:12px 14px; min-height:90px; }
  .panel h2 { font-size:12px; font-weight:600; color:var(--muted); margin:0 0 8px; text-transform:uppercase; letter-spacing:.04em; }
  .stat { grid-column:span 2; } .stat .v { font-size:26px; font-weight:600; }
  .wide { grid-column:span 6; } .full { grid-column:span 12; } .half { grid-column:span 6; }
  @media (max-width: 1000px) { .stat { grid-column:span 4; } .wide, .half { grid-column:span 12; } }
  svg { width:100%; height:160px; display:block; }
  table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
  th, td { text-align:left; padding:4px 6px; border-bottom:1px solid #232c40; white-space:nowrap; }
  th { color:var(--muted); font-weight:500; font-size:12px; } td.n { text-align:right; }
  .bar { height:8px; background:var(--accent); border-radius:4px; }
  .tag { font-size:11px; padding:1px 6px; border-radius:10px; background:#2a3550; color:var(--muted); }
  .tag.open { background:rgba(255,122,89,.18); color:var(--warn); }
  .empty { color:var(--muted); font-style:italic; }
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
  <section class="panel wide" id="p-orders"><h2>Orders per second (30 s windows)</h2><svg id="c-orders"></svg></section>
  <section class="panel wide" id="p-sales"><h2>Sales per window (million KRW)</h2><svg id="c-sales"></svg></section>
  <section class="panel half" id="p-top"><h2>Top 5 products (last 5 min)</h2><div id="top"></div></section>
  <section class="panel half" id="p-sus"><h2>Suspicious IPs (>= 10 orders in 60 s)</h2><div id="sus"></div></section>
  <section class="panel full" id="p-hv"><h2>High-value orders (>= 500,000 KRW)</h2><div id="hv"></div></section>
</main>
<script>
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&':'&amp;', '<':'&lt;', '>':'&gt;', '"':'&quot;' }[c]));
const hhmmss = (t) => String(t).slice(11, 19);
function line(svg, points, color) {
  const el = document.getElementById(svg);
  const w = el.clientWidth || 600, h = 160, pad = 28;
  if (points.length === 0) { el.innerHTML = '<text x="10" y="20" fill="#8b96ab">waiting for the first window…</text>'; return; }
  const max = Math.max(1, ...points.map((p) => p.y));
  const x = (i) => pad + (points.length === 1 ? 0 : (i * (w - pad - 8)) / (points.length - 1));
  const y = (v) => h - 18 - (v / max) * (h - 30);
  const d = points.map((p, i) => (i ? 'L' : 'M') + x(i).toFixed(1) + ' ' + y(p.y).toFixed(1)).join(' ');
  el.innerHTML =
    '<text x="0" y="12" fill="#8b96ab" font-size="10">' + fmt(max) + '</text>' +
    '<line x1="' + pad + '" x2="' + w + '" y1="' + (h - 18) + '" y2="' + (h - 18) + '" stroke="#2a3550"/>' +
    '<path d="' + d + '" fill="none" stroke="' + color + '" stroke-width="2"/>' +
    points.map((p, i) => '<circle cx="' + x(i) + '" cy="' + y(p.y) + '" r="2.5" fill="' + color + '"><title>' + esc(p.label) + ': ' + fmt(p.y) + '</title></circle>').join('') +
    '<text x="' + pad + '" y="' + (h - 4) + '" fill="#8b96ab" font-size="10">' + esc(hhmmss(points[0].label)) + '</text>' +
    '<text x="' + (w - 50) + '" y="' + (h - 4) + '" fill="#8b96ab" font-size="10">' + esc(hhmmss(points[points.length - 1].label)) + '</text>';
}
function table(id, head, rows) {
  document.getElementById(id).innerHTML = rows.length === 0
    ? '<div class="empty">nothing yet</div>'
    : '<table><thead><tr>' + head.map((h) => '<th>' + h + '</th>').join('') + '</tr></thead><tbody>' + rows.join('') + '</tbody></table>';
}
async function refresh() {
  try {
    const d = await (await fetch('/api/dashboard')).json();
    document.getElementById('updated').textContent = 'updated ' + new Date(d.generatedAt).toLocaleTimeString() + ' · refreshes every 2 s';
    document.getElementById('t-orders').textContent = fmt(d.totals.orders);
    document.getElementById('t-sales').textContent = fmt(d.totals.sales);
    document.getElementById('t-avg').textContent = d.totals.orders ? fmt(d.totals.sales / d.totals.orders) : '–';
    document.getElementById('t-sus').textContent = fmt(d.totals.suspiciousIps);
    document.getElementById('t-hv').textContent = fmt(d.totals.highValue);
    document.getElementById('t-dl').textContent = fmt(d.totals.deadLetters) + ' / ' + fmt(d.totals.lateEvents);
    line('c-orders', d.series.map((s) => ({ label: s.time, y: s.ordersPerSecond })), '#4fa3ff');
    line('c-sales', d.series.map((s) => ({ label: s.time, y: s.sales / 1e6 })), '#3ecf8e');
    const maxTop = Math.max(1, ...d.topProducts.map((p) => p.orders));
    table('top', ['Product', 'Orders', '', 'Sales (KRW)'], d.topProducts.map((p) =>
      '<tr><td>' + esc(p.product) + '</td><td class="n">' + fmt(p.orders) + '</td><td style="width:40%"><div class="bar" style="width:' + (100 * p.orders / maxTop) + '%"></div></td><td class="n">' + fmt(p.sales) + '</td></tr>'));
    table('sus', ['IP', 'Orders', 'Spent (KRW)', 'Since', ''], d.suspiciousIps.map((s) =>
      '<tr><td>' + esc(s.ip) + '</td><td class="n">' + fmt(s.orders) + '</td><td class="n">' + fmt(s.spent) + '</td><td>' + esc(hhmmss(s.since)) + '</td><td><span class="tag ' + (s.final ? '' : 'open') + '">' + (s.final ? 'ended' : 'active') + '</span></td></tr>'));
    table('hv', ['Time', 'Order', 'Product', 'Qty', 'Total (KRW)', 'IP'], d.highValueOrders.map((o) =>
      '<tr><td>' + esc(hhmmss(o.time)) + '</td><td>' + esc(o.orderId) + '</td><td>' + esc(o.product) + '</td><td class="n">' + o.quantity + '</td><td class="n">' + fmt(o.total) + '</td><td>' + esc(o.ip) + '</td></tr>'));
  } catch (e) {
    document.getElementById('updated').textContent = 'cannot reach fraud-sql: ' + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
`;
