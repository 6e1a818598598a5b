// Admin: units and user accounts (administrators), the unit's users and its shares of
// subjects with other units (supervisors).
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, errorText, field, fmtTime, fromLocalInput, h, label, now, toLocalInput, ZONE_LABEL } from "../util.js";

const ROLES = ["administrator", "supervisor", "officer", "partner", "auditor", "researcher"];
const SCOPES = ["live", "trail", "alerts", "reports", "conditions"];

export async function render(el, ctx) {
  el.append(h("h1", { text: "Admin" }));
  const units = await api.get("/api/units");
  const unitName = (id) => (units.find((u) => u.id === id) || { name: `#${id}` }).name;
  const isAdmin = ctx.me.role === "administrator";
  if (isAdmin) el.append(await unitsSection(units));
  el.append(await usersSection(isAdmin, units, unitName));
  if (ctx.me.role === "supervisor") el.append(await sharesSection(ctx, units, unitName));
  return null;
}

async function unitsSection(units) {
  const tbody = h("tbody", {}, units.map((u) => h("tr", {}, h("td", { text: u.name }), h("td", { text: u.kind }))));
  const name = h("input", { id: "unit-name", required: true, maxlength: 100 });
  const kind = h("select", { id: "unit-kind" }, ["police", "partner"].map((k) => h("option", { value: k, text: k })));
  const msg = h("p", { role: "status" });
  const unitErrors = new FieldErrors(msg);
  const form = h(
    "form",
    { class: "row", "aria-label": "New unit" },
    h("div", {}, ...field("Unit name", name)),
    h("div", {}, ...field("Kind", kind)),
    h("button", { type: "submit", text: "Add unit" }),
    msg,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const u = await api.post("/api/units", { name: name.value.trim(), kind: kind.value });
      units.push(u);
      tbody.append(h("tr", {}, h("td", { text: u.name }), h("td", { text: u.kind })));
      name.value = "";
      announce(`Unit ${u.name} added`);
      unitErrors.clear();
    } catch (e) {
      unitErrors.show(e, byName({ name, kind }));
    }
  });
  return h("section", { class: "panel", "aria-label": "Units" }, h("h2", { text: "Units" }), h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Name" }), h("th", { scope: "col", text: "Kind" }))), tbody), form);
}

async function usersSection(isAdmin, units, unitName) {
  const tbody = h("tbody");
  const msg = h("p", { role: "status", id: "users-status" });
  async function load() {
    const users = await api.get("/api/users");
    clear(
      tbody,
      users.map((u) => {
        const actions = [];
        if (isAdmin) {
          actions.push(
            h("button", {
              type: "button",
              class: "secondary",
              text: u.disabled ? "Enable" : "Disable",
              "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.username}`,
              onclick: () => change(u, { disabled: !u.disabled }),
            }),
          );
          if (u.locked) actions.push(h("button", { type: "button", class: "secondary", text: "Unlock", "aria-label": `Unlock ${u.username}`, onclick: () => change(u, { unlock: true }) }));
          if (u.totp_enabled) {
            // The recovery path for a lost authenticator; it also ends the user's sessions.
            actions.push(
              h("button", {
                type: "button",
                class: "secondary",
                text: "Reset two-step sign-in",
                "aria-label": `Reset two-step sign-in for ${u.username}`,
                onclick: () => {
                  const sure = window.confirm(
                    `Turn off two-step sign-in for ${u.username} and sign them out everywhere? ` +
                      "Check who is asking first: this is what a stolen password needs.",
                  );
                  if (sure) change(u, { reset_totp: true });
                },
              }),
            );
          }
        }
        return h(
          "tr",
          {},
          h("td", { text: u.username }),
          h("td", { text: u.display_name }),
          h("td", { text: unitName(u.unit_id) }),
          h("td", { text: u.role }),
          h("td", { text: [u.disabled ? "disabled" : "active", u.locked ? "locked" : "", u.totp_enabled ? "TOTP" : ""].filter(Boolean).join(", ") }),
          h("td", {}, actions),
        );
      }),
    );
  }
  async function change(u, body) {
    try {
      await api.patch(`/api/users/${u.id}`, body);
      announce(`${u.username} updated`);
      await load();
    } catch (e) {
      msg.textContent = errorText(e);
    }
  }
  await load();
  const section = h(
    "section",
    { class: "panel", "aria-label": "Users" },
    h("h2", { text: "Users" }),
    h("table", {}, h("thead", {}, h("tr", {}, ["Username", "Name", "Unit", "Role", "Status", ""].map((t) => h("th", { scope: "col", text: t })))), tbody),
    msg,
  );
  if (isAdmin) {
    const username = h("input", { id: "user-username", required: true, maxlength: 64, pattern: "[A-Za-z0-9._@\\-]+", title: "letters, digits and . _ @ -" });
    const display = h("input", { id: "user-display", maxlength: 100 });
    const unit = h("select", { id: "user-unit" }, units.map((u) => h("option", { value: String(u.id), text: u.name })));
    const role = h("select", { id: "user-role" }, ROLES.map((r) => h("option", { value: r, text: r, selected: r === "officer" })));
    const password = h("input", { id: "user-password", type: "password", required: true, minlength: 12, autocomplete: "new-password" });
    const userMsg = h("p", { role: "status", id: "user-form-status" });
    const form = h(
      "form",
      { class: "stack", "aria-label": "New user" },
      h("h3", { text: "New user" }),
      h("div", { class: "row" }, h("div", {}, ...field("Username", username)), h("div", {}, ...field("Display name", display))),
      h("div", { class: "row" }, h("div", {}, ...field("Unit", unit)), h("div", {}, ...field("Role", role)), h("div", {}, ...field("Initial password (12+ characters)", password))),
      h("button", { type: "submit", text: "Add user" }),
      userMsg,
    );
    const userErrors = new FieldErrors(userMsg);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api.post("/api/users", { username: username.value.trim(), display_name: display.value.trim(), unit_id: Number(unit.value), role: role.value, password: password.value });
        password.value = "";
        announce(`User ${username.value} added`);
        username.value = "";
        userErrors.clear();
        await load();
      } catch (e) {
        userErrors.show(e, byName({ username, display_name: display, unit_id: unit, role, password }));
      }
    });
    section.append(form);
  }
  return section;
}

