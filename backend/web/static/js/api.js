// The JSON API with the bearer token: sign-in (OAuth2 password flow, TOTP code when the
// account has one), a refresh shortly before the 15-minute access token expires and once
// more on a 401, and Server-Sent Events read through fetch (EventSource cannot send an
// Authorization header). Tokens live in sessionStorage: one tab, gone when it closes.

const KEY = "tagwatch.session";

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

let session = load();
let refreshing = null;
let refreshTimer = null;
const listeners = new Set();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

function store(s) {
  session = s;
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
  schedule();
  for (const fn of listeners) fn(s);
}

function schedule() {
  clearTimeout(refreshTimer);
  if (!session) return;
  const wait = Math.max(5, session.expires_at - Date.now() / 1000 - 60);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), wait * 1000);
}

export function onSession(fn) {
  listeners.add(fn);
}

export function signedIn() {
  return session !== null;
}

function issued(body) {
  return {
    access_token: body.access_token,
    refresh_token: body.refresh_token,
    expires_at: Date.now() / 1000 + body.expires_in,
  };
}

async function tokenRequest(form) {
  const r = await fetch("/api/auth/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
  });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, body.detail || r.statusText);
  return body;
}

export async function signIn(username, password, otp) {
  const form = { grant_type: "password", username, password };
  if (otp) form.otp = otp;
  store(issued(await tokenRequest(form)));
}

export async function refresh() {
  if (!session) throw new ApiError(401, "not signed in");
  if (!refreshing) {
    const from = session;
    // An answer for a session this tab has left since (signed out, or in again) is dropped:
    // it must neither bring the old session back nor end the new one.
    refreshing = tokenRequest({ grant_type: "refresh_token", refresh_token: from.refresh_token })
      .then((body) => {
        if (session === from) store(issued(body));
      })
      .catch((e) => {
        if (session === from) store(null);
        throw e;
      })
      .finally(() => {
        refreshing = null;
      });
  }
  return refreshing;
}

// The tab forgets the session at once and then tells the server: the server's answer can
// come late (a busy server), after the user has opened a link or signed in again, and must
// change nothing by then. keepalive: the request survives the page being left.
export async function signOut() {
  const was = session;
  if (!was) return;
  store(null);
  const logout = (token) => fetch("/api/auth/logout", { method: "POST", keepalive: true, headers: { Authorization: `Bearer ${token}` } });
  try {
    if ((await logout(was.access_token)).status === 401) {
      // The access token ran out: a fresh one for the same session, to end it.
      await logout(issued(await tokenRequest({ grant_type: "refresh_token", refresh_token: was.refresh_token })).access_token);
    }
  } catch {
    // The server is unreachable: the tokens are gone from this tab and run out on their own.
  }
}

// fetch with the bearer token; one refresh and retry on 401.
export async function raw(path, init = {}, retried = false) {
  if (!session) throw new ApiError(401, "not signed in");
  const headers = new Headers(init.headers || {});
  headers.set("Authorization", `Bearer ${session.access_token}`);
  const r = await fetch(path, { ...init, headers });
  if (r.status === 401 && !retried) {
    await refresh();
    return raw(path, init, true);
  }
  return r;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export async function request(method, path, { params, json } = {}) {
  const init = { method, headers: {} };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  const r = await raw(path + query(params), init);
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, (body && body.detail) || r.statusText);
  return body;
}

export const get = (path, params) => request("GET", path, { params });
export const post = (path, json, params) => request("POST", path, { json, params });
export const patch = (path, json) => request("PATCH", path, { json });
export const del = (path) => request("DELETE", path);

// A file from the API (CSV, GPX, ...) saved through a temporary link. Returns the name it
// was saved under and the answer's headers (evidence hashes, the audit record).
export async function download(path, params, fallbackName) {
  const r = await raw(path + query(params));
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new ApiError(r.status, body.detail || r.statusText);
  }
  const disposition = r.headers.get("content-disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(disposition);
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = m ? m[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return { name: a.download, headers: r.headers };
}

// Server-Sent Events over fetch; reconnects with Last-Event-ID until `signal` aborts.
export function stream(path, params, onEvent, { signal, onState } = {}) {
  let lastId = null;
  let delay = 1000;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const r = await raw(path + query(params), { headers, signal });
        if (!r.ok) throw new ApiError(r.status, r.statusText);
        onState && onState("open");
        delay = 1000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const ev = { event: "message", data: "" };
            for (const line of block.split("\n")) {
              if (line.startsWith(":")) continue;
              const i = line.indexOf(":");
              const field = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              if (field === "event") ev.event = val;
              else if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
              else if (field === "id") ev.id = val;
            }
            if (ev.id) lastId = ev.id;
            if (ev.data) {
              if (ev.event === "end") return;
              onEvent(ev.event, JSON.parse(ev.data));
            }
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return;
      }
      onState && onState("reconnecting");
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 15000);
    }
  };
  run();
}
