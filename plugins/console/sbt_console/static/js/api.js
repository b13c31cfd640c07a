// The public API, called with the signed-in token. The token lives in sessionStorage: this tab only.
const KEY = "sbt-console-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(KEY); },
  set token(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
  /** The token's claims (not verified here: the server verifies every call). */
  claims() {
    const token = this.token;
    if (!token) return null;
    return decodeClaims(token);
  },
};

/** The payload of a JWT, or null when it is not one. */
export function decodeClaims(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const text = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(decodeURIComponent(escape(text)));
  } catch {
    return null;
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) { onUnauthorized = callback; }

/** Call the API: JSON in and out. Errors raise ApiError with the server's {"message"}; a 401 signs out. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `The server did not answer (${err.message}). Is sbt serve running?`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (!response.ok) {
    const message = (data && (data.message || data.error_description)) || `${response.status} ${response.statusText}`;
    if (response.status === 401) onUnauthorized(message);
    throw new ApiError(response.status, message);
  }
  return data;
}

/** Every item of a paginated route (sbt-aws: {data, next_token}), following next_token up to `max` items. */
export async function all(path, { limit = 100, max = 5000 } = {}) {
  const items = [];
  let token = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", `${path}${sep}limit=${limit}${token ? `&next_token=${encodeURIComponent(token)}` : ""}`);
    items.push(...(page.data || []));
    token = page.next_token || null;
  } while (token && items.length < max);
  return items;
}
