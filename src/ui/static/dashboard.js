// The Spate dashboard page: plain JavaScript, no build step. It reads /api/info (the graph),
// /api/status, the views, then follows /api/events (server-sent events): `status` about once a
// second, `view` as result views change. uPlot draws the charts.
// After each rendered batch of view updates it dispatches a `spate:view-update` event on
// `document` (detail: { view, entries, receivedAt }): tests and the latency benchmark listen to it.
import uPlot from '/assets/uplot.js';

const SVG = 'http://www.w3.org/2000/svg';
const EPOCH_MIN = 978307200000;
const EPOCH_MAX = 4102444800000;
const MAX_SERIES = 8;
const MAX_POINTS = 240;
const PALETTE = ['#2457c5', '#d1495b', '#2e9e5b', '#e08a00', '#7b4fc4', '#00838f', '#8d6e63', '#c2185b'];

const $ = (sel) => document.querySelector(sel);

/** JSON as the server writes it: ±∞ and NaN arrive as strings. */
function parse(text) {
  return JSON.parse(text, (_k, v) => (v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v === 'NaN' ? NaN : v));
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  const body = parse(await res.text());
  return { status: res.status, body };
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- formatting

const isEpoch = (t) => Number.isFinite(t) && t >= EPOCH_MIN && t < EPOCH_MAX;

function fmtTime(t) {
  if (t === -Infinity) return 'no data yet';
  if (t === Infinity) return 'end';
  if (typeof t !== 'number' || Number.isNaN(t)) return '—';
  if (isEpoch(t)) {
    const d = new Date(t);
    const p = (n, w = 2) => String(n).padStart(w, '0');
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }
  return String(t);
}

function fmtSpan(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 120000) return `${(ms / 1000).toFixed(1)} s`;
  if (a < 7200000) return `${(ms / 60000).toFixed(1)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

function fmtRate(r) {
  if (!Number.isFinite(r)) return '—';
  if (r >= 1e6) return `${(r / 1e6).toFixed(2)}M`;
  if (r >= 1e4) return `${(r / 1e3).toFixed(0)}k`;
  if (r >= 1e3) return `${(r / 1e3).toFixed(1)}k`;
  if (r >= 10) return r.toFixed(0);
  return r.toFixed(1);
}

function fmtCount(n) {
  return Number.isFinite(n) ? n.toLocaleString('en-US') : '—';
}

function fmtBytes(b) {
  if (!Number.isFinite(b) || b === 0) return b === 0 ? '0' : '—';
  if (b < 1024) return `${b} B`;
  if (b < 1048576) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 1073741824) return `${(b / 1048576).toFixed(1)} MiB`;
  return `${(b / 1073741824).toFixed(2)} GiB`;
}

const pct = (f) => `${Math.round(f * 100)}%`;

function preview(value, max = 160) {
  let s;
  try {
    s = typeof value === 'string' ? value : JSON.stringify(value);
  } catch {
    s = String(value);
  }
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

// ---- state

const state = {
  info: null,
  status: null,
  stepRows: new Map(), // step id → graph row elements
  throughput: null, // { chart, series: [step, field][], data }
  views: new Map(), // name → view panel
  dirty: new Set(),
  pendingEvents: [],
  frame: 0,
};

// ---- the job graph

function drawGraph(graph) {
  const root = $('#graph-svg');
  root.replaceChildren();
  // Scaled to the card's width, down to 60% of its natural size (then it scrolls).
  root.setAttribute('viewBox', `0 0 ${graph.width} ${graph.height}`);
  root.style.maxWidth = `${graph.width}px`;
  root.style.minWidth = `${Math.round(graph.width * 0.6)}px`;
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z' }));
  defs.append(marker);
  root.append(defs);

  const H = graph.tasks.length > 0 ? (graph.tasks[0].height - 24 - 6) / graph.tasks[0].steps.length : 46;
  const pos = new Map(); // step → { x, y, w, h }
  for (const t of graph.tasks) {
    t.steps.forEach((id, i) => pos.set(id, { x: t.x + 6, y: t.y + 24 + i * H, w: t.width - 12, h: H - 4 }));
  }
  const edges = svg('g', { class: 'edges' });
  const labels = svg('g', { class: 'edge-labels' });
  const deadInputs = new Map();
  for (const e of graph.edges) {
    if (e.deadLetters) {
      // Drawn as a note on the gathering step, not as an arrow from every step.
      deadInputs.set(e.to, (deadInputs.get(e.to) ?? 0) + 1);
      continue;
    }
    if (e.ship === 'chain') continue;
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + a.w + 6;
    const y1 = a.y + a.h / 2;
    const x2 = b.x - 8;
    const y2 = b.y + b.h / 2;
    const mx = (x1 + x2) / 2;
    edges.append(svg('path', { class: 'edge', d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)' }));
    const label = e.ship + (e.preAggregated ? ' · pre-agg' : '') + (e.port !== 'main' ? ` [${e.port}]` : '');
    labels.append(svg('text', { class: 'edge-label', x: mx, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle' }, label));
  }
  root.append(edges);

  for (const t of graph.tasks) {
    const g = svg('g', { class: 'task', 'data-task': t.index });
    g.append(svg('rect', { class: 'box', x: t.x, y: t.y, width: t.width, height: t.height }));
    const where = graph.threads === 'workers' ? (t.placement === 'main' ? ' · main thread' : ' · workers') : '';
    g.append(svg('text', { class: 'task-title', x: t.x + 8, y: t.y + 16 }, `task ${t.index} ×${t.parallelism}${where}`));
    if (t.note) g.lastChild.append(svg('title', {}, t.note));
    for (const id of t.steps) {
      const step = graph.steps.find((s) => s.id === id);
      const p = pos.get(id);
      const row = svg('g', { class: 'step', 'data-step': id, 'data-rate': 0, tabindex: 0, role: 'img' });
      const title = svg('title', {}, id);
      row.append(title);
      row.append(svg('rect', { class: 'row', x: p.x, y: p.y, width: p.w, height: p.h }));
      const bp = svg('rect', { class: 'bp', x: p.x, y: p.y + p.h, width: 4, height: 0 });
      row.append(bp);
      // Line 1: name, and dead-letter / late badges; line 2: kind and rates; line 3: watermark, lag, backpressure.
      row.append(svg('text', { class: 'name', x: p.x + 9, y: p.y + 14 }, id.length > 24 ? `${id.slice(0, 23)}…` : id));
      const dead = deadInputs.get(id);
      const kindText = step.view !== undefined ? 'view' : dead ? `⇐ ${dead} steps` : step.kind;
      const rates = svg('text', { class: 'metrics rates', x: p.x + 9, y: p.y + 28 }, '…');
      const wm = svg('text', { class: 'metrics wm', x: p.x + 9, y: p.y + 40 }, '');
      const badges = svg('text', { class: 'badges', x: p.x + p.w - 6, y: p.y + 14, 'text-anchor': 'end' }, '');
      row.append(rates, wm, badges);
      g.append(row);
      state.stepRows.set(id, { row, title, bp, rates, wm, badges, kind: kindText, box: p });
    }
    root.append(g);
  }
  root.append(labels);
}

function updateGraph(status) {
  for (const s of status.steps) {
    const r = state.stepRows.get(s.step);
    if (!r) continue;
    const source = s.kind === 'source';
    const rate = source ? s.outRate : s.inRate;
    r.row.setAttribute('data-rate', String(rate));
    const rates = source ? `${fmtRate(s.outRate)}/s out` : `${fmtRate(s.inRate)}/s in · ${fmtRate(s.outRate)}/s out`;
    r.rates.textContent = `${r.kind} · ${rates}`;
    const lag = s.lagMs === null ? '' : ` · lag ${fmtSpan(s.lagMs)}`;
    r.wm.textContent = `wm ${fmtTime(s.watermark)}${s.idle ? ' idle' : ''}${lag} · bp ${pct(s.backpressure)}`;
    const badges = [];
    if (s.lateRecords > 0) badges.push(`${fmtCount(s.lateRecords)} late`);
    if (s.deadLetters > 0) badges.push(`${fmtCount(s.deadLetters)} dead`);
    r.badges.textContent = badges.join(' · ');
    const h = Math.round(r.box.h * Math.min(1, s.backpressure));
    r.bp.setAttribute('y', String(r.box.y + r.box.h - h));
    r.bp.setAttribute('height', String(h));
    const label = `${s.step} (${s.kind}, ×${s.instances}): ${rates}; watermark ${fmtTime(s.watermark)}${lag}; backpressure ${pct(s.backpressure)}; ${fmtCount(s.lateRecords)} late; ${fmtCount(s.deadLetters)} dead letters`;
    r.title.textContent = label;
    r.row.setAttribute('aria-label', label);
  }
}

// ---- throughput chart

function chartWidth(elem) {
  return Math.max(260, Math.floor(elem.getBoundingClientRect().width) - 4);
}

function setupThroughput(graph) {
  const host = $('#throughput-chart');
  // Sources (records out), and what the results reach: sinks and views (records in).
  const consumed = new Set(graph.edges.map((e) => e.from));
  const picks = graph.steps
    .filter((s) => s.kind === 'source' || !consumed.has(s.id))
    .slice(0, MAX_SERIES)
    .map((s) => [s.id, s.kind === 'source' ? 'outRate' : 'inRate']);
  const series = [{}, ...picks.map(([id, f], i) => ({ label: `${id} ${f === 'outRate' ? 'out' : 'in'}/s`, stroke: PALETTE[i % PALETTE.length], width: 1.5, value: (_u, v) => (v === null ? '—' : fmtRate(v)) }))];
  const data = [[], ...picks.map(() => [])];
  const chart = new uPlot({ width: chartWidth(host), height: 220, series, axes: [{}, { values: (_u, ticks) => ticks.map(fmtRate), size: 56 }], scales: { x: { time: true } }, legend: { live: true } }, data, host);
  state.throughput = { chart, picks, data, host };
}

function updateThroughput(status) {
  const t = state.throughput;
  if (!t || status.rateIntervalMs === 0) return;
  const by = new Map(status.steps.map((s) => [s.step, s]));
  t.data[0].push(status.at / 1000);
  t.picks.forEach(([id, f], i) => t.data[i + 1].push(by.get(id)?.[f] ?? null));
  if (t.data[0].length > 300) for (const a of t.data) a.shift();
  t.chart.setData(t.data);
  t.host.setAttribute('data-points', String(t.data[0].length));
}

// ---- status: header, steps, holds, dead letters, checkpoints

function renderHeader(status) {
  const phase = $('#phase');
  phase.textContent = status.phase;
  phase.setAttribute('data-phase', status.phase);
  const up = status.startedAt > 0 ? fmtSpan(status.at - status.startedAt) : '—';
  const restored = status.restoredFrom ? ` · restored from ${status.restoredFrom.kind} ${status.restoredFrom.id}` : '';
  $('#facts').textContent = `up ${up} · parallelism ${status.parallelism}${restored}`;
  const banner = $('#banner');
  if (status.phase === 'opening' || status.phase === 'restoring') {
    banner.hidden = false;
    banner.removeAttribute('data-kind');
    banner.textContent = status.phase === 'restoring' ? `Restoring state from ${status.restoredFrom?.kind ?? 'checkpoint'} ${status.restoredFrom?.id ?? ''}… views answer “restoring” until it is done.` : 'Opening the job…';
  } else if (status.phase === 'failed') {
    banner.hidden = false;
    banner.setAttribute('data-kind', 'failed');
    banner.textContent = `The job failed: ${status.error ?? 'unknown error'}`;
  } else banner.hidden = true;
}

function renderSteps(status) {
  const body = $('#steps-table tbody');
  const rows = status.steps.map((s) => {
    const prev = state.status?.steps.find((p) => p.step === s.step);
    const moving = (field) => (prev && s[field] > prev[field] ? ' moving' : '');
    return el(
      'tr',
      { 'data-step': s.step },
      el('th', { scope: 'row', text: s.step }),
      el('td', { text: s.kind }),
      el('td', { class: 'num', text: String(s.instances) }),
      el('td', { class: 'num', text: s.kind === 'source' ? '—' : fmtRate(s.inRate) }),
      el('td', { class: 'num', text: fmtRate(s.outRate) }),
      el('td', { text: fmtTime(s.watermark) + (s.idle ? ' (idle)' : '') }),
      el('td', { class: 'num', text: fmtSpan(s.lagMs) }),
      el('td', { class: 'num', text: pct(s.backpressure) }),
      el('td', { class: `num${moving('lateRecords')}`, 'data-counter': 'late', 'data-step': s.step, text: fmtCount(s.lateRecords) }),
      el('td', { class: `num${moving('lateDropped')}`, 'data-counter': 'late-dropped', 'data-step': s.step, text: fmtCount(s.lateDropped) }),
      el('td', { class: `num${moving('deadLetters')}`, 'data-counter': 'dead-letters', 'data-step': s.step, text: fmtCount(s.deadLetters) }),
    );
  });
  body.replaceChildren(...rows);
}

function renderHolds(status) {
  const list = $('#holds-list');
  if (status.phase !== 'running') {
    list.replaceChildren(el('li', { class: 'none', text: `The job is ${status.phase}.` }));
    return;
  }
  if (status.holds.length === 0) {
    list.replaceChildren(el('li', { class: 'none', text: 'Nothing is waiting: no step has a window or timer due behind its watermark.' }));
    return;
  }
  // One line per step: its instance waiting longest.
  const worst = new Map();
  for (const h of status.holds) {
    const w = worst.get(h.step);
    if (!w || h.waitingFor > w.waitingFor) worst.set(h.step, h);
  }
  const items = [...worst.values()].map((h) => {
    const what = el('div', { class: 'what', text: `${h.step} #${h.instance} fires at ${fmtTime(h.nextEventTime)} — its watermark is ${fmtTime(h.watermark)}, ${fmtSpan(h.waitingFor)} to go` });
    let why;
    if (!h.channel) why = 'Every input is idle: nothing arrives to move the watermark.';
    else if (h.channel.watermark === -Infinity) why = `Input from ${h.channel.step} #${h.channel.instance} has no data yet.`;
    else why = `Input from ${h.channel.step} #${h.channel.instance} holds it back at ${fmtTime(h.channel.watermark)} (${fmtSpan(h.channel.behind)} behind).`;
    const o = h.origin;
    const at = o.split !== undefined ? `split ${o.split} of ${o.step} #${o.instance}` : `${o.step} #${o.instance}`;
    const state = o.state === 'behind' ? `at ${fmtTime(o.watermark)}` : o.state;
    const path = h.path.length > 1 ? ` (via ${h.path.slice(0, -1).map((p) => `${p.step} #${p.instance}`).join(' ← ')})` : '';
    const origin = el('div', { class: 'path' }, 'Origin: ', el('span', { class: 'origin', text: `${at}, ${state}` }), path);
    return el('li', { 'data-step': h.step, 'data-reason': h.reason }, what, el('div', { text: why }), origin);
  });
  list.replaceChildren(...items);
}

