// fedge dashboard: polls the aggregator's status API every 2 s and draws it.
// No libraries, no network beyond this aggregator. The operator token comes
// from the URL fragment (#token=..., never sent to the server, removed from
// the address bar) or the form, and is kept in this tab's sessionStorage.
'use strict';

const POLL_MS = 2000;
const PAGE = 25;
const LINEAGE_ROWS = 12;
const state = { token: null, lastEvent: 0, events: [], offset: 0, timer: null, busy: false };
const $ = (id) => document.getElementById(id);

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}
function fmtBytes(n) {
  if (n == null) return '–';
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i];
}
function fmtNum(v, digits = 3) { return v == null ? '–' : Number(v).toFixed(digits); }
function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}
function clock(ms) { return ms ? new Date(ms).toTimeString().slice(0, 8) : '–'; }
function badge(s) { return `<span class="badge s-${esc(s)}">${esc(s.replace('_', ' '))}</span>`; }
function accuracyOf(m) { return m.validation_accuracy ?? m.clients_train_accuracy ?? null; }
function lossOf(m) { return m.validation_loss ?? m.clients_train_loss ?? null; }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token }, cache: 'no-store' });
  if (response.status === 401) throw Object.assign(new Error('the token was refused'), { unauthorized: true });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// --- charts (hand-drawn SVG) -------------------------------------------------
let W = 640;
const H = 220, L = 60, R = 48, T = 12, B = 28;
// Draws at the element's own width, so text is not stretched.
function size(svg) {
  W = Math.max(320, Math.round(svg.clientWidth || 640));
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
}
// The smallest of 1, 2, 4, 5 or 10 times a power of ten that is >= v.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
function axes(yMax, yFmt, xLabels, rightMax, rightFmt) {
  let s = '';
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * (1 - i / 4);
    s += `<line class="grid-line" x1="${L}" x2="${W - R}" y1="${y}" y2="${y}"/>`;
    s += `<text x="${L - 6}" y="${y + 4}" text-anchor="end">${esc(yFmt(yMax * i / 4))}</text>`;
    if (rightMax != null) s += `<text x="${W - R + 6}" y="${y + 4}">${esc(rightFmt(rightMax * i / 4))}</text>`;
  }
  const step = Math.max(1, Math.ceil(xLabels.length / 12));
  xLabels.forEach((label, i) => {
    if (i % step) return;
    const x = L + (W - L - R) * (xLabels.length === 1 ? 0.5 : i / (xLabels.length - 1));
    s += `<text x="${x}" y="${H - 8}" text-anchor="middle">${esc(label)}</text>`;
  });
  return s;
}
function emptyChart(svg, text) {
  size(svg);
  svg.innerHTML = `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">${esc(text)}</text>`;
  svg.dataset.points = '0';
}
function drawAccuracy(versions) {
  const svg = $('chart-accuracy');
  size(svg);
  const points = versions.slice().reverse()
    .map((v) => ({ v: v.version, acc: accuracyOf(v.metrics), loss: lossOf(v.metrics), status: v.status }))
    .filter((p) => p.acc != null || p.loss != null);
  if (!points.length) return emptyChart(svg, 'No accuracy yet: the first round has not closed.');
  const lossMax = niceMax(Math.max(0.1, ...points.map((p) => p.loss ?? 0)));
  const x = (i) => L + (W - L - R) * (points.length === 1 ? 0.5 : i / (points.length - 1));
  const yAcc = (a) => T + (H - T - B) * (1 - a);
  const yLoss = (l) => T + (H - T - B) * (1 - l / lossMax);
  let s = axes(1, (v) => (v * 100).toFixed(0) + '%', points.map((p) => 'v' + p.v), lossMax, (v) => v.toFixed(2));
  const path = (key, y) => points.map((p, i) => (p[key] == null ? null : `${x(i).toFixed(1)},${y(p[key]).toFixed(1)}`))
    .filter(Boolean).join(' ');
  s += `<polyline points="${path('loss', yLoss)}" fill="none" stroke="#9333ea" stroke-width="2" stroke-dasharray="5 3"/>`;
  s += `<polyline points="${path('acc', yAcc)}" fill="none" stroke="#2563eb" stroke-width="2.5"/>`;
  points.forEach((p, i) => {
    if (p.acc == null) return;
    const bad = p.status === 'rejected' || p.status === 'rolled_back';
    s += `<circle cx="${x(i)}" cy="${yAcc(p.acc)}" r="3.5" fill="${bad ? '#dc2626' : '#2563eb'}"><title>version ${p.v}: accuracy ${fmtNum(p.acc)}, loss ${fmtNum(p.loss)} (${p.status})</title></circle>`;
  });
  svg.innerHTML = s;
  svg.dataset.points = String(points.filter((p) => p.acc != null).length);
}
function drawBars(svgId, rounds, series, yFmt, emptyText) {
  const svg = $(svgId);
  size(svg);
  const data = rounds.slice().reverse();
  if (!data.length) return emptyChart(svg, emptyText);
  const stacked = series.stacked;
  const totals = data.map((r) => (stacked ? series.keys.reduce((a, k) => a + r[k], 0) : Math.max(...series.keys.map((k) => r[k]))));
  // Integer counts get integer ticks (a multiple of 4).
  const yMax = series.integer ? 4 * Math.ceil(Math.max(1, ...totals) / 4) : niceMax(Math.max(1, ...totals));
  const slot = (W - L - R) / data.length;
  const bw = Math.max(2, Math.min(28, slot * 0.7));
  let s = axes(yMax, yFmt, []);
  const y = (v) => T + (H - T - B) * (1 - v / yMax);
  const step = Math.max(1, Math.ceil(data.length / 12));
  data.forEach((r, i) => {
    const cx = L + slot * (i + 0.5);
    let base = 0;
    series.keys.forEach((k, j) => {
      const v = r[k];
      const w = stacked ? bw : bw / series.keys.length;
      const bx = stacked ? cx - bw / 2 : cx - bw / 2 + j * w;
      const top = stacked ? y(base + v) : y(v);
      const bottom = stacked ? y(base) : y(0);
      s += `<rect x="${bx.toFixed(1)}" y="${top.toFixed(1)}" width="${w.toFixed(1)}" height="${Math.max(0, bottom - top).toFixed(1)}" fill="${series.colors[j]}"><title>round ${r.round}: ${k} ${yFmt(v)}</title></rect>`;
      if (stacked) base += v;
    });
    if (r.outcome === 'failed') s += `<text x="${cx}" y="${T + 10}" text-anchor="middle" fill="#dc2626">✕</text>`;
    if (i % step === 0) s += `<text x="${cx}" y="${H - 8}" text-anchor="middle">r${r.round}</text>`;
  });
  svg.innerHTML = s;
  svg.dataset.points = String(data.length);
}

