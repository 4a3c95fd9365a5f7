// The page of `flow serve`: the flows, a flow's DAG on a canvas (pan, zoom,
// hover), a run's timeline, live while it runs, and start and cancel for
// keys with the `run` scope. Everything it shows comes from the keyed routes,
// with the key given above, kept for this tab only (sessionStorage).
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem('flow-key') || '',
  scope: null,
  flow: null,
  graph: null,
  statuses: new Map(),
  run: null,
  record: null,
  stream: null,
  refresh: null,
  view: { x: 0, y: 0, k: 1 },
};
window.flowStats = { graphReadyMs: null, layoutFetchMs: null, frames: [] };

const CELL_W = 240, NODE_W = 200, CELL_H = 30, NODE_H = 22;
const PALETTE = ['#5b8def', '#e0884f', '#54b08a', '#a87bd6', '#d9697f', '#6fb8c8', '#b8a94f', '#8a8f99'];
const STATUS = {
  succeeded: '#2e9e5b', failed: '#d13b3b', running: '#2f7ed8', skipped: '#9aa0a6',
  cancelled: '#c98a1b', pending: '#c8ccd2', waiting: '#c8ccd2',
};

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  node.append(...children);
  return node;
}

function say(text, bad) {
  $('message').textContent = text;
  $('message').className = bad ? 'bad' : '';
}

function fail(error) {
  if (error.status === 401) {
    say('This key is not valid: give a key made with `flow keys create`.', true);
  } else {
    say(error.message, true);
  }
}

async function api(path, options) {
  const response = await fetch(path, {
    ...(options || {}),
    headers: { Authorization: 'Bearer ' + state.key, 'Content-Type': 'application/json' },
  });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

const canRun = () => state.scope === 'run' || state.scope === 'admin';
const path = (name) => encodeURIComponent(name);

async function connect() {
  try {
    const who = await api('/whoami');
    state.scope = who.scope;
    $('who').textContent = `key ${who.name} (${who.scope})`;
    document.body.dataset.scope = who.scope;
    say('');
    await loadFlows();
  } catch (error) {
    fail(error);
  }
}

async function loadFlows() {
  const flows = await api('/flows');
  $('flows').replaceChildren(...flows.map((flow) => {
    const item = el('li', {}, el('button', { type: 'button', onclick: () => openFlow(flow) }, flow.name));
    item.dataset.flow = flow.name;
    return item;
  }));
  // `/#NAME` opens that flow first.
  const wanted = decodeURIComponent(location.hash.slice(1));
  const first = flows.find((flow) => flow.name === wanted) || flows[0];
  if (first) await openFlow(first);
}

async function openFlow(flow) {
  state.flow = flow;
  for (const item of $('flows').children) item.classList.toggle('on', item.dataset.flow === flow.name);
  $('start-box').hidden = !canRun();
  $('group').replaceChildren(
    el('option', { value: '' }, 'every step'),
    ...flow.groups.map((group) => el('option', { value: group }, `group ${group}`)),
  );
  await Promise.all([loadGraph(flow.name), loadRuns()]);
}

async function loadRuns() {
  if (!state.flow) return;
  const runs = await api(`/flows/${path(state.flow.name)}/runs?limit=30`);
  $('runs').replaceChildren(...runs.map((run) => {
    const item = el('li', {}, el('button', { type: 'button', onclick: () => openRun(run.id) },
      `#${run.id} ${run.status} · ${run.started_at.replace('T', ' ').replace('Z', '')}`));
    item.dataset.run = run.id;
    item.dataset.status = run.status;
    return item;
  }));
}

// ---- the DAG ---------------------------------------------------------------

async function loadGraph(name) {
  const started = performance.now();
  const graph = await api(`/flows/${path(name)}/graph`);
  window.flowStats.layoutFetchMs = performance.now() - started;
  const cells = new Map();
  const into = graph.nodes.map(() => []);
  graph.nodes.forEach((node, i) => cells.set(node.column * (graph.rows + 1) + node.row, i));
  graph.edges.forEach((edge) => into[edge.to].push(edge));
  const groups = new Map(graph.groups.map((g, i) => [g, PALETTE[i % PALETTE.length]]));
  state.graph = { ...graph, cells, into, groups };
  fit();
  draw();
  window.flowStats.graphReadyMs = performance.now() - started;
  document.body.dataset.graph = 'ready';
  document.body.dataset.nodes = String(graph.nodes.length);
  $('graph-info').textContent =
    `${graph.nodes.length} steps, ${graph.edges.length} edges, ${graph.columns} waves. ` +
    'Drag to pan, wheel to zoom, hover a step for what it waits for.';
}

function fit() {
  const canvas = $('graph');
  const g = state.graph;
  const width = Math.max(1, g.columns * CELL_W), height = Math.max(1, g.rows * CELL_H);
  const k = Math.min(1.5, Math.max(0.002, Math.min(canvas.clientWidth / width, canvas.clientHeight / height)));
  // Centred: the middle of the canvas is the middle of the graph.
  state.view = {
    k,
    x: Math.max(10, (canvas.clientWidth - width * k) / 2),
    y: Math.max(10, (canvas.clientHeight - height * k) / 2),
  };
}

let drawing = false;
function requestDraw() {
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => { drawing = false; draw(); });
}

