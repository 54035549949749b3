// A small line chart in inline SVG: series of numbers sampled over time. It carries a text
// alternative (role=img with a label giving the latest values); the page also shows the
// figures in a table.

import { h, num } from './ui.js';

const W = 640;
const H = 180;
const PAD = { left: 52, right: 12, top: 10, bottom: 22 };

/** series: [{label, cls, values: [number]}] sampled every `step` seconds. */
export function lineChart(title, series, step) {
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const top = niceCeil(max);
  const x = (i) => PAD.left + (i * (W - PAD.left - PAD.right)) / (n - 1);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);
  const latest = series.map((s) => `${s.label} ${num(s.values.at(-1) ?? 0)}`).join(', ');
  const grid = [0, 0.5, 1].map((f) => [
    h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f), class: 'grid' }),
    h('svg:text', { x: PAD.left - 6, y: y(top * f) + 4, class: 'axis', 'text-anchor': 'end' }, num(top * f)),
  ]);
  const lines = series.map((s) => {
    const offset = n - s.values.length;
    const points = s.values.map((v, i) => `${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    return h('svg:polyline', { points, class: `line ${s.cls}`, fill: 'none' });
  });
  const span = Math.round(((n - 1) * step) / 60 * 10) / 10;
  const svg = h('svg:svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${title}, last ${span} minutes. Latest: ${latest}.`,
  },
  grid,
  h('svg:text', { x: PAD.left, y: H - 4, class: 'axis' }, `${span} min ago`),
  h('svg:text', { x: W - PAD.right, y: H - 4, class: 'axis', 'text-anchor': 'end' }, 'now'),
  lines);
  const legend = h('ul', { class: 'legend' }, series.map((s) => h('li', {}, h('span', { class: `swatch ${s.cls}`, 'aria-hidden': 'true' }), s.label)));
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, title), svg, legend);
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
