// Small SVG line charts for the dashboard (no library): the last 60 s of one series.
import { h, svg } from './api.js';

const WIDTH = 600;
const HEIGHT = 190;
const MARGIN = { left: 46, right: 14, top: 12, bottom: 26 };

/** The smallest of 1, 2, 2.5, 5 × 10^k that is at least `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

export function formatNumber(value, digits = 1) {
  if (!Number.isFinite(value)) return '—';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en');
  if (Math.abs(value) >= 100) return value.toFixed(0);
  return value.toFixed(digits).replace(/\.0+$/, '');
}

/**
 * Draws `points` ({t: seconds, [key]: number}) into `container`, replacing what was there.
 * The x axis runs from 60 s before the newest point to the newest point.
 */
export function renderLineChart(container, points, { key, unit, color, label, windowSeconds = 60 }) {
  const series = (points || [])
    .filter((point) => point && Number.isFinite(point.t) && Number.isFinite(point[key]))
    .sort((a, b) => a.t - b.t);
  const now = series.length ? series[series.length - 1].t : Date.now() / 1000;
  const start = now - windowSeconds;
  const visible = series.filter((point) => point.t >= start - 1);
  const peak = visible.reduce((max, point) => Math.max(max, point[key]), 0);
  const top = niceMax(peak * 1.1);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (t) => MARGIN.left + Math.max(0, Math.min(1, (t - start) / windowSeconds)) * plotWidth;
  const y = (v) => MARGIN.top + plotHeight - Math.max(0, Math.min(1, v / top)) * plotHeight;

  const parts = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (top * i) / 4;
    const py = y(value);
    parts.push(svg('line', { class: 'grid-line', x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: py, y2: py }));
    parts.push(svg('text', { class: 'axis-label', x: MARGIN.left - 6, y: py + 4, 'text-anchor': 'end' }, formatNumber(value)));
  }
  for (const ago of [60, 45, 30, 15, 0]) {
    if (ago > windowSeconds) continue;
    parts.push(svg('text', {
      class: 'axis-label', x: x(now - ago), y: HEIGHT - 6, 'text-anchor': ago === windowSeconds ? 'start' : ago === 0 ? 'end' : 'middle',
    }, ago === 0 ? 'now' : `−${ago} s`));
  }
  if (visible.length > 0) {
    const line = visible.map((point, i) => `${i ? 'L' : 'M'}${x(point.t).toFixed(1)},${y(point[key]).toFixed(1)}`).join(' ');
    const base = y(0).toFixed(1);
    const area = `${line} L${x(visible[visible.length - 1].t).toFixed(1)},${base} L${x(visible[0].t).toFixed(1)},${base} Z`;
    parts.push(svg('path', { class: 'area', d: area, style: `fill: ${color}` }));
    parts.push(svg('path', { class: 'line', d: line, style: `stroke: ${color}` }));
    const last = visible[visible.length - 1];
    parts.push(svg('circle', { cx: x(last.t), cy: y(last[key]), r: 3.5, style: `fill: ${color}` }));
  } else {
    parts.push(svg('text', { class: 'axis-label', x: WIDTH / 2, y: HEIGHT / 2, 'text-anchor': 'middle' }, 'No data yet'));
  }

  const current = visible.length ? visible[visible.length - 1][key] : NaN;
  const summary = visible.length
    ? `${label} over the last ${windowSeconds} seconds: now ${formatNumber(current)} ${unit}, peak ${formatNumber(peak)} ${unit}.`
    : `${label}: no data yet.`;
  container.replaceChildren(
    h('div', { class: 'chart-now' }, h('strong', {}, formatNumber(current)), h('span', { class: 'muted' }, unit),
      h('span', { class: 'muted small' }, visible.length ? `· peak ${formatNumber(peak)}` : '')),
    svg('svg', { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': summary }, parts),
  );
}
