// Subjects: the list, and one subject's view — details, orders and conditions, curfew
// calendar, equipment, consent on the voluntary scheme (consent.js), timeline of device events and alerts, trail playback with a time
// slider, and exports and reports (when the server has the investigations API).
import * as api from "../api.js";
import { L, baseMap, fitTo, zoneLayer } from "../map.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, errorText, field, fmtDuration, fmtTime, fromLocalInput, h, label, now, toLocalInput, ZONE_LABEL } from "../util.js";
import { consentSection } from "./consent.js";
import { exportButtons } from "./exports.js";
import { timeline } from "./timeline.js";

// #/subjects/ID, or #/subjects/ID/trail/T: the trail around time T (from an alert or a map).
export async function render(el, ctx, args) {
  if (args[0]) return renderSubject(el, ctx, Number(args[0]), args[1] === "trail" && args[2] ? Number(args[2]) : null);
  const list = await api.get("/api/subjects", { limit: 1000 });
  const filter = h("input", { id: "subject-filter", type: "search" });
  const tbody = h("tbody");
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    clear(
      tbody,
      list
        .filter((s) => !q || `${s.reference} ${s.name}`.toLowerCase().includes(q))
        .map((s) =>
          h("tr", {}, h("td", {}, h("a", { href: `#/subjects/${s.id}`, text: s.reference })), h("td", { text: s.name }), h("td", { text: s.owner === false ? "shared" : "own unit" })),
        ),
    );
  };
  filter.addEventListener("input", draw);
  el.append(
    h("h1", { text: "Subjects" }),
    h("div", { class: "filters" }, h("div", {}, ...field("Find (name or reference)", filter))),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Reference" }), h("th", { scope: "col", text: "Name" }), h("th", { scope: "col", text: "Held by" }))), tbody),
  );
  draw();
  return null;
}

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function hhmm(v) {
  const [a, b] = v.split(":").map(Number);
  return a + b / 60;
}

// Weekly curfew windows as blocks on a 7-day x 24-hour grid (a window past midnight runs
// into the next day's column).
function calendar(curfews) {
  const grid = h("div", { class: "calendar", role: "img", "aria-label": curfewText(curfews) });
  grid.append(h("div"));
  DAYS.forEach((d, i) => {
    const c = h("div", { class: "day", text: d });
    c.style.gridColumn = String(i + 2);
    c.style.gridRow = "1";
    grid.append(c);
  });
  for (let hr = 0; hr < 24; hr += 3) {
    const c = h("div", { class: "hour", text: `${String(hr).padStart(2, "0")}:00` });
    c.style.gridColumn = "1";
    c.style.gridRow = `${hr + 2} / span 3`;
    grid.append(c);
  }
  const block = (day, from, to, text) => {
    if (to <= from) return;
    const b = h("div", { class: "window", text, title: text });
    b.style.gridColumn = String(day + 2);
    b.style.gridRow = `${Math.floor(from) + 2} / ${Math.ceil(to) + 2}`;
    grid.append(b);
  };
  for (const c of curfews) {
    const s = hhmm(c.start);
    const e = hhmm(c.end);
    for (const d of c.days) {
      const i = DAYS.indexOf(d);
      const text = `${c.start}–${c.end}`;
      if (e > s) block(i, s, e, text);
      else {
        block(i, s, 24, text);
        block((i + 1) % 7, 0, e, text);
      }
    }
  }
  return grid;
}

function curfewText(curfews) {
  if (!curfews.length) return "No curfew";
  return curfews.map((c) => `Curfew ${c.start} to ${c.end} (${c.tz}) on ${c.days.join(", ")}`).join(". ");
}

// A panel of the subject page. `allowed`: the caller's scopes on the subject include what the
// panel reads; otherwise it says so without asking (a refused request is an audited denial).
async function section(title, load, allowed = true) {
  const notShared = () => h("p", { class: "muted", text: "Not shared with your unit." });
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const sec = h("section", { class: "panel", "aria-label": title }, h("h2", { text: title }), body);
  if (!allowed) {
    clear(body, notShared());
    return sec;
  }
  load()
    .then((content) => clear(body, content))
    .catch((e) => clear(body, e.status === 403 ? notShared() : h("p", { class: "muted", text: errorText(e) })));
  return sec;
}

