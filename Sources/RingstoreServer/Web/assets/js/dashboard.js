// The cluster dashboard: the ring, every node's state, the ring servers, live
// throughput and latency, key lookup, and under `ringstore dev` the controls to
// stop nodes and kill the primary ring server.
import { RingApi, serverOrigins, pageLink, hostOf, h, clockTime } from './api.js';
import { icon, toneIcon } from './icons.js';
import { renderLineChart, formatNumber } from './charts.js';
import { renderRing, colourMap } from './ring.js';

const POLL_MS = 1000;
const RING_REFRESH_MS = 10000;

const $ = (id) => document.getElementById(id);
const els = {
  connection: $('connection'),
  feedback: $('feedback'),
  serving: $('stat-serving'),
  servingSub: $('stat-serving-sub'),
  primary: $('stat-primary'),
  term: $('stat-term'),
  epoch: $('stat-epoch'),
  partitions: $('stat-partitions'),
  nodesUp: $('stat-nodes'),
  nodesUpSub: $('stat-nodes-sub'),
  rps: $('stat-rps'),
  p99: $('stat-p99'),
  ring: $('ring'),
  ringCaption: $('ring-caption'),
  legend: $('ring-legend'),
  nodesBody: $('nodes-body'),
  nodesEmpty: $('nodes-empty'),
  nodesUpdated: $('nodes-updated'),
  devColumn: document.querySelector('th.dev-only'),
  chartRps: $('chart-rps'),
  chartP99: $('chart-p99'),
  locateForm: $('locate-form'),
  locateTable: $('locate-table'),
  locateKey: $('locate-key'),
  locateButton: $('locate-button'),
  locateResult: $('locate-result'),
  devCard: $('dev-card'),
  killPrimary: $('kill-primary'),
  devLog: $('dev-log'),
};

const api = new RingApi(serverOrigins(), { timeoutMs: 2500 });

const state = {
  dashboard: null,
  ring: null, // {partitions, epoch, owners}
  ringFetchedAt: 0,
  ringSignature: '',
  rows: new Map(), // node id -> row elements
  lastAnswer: null,
  lastPrimary: null,
  lastTerm: null,
  lastServer: null,
  located: null,
  pendingDev: new Set(),
};

// ---------------------------------------------------------------------------
// Feedback

let feedbackTimer = null;

function say(text, tone = 'info', { keep = tone === 'error' } = {}) {
  clearTimeout(feedbackTimer);
  const close = h('button', { type: 'button', class: 'btn btn-ghost btn-small message-close', 'aria-label': 'Dismiss message' }, icon('x'));
  close.addEventListener('click', () => els.feedback.replaceChildren());
  els.feedback.replaceChildren(
    h('div', { class: 'message', 'data-tone': tone }, toneIcon(tone), h('p', { class: 'message-text' }, text), close),
  );
  if (!keep) feedbackTimer = setTimeout(() => els.feedback.replaceChildren(), 12000);
}

/** A server's message ending with a full stop (node ids stay as they are: n2, not N2). */
function sentence(text) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return '';
  return /[.!?…]$/.test(trimmed) ? trimmed : `${trimmed}.`;
}

function logDev(text) {
  const now = new Date();
  els.devLog.prepend(h('li', {}, h('time', { datetime: now.toISOString() }, clockTime(now)), text));
  while (els.devLog.children.length > 8) els.devLog.lastElementChild.remove();
}

api.addEventListener('connection', (event) => {
  const { origin, reachable } = event.detail;
  if (!reachable) {
    els.connection.dataset.state = 'down';
    els.connection.textContent = 'No ring server answers';
    els.connection.title = `Tried ${api.origins.map(hostOf).join(' and ')}`;
  } else if (origin !== api.origins[0]) {
    els.connection.dataset.state = 'switched';
    els.connection.textContent = `Via ${hostOf(origin)}`;
    els.connection.title = `${hostOf(api.origins[0])} did not answer, so the dashboard switched to ${hostOf(origin)}`;
  } else {
    els.connection.dataset.state = 'ok';
    els.connection.textContent = `Connected to ${hostOf(origin)}`;
    els.connection.title = `Ring servers: ${api.origins.map(hostOf).join(', ')}`;
  }
});

