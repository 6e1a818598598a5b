// Evaluation: the unit's cohort as the researcher (and the unit's supervisors) may read it —
// wearers under pseudonymous ids, days worn, curfew nights kept and broken week by week,
// alerts by outcome, the outcomes officers recorded — with the CSV and Parquet exports.
// Nothing here names or places anyone: the API gives no name, reference or position, and
// figures about fewer than its minimum number of people come as null, shown as "fewer
// than N" (docs/operations.md, "Evaluation").
import * as api from "../api.js";
import { bars, columns } from "../chart.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, field, fromLocalInput, h, label, now, toLocalInput } from "../util.js";

const PERIOD_DAYS = 92; // the API's longest period (as a report)
const GROUPS = [
  ["alerts_by_outcome", "Alerts by outcome"],
  ["alerts_by_type", "Alerts by type"],
  ["outcomes", "Recorded outcomes"],
  ["zone_events", "Zone events"],
];

function shiftDay(day, days) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

function shown(value, min) {
  return value === null ? `fewer than ${min}` : String(value);
}

function totalsTable(totals, prefix, caption, min) {
  const keys = Object.keys(totals).filter((k) => k.startsWith(`${prefix}.`));
  if (!keys.length) return h("p", { class: "muted", text: `${caption}: none in the period.` });
  return h(
    "table",
    { class: "totals", dataset: { group: prefix } },
    h("caption", { text: caption }),
    h("tbody", {}, keys.map((k) => h("tr", {}, h("th", { scope: "row", text: label(k.slice(prefix.length + 1)) }), h("td", { text: shown(totals[k], min) })))),
  );
}

// "3/4": nights kept of the nights with a curfew that week.
function keptOf(w) {
  const all = w.nights_kept + w.nights_broken;
  return all ? `${w.nights_kept}/${all}` : "none";
}

function weekLabel(week) {
  const [, m, d] = week.split("-");
  return `${d}/${m}`;
}