function nodeColor(node) {
  const status = state.statuses.get(node.id);
  if (status) return STATUS[status] || STATUS.pending;
  return state.graph.groups.get(node.group) || PALETTE[PALETTE.length - 1];
}

function draw() {
  const g = state.graph;
  if (!g) return;
  const started = performance.now();
  const canvas = $('graph');
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext('2d');
  const { x, y, k } = state.view;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.setTransform(ratio * k, 0, 0, ratio * k, ratio * x, ratio * y);
  // What is on screen, in the graph's own units.
  const left = -x / k, top = -y / k, right = left + w / k, bottom = top + h / k;
  const seen = (node) => {
    const nx = node.column * CELL_W, ny = node.row * CELL_H;
    return nx + NODE_W >= left && nx <= right && ny + NODE_H >= top && ny <= bottom;
  };
  ctx.beginPath();
  for (const edge of g.edges) {
    const a = g.nodes[edge.from], b = g.nodes[edge.to];
    const x1 = a.column * CELL_W + NODE_W, y1 = a.row * CELL_H + NODE_H / 2;
    const x2 = b.column * CELL_W, y2 = b.row * CELL_H + NODE_H / 2;
    if (Math.max(x1, x2) < left || Math.min(x1, x2) > right ||
        Math.max(y1, y2) < top || Math.min(y1, y2) > bottom) continue;
    ctx.moveTo(x1, y1);
    if (k > 0.4) {
      const mid = (x1 + x2) / 2;
      ctx.bezierCurveTo(mid, y1, mid, y2, x2, y2);
    } else {
      ctx.lineTo(x2, y2);
    }
  }
  ctx.strokeStyle = 'rgba(90, 100, 120, 0.45)';
  ctx.lineWidth = 1 / Math.max(k, 0.25);
  ctx.stroke();
  const byColor = new Map();
  const shown = [];
  for (const node of g.nodes) {
    if (!seen(node)) continue;
    const color = nodeColor(node);
    if (!byColor.has(color)) byColor.set(color, []);
    byColor.get(color).push(node);
    shown.push(node);
  }
  for (const [color, nodes] of byColor) {
    ctx.beginPath();
    for (const node of nodes) ctx.rect(node.column * CELL_W, node.row * CELL_H, NODE_W, NODE_H);
    ctx.fillStyle = color;
    ctx.fill();
  }
  if (k >= 0.55 && shown.length < 3000) {
    ctx.fillStyle = '#fff';
    ctx.font = '12px ui-monospace, monospace';
    ctx.textBaseline = 'middle';
    for (const node of shown) {
      const text = node.id.length > 28 ? node.id.slice(0, 27) + '…' : node.id;
      ctx.fillText(text, node.column * CELL_W + 5, node.row * CELL_H + NODE_H / 2, NODE_W - 8);
    }
  }
  window.flowStats.lastDrawn = shown.length;
  window.flowStats.view = { ...state.view };
  const frames = window.flowStats.frames;
  frames.push(performance.now() - started);
  if (frames.length > 500) frames.shift();
}