// ---------------------------------------------------------------------------
// Nodes

/** up, down (unreachable), joining or leaving. */
export function nodeState(node) {
  if (node.reachable === false) return 'down';
  if (node.status === 'joining') return 'joining';
  if (node.status === 'leaving' || node.status === 'removing') return 'leaving';
  return 'up';
}

function colours() {
  const ids = [...(state.dashboard?.nodes || []).map((node) => node.id), ...(state.ring?.owners || [])];
  return colourMap(ids);
}

function buildNodeRow(id) {
  const action = h('button', { type: 'button', class: 'btn btn-small dev-node-button', dataset: { node: id } });
  action.addEventListener('click', () => nodeControl(id, action.dataset.action));
  const row = {
    tr: h('tr', { dataset: { node: id } }),
    swatch: h('span', { class: 'swatch', 'aria-hidden': 'true' }),
    state: h('span', { class: 'badge state' }),
    partitions: h('td', { class: 'num' }),
    keys: h('td', { class: 'num' }),
    hints: h('td', { class: 'num' }),
    rps: h('td', { class: 'num' }),
    http: h('span', { class: 'node-http mono' }),
    devCell: h('td', { class: 'dev-only' }, h('div', { class: 'row-actions' }, action)),
    action,
  };
  row.tr.append(
    h('th', { scope: 'row' }, h('span', { class: 'node-id' }, row.swatch, id), row.http),
    h('td', {}, row.state),
    row.partitions,
    row.keys,
    row.hints,
    row.rps,
    row.devCell,
  );
  return row;
}

function renderNodes(nodes, dev) {
  const palette = colours();
  const present = new Set();
  const sorted = [...nodes].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  let added = false;
  for (const node of sorted) {
    present.add(node.id);
    let row = state.rows.get(node.id);
    if (!row) {
      row = buildNodeRow(node.id);
      state.rows.set(node.id, row);
      added = true;
    }
    const nodeStatus = nodeState(node);
    row.tr.dataset.state = nodeStatus;
    row.swatch.style.background = palette.get(node.id) || '#888';
    row.state.dataset.state = nodeStatus;
    row.state.textContent = nodeStatus;
    row.state.title = `status ${node.status}, ${node.reachable === false ? 'not reachable' : 'reachable'}`;
    row.partitions.textContent = Number.isFinite(node.partitions) ? String(node.partitions) : '—';
    row.keys.textContent = Number.isFinite(node.keys) ? node.keys.toLocaleString('en') : '—';
    row.hints.textContent = Number.isFinite(node.hints) ? node.hints.toLocaleString('en') : '—';
    row.hints.classList.toggle('hints-nonzero', node.hints > 0);
    row.rps.textContent = formatNumber(node.requests_per_second);
    row.http.textContent = node.http || '';
    row.devCell.hidden = !dev;
    const action = nodeStatus === 'down' ? 'start' : 'stop';
    const pending = state.pendingDev.has(node.id);
    row.action.dataset.action = action;
    row.action.setAttribute('aria-disabled', String(pending)); // stays focusable while busy
    row.action.setAttribute('aria-busy', String(pending));
    row.action.replaceChildren(icon(action === 'start' ? 'play' : 'stop'), action === 'start' ? 'Start' : 'Stop');
    row.action.setAttribute('aria-label', `${action === 'start' ? 'Start' : 'Stop'} node ${node.id}`);
  }
  for (const [id, row] of state.rows) {
    if (!present.has(id)) {
      row.tr.remove();
      state.rows.delete(id);
    }
  }
  if (added) els.nodesBody.append(...sorted.map((node) => state.rows.get(node.id).tr));
  els.devColumn.hidden = !dev;
  els.nodesEmpty.hidden = nodes.length > 0;
  if (nodes.length === 0) els.nodesEmpty.textContent = 'No nodes in the cluster yet.';
}

