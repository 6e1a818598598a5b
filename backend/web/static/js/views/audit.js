// Audit (auditors only): search the hash-chained log, page through it, verify the chain,
// export CSV. Reading the log is itself recorded in it.
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { clear, errorText, field, fmtTime, fromLocalInput, h, label, ZONE_LABEL } from "../util.js";

// A record's detail as "key: value" pairs (nested values compact), readable and wrapping.
function details(detail) {
  const entries = Object.entries(detail || {});
  if (!entries.length) return "";
  return h(
    "dl",
    { class: "audit-detail" },
    entries.flatMap(([k, v]) => [h("dt", { text: label(k) }), h("dd", { text: typeof v === "string" ? v : JSON.stringify(v) })]),
  );
}

export async function render(el) {
  const action = h("input", { id: "audit-action", maxlength: 64, placeholder: "e.g. read. or disclose." });
  const actor = h("input", { id: "audit-user", maxlength: 64, placeholder: "username", autocomplete: "off" });
  const subject = h("input", { id: "audit-subject", maxlength: 64, placeholder: "subject reference", autocomplete: "off" });
  const since = h("input", { id: "audit-since", type: "datetime-local" });
  const until = h("input", { id: "audit-until", type: "datetime-local" });
  const verifyOut = h("p", { role: "status", id: "audit-verify-result" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", id: "audit-more", text: "Older records…", hidden: true });
  const msg = h("p", { role: "status" });
  let next = 0;

  const errors = new FieldErrors(msg);
  const filters = () => ({
    action: action.value.trim(),
    actor: actor.value.trim(),
    subject: subject.value.trim(),
    since: since.value ? fromLocalInput(since.value) : "",
    until: until.value ? fromLocalInput(until.value) : "",
  });

  async function load(append = false) {
    try {
      const page = await api.get("/api/audit", { ...filters(), after_id: append ? next : 0, limit: 200 });
      if (!append) clear(tbody);
      for (const r of page.records) {
        tbody.append(
          h(
            "tr",
            {},
            h("td", { text: String(r.id) }),
            h("td", { text: fmtTime(r.at) }),
            h("td", { text: r.actor }),
            h("td", { text: r.action }),
            h("td", { text: (r.subject_references || r.subject_ids || []).join(", ") }),
            h("td", { text: r.scope || "" }),
            h("td", { text: r.purpose || "" }),
            h("td", { class: "detail" }, details(r.detail)),
          ),
        );
      }
      next = page.next_after_id || 0;
      more.hidden = !page.next_after_id;
      errors.clear();
      msg.textContent = `${tbody.children.length} records shown.`;
    } catch (e) {
      errors.show(e, byName({ action, actor, subject, since, until }));
    }
  }

  const form = h(
    "form",
    { class: "filters", "aria-label": "Search the audit log" },
    h("div", {}, ...field("Action starts with", action)),
    h("div", {}, ...field("User (username)", actor)),
    h("div", {}, ...field("Subject (reference)", subject)),
    h("div", {}, ...field(`Since (${ZONE_LABEL})`, since)),
    h("div", {}, ...field(`Until (${ZONE_LABEL})`, until)),
    h("button", { type: "submit", text: "Search" }),
    h("button", {
      type: "button",
      class: "secondary",
      id: "audit-export",
      text: "Export CSV",
      onclick: () => api.download("/api/audit/export.csv", filters(), "audit.csv").catch((e) => (msg.textContent = errorText(e))),
    }),
    h("button", {
      type: "button",
      class: "secondary",
      id: "audit-verify",
      text: "Verify chain",
      onclick: async () => {
        try {
          const v = await api.get("/api/audit/verify");
          verifyOut.textContent = v.ok ? `Chain intact: ${v.checked} records checked.` : `Chain broken at record ${v.first_bad_id}: ${v.reason}`;
          verifyOut.className = v.ok ? "" : "error";
        } catch (e) {
          verifyOut.textContent = errorText(e);
        }
      },
    }),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  more.addEventListener("click", () => load(true));
  el.append(
    h("h1", { text: "Audit log" }),
    form,
    verifyOut,
    msg,
    h(
      "div",
      { class: "panel" },
      h("table", { id: "audit-table", class: "audit-table" }, h("thead", {}, h("tr", {}, ["Record", "When", "Who", "Action", "Subjects", "Scope", "Purpose", "Detail"].map((t) => h("th", { scope: "col", text: t })))), tbody),
      more,
    ),
  );
  await load();
  return null;
}
