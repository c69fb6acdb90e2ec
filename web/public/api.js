// The one fetch wrapper: JSON in and out, X-CSRF-Token on every state-changing request,
// errors as ApiError {status, message, field, fieldMessage}. A 401 calls onUnauthorized.

let csrf = null;
let onUnauthorized = () => {};

export function setCsrf(token) { csrf = token; }
export function getCsrf() { return csrf; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.field = this.body.field || null;
    this.fieldMessage = this.body.message || null;
  }
}

/** Parses an answer's text as JSON when it is; null otherwise. */
export function parseJson(text) {
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

/**
 * `api("POST", "/api/x", {a: 1})` → the JSON answer (null for 204).
 * Throws ApiError on any non-2xx answer; `quiet401` skips the login redirect (used at boot).
 */
export async function api(method, path, body, { quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { error: `onair does not answer (${e.message})` });
  }
  const data = parseJson(await resp.text());
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && !quiet401) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (p, o) => api('GET', p, undefined, o);
export const post = (p, b, o) => api('POST', p, b, o);
export const patch = (p, b) => api('PATCH', p, b);
export const del = (p) => api('DELETE', p);
