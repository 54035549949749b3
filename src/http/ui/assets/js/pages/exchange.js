// One exchange: details, bindings from and to it, publish, delete.

import { del, enc, get } from '../api.js';
import { heading, load } from '../page.js';
import { details, form, h, json, notify, rate, section, yesNo } from '../ui.js';
import { bindForm, bindingsTable } from './bindings.js';
import { publishForm } from './messages.js';
import { exchangeName } from './exchanges.js';

export default {
  title: ([vhost, name]) => `Exchange ${name} (${vhost})`,
  async render(main, [vhost, name]) {
    // The default exchange is addressed as amq.default; its real name is "".
    const real = name === 'amq.default' ? '' : name;
    const base = `/exchanges/${enc(vhost)}/${enc(name)}`;
    const info = h('div', {});
    const source = h('div', {});
    const destination = h('div', {});
    async function refreshInfo() {
      await load(info, `Exchange ${exchangeName(real)}`, async () => {
        const x = await get(base);
        const s = x.message_stats || {};
        return details([
          ['Virtual host', x.vhost], ['Type', x.type], ['Durable', yesNo(x.durable)],
          ['Auto-delete', yesNo(x.auto_delete)], ['Internal', yesNo(x.internal)],
          ['Arguments', json(x.arguments)], ['Policy', x.policy || '–'],
          ['Message rate in', rate(s, 'publish_in')], ['Message rate out', rate(s, 'publish_out')],
        ]);
      });
    }
    async function refreshBindings() {
      await Promise.all([
        load(source, 'Bindings from this exchange', async () => bindingsTable('Bindings from this exchange', await get(`${base}/bindings/source`), refreshBindings)),
        load(destination, 'Bindings to this exchange', async () => bindingsTable('Bindings to this exchange', await get(`${base}/bindings/destination`), refreshBindings)),
      ]);
    }
    const parts = [
      heading(`Exchange ${exchangeName(real)}`),
      h('p', { class: 'crumbs' }, h('a', { href: '#/exchanges' }, 'All exchanges'), ` · virtual host ${vhost}`),
      section('Details', info),
      section('Bindings', h('h3', {}, 'From this exchange'), source, h('h3', {}, 'To this exchange'), destination,
        real === '' ? h('p', {}, 'The default exchange binds every queue by its name; it takes no other bindings.') : bindForm({ vhost, exchange: real }, refreshBindings)),
      section('Publish message', publishForm(vhost, real)),
    ];
    if (real !== '' && !real.startsWith('amq.')) {
      parts.push(section('Delete', form('Delete this exchange', [
        { name: 'if_unused', label: 'Only if it has no bindings', type: 'checkbox' },
      ], 'Delete exchange', async (v) => {
        if (!window.confirm(`Delete exchange ${real}?`)) return;
        await del(`${base}${v.if_unused ? '?if-unused=true' : ''}`);
        notify(`Exchange ${real} deleted.`);
        location.hash = '#/exchanges';
      })));
    }
    main.append(...parts);
    await Promise.all([refreshInfo(), refreshBindings()]);
  },
};