function nodeAt(clientX, clientY) {
  const g = state.graph;
  if (!g) return null;
  const box = $('graph').getBoundingClientRect();
  const wx = (clientX - box.left - state.view.x) / state.view.k;
  const wy = (clientY - box.top - state.view.y) / state.view.k;
  const column = Math.floor(wx / CELL_W), row = Math.floor(wy / CELL_H);
  if (wx - column * CELL_W > NODE_W || wy - row * CELL_H > NODE_H) return null;
  const i = g.cells.get(column * (g.rows + 1) + row);
  return i === undefined ? null : i;
}

function setUpCanvas() {
  const canvas = $('graph');
  let drag = null;
  canvas.addEventListener('mousedown', (e) => { drag = { x: e.clientX, y: e.clientY }; canvas.style.cursor = 'grabbing'; });
  window.addEventListener('mouseup', () => { drag = null; canvas.style.cursor = 'grab'; });
  canvas.addEventListener('mousemove', (e) => {
    if (drag) {
      state.view.x += e.clientX - drag.x;
      state.view.y += e.clientY - drag.y;
      drag = { x: e.clientX, y: e.clientY };
      $('tip').hidden = true;
      requestDraw();
      return;
    }
    const i = nodeAt(e.clientX, e.clientY);
    const tip = $('tip');
    if (i === null) { tip.hidden = true; return; }
    const node = state.graph.nodes[i];
    const waits = state.graph.into[i].map((edge) => `  ${state.graph.nodes[edge.from].id}: ${edge.reason}`);
    const status = state.statuses.get(node.id);
    tip.textContent = [
      node.id,
      `group ${node.group || '(none)'}, wave ${node.column + 1}${status ? ', ' + status : ''}`,
      ...(waits.length ? ['waits for:', ...waits] : ['waits for nothing']),
      ...(node.after_groups ? [`after groups: ${node.after_groups.join(', ')}`] : []),
    ].join('\n');
    const box = canvas.parentElement.getBoundingClientRect();
    tip.style.left = `${e.clientX - box.left + 12}px`;
    tip.style.top = `${e.clientY - box.top + 12}px`;
    tip.hidden = false;
  });
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const box = canvas.getBoundingClientRect();
    const mx = e.clientX - box.left, my = e.clientY - box.top;
    const factor = Math.exp(-e.deltaY * 0.0015);
    const k = Math.min(3, Math.max(0.002, state.view.k * factor));
    state.view.x = mx - (mx - state.view.x) * (k / state.view.k);
    state.view.y = my - (my - state.view.y) * (k / state.view.k);
    state.view.k = k;
    requestDraw();
  }, { passive: false });
  window.addEventListener('resize', requestDraw);
}

// ---- runs ------------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll('#tabs button')) {
    button.classList.toggle('on', button.dataset.tab === name);
  }
  $('graph-view').hidden = name !== 'graph';
  $('run-view').hidden = name !== 'run';
  if (name === 'graph') requestDraw();
}

async function startRun() {
  const group = $('group').value;
  try {
    const started = await api(`/flows/${path(state.flow.name)}/runs`, {
      method: 'POST',
      body: JSON.stringify(group ? { groups: [group] } : {}),
    });
    say(`run ${started.run} started`);
    await loadRuns();
    await openRun(started.run);
  } catch (error) {
    fail(error);
  }
}

async function cancelRun() {
  try {
    await api(`/runs/${state.run}/cancel`, { method: 'POST' });
    say(`cancelling run ${state.run}`);
  } catch (error) {
    fail(error);
  }
}

async function openRun(id) {
  stopWatching();
  state.run = id;
  showTab('run');
  for (const item of $('runs').children) item.classList.toggle('on', item.dataset.run === String(id));
  await refreshRun();
  if (state.record && state.record.run.status === 'running') {
    if (state.record.streamed) {
      watch(id);
    } else {
      // A run of another process (`flow run`, `flow schedule`): its record
      // is read every second until it ends.
      state.refresh = setInterval(refreshSoon, 1000);
    }
  }
}

