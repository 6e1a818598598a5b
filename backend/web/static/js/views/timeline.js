// A subject's timeline as readable rows in civil time: alerts, home and away (the home unit's
// presence reports, the tag's RF/GPS mode), tamper, battery and charging, comms and power.
// The devices' routine reports (hourly status, clock settings, command results, battery and
// mains readings that change nothing) are folded into one row per run, which opens to show
// them; each kind of row can be filtered out.
import { clear, fmtDuration, fmtTime, h, label, now } from "../util.js";

const CATEGORIES = [
  ["alert", "Alerts"],
  ["home", "Home, away and mode"],
  ["tamper", "Tamper"],
  ["battery", "Battery and charging"],
  ["comms", "Comms and power"],
  ["routine", "Routine reports"],
];
const SENSOR = { 1: "Strap", 2: "Case" };
const MODE_REASON = { 0: "after start-up", 1: "the home unit answered", 2: "the home unit's lease ran out (left home)", 3: "by command" };
const RESET = { 0: "power on", 1: "reset", 2: "watchdog", 3: "wake from deep sleep", 4: "soft reset", 5: "brown-out" };
const CHARGING = 0x01;
const LOW = 0x04;
const CRITICAL = 0x08;

// Device events (oldest first) as rows {t, category, text, device}: what changed is said;
// a reading that changes nothing is routine.
function describe(events) {
  const rows = [];
  const lastBattery = new Map();
  const lastMains = new Map();
  for (const e of events) {
    const d = e.data || {};
    const who = `${label(e.role)} ${e.device}`;
    const row = (category, text) => rows.push({ t: e.t, category, text, device: who, kind: e.kind });
    switch (e.kind) {
      case "presence":
        row("home", d.state === 1 ? "At home: the home unit hears the tag" : "Away: the home unit no longer hears the tag");
        break;
      case "mode":
        row("home", `Tag in ${d.mode === 1 ? "RF (home) mode" : "GPS mode"}: ${MODE_REASON[d.reason] || "reason " + d.reason}`);
        break;
      case "tamper":
        row("tamper", `${SENSOR[d.sensor] || "Sensor " + d.sensor} ${d.state === 1 ? "opened — tamper" : "closed again"}`);
        break;
      case "home_tamper":
        row("tamper", `Home unit ${d.state === 1 ? "tampered with" : "tamper cleared"} (${label(String(d.kind))})`);
        break;
      case "battery": {
        const before = lastBattery.get(e.device);
        const flags = d.flags || 0;
        lastBattery.set(e.device, flags);
        const changed = before === undefined ? flags & (CHARGING | LOW | CRITICAL) : (before ^ flags) & (CHARGING | LOW | CRITICAL);
        if (changed & CHARGING) row("battery", flags & CHARGING ? `Charging started (${d.level} %)` : `Charging stopped (${d.level} %)`);
        else if (changed & CRITICAL) row("battery", flags & CRITICAL ? `Battery critical (${d.level} %)` : `Battery no longer critical (${d.level} %)`);
        else if (changed & LOW) row("battery", flags & LOW ? `Battery low (${d.level} %)` : `Battery no longer low (${d.level} %)`);
        else row("routine", `Battery ${d.level} %${flags & CHARGING ? ", charging" : ""}`);
        break;
      }
      case "home_power": {
        const before = lastMains.get(e.device);
        lastMains.set(e.device, d.mains);
        if (before !== undefined && before !== d.mains) row("comms", d.mains ? "Home unit back on mains power" : "Home unit lost mains power (on its battery)");
        else row("routine", `Home unit power: ${d.mains ? "mains" : "battery"}`);
        break;
      }
      case "link":
        row("comms", d.state === 1 ? "Home unit connected" : "Home unit disconnected");
        break;
      case "overflow":
        row("comms", `Tag storage full: ${d.lost} records lost`);
        break;
      case "motion_no_fix":
        row("comms", `Moving without a GPS fix (stage ${d.stage}, ${d.minutes} min)`);
        break;
      case "boot":
        row("comms", `${label(e.role)} started (${RESET[d.reset_cause] || "reset"}, firmware ${d.fw_version})`);
        break;
      case "status":
        row("routine", `Status report${d.buf_used ? ` (${d.buf_used} records waiting)` : ""}`);
        break;
      case "clock_set":
        row("routine", `Clock set (${d.delta_s >= 0 ? "+" : ""}${d.delta_s} s)`);
        break;
      case "command_result":
        row("routine", `Command ${d.cmd_seq} ${d.result === 0 ? "done" : `refused (${d.result})`}`);
        break;
      default:
        row("routine", label(e.kind));
    }
  }
  return rows;
}

