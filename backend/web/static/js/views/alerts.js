// Alert queue: the filtered list (open and acknowledged first, most severe and longest
// waiting first), new alerts arriving live through the shared alert feed (highlight,
// announcement and an optional tone), one alert's episodes and evidence (on a map framing
// the evidence), where the subject was last seen, and acknowledge and resolve with their
// safeguards: no outcome chosen for the officer, and a still-ongoing condition confirmed.
import * as feed from "../alertfeed.js";
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { L, baseMap, fitTo, nearestPlace, world, zoneLayer } from "../map.js";
import { announce, beep, clear, errorText, field, fmtAge, fmtDuration, fmtTime, h, label, now } from "../util.js";

const STATES = ["open", "acknowledged", "resolved", "cleared"];
const OUTCOMES = ["breach_confirmed", "false_alert", "technical_fault", "authorised_absence"];
const SOUND_KEY = "tagwatch.alertSound";

// Open and acknowledged alerts in attention order, then the closed ones newest first.
function queueOrder(a, b) {
  const active = (x) => (feed.ACTIVE.includes(x.state) ? 0 : 1);
  return active(a) - active(b) || (active(a) === 0 ? feed.attentionOrder(a, b) : b.start - a.start || b.id - a.id);
}

export async function render(el, ctx, args) {
  const subjects = new Map((await api.get("/api/subjects", { limit: 1000 })).map((s) => [s.id, s]));
  // What the caller may do with an alert follows its subject's scopes: working it (acknowledge,
  // resolve) is a change of the owning unit's record (manage, never shared); its zones need the
  // conditions scope, which an alerts-only share does not give.
  const may = (subjectId, scope) => (subjects.get(subjectId)?.scopes || []).includes(scope);
  const canWork = (subjectId) => may(subjectId, "manage");
  const fc = await world(ctx.config);
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
  const shownCount = h("span", { id: "alerts-shown", "aria-live": "polite" });
  const liveState = h("span", { class: "badge", id: "stream-state", text: feed.streamState() });
  const filters = h(
    "form",
    { class: "filters", "aria-label": "Filter alerts", onsubmit: (ev) => ev.preventDefault() },
    h("fieldset", {}, h("legend", { text: "State" }), stateBoxes.map((b) => h("label", { class: "inline", for: b.id }, b, label(b.value)))),
    h("div", {}, ...field("Type", typeSel)),
    h("div", {}, ...field("Subject", subjectSel)),
    h("label", { class: "inline", for: "alert-sound" }, sound, "Sound for new alerts"),
    h("span", {}, "Live: ", liveState),
    shownCount,
  );
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "alerts-table", id: "alerts-table" },
    h("caption", { class: "sr-only", text: "Alerts: open and acknowledged first, most severe and longest waiting first" }),
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
      { class: fresh ? "new" : "", dataset: { alert: String(a.id), state: a.state, type: a.type, subject: String(a.subject_id) }, "aria-selected": String(a.id === selected) },
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
    const shown = [...alerts.values()].filter(wanted).sort(queueOrder);
    clear(tbody, shown.map((a) => row(a, freshIds.has(a.id))));
    if (!shown.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No alerts match." })));
    shownCount.textContent = `${shown.length} of ${alerts.size} alerts shown`;
  }

  async function load() {
    const list = await api.get("/api/alerts", { limit: 1000 });
    alerts.clear();
    for (const a of list) alerts.set(a.id, a);
    renderTable();
  }

  // Any filter change redraws the list (the change event itself is not a list of new rows).
  filters.addEventListener("change", () => renderTable());
  await load();
  if (selected) {
    await showDetail(selected);
    focusTitle();
  }

  const unsubscribe = feed.subscribe((a) => {
    liveState.textContent = feed.streamState();
    if (!a) return;
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
  });

  // Where the subject is now, if the user may see it live: {position, presence} or null.
  async function lastKnown(subjectId) {
    try {
      const view = await api.get("/api/web/live", { subject: subjectId });
      return view.subjects[0] || null;
    } catch {
      return null;
    }
  }

  // The detail is rebuilt whenever the alert changes (the user's own actions, and stream
  // updates that may arrive at any moment): only the newest rebuild draws, and what the user
  // was typing and where the focus was survive it.
  async function showDetail(id) {
    const mine = ++detailGeneration;
    selected = id;
    for (const tr of tbody.querySelectorAll("tr")) tr.setAttribute("aria-selected", String(tr.dataset.alert === String(id)));
    let a;
    let seen;
    try {
      a = await api.get(`/api/alerts/${id}`);
      seen = await lastKnown(a.subject_id);
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
    const errors = new FieldErrors(msg);
    const ongoing = a.end === null;
    let askConfirm = null;
    const resolvedBy = [...a.actions].reverse().find((x) => x.action === "resolved");
    const condition = ongoing
      ? `still going on (since ${fmtTime(a.start)}, ${fmtDuration(now() - a.start)})${a.state === "resolved" ? " — resolved while it was going on; the alert reopens if the condition recurs" : ""}`
      : `ended ${fmtTime(a.end)}`;
    const p = seen && seen.position;
    const where = p
      ? h(
          "dd",
          { id: "alert-last-known" },
          `${fmtTime(p.t)} (${fmtAge(p.t)}), ${fc ? `${nearestPlace(fc, p.lat, p.lon)}, ` : ""}${p.lat.toFixed(5)}, ${p.lon.toFixed(5)} ±${Math.round(p.accuracy_m)} m${seen.presence && seen.presence.at_home ? ", at home" : ""}`,
        )
      : h("dd", { id: "alert-last-known", class: "muted", text: "not visible to your unit live" });
    const body = [
      h("h2", { id: "alert-title", tabindex: "-1", text: `${label(a.type)} · ${subjectName(a.subject_id)}` }),
      h(
        "dl",
        { class: "facts" },
        h("dt", { text: "State" }), h("dd", {}, h("span", { class: `badge ${a.state}`, id: "alert-state", text: a.state })),
        h("dt", { text: "Severity" }), h("dd", {}, h("span", { class: `badge ${a.severity}`, text: a.severity })),
        h("dt", { text: "Rule" }), h("dd", { text: `${a.rule} v${a.rule_version}` }),
        h("dt", { text: "Started" }), h("dd", { text: fmtTime(a.start) }),
        h("dt", { text: "Condition" }), h("dd", { id: "alert-condition", text: condition }),
        h("dt", { text: "Duration" }), h("dd", { text: fmtDuration(ongoing ? Math.max(0, now() - a.start) : a.duration_s) }),
        h("dt", { text: "Raised" }), h("dd", { text: fmtTime(a.raised_at) }),
        a.outcome ? [h("dt", { text: "Outcome" }), h("dd", { text: `${label(a.outcome)} — ${a.note || ""}${resolvedBy ? ` (${fmtTime(resolvedBy.at)})` : ""}` })] : null,
        h("dt", { text: "Last known position" }), where,
      ),
      h(
        "p",
        { class: "row" },
        p ? h("a", { href: `#/map/${a.subject_id}`, id: "alert-live-link", text: "Show on the live map" }) : null,
        h("a", { href: `#/subjects/${a.subject_id}/trail/${a.start}`, id: "alert-trail-link", text: `Trail at ${fmtTime(a.start)}` }),
      ),
    ];
    if (canWork(a.subject_id) && a.state === "open") {
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
                errors.show(e, byName({ note }));
              }
            },
          },
          ...field("Note (optional)", note),
          h("button", { type: "submit", id: "acknowledge", text: "Acknowledge" }),
        ),
      );
    }
    if (canWork(a.subject_id) && (a.state === "open" || a.state === "acknowledged")) {
      // No outcome is chosen for the officer: the choice is theirs and recorded as evidence.
      // Not `required`: the form says so beside the field itself (the browser's bubble is
      // gone at the next click).
      const outcome = h(
        "select",
        { id: "resolve-outcome" },
        h("option", { value: "", text: "Choose an outcome…" }),
        OUTCOMES.map((o) => h("option", { value: o, text: label(o) })),
      );
      const note = h("textarea", { id: "resolve-note", required: true, maxlength: 2000 });
      const confirmBox = h("div", { id: "resolve-confirm", class: "confirm", hidden: true, role: "alert" });
      const send = async () => {
        try {
          await api.post(`/api/alerts/${a.id}/resolve`, { outcome: outcome.value, note: note.value.trim() });
          announce("Alert resolved");
          await showDetail(a.id);
          await load();
        } catch (e) {
          errors.show(e, byName({ outcome, note }));
        }
      };
      // Still going on: say what resolving now means before doing it.
      askConfirm = () => {
        clear(
          confirmBox,
          h("p", { text: `This ${label(a.type)} is still going on (since ${fmtTime(a.start)}). Resolving records your outcome now; the alert reopens if the condition recurs.` }),
          h("div", { class: "row" },
            h("button", { type: "button", id: "resolve-confirm-yes", class: "danger", text: "Resolve while ongoing", onclick: () => send() }),
            h("button", { type: "button", class: "secondary", id: "resolve-confirm-no", text: "Cancel", onclick: () => { confirmBox.hidden = true; outcome.focus(); } })),
        );
        confirmBox.hidden = false;
        document.getElementById("resolve-confirm-yes").focus();
      };
      body.push(
        h(
          "form",
          {
            class: "stack",
            "aria-label": "Resolve",
            onsubmit: async (ev) => {
              ev.preventDefault();
              errors.clear();
              const missing = !outcome.value ? [outcome, "Choose the outcome: what the alert turned out to be."] : !note.value.trim() ? [note, "A note is required to resolve an alert."] : null;
              if (missing) {
                errors.set(...missing);
                missing[0].focus();
                return;
              }
              if (!ongoing) {
                await send();
                return;
              }
              askConfirm();
            },
          },
          h("h3", { text: "Resolve" }),
          ...field("Outcome", outcome),
          ...field("Note", note),
          h("button", { type: "submit", id: "resolve", text: "Resolve" }),
          confirmBox,
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
          `Episode ${fmtTime(ep.start)} → ${ep.end === null ? "still going on" : fmtTime(ep.end)} (${fmtDuration(ep.end === null ? now() - ep.start : ep.duration_s)}), confirmed ${fmtTime(ep.confirmed_t)}${ep.late ? ", late" : ""}`,
          h("ul", {}, ep.evidence.map((e) => h("li", { text: evidenceText(e) }))),
        ),
      );
    }
    body.push(evList, h("h3", { text: "History" }), h("ul", {}, a.actions.map((x) => h("li", { text: `${fmtTime(x.at)} ${x.action}${x.note ? ` — ${x.note}` : ""}` }))));
    clear(detail, body);
    detail.dataset.alert = String(a.id);
    if (kept) restoreFormState(kept);
    // A colleague's action or a stream update mid-confirmation keeps the question open (it
    // still applies while the alert can be resolved and is still going on).
    if (kept && kept.confirming && askConfirm) askConfirm();

    const map = await baseMap(mapEl, ctx.config, { label: "Evidence map" });
    if (mine !== detailGeneration) {
      map.remove();
      return;
    }
    detailCleanup = () => map.remove();
    // The map frames the evidence (or, without positions, the zone the alert is about, or
    // the last known position): the subject's other zones are context, not the frame.
    const frame = [];
    const zoneIds = new Set(a.episode_list.map((ep) => ep.details && ep.details.zone).filter(Boolean));
    if (may(a.subject_id, "conditions")) {
      const zones = await api.get(`/api/subjects/${a.subject_id}/zones`).catch(() => ({ features: [] }));
      if (mine !== detailGeneration) return; // a newer rebuild has removed this map
      for (const z of zones.features) {
        const layer = zoneLayer(z).addTo(map);
        if (zoneIds.has(z.id)) frame.push(layer);
      }
    }
    const pts = a.episode_list.flatMap((ep) => ep.evidence).filter((e) => e.lat_e7 !== undefined);
    const evidence = [];
    for (const e of pts) {
      const ll = [e.lat_e7 / 1e7, e.lon_e7 / 1e7];
      evidence.push(L.circle(ll, { radius: (e.acc_dm || 0) / 10, color: "#b3261e", weight: 1, fillOpacity: 0.1 }).addTo(map));
      evidence.push(L.circleMarker(ll, { radius: 5, color: "#b3261e", fillOpacity: 0.9 }).bindTooltip(evidenceText(e)).addTo(map));
    }
    if (pts.length > 1) L.polyline(pts.map((e) => [e.lat_e7 / 1e7, e.lon_e7 / 1e7]), { color: "#b3261e", weight: 1, dashArray: "3 3" }).addTo(map);
    let last = null;
    if (p) last = L.circleMarker([p.lat, p.lon], { radius: 7, color: "#fff", weight: 2, fillColor: "#0b5cad", fillOpacity: 1 }).bindTooltip(`Last known position, ${fmtTime(p.t)}`).addTo(map);
    fitTo(map, evidence.length ? evidence : frame.length ? frame : [last], 17);
    map.getContainer().dataset.framed = evidence.length ? "evidence" : frame.length ? "zone" : "last-known";
  }

  function formState(root) {
    const active = root.contains(document.activeElement) ? document.activeElement : null;
    const values = [...root.querySelectorAll("input[id], select[id], textarea[id]")].map((e) => [e.id, e.value]);
    const confirming = !!root.querySelector("#resolve-confirm:not([hidden])");
    return { values, confirming, focus: active ? active.id || null : null, hadFocus: active !== null };
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
    unsubscribe();
    if (detailCleanup) detailCleanup();
  };
}