function renderDeadLetters(status) {
  const body = $('#dl-table tbody');
  $('#dl-empty').hidden = status.deadLetters.length > 0;
  body.replaceChildren(
    ...status.deadLetters.slice(0, 20).map((d) =>
      el(
        'tr',
        { 'data-step': d.step },
        el('td', { class: 'num', text: new Date(d.at).toLocaleTimeString() }),
        el('td', { text: d.step }),
        el('td', { class: 'error', text: d.error }),
        el('td', { class: 'record', text: d.record }),
        el('td', { text: fmtTime(d.time) }),
      ),
    ),
  );
}

function renderCheckpoints(status) {
  const t = status.checkpointTotals;
  const last = status.checkpoints.find((c) => c.status === 'completed');
  $('#cp-totals').textContent = `${fmtCount(t.completed)} completed, ${fmtCount(t.failed)} failed` + (last ? ` · last completed ${fmtSpan(status.at - last.triggeredAt)} ago` : '');
  const body = $('#cp-table tbody');
  body.replaceChildren(
    ...status.checkpoints.slice(0, 15).map((c) => {
      const total = c.phases.align + c.phases.write + c.phases.commit;
      return el(
        'tr',
        { class: c.status, 'data-id': c.id },
        el('td', { class: 'num', text: String(c.id) }),
        el('td', { text: c.kind + (c.durable ? '' : ' (memory)') }),
        el('td', { text: c.status, title: c.error ?? undefined }),
        el('td', { text: new Date(c.triggeredAt).toLocaleTimeString() }),
        el('td', { class: 'num', text: fmtSpan(c.phases.align) }),
        el('td', { class: 'num', text: fmtSpan(c.phases.write) }),
        el('td', { class: 'num', text: fmtSpan(c.phases.commit) }),
        el('td', { class: 'num', text: c.status === 'in-progress' ? '…' : fmtSpan(total) }),
        el('td', { class: 'num', text: fmtSpan(c.pauseMs) }),
        el('td', { class: 'num', text: fmtBytes(c.bytes) }),
      );
    }),
  );
}

