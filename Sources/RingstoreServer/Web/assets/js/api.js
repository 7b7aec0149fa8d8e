// A small JSON client for the ring servers' HTTP API that fails over between
// ring servers by itself: a request goes to the server that answered last, and
// on a network error, a timeout or a 502/503/504 it is tried on the other one.

const FAILOVER_STATUSES = new Set([502, 503, 504]);

/** "127.0.0.1:8081" or "http://host:port/" -> "http://host:port"; null if it is not an origin. */
export function normalizeOrigin(text) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return null;
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `http://${trimmed}`);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    return url.origin;
  } catch {
    return null;
  }
}

/**
 * The ring servers this page can talk to: its own origin first, then the ones listed
 * in `?servers=a,b`, and under `ringstore dev` (ports 8080 and 8081) the other one.
 */
export function serverOrigins(location = window.location) {
  const origins = [];
  const add = (origin) => {
    if (origin && !origins.includes(origin)) origins.push(origin);
  };
  const own = normalizeOrigin(location.origin);
  add(own);
  const listed = new URLSearchParams(location.search).get('servers');
  if (listed) {
    for (const part of listed.split(/[,\s]+/)) add(normalizeOrigin(part));
  }
  if (own) {
    const url = new URL(own);
    const partner = { 8080: 8081, 8081: 8080 }[url.port];
    if (partner) add(`${url.protocol}//${url.hostname}:${partner}`);
  }
  return origins;
}

/** A link to another page of the app that keeps the `?servers=` list. */
export function pageLink(path, location = window.location) {
  const listed = new URLSearchParams(location.search).get('servers');
  return listed ? `${path}?servers=${encodeURIComponent(listed)}` : path;
}

/** "host:port" of an origin, for display. */
export function hostOf(origin) {
  try {
    return new URL(origin).host;
  } catch {
    return String(origin);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff with jitter, at least the server's Retry-After. */
export function backoffDelay(attempt, retryAfterSeconds, { base = 500, cap = 8000 } = {}) {
  const exponential = Math.min(cap, base * 2 ** Math.max(0, attempt - 1));
  const jittered = exponential * (0.8 + Math.random() * 0.4);
  const floor = Number.isFinite(retryAfterSeconds) ? retryAfterSeconds * 1000 : 0;
  return Math.round(Math.max(jittered, floor));
}

/**
 * Result of a request:
 *   { kind: 'http', ok, status, data, retryAfter, origin }  -- the server answered
 *   { kind: 'network', error, origin }                      -- no server answered
 * `afterFailure` is true when another server failed first within the same call
 * (so a change sent there may already have been applied).
 */
export class RingApi extends EventTarget {
  constructor(origins, { timeoutMs = 8000 } = {}) {
    super();
    this.origins = origins.length ? origins : [window.location.origin];
    this.current = 0;
    this.timeoutMs = timeoutMs;
    this.reachable = null; // null until the first answer; then true/false
  }

  get origin() {
    return this.origins[this.current];
  }

  get(path, options) {
    return this.request('GET', path, options);
  }

  post(path, options) {
    return this.request('POST', path, options);
  }

  delete(path, options) {
    return this.request('DELETE', path, options);
  }

  /**
   * Sends the request to the current server, then to the others on failure.
   * A 503 whose outcome is "unknown" is returned at once: the change may have been
   * applied, so the caller must look before sending it again. With `failover: false`
   * only the current server is asked.
   */
  async request(method, path, { timeoutMs = this.timeoutMs, body, failover = true } = {}) {
    const order = this.origins.map((_, i) => (this.current + i) % this.origins.length).slice(0, failover ? undefined : 1);
    let last = null;
    let afterFailure = false;
    for (const index of order) {
      const origin = this.origins[index];
      const result = await this.#send(origin, method, path, timeoutMs, body);
      result.afterFailure = afterFailure;
      if (result.kind === 'http') {
        const unknownOutcome = result.status === 503 && result.data && result.data.outcome === 'unknown';
        if (!FAILOVER_STATUSES.has(result.status) || unknownOutcome) {
          this.#settle(index, true);
          return result;
        }
      }
      afterFailure = true;
      last = result;
    }
    this.#settle(this.current, last && last.kind === 'http');
    return last;
  }

  #settle(index, reachable) {
    const switched = index !== this.current;
    this.current = index;
    if (switched || reachable !== this.reachable) {
      this.reachable = reachable;
      this.dispatchEvent(new CustomEvent('connection', { detail: { origin: this.origin, reachable, switched } }));
    }
  }

  async #send(origin, method, path, timeoutMs, body) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const init = { method, signal: controller.signal, headers: { Accept: 'application/json' }, cache: 'no-store' };
      if (body !== undefined) {
        init.body = typeof body === 'string' ? body : JSON.stringify(body);
        init.headers['Content-Type'] = 'application/json';
      }
      const response = await fetch(origin + path, init);
      const text = await response.text();
      let data = null;
      if (text) {
        try {
          data = JSON.parse(text);
        } catch {
          data = { error: 'not_json', message: text.slice(0, 200) };
        }
      }
      const retryAfterHeader = response.headers.get('Retry-After');
      const retryAfter = retryAfterHeader !== null && retryAfterHeader !== '' ? Number(retryAfterHeader) : NaN;
      return { kind: 'http', ok: response.ok, status: response.status, data, retryAfter, origin };
    } catch (error) {
      return { kind: 'network', error, timedOut: controller.signal.aborted, origin };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Whether a result says "try again later, nothing happened": no answer, or 502/503/504 not marked unknown. */
export function isRetryable(result) {
  if (!result || result.kind === 'network') return true;
  if (result.status === 503) return !(result.data && result.data.outcome === 'unknown');
  return result.status === 502 || result.status === 504;
}

export function isOutcomeUnknown(result) {
  return !!result && result.kind === 'http' && result.status === 503 && !!result.data && result.data.outcome === 'unknown';
}

/** Text-only DOM building: h('p', {class: 'x'}, 'text', child). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** hh:mm:ss of a Date, for "updated at" labels. */
export function clockTime(date = new Date()) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}
