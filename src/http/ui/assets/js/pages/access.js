// Users, virtual hosts and permissions: list, add, delete.

import { del, enc, get, put } from '../api.js';
import { heading, load, vhostNames } from '../page.js';
import { actionButton, form, h, notify, num, section, table } from '../ui.js';

function tagList(tags) {
  const list = Array.isArray(tags) ? tags : String(tags || '').split(',').filter(Boolean);
  return list.join(', ') || '–';
}

/** A page with one listing and one form; `build(refresh)` gives [table, form]. */
function simplePage(title, what, build) {
  return {
    title: () => title,
    async render(main) {
      const body = h('div', {});
      let addForm = null;
      async function refresh() {
        await load(body, what, async () => {
          const [node, made] = await build(refresh);
          if (!addForm) addForm = made;
          return node;
        });
      }
      await refresh();
      main.append(heading(title), section(`All ${what.toLowerCase()}`, body));
      if (addForm) main.append(section(addForm.querySelector('legend').textContent, addForm));
    },
  };
}

export const users = simplePage('Users', 'Users', async (refresh) => {
  const list = await get('/users');
  const node = table('Users', [
    { label: 'Name', key: true, cell: (u) => u.name },
    { label: 'Tags', cell: (u) => tagList(u.tags) },
    { label: 'Password', cell: (u) => (u.password_hash ? 'set' : 'none') },
    { label: 'Action', cell: (u) => actionButton('Delete', `Delete user ${u.name}?`, async () => {
      await del(`/users/${enc(u.name)}`);
      notify(`User ${u.name} deleted.`);
      await refresh();
    }, { 'aria-label': `Delete user ${u.name}` }) },
  ], list, 'No users.');
  const add = form('Add a user', [
    { name: 'name', label: 'Username', required: true },
    { name: 'password', label: 'Password', type: 'password', autocomplete: 'new-password', hint: 'Leave empty for a user who cannot log in with a password.' },
    { name: 'tags', label: 'Tags', hint: 'Comma-separated: administrator, monitoring, policymaker, management, impersonator.' },
  ], 'Add user', async (v, f) => {
    if (!v.name.trim()) throw new Error('A user needs a name.');
    const body = { tags: v.tags.split(',').map((t) => t.trim()).filter(Boolean).join(',') };
    if (v.password) body.password = v.password; else body.password_hash = '';
    await put(`/users/${enc(v.name.trim())}`, body);
    notify(`User ${v.name} saved.`);
    f.reset();
    await refresh();
  });
  return [node, add];
});

export const vhosts = simplePage('Virtual hosts', 'Virtual hosts', async (refresh) => {
  const list = await get('/vhosts');
  const node = table('Virtual hosts', [
    { label: 'Name', key: true, cell: (v) => v.name },
    { label: 'Description', cell: (v) => v.description || '–' },
    { label: 'Tags', cell: (v) => tagList(v.tags) },
    { label: 'Ready', num: true, cell: (v) => num(v.messages_ready) },
    { label: 'Unacked', num: true, cell: (v) => num(v.messages_unacknowledged) },
    { label: 'Total', num: true, cell: (v) => num(v.messages) },
    { label: 'Action', cell: (v) => actionButton('Delete', `Delete virtual host ${v.name} and everything in it?`, async () => {
      await del(`/vhosts/${enc(v.name)}`);
      notify(`Virtual host ${v.name} deleted.`);
      await refresh();
    }, { 'aria-label': `Delete virtual host ${v.name}` }) },
  ], list, 'No virtual hosts.');
  const add = form('Add a virtual host', [
    { name: 'name', label: 'Name', required: true },
    { name: 'description', label: 'Description' },
    { name: 'tags', label: 'Tags', hint: 'Comma-separated.' },
  ], 'Add virtual host', async (v, f) => {
    if (!v.name.trim()) throw new Error('A virtual host needs a name.');
    await put(`/vhosts/${enc(v.name.trim())}`, { description: v.description, tags: v.tags });
    notify(`Virtual host ${v.name} saved.`);
    f.reset();
    await refresh();
  });
  return [node, add];
});

export const permissions = simplePage('Permissions', 'Permissions', async (refresh) => {
  const [list, userList, vhostList] = await Promise.all([get('/permissions'), get('/users'), vhostNames()]);
  const node = table('Permissions', [
    { label: 'User', key: true, cell: (p) => p.user },
    { label: 'Virtual host', cell: (p) => p.vhost },
    { label: 'Configure', cell: (p) => h('code', {}, p.configure) },
    { label: 'Write', cell: (p) => h('code', {}, p.write) },
    { label: 'Read', cell: (p) => h('code', {}, p.read) },
    { label: 'Action', cell: (p) => actionButton('Clear', `Clear the permissions of ${p.user} in ${p.vhost}?`, async () => {
      await del(`/permissions/${enc(p.vhost)}/${enc(p.user)}`);
      notify(`Permissions of ${p.user} in ${p.vhost} cleared.`);
      await refresh();
    }, { 'aria-label': `Clear permissions of ${p.user} in ${p.vhost}` }) },
  ], list, 'No permissions.');
  const add = form('Set permissions', [
    { name: 'user', label: 'User', type: 'select', options: userList.map((u) => [u.name, u.name]) },
    { name: 'vhost', label: 'Virtual host', type: 'select', options: vhostList.map((v) => [v, v]) },
    { name: 'configure', label: 'Configure regexp', value: '.*' },
    { name: 'write', label: 'Write regexp', value: '.*' },
    { name: 'read', label: 'Read regexp', value: '.*' },
  ], 'Set permissions', async (v) => {
    await put(`/permissions/${enc(v.vhost)}/${enc(v.user)}`, { configure: v.configure, write: v.write, read: v.read });
    notify(`Permissions of ${v.user} in ${v.vhost} set.`);
    await refresh();
  });
  return [node, add];
});