function stopWatching() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  clearInterval(state.refresh);
  state.refresh = null;
}

async function refreshRun() {
  const id = state.run;
  try {
    const record = await api(`/runs/${id}`);
    if (id !== state.run) return;
    state.record = record;
    state.statuses = new Map(record.steps.map((s) => [s.step, s.status]));
    renderRun(record);
    requestDraw();
    // Over: nothing more to follow (a run of another process is polled).
    if (record.run.status !== 'running' && state.refresh) {
      stopWatching();
      loadRuns();
    }
  } catch (error) {
    fail(error);
  }
}

let soon = null;
function refreshSoon() {
  if (soon) return;
  soon = setTimeout(() => { soon = null; refreshRun(); }, 200);
}

// Server-Sent Events through fetch, which can send the key (EventSource
// cannot set a header); the record is also read every second meanwhile.
async function watch(id) {
  const controller = new AbortController();
  state.stream = controller;
  state.refresh = setInterval(refreshSoon, 1000);
  try {
    const response = await fetch(`/runs/${id}/events`, {
      headers: { Authorization: 'Bearer ' + state.key },
      signal: controller.signal,
    });
    if (!response.ok) return; // it ended meanwhile: the record says how

    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = chunk.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
        if (data) refreshSoon();
      }
    }
  } catch (error) {
    if (error.name !== 'AbortError') say(`the event stream broke: ${error.message}`, true);
  }
  if (state.stream === controller) {
    stopWatching();
    await refreshRun();
    await loadRuns();
  }
}

function size(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i += 1; }
  return `${i ? bytes.toFixed(1) : bytes} ${units[i]}`;
}

function renderRun(record) {
  const run = record.run;
  document.body.dataset.runStatus = run.status;
  $('run-head').textContent = `run #${run.id} · ${run.flow} · ${run.status} · ${run.selection || 'every step'}` +
    ` · started ${run.started_at.replace('T', ' ').replace('Z', ' UTC')}` +
    (run.seconds != null ? ` · ${run.seconds.toFixed(1)} s` : '');
  $('cancel').hidden = !(canRun() && run.status === 'running');
  const steps = record.steps;
  const end = Math.max(0.001, ...steps.map((s) => (s.offset || 0) + (s.elapsed || 0)));
  $('timeline').replaceChildren(...steps.map((step) => {
    const lane = el('div', { className: 'lane' });
    if (step.offset != null) {
      const moved = step.rows || step.bytes ? `${step.rows} rows · ${size(step.bytes)}` : '';
      const bar = el('div', {
        className: `bar status-${step.status}`,
        title: `${step.step}: ${step.status}, ${(step.elapsed || 0).toFixed(2)} s` +
          (moved ? `, ${moved}` : '') + (step.note ? `\n${step.note}` : ''),
      }, moved);
      bar.style.left = `${(100 * step.offset) / end}%`;
      bar.style.width = `${(100 * (step.elapsed || 0)) / end}%`;
      lane.append(bar);
    }
    const row = el('div', { className: 'row' }, el('div', { className: 'label', title: step.step }, step.step), lane);
    row.dataset.step = step.step;
    row.dataset.status = step.status;
    return row;
  }));
  $('diagnostics').replaceChildren(...steps.filter((s) => s.error).map((step) =>
    el('details', { open: true }, el('summary', {}, `${step.step} failed`),
      el('pre', { className: 'diagnostic' }, step.error))));
}

// ---- start -----------------------------------------------------------------

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  state.key = $('key').value.trim();
  sessionStorage.setItem('flow-key', state.key);
  connect();
});
$('start').addEventListener('click', startRun);
$('cancel').addEventListener('click', cancelRun);
for (const button of document.querySelectorAll('#tabs button')) {
  button.addEventListener('click', () => showTab(button.dataset.tab));
}
setUpCanvas();
if (state.key) {
  $('key').value = state.key;
  connect();
}