async function renderSubject(el, ctx, id, trailAt) {
  let subject;
  try {
    subject = await api.get(`/api/subjects/${id}`);
  } catch (e) {
    el.append(h("h1", { text: "Subject" }), h("p", { class: "error", role: "alert", text: e.status === 404 ? "No such subject, or not visible to your unit." : errorText(e) }));
    return null;
  }
  const cleanups = [];
  // What the subject is monitored against (orders, curfews, zones, equipment) is the
  // conditions scope; a share may give positions or alerts without it.
  const conditions = subject.scopes.includes("conditions");
  const units = await api.get("/api/units").catch(() => []);
  const unit = units.find((u) => u.id === subject.unit_id);
  el.append(h("h1", { text: `${subject.reference} · ${subject.name}` }));
  const details = h(
    "dl",
    { class: "facts" },
    h("dt", { text: "Reference" }), h("dd", { text: subject.reference }),
    h("dt", { text: "Name" }), h("dd", { text: subject.name }),
    h("dt", { text: "Unit" }), h("dd", { text: `${unit ? unit.name : subject.unit_id}${subject.owner ? "" : " (shared with your unit)"}` }),
    subject.risk_notes ? [h("dt", { text: "Risk notes" }), h("dd", { text: subject.risk_notes })] : null,
  );
  const top = h("div", { class: "grid-2" });
  el.append(top);
  top.append(h("section", { class: "panel", "aria-label": "Details" }, h("h2", { text: "Details" }), details));
  top.append(
    await section("Orders and conditions", async () => {
      const orders = await api.get(`/api/subjects/${id}/orders`);
      if (!orders.length) return h("p", { class: "muted", text: "No orders." });
      return h(
        "ul",
        {},
        orders.map((o) => h("li", {}, h("strong", { text: `${label(o.kind)} ${o.reference}` }), ` ${fmtTime(o.starts_at)} → ${o.ends_at ? fmtTime(o.ends_at) : "open-ended"}`, o.conditions ? h("div", { text: o.conditions }) : null)),
      );
    }, conditions),
  );
  const mid = h("div", { class: "grid-2" });
  el.append(mid);
  mid.append(
    await section("Curfew", async () => {
      const [curfews, exceptions] = await Promise.all([api.get(`/api/subjects/${id}/curfews`), api.get(`/api/subjects/${id}/curfew-exceptions`)]);
      return [
        calendar(curfews),
        h("p", { text: curfewText(curfews) }),
        exceptions.length ? h("h3", { text: "Exceptions" }) : null,
        h("ul", {}, exceptions.map((x) => h("li", { text: `${x.kind === "excused" ? "Authorised absence" : "Extra curfew"} ${fmtTime(x.starts_at)} → ${fmtTime(x.ends_at)}: ${x.reason}` }))),
      ];
    }, conditions),
  );
  mid.append(
    await section("Equipment", async () => {
      const [rows, charging] = await Promise.all([api.get(`/api/subjects/${id}/assignments`), api.get(`/api/subjects/${id}/charging`)]);
      return [
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ["Device", "Kind", "Fitted", "Removed"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, rows.map((a) => h("tr", {}, h("td", { text: String(a.device) }), h("td", { text: label(a.role) }), h("td", { text: fmtTime(a.starts_at) }), h("td", { text: a.ends_at ? fmtTime(a.ends_at) : "in use" })))),
        ),
        h("p", { text: charging.min_minutes ? `Must charge at least ${charging.min_minutes} minutes a day.` : "No charging schedule." }),
      ];
    }, conditions),
  );
  if (conditions) el.append(await consentSection(subject, subject.scopes.includes("manage")));

  // Rounded up to the minute (datetime-local has no seconds): "to" includes the newest data.
  const end = Math.ceil(now() / 60) * 60;
  const can = (scope) => subject.scopes.includes(scope);
  if (can("trail")) cleanups.push(await trailSection(el, ctx, id, end, trailAt, conditions));
  const exports = await exportsSection(ctx, subject, end);
  if (exports) el.append(exports);

  // Timeline: device events and alerts, newest first.
  if (can("alerts")) {
    el.append(
      await section("Timeline (last 7 days)", async () => {
        const [events, alerts] = await Promise.all([
          api.get(`/api/web/subjects/${id}/events`, { from: end - 7 * 86400, to: end }),
          api.get("/api/alerts", { subject: id, limit: 500 }),
        ]);
        if (!events.length && !alerts.length) return h("p", { class: "muted", text: "Nothing in the last 7 days." });
        return timeline(events, alerts);
      }),
    );
  }
  return () => cleanups.forEach((fn) => fn());
}

