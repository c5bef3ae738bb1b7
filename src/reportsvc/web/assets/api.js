// The HTTP API, as the page uses it. Paths are relative, so the page also works behind a
// proxy that serves the service under a prefix.

const TOKEN_KEY = "reportsvc.apiToken";
export const PAGE_SIZE = 10;

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.token = undefined; // the token the request carried (null: none)
  }
}

export function savedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the page asks again on each visit
  }
}

export function saveToken(token) {
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Kept for this visit only (see `request`'s token argument).
  }
}

export function forgetToken() {
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing was stored
  }
}

let sessionToken = null;

/** The token to send: the one just entered, else the one kept in the browser. */
export function currentToken() {
  return sessionToken ?? savedToken();
}

export function useToken(token) {
  sessionToken = token;
  if (token === null) {
    forgetToken();
  } else {
    saveToken(token);
  }
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  const message = body && typeof body.error === "string"
    ? body.error
    : `the service answered ${response.status} ${response.statusText}`.trim();
  const code = body && typeof body.code === "string" ? body.code : `http_${response.status}`;
  return new ApiError(response.status, code, message, response.headers.get("Retry-After"));
}

export async function request(path, { method = "GET", body, accept = "application/json", signal, token } = {}) {
  const headers = { Accept: accept };
  const bearer = token === undefined ? currentToken() : token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "unreachable", "the service cannot be reached; check that it is running");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    error.token = bearer || null; // which token was refused, for a 401 that comes in late
    throw error;
  }
  return response;
}

const job = (id) => `reports/${encodeURIComponent(id)}`;

export const api = {
  options: (token) => request("ui/options", { token }).then((r) => r.json()),
  create: (body) => request("reports", { method: "POST", body }).then((r) => r.json()),
  job: (id, signal) => request(job(id), { signal }).then((r) => r.json()),
  jobItem: (id, signal) => request(`ui/jobs/${encodeURIComponent(id)}`, { signal }).then((r) => r.json()),
  markdown: (id) => request(`${job(id)}?format=markdown`, { accept: "text/markdown" }).then((r) => r.text()),
  cancel: (id) => request(job(id), { method: "DELETE" }).then((r) => r.json()),
  approveOutline: (id, outline) =>
    request(`${job(id)}/outline`, { method: "PUT", body: { outline } }).then((r) => r.json()),
  events: (id, signal) => request(`${job(id)}/events`, { accept: "text/event-stream", signal }),
  list: (limit, cursor) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set("cursor", cursor);
    return request(`reports?${query}`).then((r) => r.json());
  },
};