// --- panels ------------------------------------------------------------------
function drawOverview(o) {
  const c = o.round;
  const tile = $('tile-round');
  if (c.open) {
    const r = c.round;
    tile.dataset.round = String(r.round);
    $('round-number').textContent = '#' + r.round;
    $('round-phase').innerHTML = `${esc(c.phase)} on version ${r.model_version}` + (c.paused ? ' ' + badge('paused') : '');
    const target = Math.max(1, c.goal);
    $('round-progress').style.width = Math.min(100, (100 * r.reported) / target) + '%';
    const left = Math.max(0, Math.round((c.deadline_at_ms - Date.now()) / 1000));
    $('round-detail').textContent = `${r.reported} of ${target} updates (${r.selected} selected) · deadline in ${left} s`;
  } else {
    tile.dataset.round = String(c.closed_rounds ? c.next_round - 1 : 0);
    $('round-number').textContent = c.closed_rounds ? '#' + (c.next_round - 1) + ' done' : 'none yet';
    $('round-phase').innerHTML = c.paused ? badge('paused') + ' no new round opens' : esc(c.phase);
    $('round-progress').style.width = '0';
    $('round-detail').textContent = `${c.devices_available} device${c.devices_available === 1 ? '' : 's'} available, ${c.min_clients} needed`;
  }
  tile.dataset.open = String(c.open);
  $('live-version').textContent = o.live_version == null ? '–' : 'v' + o.live_version;
  $('live-accuracy').textContent = o.accuracy == null ? 'no accuracy yet'
    : `accuracy ${(o.accuracy * 100).toFixed(1)}% · loss ${fmtNum(o.loss)}` + (o.accuracy_source === 'validation_accuracy' ? ' (validation)' : ' (devices)');
  $('tile-version').dataset.accuracy = o.accuracy == null ? '' : String(o.accuracy);
  const d = o.devices;
  $('devices-active').textContent = `${d.active} / ${d.total}`;
  $('devices-detail').textContent = `active · ${d.idle} idle · ${d.gone} gone · ${d.revoked} revoked · ${d.with_drift} drifting`;
  const devicesTile = $('tile-devices');
  for (const s of ['active', 'idle', 'gone', 'revoked']) devicesTile.dataset[s] = String(d[s]);
  const eps = o.epsilon;
  $('epsilon-spent').textContent = fmtNum(eps.spent, 2);
  if (eps.budget == null) {
    $('epsilon-bar').style.width = '0';
    $('epsilon-detail').textContent = eps.spent > 0 ? 'no budget configured' : 'no differential privacy';
  } else {
    const share = Math.min(1, eps.spent / eps.budget);
    $('epsilon-bar').style.width = share * 100 + '%';
    $('epsilon-bar').className = 'fill' + (share > 0.9 ? ' bad' : share > 0.7 ? ' warn' : '');
    $('epsilon-detail').textContent = `of ${fmtNum(eps.budget, 2)} (${(share * 100).toFixed(0)}%)`;
  }
  $('alert-count').textContent = String(o.alerts);
  $('tile-alerts').dataset.alerts = String(o.alerts);
  $('rounds-detail').textContent = `${o.rounds.closed} rounds closed · ${o.rounds.failed} failed`;
}
function drawDrift(page) {
  const rows = page.devices.slice().sort((a, b) => (b.last_drift?.time_ms ?? 0) - (a.last_drift?.time_ms ?? 0));
  $('drift-rows').innerHTML = rows.map((d) => `<tr><td class="mono">${esc(d.id)}</td><td>${d.drift_reports}</td>
    <td>${esc(d.last_drift.detector)} / ${esc(d.last_drift.stream)}</td><td>${ago(d.last_drift.time_ms)}</td></tr>`).join('');
  $('drift-empty').hidden = rows.length > 0;
}
function drawEvents(body) {
  if (body.events.length) {
    state.events = state.events.concat(body.events).slice(-200);
    state.lastEvent = body.events[body.events.length - 1].sequence;
  }
  const rounds = $('show-rounds').checked;
  const shown = state.events.filter((e) => rounds || (e.kind !== 'round_opened' && e.kind !== 'round_closed'));
  const hidden = state.events.length - shown.length;
  const list = $('events');
  list.dataset.events = String(state.events.length);
  list.dataset.shown = String(shown.length);
  const rows = shown.slice().reverse().map((e) => {
    const cls = [e.level, e.kind === 'alert' ? 'alert' : '', e.kind.startsWith('rollout_') ? 'rollout' : ''].join(' ');
    return `<li class="${cls}" data-kind="${esc(e.kind)}"><span class="when">${clock(e.time_ms)}</span><span class="kind">${esc(e.kind)}</span><span class="what">${esc(e.message)}</span></li>`;
  });
  if (hidden > 0) {
    rows.push(`<li class="note">${hidden} round event${hidden === 1 ? '' : 's'} hidden: tick “round events” to show ${hidden === 1 ? 'it' : 'them'}.</li>`);
  }
  list.innerHTML = rows.join('') || '<li class="note">No events yet.</li>';
}
function drawDevices(page) {
  const table = $('devices-table');
  table.dataset.total = String(page.total);
  $('device-rows').innerHTML = page.devices.map((d) => `<tr data-id="${esc(d.id)}">
    <td class="mono">${esc(d.id)}</td><td>${badge(d.status)}</td><td>${ago(d.last_seen_ms)}</td>
    <td>${d.model_version == null ? '–' : 'v' + d.model_version}</td><td>${d.updates_accepted}</td>
    <td>${d.failures.updates_refused}</td><td>${d.failures.tasks_failed}</td>
    <td>${d.last_drift ? esc(d.last_drift.detector) + ' · ' + ago(d.last_drift.time_ms) : '–'}</td>
    <td>${d.last_metrics.train_accuracy == null ? '–' : (d.last_metrics.train_accuracy * 100).toFixed(1) + '%'}</td></tr>`).join('');
  const first = page.total ? page.offset + 1 : 0;
  $('page-info').textContent = `${first}–${page.offset + page.devices.length} of ${page.total}`;
  $('prev').disabled = page.offset === 0;
  $('next').disabled = page.offset + page.devices.length >= page.total;
}
function drawLineage(body) {
  $('lineage').dataset.versions = String(body.total);
  $('lineage-more').textContent = body.total > LINEAGE_ROWS ? `… and ${body.total - LINEAGE_ROWS} older versions (fedge-ctl versions)` : '';
  $('lineage-rows').innerHTML = body.versions.slice(0, LINEAGE_ROWS).map((v) => {
    const sig = v.signature === 'verified' ? badge('verified') : `<span class="badge s-bad" title="${esc(v.signature)}">invalid</span>`;
    const note = [v.note, v.status_reason].filter(Boolean).join(' · ');
    return `<tr data-version="${v.version}"><td class="mono">v${v.version}${v.served ? ' ●' : ''}</td>
      <td class="mono">${v.version === 0 ? '–' : '← v' + v.parent}</td><td>${v.round || '–'}</td><td>${badge(v.status)}</td>
      <td>${fmtNum(accuracyOf(v.metrics))}</td><td>${fmtNum(lossOf(v.metrics))}</td>
      <td>${fmtBytes(v.artifact_bytes)} / ${fmtBytes(v.fp32_bytes)}</td><td>${sig}</td><td>${ago(v.created_at_ms)}</td><td>${esc(note)}</td></tr>`;
  }).join('');
}