// ---------------------------------------------------------------------------
// Ring

async function loadRing() {
  state.ringFetchedAt = Date.now();
  const result = await api.get('/v1/cluster/ring', { timeoutMs: 3000 });
  if (result.kind === 'http' && result.ok && result.data && Array.isArray(result.data.owners)) {
    state.ring = { partitions: result.data.partitions ?? result.data.owners.length, epoch: result.data.epoch, owners: result.data.owners };
    drawRing();
  }
}

function drawRing() {
  if (!state.ring) return;
  const nodes = state.dashboard?.nodes || [];
  const down = new Set(nodes.filter((node) => nodeState(node) === 'down').map((node) => node.id));
  const palette = colours();
  const signature = `${state.ring.epoch}|${state.ring.owners.join(',')}|${[...down].join(',')}|${state.located}|${[...palette].join(',')}`;
  if (signature === state.ringSignature) return;
  state.ringSignature = signature;
  renderRing(els.ring, state.ring, palette, { down, located: state.located });
  const counts = new Map();
  for (const owner of state.ring.owners) counts.set(owner, (counts.get(owner) || 0) + 1);
  const ids = [...palette.keys()].filter((id) => counts.has(id) || nodes.some((node) => node.id === id));
  els.legend.replaceChildren(...ids.map((id) => {
    const count = counts.get(id) || 0;
    return h('li', { dataset: { node: id, down: String(down.has(id)) } },
      h('span', { class: 'swatch', style: `background: ${palette.get(id)}`, 'aria-hidden': 'true' }),
      h('span', { class: 'node-name' }, id),
      h('span', { class: 'count' }, `${count} ${count === 1 ? 'partition' : 'partitions'}${down.has(id) ? ' · down' : ''}`));
  }));
  els.ringCaption.textContent = `${state.ring.owners.length} partitions, coloured by first replica`;
}

// ---------------------------------------------------------------------------
// Polling

function renderDashboard(data, origin) {
  state.dashboard = data;
  const nodes = Array.isArray(data.nodes) ? data.nodes : [];
  const up = nodes.filter((node) => nodeState(node) !== 'down').length;

  els.serving.textContent = data.ring_server || '—';
  els.servingSub.textContent = `${data.role || 'unknown role'} · ${hostOf(origin)}`;
  els.primary.textContent = data.primary || 'none';
  els.term.textContent = Number.isFinite(data.term) ? `term ${data.term}` : '';
  els.epoch.textContent = Number.isFinite(data.ring_epoch) ? String(data.ring_epoch) : '—';
  els.partitions.textContent = state.ring ? `${state.ring.owners.length} partitions` : '';
  els.nodesUp.textContent = `${up} / ${nodes.length}`;
  els.nodesUp.dataset.tone = up === nodes.length ? '' : up === 0 ? 'danger' : 'warn';
  const downIds = nodes.filter((node) => nodeState(node) === 'down').map((node) => node.id);
  els.nodesUpSub.textContent = downIds.length ? `down: ${downIds.join(', ')}` : 'all reachable';
  const throughput = data.throughput || {};
  els.rps.textContent = formatNumber(throughput.requests_per_second);
  els.p99.textContent = Number.isFinite(throughput.p99_ms) ? `${formatNumber(throughput.p99_ms)} ms` : '—';

  renderNodes(nodes, !!data.dev);
  els.devCard.hidden = !data.dev;

  const history = Array.isArray(data.history) ? data.history : [];
  renderLineChart(els.chartRps, history, { key: 'requests_per_second', unit: 'req/s', color: 'var(--accent)', label: 'Throughput' });
  renderLineChart(els.chartP99, history, { key: 'p99_ms', unit: 'ms', color: '#d9480f', label: 'p99 latency' });

  // Who is in charge, and changes of it.
  if (state.lastPrimary && data.primary && data.primary !== state.lastPrimary) {
    const text = `${data.primary} is now the primary ring server (term ${data.term}); it was ${state.lastPrimary}.`;
    say(text, 'info');
    logDev(text);
  }
  if (state.lastServer && data.ring_server && data.ring_server !== state.lastServer) {
    logDev(`The dashboard now reads from ${data.ring_server} (${hostOf(origin)}).`);
  }
  if (data.primary) state.lastPrimary = data.primary;
  state.lastTerm = data.term;
  state.lastServer = data.ring_server;

  if (!state.ring || (Number.isFinite(data.ring_epoch) && data.ring_epoch !== state.ring.epoch)
      || Date.now() - state.ringFetchedAt > RING_REFRESH_MS) {
    if (Date.now() - state.ringFetchedAt > 2000) loadRing();
  }
  drawRing();
}