// Trail playback: a time range and a stated purpose (audited), then a slider over the fixes.
// `trailAt`: open on the hour around this time (a link from an alert or the map); the
// subject's zones are drawn only with the `conditions` scope.
async function trailSection(el, ctx, id, end, trailAt, conditions) {
  const cleanups = [];
  const t0 = trailAt ? Math.floor(trailAt / 60) * 60 - 3600 : end - 86400;
  const t1 = trailAt ? Math.min(end, Math.ceil(trailAt / 60) * 60 + 3600) : end;
  const fromIn = h("input", { type: "datetime-local", id: "trail-from", value: toLocalInput(t0) });
  const toIn = h("input", { type: "datetime-local", id: "trail-to", value: toLocalInput(t1) });
  const purpose = h("input", { id: "trail-purpose", required: true, minlength: 3, maxlength: 500, placeholder: "e.g. review of alert 12" });
  const msg = h("p", { role: "status", id: "trail-status" });
  const slider = h("input", { type: "range", id: "trail-slider", min: 0, max: 0, value: 0, disabled: true });
  const sliderLabel = h("output", { for: "trail-slider", id: "trail-time", text: "—" });
  const play = h("button", { type: "button", id: "trail-play", "aria-pressed": "false", disabled: true, text: "Play" });
  const speed = h("select", { id: "trail-speed" }, [60, 300, 900, 3600].map((s) => h("option", { value: s, text: `${s / 60} min/s`, selected: s === 300 })));
  const mapEl = h("div", { class: "map", id: "trail-map" });
  // Enabled once its handler is attached below (the exports and the map load in between): a
  // click before then would submit the form as a plain page request.
  const load = h("button", { type: "submit", id: "trail-load", disabled: true, text: "Load trail" });
  const form = h(
    "form",
    { class: "row", "aria-label": "Trail time range" },
    h("div", {}, ...field(`From (${ZONE_LABEL})`, fromIn)),
    h("div", {}, ...field(`To (${ZONE_LABEL})`, toIn)),
    h("div", {}, ...field("Purpose (recorded in the audit log)", purpose)),
    load,
  );
  const trailErrors = new FieldErrors(msg);
  el.append(
    h(
      "section",
      { class: "panel", "aria-label": "Trail playback", id: "trail" },
      h("h2", { text: "Trail playback" }),
      form,
      msg,
      h("div", { class: "playback" }, play, h("label", { class: "inline", for: "trail-slider", text: "Time" }), slider, sliderLabel, ...field("Speed", speed)),
      mapEl,
    ),
  );
  const map = await baseMap(mapEl, ctx.config, { label: "Trail map" });
  cleanups.push(() => map.remove());
  const zoneGroup = L.featureGroup().addTo(map);
  if (conditions) {
    api
      .get(`/api/subjects/${id}/zones`)
      .then((fc) => {
        fc.features.forEach((z) => zoneGroup.addLayer(zoneLayer(z)));
        if (!fixes.length) fitTo(map, [zoneGroup]);
      })
      .catch(() => {});
  }
  const trailGroup = L.featureGroup().addTo(map);
  let fixes = [];
  let marker = null;
  let accuracy = null;
  let walked = null;
  let timer = null;

  const stop = () => {
    clearInterval(timer);
    timer = null;
    play.textContent = "Play";
    play.setAttribute("aria-pressed", "false");
  };
  cleanups.push(stop);

  function positionAt(t) {
    let i = 0;
    while (i + 1 < fixes.length && fixes[i + 1].t <= t) i++;
    const a = fixes[i];
    const b = fixes[i + 1];
    if (!b || t <= a.t) return { ...a, index: i };
    const f = (t - a.t) / (b.t - a.t);
    return { t, lat: a.lat + (b.lat - a.lat) * f, lon: a.lon + (b.lon - a.lon) * f, acc: a.acc, index: i };
  }

  function showAt(t) {
    const p = positionAt(t);
    marker.setLatLng([p.lat, p.lon]);
    accuracy.setLatLng([p.lat, p.lon]).setRadius(p.acc);
    walked.setLatLngs([...fixes.slice(0, p.index + 1).map((x) => [x.lat, x.lon]), [p.lat, p.lon]]);
    sliderLabel.textContent = fmtTime(t);
  }

  slider.addEventListener("input", () => showAt(Number(slider.value)));
  play.addEventListener("click", () => {
    if (timer) return stop();
    if (Number(slider.value) >= Number(slider.max)) slider.value = slider.min;
    play.textContent = "Pause";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(() => {
      const next = Math.min(Number(slider.max), Number(slider.value) + Number(speed.value) / 10);
      slider.value = String(next);
      showAt(next);
      if (next >= Number(slider.max)) stop();
    }, 100);
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    stop();
    const t0 = fromLocalInput(fromIn.value);
    const t1 = fromLocalInput(toIn.value);
    trailErrors.clear();
    if (purpose.value.trim().length < 3) {
      trailErrors.set(purpose, "State the purpose of this look at the trail (at least 3 characters).");
      purpose.focus();
      return;
    }
    try {
      const fc = await api.get(`/api/subjects/${id}/trail`, { from: t0, to: t1, purpose: purpose.value.trim() });
      fixes = fc.features
        .filter((f) => f.geometry.type === "Point")
        .map((f) => ({ t: f.properties.t, lat: f.geometry.coordinates[1], lon: f.geometry.coordinates[0], acc: f.properties.accuracy_m }));
      trailGroup.clearLayers();
      if (!fixes.length) {
        msg.textContent = "No positions in this range.";
        slider.disabled = play.disabled = true;
        return;
      }
      const line = fixes.map((x) => [x.lat, x.lon]);
      trailGroup.addLayer(L.polyline(line, { color: "#8aa4c2", weight: 3 }));
      for (const x of fixes) trailGroup.addLayer(L.circleMarker([x.lat, x.lon], { radius: 2, color: "#4a6fa5", weight: 1 }).bindTooltip(`${fmtTime(x.t)} ±${x.acc} m`));
      walked = L.polyline([], { color: "#0b5cad", weight: 4 }).addTo(trailGroup);
      accuracy = L.circle(line[0], { radius: fixes[0].acc, color: "#0b5cad", weight: 1, fillOpacity: 0.15 }).addTo(trailGroup);
      marker = L.circleMarker(line[0], { radius: 8, color: "#fff", weight: 2, fillColor: "#0b5cad", fillOpacity: 1 }).addTo(trailGroup);
      slider.min = String(fixes[0].t);
      slider.max = String(fixes[fixes.length - 1].t);
      slider.value = slider.min;
      slider.disabled = play.disabled = false;
      showAt(fixes[0].t);
      fitTo(map, [trailGroup]);
      msg.textContent = `${fixes.length} positions, ${fmtTime(fixes[0].t)} → ${fmtTime(fixes[fixes.length - 1].t)} (${fmtDuration(fixes[fixes.length - 1].t - fixes[0].t)}).`;
      announce(msg.textContent);
    } catch (e) {
      trailErrors.show(e, byName({ from: fromIn, to: toIn, purpose }));
    }
  });
  load.disabled = false;
  if (trailAt) {
    document.getElementById("trail").scrollIntoView({ block: "start" });
    purpose.focus();
  }
  return () => cleanups.forEach((fn) => fn());
}

