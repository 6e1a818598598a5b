// Audit (auditors only): search the hash-chained log, page through it, verify the chain,
// export CSV. Reading the log is itself recorded in it.
import * as api from "../api.js";
import { clear, errorText, field, fmtTime, fromLocalInput, h, ZONE_LABEL } from "../util.js";

export async function render(el) {
  const action = h("input", { id: "audit-action", maxlength: 64, placeholder: "e.g. read. or disclose." });
  const userId = h("input", { id: "audit-user", type: "number", min: 1 });
  const subjectId = h("input", { id: "audit-subject", type: "number", min: 1 });
  const since = h("input", { id: "audit-since", type: "datetime-local" });
  const until = h("input", { id: "audit-until", type: "datetime-local" });
  const verifyOut = h("p", { role: "status", id: "audit-verify-result" });
  const tbody = h("tbody");
  const more = h("button", { type: "button", class: "secondary", id: "audit-more", text: "Older records…", hidden: true });
  const msg = h("p", { role: "status" });
  let next = 0;

  const filters = () => ({
    action: action.value.trim(),
    user_id: userId.value,
    subject_id: subjectId.value,
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
            h("td", { text: (r.subject_ids || []).join(", ") }),
            h("td", { text: r.scope || "" }),
            h("td", { text: r.purpose || "" }),
            h("td", { class: "evidence", text: JSON.stringify(r.detail) }),
          ),
        );
      }
      next = page.next_after_id || 0;
      more.hidden = !page.next_after_id;
      msg.textContent = `${tbody.children.length} records shown.`;
    } catch (e) {
      msg.textContent = errorText(e);
    }
  }

  const form = h(
    "form",
    { class: "filters", "aria-label": "Search the audit log" },
    h("div", {}, ...field("Action starts with", action)),
    h("div", {}, ...field("User id", userId)),
    h("div", {}, ...field("Subject id", subjectId)),
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
      h("table", { id: "audit-table" }, h("thead", {}, h("tr", {}, ["#", "When", "Who", "Action", "Subjects", "Scope", "Purpose", "Detail"].map((t) => h("th", { scope: "col", text: t })))), tbody),
      more,
    ),
  );
  await load();
  return null;
}
