// The REST API client: bearer token from login, JSON in and out, typed errors.

const TOKEN_KEY = "zhizhi.token";
const USER_KEY = "zhizhi.user";
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
    this.retryAfter = null;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function currentUser() {
  const raw = sessionStorage.getItem(USER_KEY);
  return raw ? JSON.parse(raw) : null;
}

export function setSession(newToken, user) {
  sessionStorage.setItem(TOKEN_KEY, newToken);
  sessionStorage.setItem(USER_KEY, JSON.stringify(user));
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
}

/** Called with no argument when the server answers 401 (expired or revoked token). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** A server path with the token as `?token=` (for <img>, <video> and EventSource). */
export function withToken(path) {
  const url = new URL(path, document.baseURI);
  url.searchParams.set("token", token() || "");
  return url.pathname + url.search;
}

/** A path relative to the page (so a reverse proxy may serve the app under a prefix). */
function relative(path) {
  return path.startsWith("/") ? `.${path}` : path;
}

/** `bearer` overrides the session's token (to check a pasted API token before keeping it). */
export async function request(method, path, { json, body, contentType, query, bearer } = {}) {
  const headers = {};
  const current = bearer ?? token();
  if (current) headers.Authorization = `Bearer ${current}`;
  let payload = body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  let url = relative(path);
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  const response = await fetch(url, { method, headers, body: payload });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not JSON: keep the status text
    }
    const error = new ApiError(response.status, detail);
    error.retryAfter = response.headers.get("Retry-After");
    if (response.status === 401 && current && !bearer) onUnauthorized();
    throw error;
  }
  const type = response.headers.get("Content-Type") || "";
  if (response.status === 204) return null;
  return type.includes("application/json") ? response.json() : response.blob();
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, json) => request("POST", path, { json: json ?? {} });
export const put = (path, json) => request("PUT", path, { json });
