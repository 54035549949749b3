// Connections (with close) and channels.

import { del, enc } from '../api.js';
import { heading, listView } from '../page.js';
import { actionButton, bytes, h, notify, num, section } from '../ui.js';

function client(c) {
  const p = c.client_properties || {};
  return [p.product, p.version].filter(Boolean).join(' ') || '–';
}

function byteRate(c, key) {
  const d = c[`${key}_details`];
  return d && typeof d.rate === 'number' ? `${bytes(Math.round(d.rate))}/s` : '–';
}

function when(ms) {
  return typeof ms === 'number' ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '–';
}

export const connections = {
  title: () => 'Connections',
  async render(main) {
    let listing = null;
    const columns = [
      { label: 'Name', key: true, cell: (c) => [c.name, c.user_provided_name ? h('span', { class: 'hint' }, c.user_provided_name) : null] },
      { label: 'Virtual host', cell: (c) => c.vhost },
      { label: 'User', cell: (c) => c.user },
      { label: 'Protocol', cell: (c) => c.protocol || '–' },
      { label: 'Client', cell: client },
      { label: 'State', cell: (c) => c.state || '–' },
      { label: 'Channels', num: true, cell: (c) => num(c.channels) },
      { label: 'From client', num: true, cell: (c) => byteRate(c, 'recv_oct') },
      { label: 'To client', num: true, cell: (c) => byteRate(c, 'send_oct') },
      { label: 'Connected at', cell: (c) => when(c.connected_at) },
      { label: 'Action', cell: (c) => actionButton('Close', null, async () => {
        const reason = window.prompt(`Close connection ${c.name}? Reason sent to the client:`, 'Closed via management UI');
        if (reason === null) return;
        await del(`/connections/${enc(c.name)}`, { 'X-Reason': reason });
        notify(`Connection ${c.name} closed.`);
        await listing.refresh();
      }, { 'aria-label': `Close connection ${c.name}` }) },
    ];
    listing = listView({ what: 'Connections', path: '/connections', columns, empty: 'No connections.' });
    main.append(heading('Connections'), section('All connections', listing.node,
      h('p', {}, h('button', { type: 'button', onclick: () => listing.refresh() }, 'Refresh'))));
    await listing.refresh();
  },
};

export const channels = {
  title: () => 'Channels',
  async render(main) {
    const columns = [
      { label: 'Channel', key: true, cell: (c) => c.name },
      { label: 'Virtual host', cell: (c) => c.vhost },
      { label: 'User', cell: (c) => c.user || '–' },
      { label: 'Mode', cell: (c) => [c.confirm ? 'confirm' : '', c.transactional ? 'transactional' : ''].filter(Boolean).join(', ') || '–' },
      { label: 'State', cell: (c) => c.state || '–' },
      { label: 'Consumers', num: true, cell: (c) => num(c.consumer_count) },
      { label: 'Prefetch', num: true, cell: (c) => num(c.prefetch_count) },
      { label: 'Unacked', num: true, cell: (c) => num(c.messages_unacknowledged) },
      { label: 'Unconfirmed', num: true, cell: (c) => num(c.messages_unconfirmed) },
      { label: 'Global prefetch', cell: (c) => (c.global_prefetch_count ? num(c.global_prefetch_count) : '–') },
    ];
    const listing = listView({ what: 'Channels', path: '/channels', columns, empty: 'No channels.' });
    main.append(heading('Channels'), section('All channels', listing.node,
      h('p', {}, h('button', { type: 'button', onclick: () => listing.refresh() }, 'Refresh'))));
    await listing.refresh();
  },
};
