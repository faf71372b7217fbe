// Shared by the debugger and the playground: the hub's settings, tokens, the authorization
// cookie, EventSource connections with their state, and publishing.
//
// Pages are built with DOM methods and textContent, never innerHTML: event data, topics and
// tokens are untrusted text.

export const HUB_PATH = '/.well-known/mercure';

/** The hub endpoint on this page's origin (the only one the page's CSP lets it talk to). */
export const defaultHubUrl = () => `${location.origin}${HUB_PATH}`;

const DEFAULT_CONFIG = {
  version: '',
  hub_path: HUB_PATH,
  cookie_name: 'mercureAuthorization',
  anonymous: false,
  publishing: true,
  subscriptions: true,
  dev_mode: false,
  minter: false,
};

/** What this hub allows, from `config.json` (served next to the page). */
export async function loadConfig() {
  try {
    const response = await fetch('config.json', { cache: 'no-store', credentials: 'omit' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return { ...DEFAULT_CONFIG, ...(await response.json()) };
  } catch {
    return { ...DEFAULT_CONFIG };
  }
}

// --- DOM ----------------------------------------------------------------------------------------

export const $ = (id) => document.getElementById(id);

/**
 * `el('li', {class: 'x', text: 'hello'}, child, ...)`. Attributes set to `true` are set empty,
 * `false`/`null`/`undefined` are left out; `text` sets textContent.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Lines of a textarea or comma-separated input, trimmed, without empty ones. */
export const splitList = (text) =>
  text
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter(Boolean);

export function formatTime(date) {
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** Event data pretty-printed when it is JSON: `{text, json}`. */
export function prettyData(data) {
  const trimmed = data.trim();
  if (/^[{["]/.test(trimmed)) {
    try {
      return { text: JSON.stringify(JSON.parse(trimmed), null, 2), json: true };
    } catch {
      // Not JSON after all: shown as it came.
    }
  }
  return { text: data, json: false };
}

// --- tokens -------------------------------------------------------------------------------------

function base64UrlDecode(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, '='));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

/**
 * The header and claims of a JWT, NOT verified (only the hub can verify it): `{header, claims}`
 * or `{error}`.
 */
export function decodeToken(token) {
  const parts = token.trim().split('.');
  if (parts.length !== 3) return { error: 'not a JWT (expected three parts separated by dots)' };
  try {
    const header = JSON.parse(base64UrlDecode(parts[0]));
    const claims = JSON.parse(base64UrlDecode(parts[1]));
    return { header, claims };
  } catch (e) {
    return { error: `not a JWT (${e.message})` };
  }
}

/** The `mercure` claim of decoded claims, or its namespaced twin; `{}` when there is none. */
export const mercureClaim = (claims) =>
  (claims && typeof claims === 'object' && (claims.mercure || claims['https://mercure.rocks/'])) || {};

export function describeDuration(seconds) {
  const s = Math.abs(Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.round(s / 3600);
  if (hours < 24) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  const d = Math.floor(hours / 24);
  const h = hours % 24;
  return h ? `${d} d ${h} h` : `${d} d`;
}

/** A token's `exp` in words: `{state, text}`, state one of none, valid, soon, expired. */
export function describeExpiry(claims, now = Date.now() / 1000) {
  if (!claims || typeof claims.exp !== 'number') {
    return { state: 'none', text: 'never expires (no exp claim)' };
  }
  const at = new Date(claims.exp * 1000).toLocaleString();
  const left = claims.exp - now;
  if (left <= 0) return { state: 'expired', text: `expired ${describeDuration(left)} ago (${at})` };
  return { state: left < 300 ? 'soon' : 'valid', text: `expires in ${describeDuration(left)} (${at})` };
}

/**
 * Asks the hub for a token signed with its own key (served in dev mode only):
 * `{publish, subscribe, payload, ttl_seconds}` in, `{token, claims, expires_at}` out.
 */
export async function mintToken(request) {
  const response = await fetch('token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
    credentials: 'omit',
  });
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText}: ${(await response.text()).trim()}`);
  }
  return response.json();
}

// --- the authorization cookie -------------------------------------------------------------------

export function setTokenCookie(name, token, path = HUB_PATH) {
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `${name}=${token}; Path=${path}; SameSite=Strict${secure}`;
}

export function clearTokenCookie(name, path = HUB_PATH) {
  document.cookie = `${name}=; Path=${path}; Max-Age=0; SameSite=Strict`;
}

export function readCookie(name) {
  const pair = document.cookie
    .split(';')
    .map((p) => p.trim())
    .find((p) => p.startsWith(`${name}=`));
  return pair ? pair.slice(name.length + 1) : null;
}

// --- subscribing --------------------------------------------------------------------------------

/** The subscribe URL: `topic` for each selector, `lastEventID`, `authorization` if given. */
export function subscribeUrl(hub, topics, { token, lastEventId } = {}) {
  const url = new URL(hub, location.href);
  for (const topic of topics) url.searchParams.append('topic', topic);
  if (lastEventId) url.searchParams.set('lastEventID', lastEventId);
  if (token) url.searchParams.set('authorization', token);
  return url.href;
}

/**
 * One EventSource with what a person debugging it wants to see: its state (connecting, open,
 * reconnecting, failed, closed), how many times it reconnected, and, when the hub refused it,
 * the status and the hub's reason (EventSource hides them, so they are fetched again).
 */
export class Stream {
  constructor(url, { types = [], onEvent = () => {}, onChange = () => {} } = {}) {
    this.url = url;
    this.onEvent = onEvent;
    this.onChange = onChange;
    this.state = 'connecting';
    this.reason = '';
    this.opens = 0;
    this.types = new Set();
    this.source = new EventSource(url);
    this.source.onopen = () => {
      this.opens += 1;
      this.set('open');
    };
    this.source.onerror = () => {
      if (this.state === 'closed') return;
      if (this.source.readyState === EventSource.CLOSED) {
        this.set('failed', 'the hub refused the connection');
        this.diagnose();
      } else {
        this.set(this.opens ? 'reconnecting' : 'connecting');
      }
    };
    this.listen('message');
    for (const type of types) this.listen(type);
  }

  /** Times the connection was opened again after the first. */
  get reconnections() {
    return Math.max(0, this.opens - 1);
  }

  /** Also report events of this SSE type (EventSource has no "every type" listener). */
  listen(type) {
    if (!type || this.types.has(type)) return;
    this.types.add(type);
    this.source.addEventListener(type, (e) =>
      this.onEvent({ id: e.lastEventId, type: e.type, data: e.data, time: new Date() }),
    );
  }

  set(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.onChange(this);
  }

  close() {
    if (this.state === 'closed') return;
    this.source.close();
    this.set('closed');
  }

  /** Why the hub refused: the same request again, with fetch, which sees status and body. */
  async diagnose() {
    const controller = new AbortController();
    try {
      const response = await fetch(this.url, { signal: controller.signal, cache: 'no-store' });
      if (this.state !== 'failed') return controller.abort();
      if (response.ok) {
        controller.abort();
        this.set('failed', 'the stream broke (the hub accepts the request again now)');
        return;
      }
      const text = (await response.text()).trim();
      this.set('failed', `${response.status} ${response.statusText}${text ? `: ${text}` : ''}`);
    } catch (e) {
      if (!controller.signal.aborted && this.state === 'failed') {
        this.set('failed', `the hub cannot be reached (${e.message})`);
      }
    }
  }
}

export const STATE_LABELS = {
  idle: 'Disconnected',
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  failed: 'Failed',
  closed: 'Disconnected',
};

// --- publishing ---------------------------------------------------------------------------------

/**
 * POSTs an update as a form, with `Authorization: Bearer` when a token is given (never the
 * cookie: credentials are omitted). Resolves with `{ok: true, id}` or
 * `{ok: false, status, statusText, reason}`.
 */
export async function publishUpdate(hub, token, { topics, data, isPrivate, id, type, retry }) {
  const body = new URLSearchParams();
  for (const topic of topics) body.append('topic', topic);
  body.append('data', data ?? '');
  if (isPrivate) body.append('private', 'on');
  if (id) body.append('id', id);
  if (type) body.append('type', type);
  if (retry !== undefined && retry !== '') body.append('retry', String(retry));
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  try {
    const response = await fetch(hub, { method: 'POST', headers, body, credentials: 'omit' });
    const text = (await response.text()).trim();
    if (response.ok) return { ok: true, id: text };
    return { ok: false, status: response.status, statusText: response.statusText, reason: text };
  } catch (e) {
    return { ok: false, status: 0, statusText: '', reason: `the hub cannot be reached (${e.message})` };
  }
}

/** `403 Forbidden: reason`. */
export const describeFailure = ({ status, statusText, reason }) =>
  status ? `${status} ${statusText}${reason ? `: ${reason}` : ''}` : reason;