function renderStatus(status) {
  renderHeader(status);
  updateGraph(status);
  updateThroughput(status);
  renderSteps(status);
  renderHolds(status);
  renderDeadLetters(status);
  renderCheckpoints(status);
  for (const v of status.views) {
    const panel = state.views.get(v.name);
    if (!panel) continue;
    panel.size.textContent = v.size === null ? 'restoring…' : `${fmtCount(v.size)} keys`;
    if (v.size !== null && !panel.loaded) loadView(panel);
  }
  state.status = status;
}

// ---- views

/** The numeric fields of a value: `(value)` for a number, else its number-valued properties. */
function numericFields(value) {
  if (typeof value === 'number') return ['(value)'];
  if (value === null || typeof value !== 'object') return [];
  return Object.keys(value).filter((k) => typeof value[k] === 'number');
}

const TIMEISH = /^(start|end|time|timestamp|ts|at|window.*|key|id|.*time|.*_at)$/i;
const COUNTISH = /^(n|count|.*_count|records)$/i;

function fieldValue(value, field) {
  if (field === '(value)') return typeof value === 'number' ? value : null;
  const v = value?.[field];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function keyLabel(key) {
  return typeof key === 'string' ? key : String(key);
}

function makeViewPanel(name) {
  const id = `view-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const select = el('select', { id: `${id}-field`, 'aria-label': `Field to chart for view ${name}` });
  const size = el('span', { class: 'hint', text: '' });
  const chartHost = el('div', { class: 'chart', id: `${id}-chart`, 'data-points': 0, 'data-view': name, role: 'img', 'aria-label': `Chart of view ${name}` });
  const latest = el('tbody');
  const keyInput = el('input', { id: `${id}-key`, type: 'text', placeholder: 'key', 'aria-label': `Key to look up in view ${name}` });
  const answer = el('pre', { 'aria-live': 'polite', hidden: true });
  const form = el('form', {}, el('label', { for: `${id}-key`, text: 'Look up a key:' }), keyInput, el('button', { type: 'submit', text: 'Get' }));
  const section = el(
    'section',
    { class: 'view', id, 'data-view': name, 'aria-label': `View ${name}` },
    el('h3', {}, `${name} `, size),
    el('div', {}, el('div', { class: 'controls' }, el('label', { for: `${id}-field`, text: 'Chart field:' }), select), chartHost),
    el(
      'div',
      {},
      el('table', { class: 'latest' }, el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Key' }), el('th', { scope: 'col', text: 'Latest value' }), el('th', { scope: 'col', text: 'Event time' }))), latest),
      form,
      answer,
    ),
  );
  const panel = { name, section, select, size, chartHost, latest, answer, field: null, fields: [], keys: [], points: new Map(), latestByKey: new Map(), chart: null, loaded: false, total: 0 };
  select.addEventListener('change', () => {
    panel.field = select.value;
    rebuildChart(panel);
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = keyInput.value;
    if (key === '') return;
    const { status, body } = await getJson(`/views/${encodeURIComponent(name)}/${encodeURIComponent(key)}`);
    answer.hidden = false;
    answer.textContent = status === 200 ? JSON.stringify(body.value, null, 2) : `${status}: ${body.error ?? body.status}`;
  });
  return panel;
}

async function loadView(panel) {
  panel.loaded = true;
  const { status, body } = await getJson(`/views/${encodeURIComponent(panel.name)}?limit=500`);
  if (status !== 200) {
    panel.loaded = false; // restoring: try again with the next status
    return;
  }
  addEntries(panel, body.entries);
  scheduleRender(panel, null);
}

function addEntries(panel, entries) {
  for (const e of entries) {
    if (panel.fields.length === 0) {
      const fields = numericFields(e.value);
      if (fields.length > 0) {
        panel.fields = fields;
        // A measure rather than a time, an id or a count, when there is one.
        panel.field = fields.find((f) => !TIMEISH.test(f) && !COUNTISH.test(f)) ?? fields.find((f) => !TIMEISH.test(f)) ?? fields[0];
        panel.select.replaceChildren(...fields.map((f) => el('option', { value: f, text: f, selected: f === panel.field })));
      }
    }
    const k = keyLabel(e.key);
    panel.latestByKey.set(k, e);
    let pts = panel.points.get(k);
    if (!pts) {
      pts = [];
      panel.points.set(k, pts);
      if (panel.keys.length < MAX_SERIES) {
        panel.keys.push(k);
        panel.chart?.destroy();
        panel.chart = null;
      }
    }
    pts.push(e);
    if (pts.length > MAX_POINTS) pts.shift();
    panel.total++;
  }
}

function rebuildChart(panel) {
  panel.chart?.destroy();
  panel.chart = null;
  drawViewChart(panel);
}

function drawViewChart(panel) {
  if (panel.field === null || panel.keys.length === 0) return;
  // x: the record's event time; one series per key (the first keys seen).
  const xsSet = new Set();
  for (const k of panel.keys) for (const e of panel.points.get(k)) xsSet.add(e.time);
  const xs = [...xsSet].filter(Number.isFinite).sort((a, b) => a - b).slice(-MAX_POINTS * 2);
  const epoch = xs.length > 0 && isEpoch(xs[0]);
  const index = new Map(xs.map((x, i) => [x, i]));
  const ys = panel.keys.map((k) => {
    const col = new Array(xs.length).fill(null);
    for (const e of panel.points.get(k)) {
      const i = index.get(e.time);
      if (i !== undefined) col[i] = fieldValue(e.value, panel.field);
    }
    return col;
  });
  const data = [epoch ? xs.map((x) => x / 1000) : xs, ...ys];
  if (panel.chart === null) {
    panel.chartHost.replaceChildren();
    const series = [{ label: epoch ? 'event time' : 'time' }, ...panel.keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true, points: { size: 4 } }))];
    // One distinct x (a view's first window): uPlot would widen the scale by a day and more
    // around it; show ±10 s (or ±1) instead.
    const xRange = (u, min, max) => {
      const x = u.data[0];
      if (x.length === 0 || x[0] !== x[x.length - 1]) return [min, max];
      const pad = epoch ? 10 : 1;
      return [x[0] - pad, x[0] + pad];
    };
    // The x scale's width (seconds for event time) once uPlot has set it, for tests and tools reading the page.
    const host = panel.chartHost;
    const setScale = (u, key) => {
      if (key === 'x' && u.scales.x.min != null && u.scales.x.max != null) host.setAttribute('data-x-span', String(u.scales.x.max - u.scales.x.min));
    };
    panel.chart = new uPlot({ width: chartWidth(host), height: 220, series, scales: { x: { time: epoch, range: xRange } }, axes: [{}, { size: 56 }], legend: { live: true }, hooks: { setScale: [setScale] } }, data, host);
  } else panel.chart.setData(data);
  panel.chartHost.setAttribute('data-points', String(panel.total));
}

function renderLatest(panel) {
  const rows = [...panel.latestByKey.values()].sort((a, b) => b.updatedAt - a.updatedAt).slice(0, 10);
  panel.latest.replaceChildren(
    ...rows.map((e) => el('tr', { 'data-key': keyLabel(e.key) }, el('th', { scope: 'row', text: keyLabel(e.key) }), el('td', { class: 'record clip', text: preview(e.value, 200), title: preview(e.value, 2000) }), el('td', { text: fmtTime(e.time) }))),
  );
}

/** Coalesces rendering to one animation frame; events go out once what they carry is drawn. */
function scheduleRender(panel, event) {
  state.dirty.add(panel);
  if (event) state.pendingEvents.push(event);
  if (state.frame) return;
  state.frame = requestAnimationFrame(() => {
    state.frame = 0;
    for (const p of state.dirty) {
      drawViewChart(p);
      renderLatest(p);
    }
    state.dirty.clear();
    const events = state.pendingEvents;
    state.pendingEvents = [];
    for (const detail of events) document.dispatchEvent(new CustomEvent('spate:view-update', { detail }));
  });
}

function onViewEvent(msg) {
  const panel = state.views.get(msg.view);
  if (!panel) return;
  const receivedAt = Date.now();
  addEntries(panel, msg.entries);
  scheduleRender(panel, { view: msg.view, entries: msg.entries, receivedAt });
}

// ---- query

function setupQuery() {
  $('#query').hidden = false;
  $('#query-link').hidden = false;
  $('#query-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const res = await fetch('/api/query', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sql: $('#query-sql').value }) });
    const body = parse(await res.text());
    const err = $('#query-error');
    const table = $('#query-table');
    if (res.status !== 200) {
      err.hidden = false;
      err.textContent = body.error;
      table.tHead.replaceChildren();
      table.tBodies[0].replaceChildren();
      return;
    }
    err.hidden = !body.truncated;
    err.textContent = body.truncated ? 'Only the first rows are shown.' : '';
    table.tHead.replaceChildren(el('tr', {}, ...body.columns.map((c) => el('th', { scope: 'col', text: c.name }))));
    table.tBodies[0].replaceChildren(...body.rows.map((r) => el('tr', {}, ...body.columns.map((c) => el('td', { text: preview(r[c.name], 200) })))));
  });
}

// ---- start

function connect() {
  const live = $('#live');
  const es = new EventSource('/api/events');
  es.addEventListener('open', () => {
    live.dataset.state = 'live';
    live.textContent = 'live';
  });
  es.addEventListener('error', () => {
    live.dataset.state = 'reconnecting';
    live.textContent = 'reconnecting…';
  });
  es.addEventListener('status', (ev) => renderStatus(parse(ev.data)));
  es.addEventListener('view', (ev) => onViewEvent(parse(ev.data)));
}

async function main() {
  const { body: info } = await getJson('/api/info');
  state.info = info;
  drawGraph(info.graph);
  setupThroughput(info.graph);
  const list = $('#views-list');
  $('#views-empty').hidden = info.views.length > 0;
  for (const name of info.views) {
    const panel = makeViewPanel(name);
    state.views.set(name, panel);
    list.append(panel.section);
  }
  if (info.queries) setupQuery();
  const { body: status } = await getJson('/api/status');
  renderStatus(status);
  connect();
  window.addEventListener('resize', () => {
    const t = state.throughput;
    if (t) t.chart.setSize({ width: chartWidth(t.host), height: 220 });
    for (const p of state.views.values()) p.chart?.setSize({ width: chartWidth(p.chartHost), height: 220 });
  });
}

main().catch((error) => {
  const banner = $('#banner');
  banner.hidden = false;
  banner.setAttribute('data-kind', 'failed');
  banner.textContent = `The dashboard could not start: ${error.message}`;
});
