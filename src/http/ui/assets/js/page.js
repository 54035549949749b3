// What pages share: loading a part with a clear message when the API refuses or lacks it,
// and a paged, filterable listing.

import { explain, get, list } from './api.js';
import { alertError, h, table, uid } from './ui.js';

/** Fills `container` with fn()'s node, or with the reason it could not be loaded. */
export async function load(container, what, fn) {
  container.setAttribute('aria-busy', 'true');
  // A button inside (say Delete) goes away with the old content: keep keyboard focus here.
  const hadFocus = container.contains(document.activeElement);
  try {
    container.replaceChildren(await fn());
  } catch (error) {
    const text = explain(error, what);
    container.replaceChildren(h('p', { class: 'unavailable' }, text));
    alertError(text);
  } finally {
    container.removeAttribute('aria-busy');
    if (hadFocus && !container.contains(document.activeElement)) {
      container.setAttribute('tabindex', '-1');
      container.focus();
    }
  }
}

/** The page heading; the router moves focus to it so screen readers announce the page. */
export function heading(text) {
  return h('h1', { tabindex: '-1' }, text);
}

/**
 * A listing of `path` with a name filter, a virtual host choice (`path/<vhost>`) and pages.
 * columns as for ui.table. Returns {node, refresh}.
 */
export function listView({ what, path, columns, empty, pageSize = 100 }) {
  const state = { page: 1, name: '', vhost: '' };
  const vhostId = uid('vhost');
  const vhost = h('select', { id: vhostId, name: 'vhost' }, h('option', { value: '' }, 'All'));
  vhostNames().then((names) => vhost.append(...names.map((n) => h('option', { value: n }, n))));
  vhost.addEventListener('change', () => apply());
  const result = h('div', { class: 'listing' });
  const status = h('p', { class: 'count' });
  const filterId = uid('filter');
  const input = h('input', { id: filterId, type: 'search', name: 'filter', autocomplete: 'off' });
  const regexId = uid('regex');
  const regex = h('input', { id: regexId, type: 'checkbox', name: 'regex' });
  let timer = null;
  const filterForm = h('form', { class: 'filter', role: 'search', 'aria-label': `Filter ${what.toLowerCase()}` },
    h('label', { for: vhostId }, 'Virtual host'), vhost,
    h('label', { for: filterId }, 'Filter by name'), input,
    h('span', { class: 'check' }, regex, h('label', { for: regexId }, 'Regular expression')),
    h('button', { type: 'submit' }, 'Filter'));
  filterForm.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(apply, 400); });
  function apply() {
    state.name = input.value.trim();
    state.vhost = vhost.value;
    state.page = 1;
    refresh();
  }
  const prev = h('button', { type: 'button', onclick: () => { state.page -= 1; refresh(); } }, 'Previous page');
  const next = h('button', { type: 'button', onclick: () => { state.page += 1; refresh(); } }, 'Next page');
  const pager = h('nav', { class: 'pager', 'aria-label': `${what} pages`, hidden: true }, prev, next);
  async function refresh() {
    pager.hidden = true;
    status.textContent = '';
    await load(result, what, async () => {
      const where = state.vhost ? `${path}/${encodeURIComponent(state.vhost)}` : path;
      const r = await list(where, { page: state.page, pageSize, name: state.name, regex: regex.checked });
      status.textContent = `${r.filtered} of ${r.total} shown` + (r.pages > 1 ? `, page ${r.page} of ${r.pages}` : '') + '.';
      prev.disabled = r.page <= 1;
      next.disabled = r.page >= r.pages;
      pager.hidden = r.pages <= 1;
      return table(what, columns, r.items, empty);
    });
  }
  const node = h('div', {}, filterForm, status, result, pager);
  return { node, refresh };
}

/** The vhost names, for select boxes ([] when the list cannot be read). */
export async function vhostNames() {
  try {
    return (await get('/vhosts')).map((v) => v.name);
  } catch {
    return ['/'];
  }
}
