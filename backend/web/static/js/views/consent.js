// The subject page's consent panel: the enrolment on the voluntary scheme (scheme, when
// consent was given, who it may be shared with, the witness, the signed form, the review
// date), and the steps of its lifecycle for a user who may manage the subject: record
// consent, record the withdrawal (which opens a removal task), record the removal (the
// equipment's assignments end then, and the backend refuses what its devices send after).
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, field, fmtTime, fromLocalInput, h, now, toLocalInput, ZONE_LABEL } from "../util.js";

const SHARING = { police: "police units", partner: "partner agencies" };

function facts(e) {
  const status = e.exited_at
    ? `Ended: equipment removed ${fmtTime(e.exited_at)}`
    : e.withdrawn_at
      ? `Withdrawn ${fmtTime(e.withdrawn_at)}: equipment still to be removed`
      : "Consent in force";
  return h(
    "dl",
    { class: "facts", dataset: { enrolment: String(e.id) } },
    h("dt", { text: "Scheme" }), h("dd", { text: e.scheme }),
    h("dt", { text: "Status" }), h("dd", { class: "consent-status", text: status }),
    h("dt", { text: "Consent given" }), h("dd", { text: fmtTime(e.consent_at) }),
    h("dt", { text: "May be shared with" }), h("dd", { text: e.sharing.map((s) => SHARING[s] || s).join(", ") || "no other unit" }),
    h("dt", { text: "Witnessed by" }), h("dd", { text: e.witnessed_by }),
    h("dt", { text: "Signed form" }), h("dd", { text: e.document_ref }),
    h("dt", { text: "Review due" }), h("dd", { text: fmtTime(e.review_at) }),
    e.withdrawal_note ? [h("dt", { text: "Withdrawal note" }), h("dd", { text: e.withdrawal_note })] : null,
  );
}

// A form of dated fields (datetime-local, London time) and text fields; `send(values)`
// posts it. Refusals are said next to their fields; success reloads the panel.
function stepForm(name, fields, send, reload) {
  const status = h("p", { role: "status" });
  const errors = new FieldErrors(status);
  const controls = {};
  const rows = fields.map(([key, text, attrs]) => {
    const control = attrs.type === "checkboxes"
      ? h("fieldset", { id: `consent-${key}` }, h("legend", { text }), Object.entries(SHARING).map(([v, t]) => h("label", { class: "inline" }, h("input", { type: "checkbox", value: v, checked: true }), ` ${t}`)))
      : h("input", { id: `consent-${key}`, ...attrs });
    controls[key] = control;
    return attrs.type === "checkboxes" ? h("div", {}, control) : h("div", {}, ...field(text, control));
  });
  // The API judges the values (noValidate): its sentence goes next to the field it is about.
  const form = h("form", { class: "row", "aria-label": name, noValidate: true }, rows, h("button", { type: "submit", text: name }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.clear();
    const values = {};
    for (const [key, , attrs] of fields) {
      const c = controls[key];
      if (attrs.type === "checkboxes") values[key] = [...c.querySelectorAll("input:checked")].map((i) => i.value);
      else if (attrs.type === "datetime-local") values[key] = c.value ? fromLocalInput(c.value) : null;
      else values[key] = c.value.trim();
    }
    try {
      await send(values);
      announce(`${name}: saved.`);
      await reload();
    } catch (e) {
      errors.show(e, byName(controls));
    }
  });
  return [form, status];
}

export async function consentSection(subject, canManage) {
  const id = subject.id;
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const sec = h("section", { class: "panel", "aria-label": "Consent", id: "consent" }, h("h2", { text: "Consent (voluntary scheme)" }), body);
  const when = (t) => ({ type: "datetime-local", value: toLocalInput(t), required: true });
  async function reload() {
    const rows = await api.get(`/api/subjects/${id}/enrolments`);
    const current = rows.find((e) => e.exited_at === null);
    const past = rows.filter((e) => e !== current);
    const parts = [current ? facts(current) : h("p", { class: "muted", text: "Not enrolled on a voluntary scheme." })];
    const t = Math.floor(now() / 60) * 60;
    if (canManage && !current) {
      parts.push(h("h3", { text: "Record consent" }), ...stepForm("Record consent", [
        ["scheme", "Scheme", { required: true, maxlength: 100, value: "IOM voluntary tagging" }],
        ["consent_at", `Consent given (${ZONE_LABEL})`, when(t)],
        ["sharing", "May be shared with", { type: "checkboxes" }],
        ["witnessed_by", "Witnessed by", { required: true, maxlength: 100 }],
        ["document_ref", "Signed form reference", { required: true, maxlength: 100 }],
        ["review_at", `Review due (${ZONE_LABEL})`, when(t + 90 * 86400)],
      ], (v) => api.post(`/api/subjects/${id}/enrolments`, v), reload));
    } else if (canManage && !current.withdrawn_at) {
      parts.push(h("h3", { text: "Withdrawal" }), ...stepForm("Record withdrawal", [
        ["withdrawn_at", `Withdrawn (${ZONE_LABEL})`, when(t)],
        ["note", "Note", { maxlength: 2000 }],
      ], (v) => api.post(`/api/subjects/${id}/consent/withdrawal`, v), reload));
    } else if (canManage) {
      parts.push(h("h3", { text: "Removal task (open)" }), h("p", { text: "The wearer withdrew: remove the equipment, then record when it came off. From then on nothing its devices send is accepted." }), ...stepForm("Record removal", [
        ["removed_at", `Equipment removed (${ZONE_LABEL})`, when(t)],
      ], (v) => api.post(`/api/subjects/${id}/consent/removal`, v), reload));
    }
    if (past.length) parts.push(h("h3", { text: "Earlier enrolments" }), h("ul", {}, past.map((e) => h("li", { text: `${e.scheme}: consent ${fmtTime(e.consent_at)}, withdrawn ${fmtTime(e.withdrawn_at)}, equipment removed ${fmtTime(e.exited_at)} (form ${e.document_ref})` }))));
    clear(body, ...parts);
  }
  reload().catch((e) => clear(body, h("p", { class: "muted", text: e.status === 403 ? "Not shared with your unit." : String(e.message || e) })));
  return sec;
}
