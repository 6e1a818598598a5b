export { errorText } from "./forms.js";

// DOM building without innerHTML (so nothing from the API is ever parsed as markup),
// time formatting, the backend clock, announcements for screen readers, and toasts.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export function id(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled form field: returns [label, control].
export function field(labelText, control) {
  if (!control.id) control.id = id();
  return [h("label", { for: control.id, text: labelText }), control];
}

// Backend time: simulated runs drive the backend clock, so "now" comes from the server.
let offset = 0;
export function setServerNow(serverNow) {
  offset = serverNow - Date.now() / 1000;
}
export function now() {
  return Date.now() / 1000 + offset;
}

// Civil time: every time is shown, and typed into date fields, in the force's zone — the zone
// curfews and zone schedules default to — whatever zone the computer is set to, so a time
// read off a laptop left on UTC matches the officer's notes and the subject's curfew. The
// zone's abbreviation (GMT/BST) is shown: the hour repeated when the clocks go back is not
// ambiguous in evidence.
export const TIME_ZONE = "Europe/London";
// Said beside every date field, since the computer's own zone may differ.
export const ZONE_LABEL = "London time";
const civil = new Intl.DateTimeFormat("en-GB", {
  timeZone: TIME_ZONE,
  hourCycle: "h23",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});
function civilParts(t) {
  const p = {};
  for (const { type, value } of civil.formatToParts(new Date(t * 1000))) p[type] = value;
  return p;
}
// Seconds the zone is ahead of UTC at Unix time t.
function zoneOffset(t) {
  const p = civilParts(t);
  return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) / 1000 - Math.floor(t);
}
export function fmtTime(t) {
  if (t === null || t === undefined) return "—";
  const p = civilParts(t);
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}
export function fmtDuration(s) {
  if (s === null || s === undefined) return "ongoing";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const hours = Math.floor(s / 3600);
  if (hours < 48) return `${hours} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}
export function fmtAge(t) {
  if (t === null || t === undefined) return "never";
  const s = Math.max(0, now() - t);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
// Whether a subject reports as its tag's mode should (the server's `freshness`: the mode, the
// last contact and the thresholds), judged at the backend clock's now so it ages between
// refreshes: on_time, late (past the mode's interval), silent (past the comms-loss threshold).
export function freshState(f) {
  if (!f || f.last_contact === null || f.last_contact === undefined) return "silent";
  const age = now() - f.last_contact;
  return age > f.silent_after_s ? "silent" : age > f.late_after_s ? "late" : "on_time";
}
const MODE_TEXT = { home: "at home (RF)", moving: "moving", resting: "at rest", unknown: "no fix yet" };
const STATE_TEXT = { on_time: "on time", late: "late", silent: "silent" };
export function freshnessText(f) {
  if (!f) return "no tag fitted";
  const m = Math.round(f.expected_s / 60);
  const every = f.mode === "unknown" ? "" : `, reports every ${m < 120 ? `${m} min` : `${Math.round(m / 60)} h`}`;
  return `${STATE_TEXT[freshState(f)]} · ${MODE_TEXT[f.mode]}${every} · heard ${fmtAge(f.last_contact)}`;
}
export function label(text) {
  return String(text || "").replaceAll("_", " ");
}

// <input type="datetime-local"> value <-> Unix seconds, in civil time (TIME_ZONE).
export function toLocalInput(t) {
  const p = civilParts(t);
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}
export function fromLocalInput(v) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(v || "");
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)) / 1000;
  // The offset at the wall time read as UTC is right except within hours of a change;
  // a second look at the offset of the first guess settles it.
  const guess = wall - zoneOffset(wall);
  return wall - zoneOffset(guess);
}

export function announce(text) {
  const el = document.getElementById("announce");
  el.textContent = "";
  setTimeout(() => {
    el.textContent = text;
  }, 30);
}

export function toast(text, kind = "") {
  const el = h("div", { class: `toast ${kind}`, role: "status", text });
  document.getElementById("toasts").append(el);
  setTimeout(() => el.remove(), 6000);
}

// A short tone for a new alert (Web Audio: no sound file to fetch).
let audio = null;
export function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.4);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.4);
  } catch {
    // No audio device (or not allowed yet): the visual cue remains.
  }
}
