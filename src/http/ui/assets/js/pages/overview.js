// Overview: totals, queued messages and message rates, polled from /api/overview every 5 s.

import { explain, get } from '../api.js';
import { lineChart } from '../chart.js';
import { heading } from '../page.js';
import { alertError, details, h, num, section, table } from '../ui.js';

const POLL = 5;
const KEEP = 60; // samples: five minutes
const RATES = [
  ['publish', 'Publish', 'c1'], ['deliver_get', 'Deliver / get', 'c2'], ['ack', 'Acknowledge', 'c3'],
  ['redeliver', 'Redelivered', 'c4'],
];
// The history outlives page changes, so coming back to the overview keeps the chart.
const history = { at: [], queued: { ready: [], unacked: [] }, rates: Object.fromEntries(RATES.map(([k]) => [k, []])), last: null };

function push(list, v) {
  list.push(v);
  if (list.length > KEEP) list.shift();
}

/** A rate from the reply, or from two counts when the reply has no rate. */
function rateOf(stats, key, now) {
  const d = stats[`${key}_details`];
  if (d && typeof d.rate === 'number') return d.rate;
  const prev = history.last;
  if (prev && typeof stats[key] === 'number' && typeof prev.stats[key] === 'number') {
    return Math.max(0, (stats[key] - prev.stats[key]) / ((now - prev.at) / 1000));
  }
  return 0;
}

function record(o) {
  const now = Date.now();
  const stats = o.message_stats || {};
  const q = o.queue_totals || {};
  push(history.at, now);
  push(history.queued.ready, q.messages_ready || 0);
  push(history.queued.unacked, q.messages_unacknowledged || 0);
  for (const [key] of RATES) push(history.rates[key], rateOf(stats, key, now));
  history.last = { at: now, stats };
}

function view(o) {
  const t = o.object_totals || {};
  const q = o.queue_totals || {};
  const totals = h('ul', { class: 'totals' }, [
    ['Connections', t.connections, '#/connections'], ['Channels', t.channels, '#/channels'],
    ['Exchanges', t.exchanges, '#/exchanges'], ['Queues', t.queues, '#/queues'], ['Consumers', t.consumers, null],
  ].map(([label, n, href]) => h('li', {}, h('span', { class: 'big' }, num(n)), ' ', href ? h('a', { href }, label) : label)));
  const queued = lineChart('Queued messages', [
    { label: 'Ready', cls: 'c1', values: history.queued.ready },
    { label: 'Unacknowledged', cls: 'c3', values: history.queued.unacked },
  ], POLL);
  const rates = lineChart('Message rates (per second)', RATES.map(([key, label, cls]) => ({ label, cls, values: history.rates[key] })), POLL);
  const figures = table('Latest figures', [
    { label: 'Measure', key: true, cell: (r) => r[0] }, { label: 'Value', num: true, cell: (r) => r[1] },
  ], [
    ['Messages ready', num(q.messages_ready)], ['Messages unacknowledged', num(q.messages_unacknowledged)],
    ['Messages total', num(q.messages)],
    ...RATES.map(([key, label]) => [`${label} rate`, `${num(history.rates[key].at(-1) ?? 0)}/s`]),
  ]);
  const node = details([
    ['Product', `${o.product_name || 'RabbitMQ'} ${o.product_version || ''}`],
    ['RabbitMQ version', o.rabbitmq_version || '–'], ['Node', o.node || '–'], ['Cluster', o.cluster_name || '–'],
  ]);
  const listeners = table('Listeners', [
    { label: 'Protocol', key: true, cell: (l) => l.protocol }, { label: 'Address', cell: (l) => l.ip_address },
    { label: 'Port', num: true, cell: (l) => String(l.port) },
  ], o.listeners || []);
  return [
    section('Totals', totals),
    section('Messages', h('div', { class: 'charts' }, queued, rates), figures),
    section('Node', node, listeners),
  ];
}

export default {
  title: () => 'Overview',
  async render(main) {
    const body = h('div', { id: 'overview' }, h('p', {}, 'Loading…'));
    main.append(heading('Overview'), h('p', { class: 'hint' }, `Refreshed every ${POLL} seconds.`), body);
    let stopped = false;
    let timer = null;
    async function tick() {
      try {
        const o = await get('/overview');
        if (stopped) return;
        record(o);
        // Keep keyboard focus on the same link across refreshes.
        const focused = body.contains(document.activeElement) && document.activeElement.getAttribute('href');
        body.replaceChildren(...view(o));
        if (focused) body.querySelector(`a[href="${focused}"]`)?.focus();
      } catch (error) {
        if (stopped) return;
        const text = explain(error, 'The overview');
        body.replaceChildren(h('p', { class: 'unavailable' }, text));
        alertError(text);
      }
      if (!stopped) timer = setTimeout(tick, POLL * 1000);
    }
    await tick();
    return () => { stopped = true; clearTimeout(timer); };
  },
};
