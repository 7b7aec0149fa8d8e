// The ring as an SVG circle of partitions, each coloured by the node that owns it.
import { svg } from './api.js';

const PALETTE = ['#1f5bd6', '#d9480f', '#2b8a3e', '#9c36b5', '#c2255c', '#0b7285', '#b08900', '#5c7cfa', '#e8590c', '#087f5b'];

/** A stable colour per node id, given every node id known. */
export function colourMap(ids) {
  const sorted = [...new Set(ids)].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const map = new Map();
  sorted.forEach((id, index) => {
    map.set(id, index < PALETTE.length ? PALETTE[index] : `hsl(${Math.round((index * 137.508) % 360)} 55% 45%)`);
  });
  return map;
}

function point(cx, cy, radius, angle) {
  return `${(cx + radius * Math.cos(angle)).toFixed(2)},${(cy + radius * Math.sin(angle)).toFixed(2)}`;
}

/**
 * Draws `owners` (owners[i] = first replica of partition i) as a ring.
 * `down` is a set of node ids to draw faded; `located` a partition to point at.
 */
export function renderRing(container, { owners, epoch }, colours, { down = new Set(), located = null } = {}) {
  const count = owners.length;
  const cx = 100;
  const cy = 100;
  const outer = 92;
  const inner = 64;
  const parts = [];
  owners.forEach((owner, index) => {
    const a0 = (index / count) * 2 * Math.PI - Math.PI / 2;
    const a1 = ((index + 1) / count) * 2 * Math.PI - Math.PI / 2;
    const large = a1 - a0 > Math.PI ? 1 : 0;
    const d = `M${point(cx, cy, outer, a0)} A${outer},${outer} 0 ${large} 1 ${point(cx, cy, outer, a1)} `
      + `L${point(cx, cy, inner, a1)} A${inner},${inner} 0 ${large} 0 ${point(cx, cy, inner, a0)} Z`;
    parts.push(svg('path', {
      d,
      class: `partition${index === located ? ' is-located' : ''}${count > 96 ? ' dense' : ''}`,
      fill: colours.get(owner) || '#888',
      'fill-opacity': down.has(owner) ? 0.3 : 1,
      'data-partition': index,
      'data-owner': owner,
    }, svg('title', {}, `Partition ${index}: ${owner}${down.has(owner) ? ' (down)' : ''}`)));
  });
  if (Number.isInteger(located) && located >= 0 && located < count) {
    const angle = ((located + 0.5) / count) * 2 * Math.PI - Math.PI / 2;
    const tip = point(cx, cy, outer + 1, angle);
    const left = point(cx, cy, outer + 8, angle - 0.06);
    const right = point(cx, cy, outer + 8, angle + 0.06);
    parts.push(svg('polygon', { class: 'ring-marker', points: `${tip} ${left} ${right}` }));
  }
  parts.push(svg('text', { class: 'ring-center-big', x: cx, y: cy + 2, 'text-anchor': 'middle' }, String(count)));
  parts.push(svg('text', { class: 'ring-center-small', x: cx, y: cy + 16, 'text-anchor': 'middle' }, `partitions · epoch ${epoch}`));
  const downOwners = owners.filter((owner) => down.has(owner)).length;
  const label = `Ring of ${count} partitions at epoch ${epoch}`
    + (downOwners ? `; ${downOwners} partitions have a first replica that is down` : '');
  container.replaceChildren(svg('svg', { viewBox: '-4 -4 208 208', role: 'img', 'aria-label': label }, parts));
}
