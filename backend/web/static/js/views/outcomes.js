// The subject page's outcomes panel (for the officers who manage the subject): what became
// of the episode of monitoring — reoffended, recalled, completed, withdrew from the scheme,
// other — on which date, with a note, for the unit's evaluation (docs/operations.md,
// "Evaluation"). One recorded in error is withdrawn with a reason: it stays listed and
// counts nowhere. The API judges every value; its sentence goes beside the field.
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, field, fmtTime, h, now, toLocalInput } from "../util.js";

const KINDS = { reoffended: "reoffended", recalled: "recalled", completed: "completed the order", withdrawn: "withdrew from the scheme", other: "other" };

function withdrawForm(o, reload) {
  const reason = h("input", { id: `outcome-${o.id}-reason`, name: "reason", maxlength: 500 });
  const status = h("p", { role: "status" });
  const errors = new FieldErrors(status);
  const form = h("form", { class: "row", "aria-label": `Withdraw outcome ${o.id}`, noValidate: true }, h("div", {}, ...field("Why it was wrong", reason)), h("button", { type: "submit", text: "Withdraw outcome" }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.clear();
    try {
      await api.post(`/api/outcomes/${o.id}/withdrawal`, { reason: reason.value.trim() });
      announce("Outcome withdrawn.");
      await reload();
    } catch (e) {
      errors.show(e, byName({ reason }));
    }
  });
  return h("details", {}, h("summary", { text: "Withdraw (recorded in error)" }), form, status);
}

function item(o, reload) {
  const what = `${KINDS[o.kind] || o.kind} on ${o.occurred_on}${o.note ? `: ${o.note}` : ""}`;
  if (o.withdrawn_at !== null) {
    return h("li", { class: "withdrawn", dataset: { outcome: String(o.id), state: "withdrawn" } }, h("s", { text: what }), ` — withdrawn ${fmtTime(o.withdrawn_at)}: ${o.withdrawal_reason}`);
  }
  return h("li", { dataset: { outcome: String(o.id), state: "recorded" } }, what, o.corrected_at ? ` (corrected ${fmtTime(o.corrected_at)})` : "", withdrawForm(o, reload));
}

export async function outcomesSection(subject) {
  const id = subject.id;
  const list = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const kind = h("select", { id: "outcome-kind", name: "kind" }, Object.entries(KINDS).map(([v, t]) => h("option", { value: v, text: t })));
  const occurred = h("input", { id: "outcome-occurred_on", name: "occurred_on", type: "date", value: toLocalInput(now()).slice(0, 10) });
  const note = h("input", { id: "outcome-note", name: "note", maxlength: 2000 });
  const status = h("p", { role: "status", id: "outcome-status" });
  const errors = new FieldErrors(status);
  const form = h(
    "form",
    { class: "row", "aria-label": "Record an outcome", noValidate: true },
    h("div", {}, ...field("Outcome", kind)),
    h("div", {}, ...field("On (date)", occurred)),
    h("div", {}, ...field("Note", note)),
    h("button", { type: "submit", text: "Record outcome" }),
  );
  async function reload() {
    const rows = await api.get(`/api/subjects/${id}/outcomes`);
    clear(list, rows.length ? h("ul", { id: "outcomes" }, rows.map((o) => item(o, reload))) : h("p", { class: "muted", text: "No outcome recorded." }));
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.clear();
    try {
      await api.post(`/api/subjects/${id}/outcomes`, { kind: kind.value, occurred_on: occurred.value, note: note.value.trim() });
      announce("Outcome recorded.");
      note.value = "";
      await reload();
    } catch (e) {
      errors.show(e, byName({ kind, occurred_on: occurred, note }));
    }
  });
  await reload().catch((e) => clear(list, h("p", { class: "muted", text: e.message || String(e) })));
  return h(
    "section",
    { class: "panel", "aria-label": "Outcomes", id: "outcomes-panel" },
    h("h2", { text: "Outcomes (for evaluation)" }),
    h("p", { class: "muted", text: "Your unit's researcher sees only the kind, under a pseudonym: never the date, the note or who." }),
    list,
    form,
    status,
  );
}