// Exports and reports for a period: the evidence bundle needs a reference (case or request)
// and a purpose, both recorded in the audit log and the bundle's manifest; reports need the
// period only. Independent of the trail: a unit shared the reports scope alone still gets them.
async function exportsSection(ctx, subject, end) {
  const fromIn = h("input", { type: "datetime-local", id: "export-from", value: toLocalInput(end - 7 * 86400) });
  const toIn = h("input", { type: "datetime-local", id: "export-to", value: toLocalInput(end) });
  const reference = h("input", { id: "export-reference", maxlength: 100, placeholder: "case or request" });
  const purpose = h("input", { id: "export-purpose", minlength: 3, maxlength: 500, placeholder: "e.g. disclosure to CPS" });
  const status = h("p", { role: "status", id: "export-status" });
  const values = () => ({ from: fromIn.value ? fromLocalInput(fromIn.value) : null, to: toIn.value ? fromLocalInput(toIn.value) : null, reference: reference.value.trim(), purpose: purpose.value.trim() });
  const offered = await exportButtons(ctx, subject, values, { from: fromIn, to: toIn, reference, purpose }, status);
  if (!offered.length) return null; // nothing this user may export for this subject
  const buttons = h("div", { class: "row", id: "exports" }, offered);
  return h(
    "section",
    { class: "panel", "aria-label": "Exports and reports" },
    h("h2", { text: "Exports and reports" }),
    h(
      "form",
      { class: "row", "aria-label": "Export period and reason", onsubmit: (ev) => ev.preventDefault() },
      h("div", {}, ...field(`From (${ZONE_LABEL})`, fromIn)),
      h("div", {}, ...field(`To (${ZONE_LABEL})`, toIn)),
      h("div", {}, ...field("Reference", reference)),
      h("div", {}, ...field("Purpose (recorded in the audit log)", purpose)),
    ),
    buttons,
    status,
  );
}
