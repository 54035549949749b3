// Definitions: download (GET /api/definitions) and upload (POST /api/definitions).

import { enc, request } from '../api.js';
import { heading, vhostNames } from '../page.js';
import { form, h, notify, section } from '../ui.js';

function path(vhost) {
  return vhost ? `/definitions/${enc(vhost)}` : '/definitions';
}

export default {
  title: () => 'Definitions',
  async render(main) {
    const vhosts = await vhostNames();
    const scope = [['', 'All virtual hosts'], ...vhosts.map((v) => [v, v])];
    const saved = h('p', {});
    const download = form('Export definitions', [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: scope },
      { name: 'filename', label: 'File name', value: 'warren-definitions.json' },
    ], 'Download definitions', async (v) => {
      const text = await request('GET', path(v.vhost), undefined, { raw: true });
      const file = new Blob([text], { type: 'application/json' });
      const a = h('a', { href: URL.createObjectURL(file), download: v.filename || 'definitions.json' }, `Download ${v.filename} again`);
      a.click();
      saved.replaceChildren(`Definitions exported (${file.size.toLocaleString('en')} bytes). `, a);
      notify('Definitions downloaded.');
    });
    const upload = form('Import definitions', [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: scope },
      { name: 'file', label: 'Definitions file (JSON)', type: 'file', accept: 'application/json,.json', required: true },
    ], 'Upload definitions', async (v, f) => {
      if (!v.file) throw new Error('Choose a definitions file first.');
      const text = await v.file.text();
      try { JSON.parse(text); } catch (e) { throw new Error(`${v.file.name} is not valid JSON: ${e.message}`); }
      await request('POST', path(v.vhost), text);
      notify(`Definitions from ${v.file.name} imported.`);
      f.reset();
    });
    main.append(
      heading('Definitions'),
      h('p', {}, 'Users, virtual hosts, permissions, policies, queues, exchanges and bindings, as one JSON document in RabbitMQ\'s format.'),
      section('Export', download, saved),
      section('Import', h('p', {}, 'Objects in the file are added or updated; nothing is removed.'), upload),
    );
  },
};
