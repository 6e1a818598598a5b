// The alerts that need someone now, shared by every screen: the open and acknowledged alerts
// of the subjects the user may see, kept current by one alert stream for the session (so a
// screen change neither misses an alert nor opens another stream), and the order officers
// work them in: severity, then how long each has waited.
import * as api from "./api.js";
import { now, setServerNow } from "./util.js";

export const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
export const ACTIVE = ["open", "acknowledged"];

const active = new Map(); // id -> alert (open or acknowledged)
const listeners = new Set();
let abort = null;
let ready = null;
let state = "connecting";

// Most severe first; within a severity, the longest waiting first.
export function attentionOrder(a, b) {
  const rank = (x) => SEVERITY_RANK[x.severity] ?? 9;
  return rank(a) - rank(b) || a.start - b.start || a.id - b.id;
}

export function start() {
  stop();
  abort = new AbortController();
  const signal = abort.signal;
  ready = (async () => {
    const [open, acked] = await Promise.all(ACTIVE.map((state) => api.get("/api/alerts", { state, limit: 1000 })));
    if (signal.aborted) return;
    active.clear();
    for (const a of [...open, ...acked]) active.set(a.id, a);
    emit(null);
    api.stream(
      "/api/alerts/stream",
      {},
      (event, a) => {
        if (event !== "alert") return;
        // The backend clock (driven by the simulator in a simulated run) moves on.
        if (a.updated_at > now()) setServerNow(a.updated_at);
        if (ACTIVE.includes(a.state)) active.set(a.id, a);
        else active.delete(a.id);
        emit(a);
      },
      {
        signal,
        onState: (st) => {
          state = st;
          emit(null);
        },
      },
    );
  })().catch(() => {});
  return ready;
}

// The stream's state: connecting, open, reconnecting.
export function streamState() {
  return state;
}

export function stop() {
  if (abort) abort.abort();
  abort = null;
  state = "connecting";
  active.clear();
}

// Resolves once the first list is in.
export function loaded() {
  return ready || Promise.resolve();
}

// fn(alert) for every change that arrives (alert: the changed one, with `action`), and
// fn(null) when the list was reloaded or the stream's state changed. Returns the unsubscribe function.
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(a) {
  for (const fn of listeners) {
    try {
      fn(a);
    } catch {
      // One screen's failure must not stop the others' updates.
    }
  }
}

// The active alerts, in attention order (optionally of one subject).
export function list(subjectId = null) {
  return [...active.values()].filter((a) => subjectId === null || a.subject_id === subjectId).sort(attentionOrder);
}

// A subject's alerts in a word: {count, worst} (worst: the highest severity), or null.
export function summary(subjectId) {
  const mine = list(subjectId);
  return mine.length ? { count: mine.length, worst: mine[0].severity, open: mine.filter((a) => a.state === "open").length } : null;
}

export function openCount() {
  return [...active.values()].filter((a) => a.state === "open").length;
}