export async function render(el) {
  const today = toLocalInput(now()).slice(0, 10);
  const fromIn = h("input", { id: "cohort-from", name: "from", type: "date", value: shiftDay(today, 1 - PERIOD_DAYS), required: true });
  const toIn = h("input", { id: "cohort-to", name: "to", type: "date", value: today, required: true });
  const status = h("p", { role: "status", id: "cohort-status" });
  const errors = new FieldErrors(status);
  const summary = h("p", { id: "cohort-summary", class: "summary" });
  const body = h("div", { id: "cohort" });
  const exportStatus = h("p", { role: "status", id: "cohort-export-status" });
  const buttons = [
    ["csv", "Download CSV"],
    ["parquet", "Download Parquet"],
  ].map(([format, text]) => h("button", { type: "button", dataset: { format }, text }));
  const form = h(
    "form",
    { class: "row", "aria-label": "Period", novalidate: true },
    h("div", {}, ...field("From (London date)", fromIn)),
    h("div", {}, ...field("To, inclusive", toIn)),
    h("button", { type: "submit", text: "Show" }),
  );

  function period() {
    const start = fromLocalInput(`${fromIn.value}T00:00`);
    const end = toIn.value ? fromLocalInput(`${shiftDay(toIn.value, 1)}T00:00`) : null;
    return { from: start, to: end };
  }
  const locate = byName({ from: fromIn, to: toIn });

  function show(c) {
    const min = c.min_cell_count;
    const total = c.rows.length;
    if (c.subjects === 0) {
      summary.textContent = "Nobody in your unit wore a tag in this period.";
      clear(body);
      return;
    }
    if (c.subjects === null) {
      summary.textContent = `Fewer than ${min} people wore a tag in this period, so no figures are shown: with so few, a figure could point to a person. Choose a longer period.`;
      clear(body);
      return;
    }
    summary.textContent = `${c.subjects} wearers in the period. Figures about fewer than ${min} people are withheld and shown as “fewer than ${min}”.`;
    const byDays = [...c.rows].sort((a, b) => b.wear_days - a.wear_days || a.pid.localeCompare(b.pid));
    const nightsKept = shown(c.totals.nights_kept ?? 0, min);
    const nightsBroken = shown(c.totals.nights_broken ?? 0, min);
    clear(
      body,
      h(
        "section",
        { class: "panel", "aria-labelledby": "days-title" },
        h("h2", { id: "days-title", text: "Days worn per wearer" }),
        h("figure", { id: "chart-days" }, bars(byDays.map((r) => ({ label: r.pid, value: r.wear_days })), { label: `Days worn by each of ${total} wearers`, unit: "d", min })),
      ),
      h(
        "section",
        { class: "panel", "aria-labelledby": "weeks-title" },
        h("h2", { id: "weeks-title", text: "Compliance over time" }),
        h("p", { class: "muted" }, "Curfew nights kept ", h("span", { class: "swatch part-0" }), " and broken ", h("span", { class: "swatch part-1" }), ` each week (from Monday). Curfew nights in the period: ${nightsKept} kept, ${nightsBroken} broken.`),
        h("figure", { id: "chart-weeks" }, columns(c.weeks.map((w) => ({ label: weekLabel(w.week), parts: [{ value: w.nights_kept }, { value: w.nights_broken }], note: keptOf(w) })), { label: "Curfew nights kept and broken by week", names: ["kept", "broken"], min })),
        h(
          "table",
          { id: "cohort-weeks" },
          h("thead", {}, h("tr", {}, ["Week from", "Wearers", "Days worn", "Nights kept", "Nights broken"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, c.weeks.map((w) => h("tr", {}, h("td", { text: w.week }), ["wearers", "wear_days", "nights_kept", "nights_broken"].map((k) => h("td", { text: shown(w[k], min) }))))),
        ),
      ),
      h("section", { class: "panel totals-grid", "aria-label": "Cohort totals" }, GROUPS.map(([prefix, caption]) => totalsTable(c.totals, prefix, caption, min))),
      h(
        "section",
        { class: "panel", "aria-labelledby": "wearers-title" },
        h("h2", { id: "wearers-title", text: "Wearers" }),
        h(
          "table",
          { id: "cohort-rows" },
          h("thead", {}, h("tr", {}, ["Pseudonym", "Days worn", "Nights kept", "Nights broken", "Alerts", "Outcomes"].map((t) => h("th", { scope: "col", text: t })))),
          h(
            "tbody",
            {},
            c.rows.map((r) =>
              h(
                "tr",
                { dataset: { pid: r.pid } },
                h("td", {}, h("code", { text: r.pid })),
                h("td", { text: String(r.wear_days) }),
                h("td", { text: String(r.nights_kept) }),
                h("td", { text: String(r.nights_broken) }),
                h("td", { text: Object.entries(r.alerts_by_outcome).map(([k, v]) => `${v} ${label(k)}`).join(", ") || "none" }),
                h("td", { text: r.outcomes.map(label).join(", ") || "none recorded" }),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function load() {
    errors.clear();
    const p = period();
    if (p.from === null || p.to === null) {
      errors.set(p.from === null ? fromIn : toIn, "Enter a date.");
      return;
    }
    try {
      const c = await api.get("/api/research/cohort", p);
      show(c);
      for (const b of buttons) b.disabled = c.rows.length === 0;
      announce(summary.textContent);
    } catch (e) {
      errors.show(e, locate);
    }
  }

  for (const b of buttons) {
    b.addEventListener("click", async () => {
      exportStatus.textContent = "";
      try {
        const got = await api.download(`/api/research/export.${b.dataset.format}`, period(), `cohort.${b.dataset.format}`);
        exportStatus.textContent = `Saved ${got.name}.`;
      } catch (e) {
        errors.show(e, locate);
      }
    });
  }
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });

  el.append(
    h("h1", { text: "Evaluation" }),
    h("p", { class: "muted", text: "Your unit's wearers under pseudonymous ids: no names, references or places. Every reading and export is recorded in the audit log." }),
    form,
    status,
    summary,
    body,
    h("section", { class: "panel", "aria-labelledby": "export-title" }, h("h2", { id: "export-title", text: "Export" }), h("p", { class: "muted", text: "The wearers' rows for the period, one per pseudonym: CSV for a spreadsheet, Parquet for R or pandas." }), h("div", { class: "row" }, buttons), exportStatus),
  );
  await load();
  return null;
}
