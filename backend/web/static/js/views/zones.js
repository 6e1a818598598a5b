// Zones: a subject's zones on the map; draw a circle, polygon or corridor (or type its
// coordinates), attach weekly schedules, preview which recent fixes it would have counted as
// a breach, save. Editing changes name, dwell and schedule in place; a changed shape is
// saved as a new zone replacing the old one (the API keeps zone geometry immutable).
import * as api from "../api.js";
import { DrawTool } from "../draw.js";
import { FieldErrors } from "../forms.js";
import { L, baseMap, fitTo, zoneLayer } from "../map.js";
import { announce, clear, field, fmtTime, h, label, now } from "../util.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

export async function render(el, ctx, args) {
  const subjects = (await api.get("/api/subjects", { limit: 1000 })).filter((s) => s.scopes.includes("manage"));
  if (!subjects.length) {
    // Nothing to edit: no map, no editor (a unit with no subjects of its own).
    el.append(h("h1", { text: "Zones" }), h("p", { class: "muted", id: "zones-none", text: "Your unit manages no subjects, so it has no zones to edit." }));
    return null;
  }
  const subjectSel = h("select", { id: "zone-subject" }, subjects.map((s) => h("option", { value: String(s.id), text: `${s.reference} · ${s.name}` })));
  if (args[0]) subjectSel.value = args[0];
  const mapEl = h("div", { class: "map", id: "zones-map" });
  const zoneList = h("ul", { class: "subject-list", id: "zone-list" });
  const msg = h("p", { role: "status", id: "zone-status" });

  // Form controls.
  const shapeBtns = ["circle", "polygon", "corridor"].map((k) => h("button", { type: "button", class: "secondary", id: `draw-${k}`, "aria-pressed": "false", text: label(k) }));
  const finishBtn = h("button", { type: "button", class: "secondary", id: "draw-finish", text: "Finish shape" });
  const clearBtn = h("button", { type: "button", class: "secondary", id: "draw-clear", text: "Clear" });
  const coords = h("textarea", { id: "zone-coords", rows: 4, placeholder: "lat, lon — one point per line" });
  const radius = h("input", { id: "zone-radius", type: "number", min: 1, max: 100000, step: 1 });
  const width = h("input", { id: "zone-width", type: "number", min: 1, max: 10000, step: 1, value: 50 });
  const buffer = h("input", { id: "zone-buffer", type: "number", min: 0, max: 10000, step: 1, value: 0 });
  const name = h("input", { id: "zone-name", required: true, maxlength: 100 });
  const kind = h("select", { id: "zone-kind" }, ["exclusion", "inclusion", "home"].map((k) => h("option", { value: k, text: label(k) })));
  const victim = h("input", { id: "zone-victim", type: "checkbox" });
  const dwell = h("input", { id: "zone-dwell", type: "number", min: 0, max: 86400, step: 1, placeholder: "rule default" });
  const windows = h("div", { id: "zone-schedule" });
  const addWindow = h("button", { type: "button", class: "secondary", id: "zone-add-window", text: "Add schedule window" });
  const purpose = h("input", { id: "preview-purpose", maxlength: 500, placeholder: "e.g. checking a new exclusion zone" });
  const previewBtn = h("button", { type: "button", class: "secondary", id: "zone-preview", text: "Preview breaches (last 24 h)" });
  const preview = h("div", { id: "preview-result", "aria-live": "polite" });
  const saveBtn = h("button", { type: "submit", id: "zone-save", disabled: true, text: "Save zone" }); // enabled once its handler is attached
  const cancelBtn = h("button", { type: "button", class: "secondary", id: "zone-cancel", text: "New zone", hidden: true });
  const formTitle = h("h2", { id: "zone-form-title", text: "New zone" });
  const form = h(
    "form",
    { class: "stack", "aria-labelledby": "zone-form-title" },
    formTitle,
    h("fieldset", {}, h("legend", { text: "Shape" }), h("div", { class: "row" }, shapeBtns, finishBtn, clearBtn), h("p", { class: "muted", id: "draw-hint", text: "Choose a shape, then click on the map." })),
    ...field("Coordinates (lat, lon per line; a circle's centre)", coords),
    h("div", { class: "row" }, h("div", {}, ...field("Radius (m)", radius)), h("div", {}, ...field("Corridor width (m)", width)), h("div", {}, ...field("Buffer (m)", buffer))),
    ...field("Name", name),
    h("div", { class: "row" }, h("div", {}, ...field("Kind", kind)), h("div", {}, ...field("Dwell (s)", dwell)), h("label", { class: "inline", for: "zone-victim" }, victim, "Victim's address")),
    h("fieldset", {}, h("legend", { text: "Schedule (empty: always active)" }), windows, addWindow),
    h("fieldset", {}, h("legend", { text: "Preview" }), ...field("Purpose (recorded in the audit log)", purpose), previewBtn, preview),
    h("div", { class: "row" }, saveBtn, cancelBtn),
    msg,
  );
  el.append(
    h("h1", { text: "Zones" }),
    h("div", { class: "filters" }, h("div", {}, ...field("Subject", subjectSel))),
    h("div", { class: "split" }, mapEl, h("aside", { class: "panel", "aria-label": "Zone editor" }, h("h2", { text: "Zones of this subject" }), zoneList, form)),
  );
  const map = await baseMap(mapEl, ctx.config, { label: "Zone map" });
  const existing = L.featureGroup().addTo(map);
  const previewLayer = L.featureGroup().addTo(map);
  let editing = null; // the zone Feature being edited

  const tool = new DrawTool(map, (t, fromMap) => {
    shapeBtns.forEach((b) => b.setAttribute("aria-pressed", String(t.mode === "drawing" && b.id === `draw-${t.kind}`)));
    if (fromMap) {
      coords.value = t.points.map((p) => `${p.lat.toFixed(6)}, ${p.lng.toFixed(6)}`).join("\n");
      if (t.kind === "circle" && t.radius) radius.value = String(t.radius);
    }
    const hint = document.getElementById("draw-hint");
    if (t.mode === "drawing") hint.textContent = t.kind === "circle" ? "Click the centre, then click the edge." : "Click each vertex; Finish shape (or double-click) when done.";
    else if (t.mode === "done") hint.textContent = `${label(t.kind)} drawn. Drag the handles to adjust.`;
    else hint.textContent = "Choose a shape, then click on the map.";
  });
  tool.setWidth(Number(width.value));

  shapeBtns.forEach((b) => b.addEventListener("click", () => tool.start(b.id.replace("draw-", ""))));
  finishBtn.addEventListener("click", () => {
    if (!tool.finish()) msg.textContent = "Not enough points for this shape yet.";
  });
  clearBtn.addEventListener("click", () => tool.clear());
  radius.addEventListener("input", () => Number(radius.value) > 0 && tool.setRadius(Number(radius.value)));
  width.addEventListener("input", () => Number(width.value) > 0 && tool.setWidth(Number(width.value)));
  kind.addEventListener("change", () => tool.setStyle(kind.value));
  coords.addEventListener("change", () => {
    const pts = coords.value
      .split("\n")
      .map((l) => l.split(",").map((x) => Number(x.trim())))
      .filter((p) => p.length === 2 && p.every(Number.isFinite));
    const k = tool.kind || (pts.length === 1 ? "circle" : pts.length === 2 ? "corridor" : "polygon");
    tool.set(k, pts, Number(radius.value) || undefined);
  });

  function windowRow(w = { days: ["mon", "tue", "wed", "thu", "fri"], start: "09:00", end: "17:00" }) {
    const n = windows.children.length + 1;
    const boxes = DAYS.map((d) => h("input", { type: "checkbox", value: d, checked: w.days.includes(d), id: `win-${n}-${d}` }));
    const start = h("input", { type: "time", value: w.start, id: `win-${n}-start`, required: true });
    const end = h("input", { type: "time", value: w.end, id: `win-${n}-end`, required: true });
    const row = h(
      "fieldset",
      { class: "window-row" },
      h("legend", { text: `Window ${n}` }),
      h("fieldset", { class: "days", id: `win-${n}-days` }, h("legend", { text: `Days of window ${n}` }), boxes.map((b) => h("label", { class: "inline", for: b.id }, b, b.value))),
      h("div", { class: "row" }, h("div", {}, ...field("Start", start)), h("div", {}, ...field("End", end)), h("button", { type: "button", class: "secondary", text: `Remove window ${n}`, onclick: () => row.remove() })),
    );
    row.read = () => ({ days: boxes.filter((b) => b.checked).map((b) => b.value), start: start.value, end: end.value });
    windows.append(row);
  }
  addWindow.addEventListener("click", () => windowRow());

  function feature() {
    const geometry = tool.geometry();
    if (!geometry) throw new Error("Draw the zone's shape first (or type its coordinates).");
    const props = {
      name: name.value.trim(),
      kind: kind.value,
      buffer_m: Number(buffer.value) || 0,
      victim: victim.checked,
      schedule: [...windows.children].map((r) => r.read()),
      dwell_s: dwell.value === "" ? null : Number(dwell.value),
    };
    if (geometry.type === "Point") props.radius_m = tool.radius;
    if (geometry.type === "LineString") props.width_m = Number(width.value);
    return { type: "Feature", geometry, properties: props };
  }

  function resetForm() {
    editing = null;
    tool.clear();
    previewLayer.clearLayers();
    clear(preview);
    clear(windows);
    name.value = "";
    dwell.value = "";
    buffer.value = "0";
    victim.checked = false;
    coords.value = "";
    radius.value = "";
    formTitle.textContent = "New zone";
    saveBtn.textContent = "Save zone";
    cancelBtn.hidden = true;
  }
  cancelBtn.addEventListener("click", resetForm);

  function edit(z) {
    resetForm();
    editing = z;
    const p = z.properties;
    const g = z.geometry;
    const kindOf = { Point: "circle", Polygon: "polygon", LineString: "corridor" }[g.type];
    const pts = g.type === "Point" ? [g.coordinates] : g.type === "Polygon" ? g.coordinates[0].slice(0, -1) : g.coordinates;
    if (p.width_m) width.value = String(p.width_m);
    tool.setWidth(Number(width.value));
    kind.value = p.kind;
    tool.setStyle(p.kind);
    radius.value = p.radius_m ? String(p.radius_m) : "";
    tool.set(kindOf, pts.map(([lon, lat]) => [lat, lon]), p.radius_m || undefined);
    coords.value = pts.map(([lon, lat]) => `${lat.toFixed(6)}, ${lon.toFixed(6)}`).join("\n");
    name.value = p.name;
    buffer.value = String(p.buffer_m || 0);
    victim.checked = !!p.victim;
    dwell.value = p.dwell_s === null || p.dwell_s === undefined ? "" : String(p.dwell_s);
    (p.schedule || []).forEach((w) => windowRow(w));
    formTitle.textContent = `Edit zone: ${p.name}`;
    saveBtn.textContent = "Save changes";
    cancelBtn.hidden = false;
    name.focus();
  }

  async function loadZones(fit = false) {
    existing.clearLayers();
    clear(zoneList);
    if (!subjectSel.value) return;
    const fc = await api.get(`/api/subjects/${subjectSel.value}/zones`);
    for (const z of fc.features) {
      existing.addLayer(zoneLayer(z));
      const p = z.properties;
      zoneList.append(
        h(
          "li",
          { dataset: { zone: String(z.id) } },
          h("span", { text: `${p.name} — ${label(p.kind)} ${p.shape}${(p.schedule || []).length ? ", scheduled" : ""}` }),
          h("button", { type: "button", class: "secondary", text: "Edit", "aria-label": `Edit zone ${p.name}`, onclick: () => edit(z) }),
          h("button", {
            type: "button",
            class: "danger",
            text: "Delete",
            "aria-label": `Delete zone ${p.name}`,
            onclick: async () => {
              if (!confirm(`Delete zone ${p.name}?`)) return;
              await api.del(`/api/zones/${z.id}`);
              announce(`Zone ${p.name} deleted`);
              await loadZones();
            },
          }),
        ),
      );
    }
    if (!fc.features.length) zoneList.append(h("li", { class: "muted", text: "No zones yet." }));
    if (fit) fitTo(map, [existing]);
  }

  subjectSel.addEventListener("change", () => {
    resetForm();
    loadZones(true);
  });

  previewBtn.addEventListener("click", async () => {
    previewLayer.clearLayers();
    if (purpose.value.trim().length < 3) {
      clear(preview, h("p", { class: "error", text: "State a purpose (at least 3 characters): the preview reads the trail." }));
      purpose.focus();
      return;
    }
    try {
      const end = Math.floor(now());
      const result = await api.post(`/api/web/subjects/${subjectSel.value}/zone-preview`, { zone: feature(), start: end - 86400, end }, { purpose: purpose.value.trim() });
      for (const f of result.fixes) {
        previewLayer.addLayer(
          L.circleMarker([f.lat, f.lon], { radius: 5, color: f.breach ? "#b3261e" : "#a15c00", fillOpacity: 0.9 }).bindTooltip(`${fmtTime(f.t)} ${f.breach ? "breach" : "edge"}, ${f.distance_m} m from the edge, ±${f.accuracy_m} m`),
        );
      }
      const alerting = result.episodes.filter((e) => e.would_alert);
      clear(
        preview,
        h("p", { id: "preview-summary", text: `${result.checked} fixes checked; ${result.fixes.filter((f) => f.breach).length} breach samples; ${alerting.length} episode${alerting.length === 1 ? "" : "s"} would alert (dwell ${result.dwell_s} s).` }),
        h("ul", {}, result.episodes.map((e) => h("li", { text: `${fmtTime(e.start)} → ${e.ongoing ? "still inside at the end" : fmtTime(e.end)}: ${e.pass_through ? "passed through between two fixes" : `${e.fixes} fixes`}${e.would_alert ? " — would alert" : " — would not alert"}` }))),
      );
      if (result.fixes.length) fitTo(map, [previewLayer, existing]);
    } catch (e) {
      if (e.status === undefined) clear(preview, h("p", { class: "error", text: e.message }));
      else errors.show(e, locate);
    }
  });

  // Where a validation error about the zone's Feature belongs on this form.
  function locate(loc) {
    if (loc[0] === "query" && loc[1] === "purpose") return purpose;
    const path = loc.filter((x) => x !== "body" && x !== "zone");
    const [head, key, index, sub] = path;
    if (head === "geometry") return coords;
    if (head !== "properties") return null;
    if (key === "schedule" && Number.isInteger(index)) {
      const row = windows.children[index];
      if (!row) return windows.parentElement;
      if (sub === "days") return row.querySelector("fieldset.days") || row;
      if (sub === "start" || sub === "end") return row.querySelector(`input[id$="-${sub}"]`);
      return row;
    }
    return { name, kind, radius_m: radius, width_m: width, buffer_m: buffer, dwell_s: dwell, schedule: windows.parentElement }[key] || null;
  }
  const errors = new FieldErrors(msg);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.clear();
    try {
      const f = feature();
      if (!f.properties.name) {
        errors.set(name, "Give the zone a name.");
        name.focus();
        return;
      }
      const sid = subjectSel.value;
      if (editing) {
        const old = editing;
        const same = JSON.stringify(old.geometry) === JSON.stringify(f.geometry) && ["kind", "radius_m", "width_m", "buffer_m", "victim"].every((k) => (old.properties[k] || 0) === (f.properties[k] || 0));
        if (same) {
          await api.patch(`/api/zones/${old.id}`, { name: f.properties.name, dwell_s: f.properties.dwell_s, schedule: f.properties.schedule });
        } else {
          await api.post(`/api/subjects/${sid}/zones`, f);
          await api.del(`/api/zones/${old.id}`);
        }
        announce(`Zone ${f.properties.name} saved`);
      } else {
        await api.post(`/api/subjects/${sid}/zones`, f);
        announce(`Zone ${f.properties.name} created`);
      }
      msg.textContent = `Saved: ${f.properties.name}.`;
      resetForm();
      await loadZones();
    } catch (e) {
      if (e.status === undefined) msg.textContent = e.message; // drawn shape missing
      else errors.show(e, locate);
    }
  });
  saveBtn.disabled = false;

  await loadZones(true);
  return () => map.remove();
}
