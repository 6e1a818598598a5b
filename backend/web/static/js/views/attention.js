// Needs attention (officers' and supervisors' first screen): the open alerts, most severe
// first and then the longest waiting, each with its subject, what, since when and where the
// subject was last seen, and one action to open it; the acknowledged ones being worked; and
// the subjects whose equipment is not reporting as its mode should.
import * as feed from "../alertfeed.js";
import * as api from "../api.js";
import { nearestPlace, world } from "../map.js";
import { clear, fmtAge, fmtDuration, fmtTime, freshnessText, freshState, h, label, now } from "../util.js";

export async function render(el, ctx) {
  const subjects = new Map((await api.get("/api/subjects", { limit: 1000 })).map((s) => [s.id, s]));
  const fc = await world(ctx.config);
  let live = new Map(); // subject id -> live entry (position, freshness)
  const summary = h("p", { id: "attention-summary", "aria-live": "polite" });
  const openBody = h("tbody");
  const ackBody = h("tbody");
  const quiet = h("ul", { class: "subject-list", id: "attention-quiet" });
  const headRow = () => h("tr", {}, ["Severity", "What", "Subject", "Since", "Where (last known)", ""].map((t) => h("th", { scope: "col", text: t })));
  el.append(
    h("h1", { text: "Needs attention" }),
    summary,
    h(
      "section",
      { class: "panel", "aria-labelledby": "attention-open-title" },
      h("h2", { id: "attention-open-title", text: "Open alerts — most severe first, then the longest waiting" }),
      h("table", { class: "alerts-table", id: "attention-open" }, h("thead", {}, headRow()), openBody),
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "attention-ack-title" },
      h("h2", { id: "attention-ack-title", text: "Acknowledged — being worked" }),
      h("table", { class: "alerts-table", id: "attention-acknowledged" }, h("thead", {}, headRow()), ackBody),
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "attention-quiet-title" },
      h("h2", { id: "attention-quiet-title", text: "Not reporting as expected" }),
      quiet,
    ),
  );

  function where(subjectId) {
    const s = live.get(subjectId);
    if (!s || !s.position) return "—";
    const p = s.position;
    const place = nearestPlace(fc, p.lat, p.lon) || `${p.lat.toFixed(4)}, ${p.lon.toFixed(4)}`;
    const home = s.presence && s.presence.at_home ? "at home, " : "";
    return `${home}${place} (${fmtAge(p.t)})`;
  }

  function row(a) {
    const s = subjects.get(a.subject_id);
    const who = s ? `${s.reference} · ${s.name}` : `subject ${a.subject_id}`;
    const ongoing = a.end === null;
    return h(
      "tr",
      { dataset: { alert: String(a.id), severity: a.severity } },
      h("td", {}, h("span", { class: `badge ${a.severity}`, text: a.severity })),
      h("td", { text: label(a.type) }),
      h("td", {}, h("a", { href: `#/subjects/${a.subject_id}`, text: who })),
      h("td", { text: `${fmtTime(a.start)} — ${ongoing ? `going on for ${fmtDuration(now() - a.start)}` : `lasted ${fmtDuration(a.duration_s)}`}` }),
      h("td", {}, where(a.subject_id), live.has(a.subject_id) ? [" ", h("a", { href: `#/map/${a.subject_id}`, text: "map" })] : null),
      h(
        "td",
        {},
        h("button", {
          type: "button",
          text: "Open",
          "aria-label": `Open alert ${a.id}: ${label(a.type)} for ${s ? s.reference : a.subject_id}`,
          onclick: () => {
            location.hash = `#/alerts/${a.id}`;
          },
        }),
      ),
    );
  }

  function draw() {
    const all = feed.list();
    const open = all.filter((a) => a.state === "open");
    const acked = all.filter((a) => a.state === "acknowledged");
    clear(openBody, open.map(row));
    if (!open.length) openBody.append(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No open alerts." })));
    clear(ackBody, acked.map(row));
    if (!acked.length) ackBody.append(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "None." })));
    const late = [...live.values()].filter((s) => s.freshness && freshState(s.freshness) !== "on_time");
    clear(
      quiet,
      late.map((s) =>
        h(
          "li",
          { dataset: { subject: String(s.id) } },
          h("a", { href: `#/subjects/${s.id}`, text: s.reference }),
          h("span", { text: s.name }),
          h("span", { class: `badge ${freshState(s.freshness)}`, text: freshnessText(s.freshness) }),
          h("a", { href: `#/map/${s.id}`, text: "Show on the map" }),
        ),
      ),
    );
    if (!late.length) quiet.append(h("li", { class: "muted", text: live.size ? "Every subject is reporting as expected." : "No live positions for your unit." }));
    summary.textContent = `${open.length} open alert${open.length === 1 ? "" : "s"}, ${acked.length} acknowledged; ${late.length} subject${late.length === 1 ? "" : "s"} not reporting as expected.`;
  }

  async function loadLive() {
    try {
      const view = await api.get("/api/web/live");
      live = new Map(view.subjects.map((s) => [s.id, s]));
    } catch {
      live = new Map(); // a role or share without the live scope: alerts only
    }
  }

  await Promise.all([feed.loaded(), loadLive()]);
  draw();
  const unsubscribe = feed.subscribe(() => draw());
  const timer = setInterval(() => loadLive().then(draw), ctx.config.live_refresh_s * 1000);
  return () => {
    unsubscribe();
    clearInterval(timer);
  };
}