function deviceQuery() {
  const p = new URLSearchParams({ offset: state.offset, limit: PAGE });
  if ($('f-q').value) p.set('q', $('f-q').value);
  if ($('f-status').value) p.set('status', $('f-status').value);
  if ($('f-drift').value) p.set('drift', $('f-drift').value);
  return '/api/devices?' + p.toString();
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    const [overview, rounds, versions, events, devices, drift] = await Promise.all([
      api('/api/overview'), api('/api/rounds?limit=40'), api('/api/versions?limit=60'),
      api('/api/events?limit=200&after=' + state.lastEvent), api(deviceQuery()), api('/api/devices?drift=yes&limit=12'),
    ]);
    drawOverview(overview);
    drawAccuracy(versions.versions);
    drawBars('chart-participation', rounds.rounds, { keys: ['reported', 'dropped'], colors: ['#16a34a', '#dc2626'], stacked: true, integer: true },
      (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)), 'No finished round yet.');
    drawBars('chart-bytes', rounds.rounds, { keys: ['bytes_up', 'bytes_down'], colors: ['#0891b2', '#64748b'], stacked: false },
      fmtBytes, 'No finished round yet.');
    drawDrift(drift);
    drawEvents(events);
    drawDevices(devices);
    drawLineage(versions);
    $('conn').dataset.state = 'live';
    $('conn').textContent = 'live · updated ' + clock(Date.now());
    $('footer').textContent = `events up to #${events.last_sequence} · polling every ${POLL_MS / 1000} s`;
    document.body.dataset.loaded = 'true';
  } catch (e) {
    $('conn').dataset.state = 'error';
    $('conn').textContent = e.message;
    if (e.unauthorized) showLogin('The aggregator refused this token.');
  } finally {
    state.busy = false;
  }
}