async function poll() {
  const result = await api.get('/app/v1/dashboard', { timeoutMs: 2500 });
  if (result && result.kind === 'http' && result.ok && result.data) {
    state.lastAnswer = new Date();
    renderDashboard(result.data, result.origin);
    els.nodesUpdated.textContent = `updated ${clockTime(state.lastAnswer)}`;
  } else {
    els.nodesUpdated.textContent = state.lastAnswer
      ? `no answer since ${clockTime(state.lastAnswer)}`
      : 'no answer yet';
    if (!state.dashboard) els.nodesEmpty.textContent = 'No ring server answers yet; retrying every second…';
  }
}

async function pollForever() {
  for (;;) {
    const started = Date.now();
    try {
      await poll();
    } catch (error) {
      // A bad answer must not stop the refresh; the next poll tries again.
      els.nodesUpdated.textContent = `could not read the dashboard (${error && error.message ? error.message : error})`;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(200, POLL_MS - (Date.now() - started))));
  }
}

// ---------------------------------------------------------------------------
// Key lookup

function yesNo(value) {
  if (value === null || value === undefined) return '—';
  return value ? 'yes' : 'no';
}

async function locate(table, key) {
  if (els.locateButton.getAttribute('aria-busy') === 'true') return;
  els.locateButton.setAttribute('aria-disabled', 'true');
  els.locateButton.setAttribute('aria-busy', 'true');
  try {
    const path = `/app/v1/dashboard/locate/${encodeURIComponent(table)}/${encodeURIComponent(key)}`;
    const result = await api.get(path, { timeoutMs: 5000 });
    if (!(result.kind === 'http' && result.ok && result.data)) {
      const message = result.kind === 'http'
        ? (result.data && result.data.message) || `The ring server answered ${result.status}.`
        : 'No ring server answered.';
      els.locateResult.replaceChildren(h('p', { class: 'error-text', id: 'locate-error' }, `Could not look up “${key}” in ${table}: ${message}`));
      return;
    }
    const data = result.data;
    const palette = colours();
    state.located = Number.isInteger(data.partition) ? data.partition : null;
    drawRing();
    const preference = Array.isArray(data.preference_list) ? data.preference_list : [];
    const replicas = Array.isArray(data.replicas) ? data.replicas : [];
    const swatch = (node) => h('span', { class: 'swatch', style: `background: ${palette.get(node) || '#888'}`, 'aria-hidden': 'true' });
    const summary = h('div', { class: 'locate-summary' },
      h('span', {}, 'Key ', h('code', {}, data.key ?? key), ' in ', h('code', {}, data.table ?? table)),
      h('span', {}, 'Partition ', h('strong', { id: 'locate-partition' }, String(data.partition))),
      h('span', {}, 'Preference list ',
        h('ol', { class: 'pref-list', id: 'locate-preference' }, preference.map((node) => h('li', {}, swatch(node), node)))));
    const head = h('thead', {},
      h('tr', {}, ['Replica', 'Reachable', 'Found', 'Siblings', 'Deleted', 'Version'].map((name) => h('th', { scope: 'col' }, name))));
    const rows = replicas.map((replica) => h('tr', { dataset: { node: replica.node } },
      h('th', { scope: 'row' }, h('span', { class: 'node-id' }, swatch(replica.node), replica.node)),
      h('td', {}, h('span', { class: `badge ${replica.reachable ? 'badge-ok' : 'badge-danger'}` }, yesNo(replica.reachable))),
      h('td', {}, replica.reachable === false ? '—' : yesNo(replica.found)),
      h('td', { class: 'num' }, Number.isFinite(replica.siblings) ? String(replica.siblings) : '—'),
      h('td', {}, replica.reachable === false ? '—' : yesNo(replica.deleted)),
      h('td', { class: 'version' }, replica.version || '—')));
    els.locateResult.replaceChildren(
      summary,
      h('div', { class: 'table-wrap' }, h('table', { id: 'locate-replicas' }, head, h('tbody', {}, rows))),
    );
  } finally {
    els.locateButton.setAttribute('aria-disabled', 'false');
    els.locateButton.setAttribute('aria-busy', 'false');
  }
}

