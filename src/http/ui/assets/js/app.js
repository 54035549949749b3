// The application: login, navigation and the hash router (#/queues, #/queues/<vhost>/<name>).

import { ApiError, get, session } from './api.js';
import { alertError, clearMessages, form, h, notify } from './ui.js';
import { heading } from './page.js';
import overview from './pages/overview.js';
import queues from './pages/queues.js';
import queue from './pages/queue.js';
import exchanges from './pages/exchanges.js';
import exchange from './pages/exchange.js';
import { connections, channels } from './pages/connections.js';
import { users, vhosts, permissions } from './pages/access.js';
import policies from './pages/policies.js';
import definitions from './pages/definitions.js';

// [first path segment, page for the list, page for one object (vhost, name)]
const ROUTES = {
  '': [overview],
  queues: [queues, queue],
  exchanges: [exchanges, exchange],
  connections: [connections],
  channels: [channels],
  users: [users],
  vhosts: [vhosts],
  permissions: [permissions],
  policies: [policies],
  definitions: [definitions],
};

const main = document.getElementById('main');
let cleanup = null;

function parseHash() {
  const path = location.hash.replace(/^#\/?/, '');
  const parts = path ? path.split('/').map((p) => decodeURIComponent(p)) : [];
  return { section: parts[0] || '', args: parts.slice(1) };
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  clearMessages();
  if (!session.token()) { showLogin(); return; }
  const { section, args } = parseHash();
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const entry = ROUTES[section];
  const page = entry && (args.length >= 2 && entry[1] ? entry[1] : entry[0]);
  main.replaceChildren();
  if (!page) {
    main.append(heading('Page not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Go to the overview.')));
    document.title = 'Not found · Warren';
    focusHeading();
    return;
  }
  document.title = `${page.title(args)} · Warren`;
  const result = page.render(main, args);
  focusHeading();
  cleanup = (await result) || null;
  // Pages that load something before their heading: focus it once it is there.
  if (!main.contains(document.activeElement)) focusHeading();
}

function focusHeading() {
  const h1 = main.querySelector('h1');
  if (h1) h1.focus({ preventScroll: true });
}

function showChrome(loggedIn) {
  document.getElementById('nav').hidden = !loggedIn;
  document.getElementById('session').hidden = !loggedIn;
  document.getElementById('who').textContent = loggedIn ? session.user() : '';
}

function showLogin(message) {
  showChrome(false);
  document.title = 'Log in · Warren';
  const login = form('Log in to the management interface', [
    { name: 'username', label: 'Username', required: true, autocomplete: 'username' },
    { name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' },
  ], 'Log in', async ({ username, password }) => {
    const token = btoa(String.fromCharCode(...new TextEncoder().encode(`${username}:${password}`)));
    try {
      await get('/whoami', { token });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        const why = error.body && error.body.error === 'not_authorised'
          ? 'This user may not use the management interface.'
          : 'Login failed: wrong username or password.';
        throw new Error(why);
      }
      throw error;
    }
    session.save(username, password);
    notify(`Logged in as ${username}.`);
    await start();
  });
  login.id = 'login';
  main.replaceChildren(heading('Warren management'), login);
  if (message) alertError(message);
  const first = login.querySelector('input');
  if (first) first.focus();
}

async function start() {
  showChrome(true);
  try {
    const me = await get('/whoami');
    const tags = Array.isArray(me.tags) ? me.tags : String(me.tags || '').split(',').filter(Boolean);
    document.getElementById('who').textContent = `${me.name} (${tags.join(', ') || 'no tags'})`;
    // Pages the user's tags do not allow leave the navigation (their URLs still answer).
    for (const a of document.querySelectorAll('#nav a[data-needs]')) {
      a.parentElement.hidden = !a.dataset.needs.split(' ').some((t) => tags.includes(t));
    }
  } catch { /* the page itself reports problems */ }
  await route();
}

document.getElementById('logout').addEventListener('click', () => {
  session.clear();
  if (cleanup) { cleanup(); cleanup = null; }
  showLogin();
  notify('Logged out.');
});
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
session.onLoggedOut((message) => {
  if (cleanup) { cleanup(); cleanup = null; }
  showLogin(message);
});
window.addEventListener('hashchange', route);
if (session.token()) start(); else showLogin();
