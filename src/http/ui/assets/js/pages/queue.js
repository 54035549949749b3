// One queue: details, consumers, bindings, publish, get, purge and delete.

import { del, enc, get } from '../api.js';
import { heading, load } from '../page.js';
import { actionButton, bytes, details, form, h, json, num, notify, rate, section, table, yesNo } from '../ui.js';
import { bindForm, bindingsTable } from './bindings.js';
import { getForm, publishForm } from './messages.js';

export default {
  title: ([vhost, name]) => `Queue ${name} (${vhost})`,
  async render(main, [vhost, name]) {
    const base = `/queues/${enc(vhost)}/${enc(name)}`;
    const info = h('div', {});
    const consumers = h('div', {});
    const bindings = h('div', {});
    async function refreshInfo() {
      await load(info, `Queue ${name}`, async () => {
        const q = await get(base);
        await load(consumers, 'Consumers', async () => table('Consumers', [
          { label: 'Consumer tag', key: true, cell: (c) => c.consumer_tag },
          { label: 'Channel', cell: (c) => (c.channel_details && c.channel_details.name) || '–' },
          { label: 'Ack required', cell: (c) => yesNo(c.ack_required) },
          { label: 'Exclusive', cell: (c) => yesNo(c.exclusive) },
          { label: 'Prefetch', num: true, cell: (c) => num(c.prefetch_count) },
          { label: 'Active', cell: (c) => yesNo(c.active) },
        ], q.consumer_details || [], 'No consumers.'));
        const s = q.message_stats || {};
        return details([
          ['Virtual host', q.vhost], ['Type', q.type || 'classic'], ['State', q.state || '–'],
          ['Durable', yesNo(q.durable)], ['Auto-delete', yesNo(q.auto_delete)], ['Exclusive', yesNo(q.exclusive)],
          ['Arguments', json(q.arguments)], ['Policy', q.policy || '–'],
          ['Effective policy definition', json(q.effective_policy_definition)],
          ['Messages ready', num(q.messages_ready)], ['Messages unacknowledged', num(q.messages_unacknowledged)],
          ['Messages total', num(q.messages)], ['Message bytes', bytes(q.message_bytes)],
          ['Consumers', num(q.consumers)], ['Memory', bytes(q.memory)],
          ['Publish rate', rate(s, 'publish')], ['Deliver / get rate', rate(s, 'deliver_get')], ['Ack rate', rate(s, 'ack')],
        ]);
      });
    }
    async function refreshBindings() {
      await load(bindings, 'Bindings', async () => bindingsTable('Bindings of this queue', await get(`${base}/bindings`), refreshBindings));
    }
    const refresh = async () => { await refreshInfo(); };
    const purge = actionButton('Purge messages', `Purge all ready messages from queue ${name}?`, async () => {
      await del(`${base}/contents`);
      notify(`Queue ${name} purged.`);
      await refresh();
    });
    const remove = form('Delete this queue', [
      { name: 'if_empty', label: 'Only if empty', type: 'checkbox' },
      { name: 'if_unused', label: 'Only if it has no consumers', type: 'checkbox' },
    ], 'Delete queue', async (v) => {
      if (!window.confirm(`Delete queue ${name}?`)) return;
      const q = new URLSearchParams();
      if (v.if_empty) q.set('if-empty', 'true');
      if (v.if_unused) q.set('if-unused', 'true');
      await del(`${base}${q.toString() ? `?${q}` : ''}`);
      notify(`Queue ${name} deleted.`);
      location.hash = '#/queues';
    });
    main.append(
      heading(`Queue ${name}`),
      h('p', { class: 'crumbs' }, h('a', { href: '#/queues' }, 'All queues'), ` · virtual host ${vhost}`),
      section('Details', info, h('p', {}, h('button', { type: 'button', onclick: refresh }, 'Refresh'))),
      section('Consumers', consumers),
      section('Bindings', bindings, bindForm({ vhost, queue: name }, refreshBindings)),
      section('Publish message', publishForm(vhost, '', name)),
      section('Get messages', getForm(vhost, name, refresh)),
      section('Purge', h('p', {}, purge)),
      section('Delete', remove),
    );
    await Promise.all([refreshInfo(), refreshBindings()]);
  },
};
