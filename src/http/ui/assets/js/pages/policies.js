// Policies: list, add (or replace), delete.

import { del, enc, get, put } from '../api.js';
import { heading, load, vhostNames } from '../page.js';
import { actionButton, form, h, notify, parseObject, section, table } from '../ui.js';

export default {
  title: () => 'Policies',
  async render(main) {
    const body = h('div', {});
    async function refresh() {
      await load(body, 'Policies', async () => table('Policies', [
        { label: 'Virtual host', cell: (p) => p.vhost },
        { label: 'Name', key: true, cell: (p) => p.name },
        { label: 'Pattern', cell: (p) => h('code', {}, p.pattern) },
        { label: 'Apply to', cell: (p) => p['apply-to'] },
        { label: 'Definition', cell: (p) => h('code', {}, JSON.stringify(p.definition)) },
        { label: 'Priority', num: true, cell: (p) => String(p.priority) },
        { label: 'Action', cell: (p) => actionButton('Delete', `Delete policy ${p.name}?`, async () => {
          await del(`/policies/${enc(p.vhost)}/${enc(p.name)}`);
          notify(`Policy ${p.name} deleted.`);
          await refresh();
        }, { 'aria-label': `Delete policy ${p.name}` }) },
      ], await get('/policies'), 'No policies.'));
    }
    const vhosts = await vhostNames();
    const add = form('Add or update a policy', [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: vhosts.map((v) => [v, v]) },
      { name: 'name', label: 'Name', required: true },
      { name: 'pattern', label: 'Pattern (regular expression)', required: true, hint: 'For example ^orders\\.' },
      { name: 'apply_to', label: 'Apply to', type: 'select', options: [['all', 'Exchanges and queues'], ['queues', 'Queues'], ['exchanges', 'Exchanges']] },
      { name: 'priority', label: 'Priority', type: 'number', value: '0' },
      { name: 'definition', label: 'Definition (JSON object)', type: 'textarea', required: true, hint: 'For example {"max-length": 1000, "message-ttl": 60000}' },
    ], 'Save policy', async (v, f) => {
      if (!v.name.trim()) throw new Error('A policy needs a name.');
      const definition = parseObject(v.definition, 'Definition');
      await put(`/policies/${enc(v.vhost)}/${enc(v.name.trim())}`, {
        pattern: v.pattern, 'apply-to': v.apply_to, priority: Number(v.priority) || 0, definition,
      });
      notify(`Policy ${v.name} saved.`);
      f.reset();
      await refresh();
    });
    main.append(heading('Policies'), section('All policies', body), section('Add or update a policy', add));
    await refresh();
  },
};