async function sharesSection(ctx, units, unitName) {
  const subjects = await api.get("/api/subjects", { limit: 1000 });
  const own = subjects.filter((s) => s.owner);
  const name = (id) => {
    const s = subjects.find((x) => x.id === id);
    return s ? s.reference : `#${id}`;
  };
  const tbody = h("tbody");
  const msg = h("p", { role: "status", id: "shares-status" });
  async function load() {
    const shares = await api.get("/api/shares");
    clear(
      tbody,
      shares.map((s) =>
        h(
          "tr",
          {},
          h("td", { text: name(s.subject_id) }),
          h("td", { text: `${unitName(s.owner_unit_id)} → ${unitName(s.unit_id)}` }),
          h("td", { text: s.scopes.join(", ") }),
          h("td", { text: s.purpose }),
          h("td", { text: fmtTime(s.expires_at) }),
          h(
            "td",
            {},
            s.owner_unit_id === ctx.me.unit_id
              ? h("button", {
                  type: "button",
                  class: "danger",
                  text: "Revoke",
                  "aria-label": `Revoke the share of ${name(s.subject_id)} with ${unitName(s.unit_id)}`,
                  onclick: async () => {
                    try {
                      await api.del(`/api/shares/${s.id}`);
                      announce("Share revoked");
                      await load();
                    } catch (e) {
                      msg.textContent = errorText(e);
                    }
                  },
                })
              : null,
          ),
        ),
      ),
    );
    if (!shares.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No active shares." })));
  }
  await load();
  const subject = h("select", { id: "share-subject" }, own.map((s) => h("option", { value: String(s.id), text: `${s.reference} · ${s.name}` })));
  const unit = h("select", { id: "share-unit" }, units.filter((u) => u.id !== ctx.me.unit_id).map((u) => h("option", { value: String(u.id), text: u.name })));
  const boxes = SCOPES.map((s) => h("input", { type: "checkbox", value: s, id: `share-${s}`, checked: s === "live" || s === "alerts" }));
  const purpose = h("input", { id: "share-purpose", required: true, minlength: 3, maxlength: 500 });
  const expires = h("input", { id: "share-expires", type: "datetime-local", value: toLocalInput(now() + 30 * 86400), required: true });
  const scopeSet = h("fieldset", { id: "share-scopes" }, h("legend", { text: "What the unit may see" }), boxes.map((b) => h("label", { class: "inline", for: b.id }, b, label(b.value))));
  const shareMsg = h("p", { role: "status", id: "share-form-status" });
  const form = h(
    "form",
    { class: "stack", "aria-label": "New share" },
    h("h3", { text: "Share a subject with another unit" }),
    h("div", { class: "row" }, h("div", {}, ...field("Subject", subject)), h("div", {}, ...field("With unit", unit))),
    scopeSet,
    ...field("Purpose", purpose),
    ...field(`Expires (${ZONE_LABEL})`, expires),
    h("button", { type: "submit", text: "Share" }),
    shareMsg,
  );
  const shareErrors = new FieldErrors(shareMsg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api.post(`/api/subjects/${subject.value}/shares`, {
        unit_id: Number(unit.value),
        scopes: boxes.filter((b) => b.checked).map((b) => b.value),
        purpose: purpose.value.trim(),
        expires_at: fromLocalInput(expires.value),
      });
      announce("Share created");
      purpose.value = "";
      shareErrors.clear();
      await load();
    } catch (e) {
      shareErrors.show(e, byName({ unit_id: unit, scopes: scopeSet, purpose, expires_at: expires }));
    }
  });
  return h(
    "section",
    { class: "panel", "aria-label": "Shares" },
    h("h2", { text: "Shares" }),
    h("table", {}, h("thead", {}, h("tr", {}, ["Subject", "From → to", "Scopes", "Purpose", "Expires", ""].map((t) => h("th", { scope: "col", text: t })))), tbody),
    msg,
    own.length && unit.options.length ? form : null,
  );
}