function showLogin(message) {
  clearInterval(state.timer);
  state.timer = null;
  sessionStorage.removeItem('fedge-token');
  state.token = null;
  $('dash').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
}
function start(token) {
  state.token = token;
  sessionStorage.setItem('fedge-token', token);
  $('login').hidden = true;
  $('dash').hidden = false;
  refresh();
  if (!state.timer) state.timer = setInterval(refresh, POLL_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    sessionStorage.setItem('fedge-token', fragment.get('token'));
    history.replaceState(null, '', location.pathname + location.search);  // out of the address bar
  }
  $('token-form').addEventListener('submit', (e) => { e.preventDefault(); start($('token-input').value.trim()); });
  $('logout').addEventListener('click', () => showLogin('Token forgotten.'));
  const changed = () => { state.offset = 0; refresh(); };
  $('f-q').addEventListener('input', changed);
  $('f-status').addEventListener('change', changed);
  $('f-drift').addEventListener('change', changed);
  $('show-rounds').addEventListener('change', () => drawEvents({ events: [] }));
  $('device-filters').addEventListener('submit', (e) => e.preventDefault());
  $('prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
  $('next').addEventListener('click', () => { state.offset += PAGE; refresh(); });
  const token = sessionStorage.getItem('fedge-token');
  if (token) start(token); else showLogin();
});
