// The management API over fetch: basic-auth credentials kept in sessionStorage (gone when
// the tab closes) and sent on every request, JSON in and out, errors as ApiError.

const KEY = 'warren.credentials';
let onLoggedOut = () => {};

function b64(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export const session = {
  token: () => sessionStorage.getItem(KEY),
  user: () => sessionStorage.getItem(`${KEY}.user`),
  save(user, password) {
    sessionStorage.setItem(KEY, b64(`${user}:${password}`));
    sessionStorage.setItem(`${KEY}.user`, user);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(`${KEY}.user`);
  },
  /** Called when the broker no longer accepts the saved credentials. */
  onLoggedOut(f) { onLoggedOut = f; },
};

export class ApiError extends Error {
  constructor(status, body, path) {
    const reason = body && (body.reason || body.error);
    super(`${status}${reason ? `: ${typeof reason === 'string' ? reason : JSON.stringify(reason)}` : ''} (${path})`);
    this.status = status;
    this.body = body;
    this.path = path;
  }

  /** The broker does not serve this endpoint (or the object is gone). */
  get missing() { return this.status === 404; }
}

/** Percent-encodes one path segment (vhost "/" becomes %2F). */
export const enc = (s) => encodeURIComponent(s);

/**
 * One request. `path` starts with "/" and is relative to the API root; the reply's JSON,
 * or null for an empty body. Credentials come from the session unless `token` is given.
 */
export async function request(method, path, body, { token, headers = {}, raw = false } = {}) {
  const auth = token || session.token();
  // credentials 'omit': the Authorization header below is ours; without it the browser
  // would answer a 401 (which carries WWW-Authenticate) with its own login dialog.
  // No Accept header: RabbitMQ answers 406 to a purge that asks for JSON.
  const init = { method, headers: { ...headers }, cache: 'no-store', credentials: 'omit' };
  if (auth) init.headers.Authorization = `Basic ${auth}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  // Relative to the page, so the UI also works behind a proxy under a path prefix.
  const reply = await fetch(`api${path}`, init);
  const text = await reply.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = raw ? text : { reason: text.slice(0, 200) }; }
  }
  if (!reply.ok) {
    // "Login failed" (not_authorized) means the credentials are bad: back to the login form.
    // not_authorised means a known user without the rights: stay and say so.
    if (reply.status === 401 && !token && !(parsed && parsed.error === 'not_authorised')) {
      session.clear();
      onLoggedOut('Your credentials were refused: please log in again.');
    }
    throw new ApiError(reply.status, parsed, path);
  }
  return raw ? text : parsed;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const put = (path, body) => request('PUT', path, body);
export const post = (path, body) => request('POST', path, body);
export const del = (path, headers) => request('DELETE', path, undefined, { headers });

/**
 * A listing with RabbitMQ's pagination parameters: {items, total, filtered, page, pages}.
 * A bare array (an API without pagination) is taken as one page.
 */
export async function list(path, { page = 1, pageSize = 100, name = '', regex = false } = {}) {
  const q = new URLSearchParams({ page: String(page), page_size: String(pageSize) });
  if (name) {
    q.set('name', name);
    q.set('use_regex', String(regex));
  }
  const reply = await get(`${path}?${q}`);
  if (Array.isArray(reply)) {
    return { items: reply, total: reply.length, filtered: reply.length, page: 1, pages: 1 };
  }
  return {
    items: reply.items || [],
    total: reply.total_count ?? 0,
    filtered: reply.filtered_count ?? 0,
    page: reply.page ?? page,
    pages: reply.page_count ?? 1,
  };
}

/** Text for a failed load: a 404 on a listing means this broker does not serve it. */
export function explain(error, what) {
  if (error instanceof ApiError && error.missing) {
    return `${what} is not available: the broker answered 404 Not Found for ${error.path}.`;
  }
  if (error instanceof ApiError && error.status === 401) {
    return `${what}: not authorised (${error.message}).`;
  }
  return `${what} could not be loaded: ${error.message || error}`;
}
