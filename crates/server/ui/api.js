// The API client of the UI: bearer token from sessionStorage, one error
// type built from the API's error envelope, and cursor paging.
//
// The token lives in sessionStorage (this tab only, gone when it closes) and
// travels in the Authorization header only: never in a URL, where it would
// reach history, logs and Referer headers.

const TOKEN_KEY = "nexus-attack.token";

/** The token of this tab, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps the token for this tab. */
export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets the token. */
export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answered by the API ({"error": {code, message, details}}) or a
 *  failure to reach it. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details ?? null;
  }

  /** True when the server has no such route (an endpoint not built yet). */
  get routeMissing() {
    return this.status === 404 && this.code === "route_not_found";
  }

  /** One line for the page: message and code. */
  describe() {
    const field = this.details && this.details.field ? ` (field: ${this.details.field})` : "";
    return `${this.message}${field} [${this.code}]`;
  }
}

/** Builds `path?query` from an object, leaving out empty values. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== undefined && value !== null && value !== "") {
      query.set(key, value);
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** Sends one request with the token; answers the fetch Response when the
 *  status is 2xx, throws ApiError otherwise. */
export async function request(path, options = {}) {
  const headers = new Headers(options.headers ?? {});
  const secret = token();
  if (secret) {
    headers.set("Authorization", `Bearer ${secret}`);
  }
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  } catch (cause) {
    throw new ApiError(0, "network_error", `cannot reach the server: ${cause.message}`);
  }
  if (response.ok) {
    return response;
  }
  throw await errorOf(response);
}

/** The ApiError of a non-2xx answer, from its envelope when it has one. */
async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's HTML page, say): fall back to the status line.
  }
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.code === "string") {
    return new ApiError(response.status, error.code, error.message ?? error.code, error.details);
  }
  return new ApiError(
    response.status,
    `http_${response.status}`,
    `the server answered ${response.status} ${response.statusText}`.trim(),
  );
}

/** GET a JSON envelope; answers {data, meta}. */
export async function getJson(path, params) {
  const response = await request(withQuery(path, params));
  return response.json();
}

/** Every item of every page of a paginated list. */
export async function allPages(path, params, limit = 500) {
  const items = [];
  let cursor = null;
  // A bound on pages so a server bug cannot spin the tab forever.
  for (let page = 0; page < 1000; page += 1) {
    const body = await getJson(path, { ...params, limit, cursor });
    items.push(...(body.data ?? []));
    cursor = body.meta ? body.meta.next_cursor : null;
    if (!cursor) {
      return items;
    }
  }
  throw new ApiError(0, "pagination_loop", `${path}: the list did not end after 1000 pages`);
}

/** POST a JSON body; answers the envelope ({data, meta}). */
export async function postJson(path, body) {
  const response = await request(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return response.json();
}