els.locateForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const table = els.locateTable.value.trim();
  const key = els.locateKey.value;
  if (!table || !key) {
    (table ? els.locateKey : els.locateTable).focus();
    els.locateResult.replaceChildren(h('p', { class: 'error-text' }, 'Enter a table and a key.'));
    return;
  }
  locate(table, key);
});

// ---------------------------------------------------------------------------
// Dev controls

async function devPost(path) {
  // Sent to one ring server only: a retry on the other could repeat a kill.
  return api.request('POST', path, { timeoutMs: 5000, failover: false });
}

async function nodeControl(id, action) {
  if (state.pendingDev.has(id)) return;
  state.pendingDev.add(id);
  if (state.dashboard) renderNodes(state.dashboard.nodes || [], !!state.dashboard.dev);
  try {
    const result = await devPost(`/app/v1/dev/nodes/${encodeURIComponent(id)}/${action}`);
    if (result.kind === 'http' && result.ok) {
      const text = sentence(result.data && result.data.message) || `${action === 'stop' ? 'Stopping' : 'Starting'} ${id}.`;
      say(`${text} Watch its row: ${action === 'stop' ? 'it shows down within a couple of seconds' : 'it comes back up once it answers heartbeats'}.`, 'success');
      logDev(text);
    } else {
      const reason = result.kind === 'http' ? (result.data && result.data.message) || `answer ${result.status}` : `no answer from ${hostOf(result.origin)}`;
      say(`Could not ${action} ${id}: ${reason}`, 'error');
      logDev(`${action} ${id} failed: ${reason}`);
    }
  } finally {
    state.pendingDev.delete(id);
    if (state.dashboard) renderNodes(state.dashboard.nodes || [], !!state.dashboard.dev);
  }
}

els.killPrimary.addEventListener('click', async () => {
  const primary = state.dashboard?.primary || 'the primary';
  if (els.killPrimary.getAttribute('aria-busy') === 'true') return;
  els.killPrimary.setAttribute('aria-disabled', 'true');
  els.killPrimary.setAttribute('aria-busy', 'true');
  try {
    const result = await devPost('/app/v1/dev/ring-servers/primary/kill');
    if (result.kind === 'http' && result.ok) {
      const text = sentence(result.data && result.data.message) || `Killing ${primary}.`;
      say(`${text} The other ring server takes over; this dashboard follows it.`, 'success');
      logDev(text);
    } else if (result.kind === 'network') {
      const text = `No answer from ${hostOf(result.origin)}: ${primary} may already be gone.`;
      say(text, 'warn');
      logDev(text);
    } else {
      const reason = (result.data && result.data.message) || `answer ${result.status}`;
      say(`Could not kill ${primary}: ${reason}`, 'error');
      logDev(`kill ${primary} failed: ${reason}`);
    }
  } finally {
    els.killPrimary.setAttribute('aria-disabled', 'false');
    els.killPrimary.setAttribute('aria-busy', 'false');
  }
});

for (const link of [$('app-link'), $('home-link')]) {
  if (link) link.href = pageLink(new URL(link.href).pathname);
}

pollForever();
