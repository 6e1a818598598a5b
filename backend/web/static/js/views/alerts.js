// Alert queue: the filtered list, new alerts arriving live (highlight, announcement and an
// optional tone), one alert's episodes and evidence (on a map), acknowledge and resolve.
import * as api from "../api.js";
import { L, baseMap, fitTo, zoneLayer } from "../map.js";
import { announce, beep, clear, errorText, field, fmtDuration, fmtTime, h, label, now, setServerNow } from "../util.js";

const STATES = ["open", "acknowledged", "resolved", "cleared"];
const OUTCOMES = ["breach_confirmed", "false_alert", "technical_fault", "authorised_absence"];
const SOUND_KEY = "tagwatch.alertSound";

export async function render(el, ctx, args) {
  const abort = new AbortController();
  // What the caller may do with an alert follows its subject's scopes: working it (acknowledge,
  // resolve) is a change of the owning unit's record (manage, never shared); its zones need the
  // conditions scope, which an alerts-only share does not give.
  const may = (subjectId, scope) => (subjects.get(subjectId)?.scopes || []).includes(scope);
  const subjects = new Map((await api.get("/api/subjects", { limit: 1000 })).map((s) => [s.id, s]));
  const alerts = new Map();
  let selected = args[0] ? Number(args[0]) : null;
  let detailCleanup = null;
  let detailGeneration = 0;

  // Filters
  const stateBoxes = STATES.map((s) =>
    h("input", { type: "checkbox", value: s, checked: s === "open" || s === "acknowledged", id: `state-${s}` }),
  );
  const typeSel = h("select", { id: "filter-type" }, h("option", { value: "", text: "All types" }));
  const subjectSel = h(
    "select",
    { id: "filter-subject" },
    h("option", { value: "", text: "All subjects" }),
    [...subjects.values()].map((s) => h("option", { value: String(s.id), text: `${s.reference} · ${s.name}` })),
  );
  const stored = localStorage.getItem(SOUND_KEY);
  const sound = h("input", { type: "checkbox", id: "alert-sound", checked: stored === null ? ctx.config.alert_sound : stored === "1" });
  sound.addEventListener("change", () => localStorage.setItem(SOUND_KEY, sound.checked ? "1" : "0"));
  const liveState = h("span", { class: "badge", id: "stream-state", text: "connecting" });
  const filters = h(
    "form",
    { class: "filters", "aria-label": "Filter alerts" },
    h("fieldset", {}, h("legend", { text: "State" }), stateBoxes.map((b) => h("label", { class: "inline", for: b.id }, b, label(b.value)))),
    h("div", {}, ...field("Type", typeSel)),
    h("div", {}, ...field("Subject", subjectSel)),
    h("label", { class: "inline", for: "alert-sound" }, sound, "Sound for new alerts"),
    h("span", {}, "Live: ", liveState),
  );
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "alerts-table", id: "alerts-table" },
    h("caption", { class: "sr-only", text: "Alerts, newest first" }),
    h("thead", {}, h("tr", {}, ["Subject", "Alert", "State", "Started", "Duration", "Episodes", ""].map((t) => h("th", { scope: "col", text: t })))),
    tbody,
  );
  const detail = h("aside", { class: "panel", id: "alert-detail", "aria-label": "Alert detail" }, h("p", { class: "muted", text: "Select an alert to see its evidence." }));
  el.append(h("h1", { text: "Alerts" }), filters, h("div", { class: "split" }, h("div", { class: "panel" }, table), detail));

  function wanted(a) {
    const states = stateBoxes.filter((b) => b.checked).map((b) => b.value);
    if (states.length && !states.includes(a.state)) return false;
    if (typeSel.value && a.type !== typeSel.value) return false;
    if (subjectSel.value && a.subject_id !== Number(subjectSel.value)) return false;
    return true;
  }

  function subjectName(id) {
    const s = subjects.get(id);
    return s ? s.reference : `#${id}`;
  }

  function row(a, fresh = false) {
    const duration = a.end === null ? Math.max(0, now() - a.start) : a.duration_s;
    const open = h("button", {
      type: "button",
      class: "secondary",
      text: "Open",
      "aria-label": `Open alert ${a.id}: ${label(a.type)} for ${subjectName(a.subject_id)}`,
      onclick: async () => {
        // The address follows the selection without reloading the screen.
        history.replaceState(null, "", `#/alerts/${a.id}`);
        await showDetail(a.id);
        focusTitle();
      },
    });
    return h(
      "tr",
      { class: fresh ? "new" : "", dataset: { alert: String(a.id) }, "aria-selected": String(a.id === selected) },
      h("td", {}, h("a", { href: `#/subjects/${a.subject_id}`, text: subjectName(a.subject_id) })),
      h("td", {}, `${label(a.type)} `, h("span", { class: `badge ${a.severity}`, text: a.severity }), a.late ? h("span", { class: "badge", text: "late" }) : null),
      h("td", {}, h("span", { class: `badge ${a.state}`, text: a.state })),
      h("td", { text: fmtTime(a.start) }),
      h("td", { text: `${fmtDuration(duration)}${a.end === null ? " (ongoing)" : ""}` }),
      h("td", { text: String(a.episodes) }),
      h("td", {}, open),
    );
  }

  function renderTable(freshIds = new Set()) {
    const types = new Set([...alerts.values()].map((a) => a.type));
    const current = typeSel.value;
    clear(typeSel, h("option", { value: "", text: "All types" }), [...types].sort().map((t) => h("option", { value: t, text: label(t), selected: t === current })));
    const shown = [...alerts.values()].filter(wanted).sort((a, b) => b.start - a.start || b.id - a.id);
    clear(tbody, shown.map((a) => row(a, freshIds.has(a.id))));
    if (!shown.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No alerts match." })));
  }

  async function load() {
    const list = await api.get("/api/alerts", { limit: 500 });
    alerts.clear();
    for (const a of list) alerts.set(a.id, a);
    renderTable();
  }

  filters.addEventListener("change", renderTable);
  await load();
  if (selected) await showDetail(selected);

  api.stream(
    "/api/alerts/stream",
    {},
    (event, a) => {
      if (event !== "alert") return;
      // The backend clock (driven by the simulator in a simulated run) moves on.
      if (a.updated_at > now()) setServerNow(a.updated_at);
      const isNew = !alerts.has(a.id);
      alerts.set(a.id, a);
      const fresh = new Set();
      if ((isNew || a.action === "reopened") && wanted(a)) {
        fresh.add(a.id);
        announce(`New alert: ${label(a.type)} for ${subjectName(a.subject_id)}`);
        if (sound.checked) beep();
      }
      renderTable(fresh);
      if (a.id === selected) showDetail(selected);
    },
    { signal: abort.signal, onState: (s) => (liveState.textContent = s) },
  );

  // The detail is rebuilt whenever the alert changes (the user's own actions, and stream
  // updates that may arrive at any moment): only the newest rebuild draws, and what the user
  // was typing and where the focus was survive it.
  async function showDetail(id) {
    const mine = ++detailGeneration;
    selected = id;
    for (const tr of tbody.querySelectorAll("tr")) tr.setAttribute("aria-selected", String(tr.dataset.alert === String(id)));
    let a;
    try {
      a = await api.get(`/api/alerts/${id}`);
    } catch (e) {
      if (mine !== detailGeneration) return;
      if (detailCleanup) detailCleanup();
      detailCleanup = null;
      clear(detail, h("p", { class: "error", role: "alert", text: `Alert ${id}: ${errorText(e)}` }));
      delete detail.dataset.alert;
      return;
    }
    if (mine !== detailGeneration) return;
    if (detailCleanup) detailCleanup();
    detailCleanup = null;
    const kept = detail.dataset.alert === String(a.id) ? formState(detail) : null;
    alerts.set(a.id, a);
    const msg = h("p", { role: "status", id: "alert-action-status" });
    const canWork = may(a.subject_id, "manage");
    const body = [
      h("h2", { id: "alert-title", tabindex: "-1", text: `${label(a.type)} · ${subjectName(a.subject_id)}` }),
      h(
        "dl",
        { class: "facts" },
        h("dt", { text: "State" }), h("dd", {}, h("span", { class: `badge ${a.state}`, id: "alert-state", text: a.state })),
        h("dt", { text: "Rule" }), h("dd", { text: `${a.rule} v${a.rule_version}` }),
        h("dt", { text: "Started" }), h("dd", { text: fmtTime(a.start) }),
        h("dt", { text: "Ended" }), h("dd", { text: a.end === null ? "ongoing" : fmtTime(a.end) }),
        h("dt", { text: "Duration" }), h("dd", { text: fmtDuration(a.end === null ? Math.max(0, now() - a.start) : a.duration_s) }),
        h("dt", { text: "Raised" }), h("dd", { text: fmtTime(a.raised_at) }),
        a.outcome ? [h("dt", { text: "Outcome" }), h("dd", { text: `${label(a.outcome)} — ${a.note || ""}` })] : null,
      ),
    ];
    if (canWork && a.state === "open") {
      const note = h("input", { id: "ack-note", maxlength: 2000 });
      body.push(
        h(
          "form",
          {
            class: "stack",
            "aria-label": "Acknowledge",
            onsubmit: async (ev) => {
              ev.preventDefault();
              try {
                await api.post(`/api/alerts/${a.id}/acknowledge`, { note: note.value || null });
                announce("Alert acknowledged");
                await showDetail(a.id);
                await load();
              } catch (e) {
                msg.textContent = errorText(e);
              }
            },
          },
          ...field("Note (optional)", note),
          h("button", { type: "submit", id: "acknowledge", text: "Acknowledge" }),
        ),
      );
    }
    if (canWork && (a.state === "open" || a.state === "acknowledged")) {
      const outcome = h("select", { id: "resolve-outcome", required: true }, OUTCOMES.map((o) => h("option", { value: o, text: label(o) })));
      const note = h("textarea", { id: "resolve-note", required: true, maxlength: 2000 });
      body.push(
        h(
          "form",
          {
            class: "stack",
            "aria-label": "Resolve",
            onsubmit: async (ev) => {
              ev.preventDefault();
              if (!note.value.trim()) {
                msg.textContent = "A note is required to resolve an alert.";
                note.focus();
                return;
              }
              try {
                await api.post(`/api/alerts/${a.id}/resolve`, { outcome: outcome.value, note: note.value.trim() });
                announce("Alert resolved");
                await showDetail(a.id);
                await load();
              } catch (e) {
                msg.textContent = errorText(e);
              }
            },
          },
          h("h3", { text: "Resolve" }),
          ...field("Outcome", outcome),
          ...field("Note", note),
          h("button", { type: "submit", id: "resolve", text: "Resolve" }),
        ),
      );
    }
    body.push(msg);
    const mapEl = h("div", { class: "map small", id: "evidence-map" });
    body.push(h("h3", { text: "Evidence" }), mapEl);
    const evList = h("ol", { class: "evidence" });
    for (const ep of a.episode_list) {
      evList.append(
        h(
          "li",
          {},
          `Episode ${fmtTime(ep.start)} → ${ep.end === null ? "ongoing" : fmtTime(ep.end)} (${fmtDuration(ep.duration_s)}), confirmed ${fmtTime(ep.confirmed_t)}${ep.late ? ", late" : ""}`,
          h("ul", {}, ep.evidence.map((e) => h("li", { text: evidenceText(e) }))),
        ),
      );
    }
    body.push(evList, h("h3", { text: "History" }), h("ul", {}, a.actions.map((x) => h("li", { text: `${fmtTime(x.at)} ${x.action}${x.note ? ` — ${x.note}` : ""}` }))));
    clear(detail, body);
    detail.dataset.alert = String(a.id);
    if (kept) restoreFormState(kept);

    const map = await baseMap(mapEl, ctx.config, { label: "Evidence map" });
    if (mine !== detailGeneration) {
      map.remove();
      return;
    }
    detailCleanup = () => map.remove();
    const layers = [];
    if (may(a.subject_id, "conditions")) {
      const zones = await api.get(`/api/subjects/${a.subject_id}/zones`).catch(() => ({ features: [] }));
      if (mine !== detailGeneration) return; // a newer rebuild has removed this map
      for (const z of zones.features) layers.push(zoneLayer(z).addTo(map));
    }
    const pts = a.episode_list.flatMap((ep) => ep.evidence).filter((e) => e.lat_e7 !== undefined);
    for (const e of pts) {
      const ll = [e.lat_e7 / 1e7, e.lon_e7 / 1e7];
      layers.push(L.circle(ll, { radius: (e.acc_dm || 0) / 10, color: "#b3261e", weight: 1, fillOpacity: 0.1 }).addTo(map));
      layers.push(L.circleMarker(ll, { radius: 5, color: "#b3261e", fillOpacity: 0.9 }).bindTooltip(evidenceText(e)).addTo(map));
    }
    if (pts.length > 1) L.polyline(pts.map((e) => [e.lat_e7 / 1e7, e.lon_e7 / 1e7]), { color: "#b3261e", weight: 1, dashArray: "3 3" }).addTo(map);
    fitTo(map, layers);
  }

  function formState(root) {
    const active = root.contains(document.activeElement) ? document.activeElement : null;
    const values = [...root.querySelectorAll("input[id], select[id], textarea[id]")].map((e) => [e.id, e.value]);
    return { values, focus: active ? active.id || null : null, hadFocus: active !== null };
  }

  function restoreFormState(kept) {
    for (const [fieldId, value] of kept.values) {
      const e = document.getElementById(fieldId);
      if (e && detail.contains(e)) e.value = value;
    }
    if (!kept.hadFocus) return;
    const again = kept.focus ? document.getElementById(kept.focus) : null;
    if (again && detail.contains(again)) again.focus();
    else focusTitle();
  }

  // Keyboard and screen-reader users continue from the alert's heading after opening an
  // alert; after working one, the rebuild puts the focus there (the button is gone).
  function focusTitle() {
    const title = document.getElementById("alert-title");
    if (title) title.focus();
  }

  function evidenceText(e) {
    const where = e.lat_e7 !== undefined ? ` at ${(e.lat_e7 / 1e7).toFixed(5)}, ${(e.lon_e7 / 1e7).toFixed(5)} ±${(e.acc_dm || 0) / 10} m` : "";
    return `${fmtTime(e.t)} ${label(e.name || "")}${where}`;
  }

  return () => {
    abort.abort();
    if (detailCleanup) detailCleanup();
  };
}