function alertRows(alerts) {
  return alerts.map((a) => ({
    t: a.start,
    category: "alert",
    device: "",
    node: [
      h("a", { href: `#/alerts/${a.id}`, text: `Alert: ${label(a.type)}` }),
      ` (${a.severity}) — ${a.state}, ${a.end === null ? `going on for ${fmtDuration(now() - a.start)}` : `lasted ${fmtDuration(a.duration_s)}`}`,
    ],
  }));
}

function line(r) {
  return h(
    "li",
    { class: `tl ${r.category}`, dataset: { category: r.category } },
    h("time", { text: fmtTime(r.t) }),
    h("span", { class: "what" }, r.node || r.text),
    r.device ? h("span", { class: "muted device", text: r.device }) : null,
  );
}

// The timeline element: filters and the rows, newest first.
export function timeline(events, alerts) {
  const rows = [...describe([...events].sort((a, b) => (a.t || 0) - (b.t || 0))), ...alertRows(alerts)].sort((a, b) => b.t - a.t);
  const boxes = CATEGORIES.map(([key, text]) => h("label", { class: "inline", for: `tl-${key}` }, h("input", { type: "checkbox", id: `tl-${key}`, value: key, checked: true }), text));
  const list = h("ul", { class: "timeline", id: "timeline" });
  const counts = h("p", { class: "muted", id: "timeline-counts", "aria-live": "polite" });
  function draw() {
    const on = new Set(boxes.map((b) => b.querySelector("input")).filter((i) => i.checked).map((i) => i.value));
    const shown = rows.filter((r) => on.has(r.category));
    const out = [];
    for (let i = 0; i < shown.length; ) {
      if (shown[i].category !== "routine") {
        out.push(line(shown[i]));
        i += 1;
        continue;
      }
      let j = i;
      while (j < shown.length && shown[j].category === "routine") j += 1;
      const run = shown.slice(i, j);
      const kinds = {};
      for (const r of run) kinds[r.kind] = (kinds[r.kind] || 0) + 1;
      const what = Object.entries(kinds).map(([k, n]) => `${label(k)} ×${n}`).join(", ");
      out.push(
        h(
          "li",
          { class: "tl routine folded", dataset: { category: "routine" } },
          h(
            "details",
            {},
            h("summary", {}, h("time", { text: `${fmtTime(run[run.length - 1].t)} – ${fmtTime(run[0].t)}` }), ` ${run.length} routine report${run.length === 1 ? "" : "s"} (${what})`),
            h("ul", { class: "timeline" }, run.map(line)),
          ),
        ),
      );
      i = j;
    }
    clear(list, out.length ? out : h("li", { class: "muted", text: "Nothing to show with these filters." }));
    const important = rows.filter((r) => r.category !== "routine").length;
    counts.textContent = `${important} event${important === 1 ? "" : "s"} and alerts, ${rows.length - important} routine reports (folded).`;
  }
  const filters = h("fieldset", { class: "filters", id: "timeline-filters" }, h("legend", { text: "Show" }), boxes);
  filters.addEventListener("change", draw);
  draw();
  return [filters, counts, list];
}
