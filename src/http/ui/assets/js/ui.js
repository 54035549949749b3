// DOM helpers shared by every page: element building (never innerHTML with data),
// tables, forms, notices for screen readers, number formatting.

let nextId = 0;

/** Builds an element: h('a', {href: '#/x', class: 'c', onclick: f}, 'text', child...). */
export function h(tag, attrs, ...children) {
  const svg = tag.startsWith('svg:');
  const node = svg
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      node.setAttribute('class', value);
    } else if (key === 'value' && tag === 'textarea') {
      node.textContent = value; // the default value, so form.reset() restores it
    } else if (key === 'checked' && !svg) {
      node.defaultChecked = true;
      node.checked = true;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** A fresh id for label/input pairs. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A polite notice (role=status): announced without moving focus. */
export function notify(text) {
  const region = document.getElementById('notice');
  document.getElementById('alert').textContent = '';
  region.textContent = '';
  // A fresh text node after clearing, so the same message twice is announced twice.
  setTimeout(() => { region.textContent = text; }, 30);
}

/** An error (role=alert): announced at once. */
export function alertError(text) {
  document.getElementById('notice').textContent = '';
  document.getElementById('alert').textContent = text;
}

export function clearMessages() {
  document.getElementById('notice').textContent = '';
  document.getElementById('alert').textContent = '';
}

/** A section with a heading: the page's unit of content. */
export function section(title, ...children) {
  const id = uid('sec');
  // A form titled like its section shows one heading: its legend is for screen readers.
  for (const child of children) {
    const legend = child instanceof Element && child.querySelector(':scope > fieldset > legend');
    if (legend && legend.textContent === title) legend.classList.add('visually-hidden');
  }
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

/**
 * A table: columns are {label, cell: row => Node|string, num?: bool, key?: bool}. The key
 * column is a row header (th scope=row). `empty` is shown when there are no rows.
 */
export function table(caption, columns, rows, empty = 'Nothing to show.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((row) => h('tr', {}, columns.map((c) => {
    const value = c.cell(row);
    const cls = c.num ? 'num' : null;
    return c.key ? h('th', { scope: 'row', class: cls }, value) : h('td', { class: cls }, value);
  })));
  return h('div', { class: 'table-wrap' },
    h('table', {}, h('caption', {}, caption), h('thead', {}, head), h('tbody', {}, body)));
}

/** A definition list from [label, value] pairs. */
export function details(pairs) {
  return h('dl', { class: 'details' }, pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/**
 * A labelled form. fields: {name, label, type: text|password|number|select|textarea|checkbox|file,
 * options: [[value, text]], value, required, hint}. onSubmit(values, form) may throw; the
 * error is shown and announced, the form stays filled in.
 */
export function form(title, fields, submitLabel, onSubmit) {
  const inputs = {};
  const rows = fields.map((f) => {
    const id = uid(`f-${f.name}`);
    const hintId = f.hint ? `${id}-hint` : null;
    const common = { id, name: f.name, required: f.required, 'aria-describedby': hintId };
    let input;
    if (f.type === 'select') {
      input = h('select', common, f.options.map(([v, t]) => h('option', { value: v, selected: v === f.value }, t)));
    } else if (f.type === 'textarea') {
      input = h('textarea', { ...common, rows: f.rows || 3, value: f.value });
    } else if (f.type === 'checkbox') {
      input = h('input', { ...common, type: 'checkbox', checked: f.value });
    } else {
      input = h('input', { ...common, type: f.type || 'text', value: f.value, autocomplete: f.autocomplete || 'off', min: f.min, accept: f.accept });
    }
    inputs[f.name] = input;
    const label = h('label', { for: id }, f.label);
    const hint = f.hint ? h('span', { id: hintId, class: 'hint' }, f.hint) : null;
    return h('div', { class: f.type === 'checkbox' ? 'field check' : 'field' },
      f.type === 'checkbox' ? [input, label] : [label, input], hint);
  });
  const button = h('button', { type: 'submit' }, submitLabel);
  const node = h('form', { class: 'form', novalidate: false }, h('fieldset', {}, h('legend', {}, title), rows, h('div', { class: 'actions' }, button)));
  node.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = {};
    for (const [name, input] of Object.entries(inputs)) {
      if (input.type === 'checkbox') values[name] = input.checked;
      else if (input.type === 'file') values[name] = input.files[0] || null;
      else values[name] = input.value;
    }
    button.disabled = true;
    try {
      await onSubmit(values, node);
    } catch (error) {
      alertError(String(error.message || error));
    } finally {
      button.disabled = false;
    }
  });
  return node;
}

/** A button that asks first (window.confirm is keyboard and screen-reader friendly). */
export function actionButton(label, question, action, extra = {}) {
  return h('button', {
    type: 'button',
    ...extra,
    onclick: async (event) => {
      if (question && !window.confirm(question)) return;
      const target = event.currentTarget;
      target.disabled = true;
      try {
        await action();
      } catch (error) {
        alertError(String(error.message || error));
      } finally {
        target.disabled = false; // usually replaced by then; kept usable if not
      }
    },
  }, label);
}

/** Integers with thousands separators; absent values as an en dash. */
export function num(n) {
  if (n === undefined || n === null || n === '') return '–';
  if (typeof n !== 'number') return String(n);
  return Number.isInteger(n) ? n.toLocaleString('en') : n.toLocaleString('en', { maximumFractionDigits: 1 });
}

/** A `*_details.rate` as "1.2/s". */
export function rate(stats, key) {
  const r = stats && stats[`${key}_details`] && stats[`${key}_details`].rate;
  return typeof r === 'number' ? `${num(r)}/s` : '–';
}

export function bytes(n) {
  if (typeof n !== 'number') return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function yesNo(b) {
  return b ? 'yes' : 'no';
}

/** JSON values (arguments, headers) as compact text. */
export function json(v) {
  if (v === undefined || v === null) return '–';
  if (typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length) return '–';
  return JSON.stringify(v);
}

/** Parses a JSON object typed into a textarea (empty = {}). */
export function parseObject(text, what) {
  if (!text.trim()) return {};
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e.message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} must be a JSON object`);
  return v;
}

/** The link to an object's page: #/queues/<vhost>/<name>. */
export function link(kind, vhost, name, text) {
  return h('a', { href: `#/${kind}/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}` }, text ?? name);
}
