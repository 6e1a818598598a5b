// On call: the unit's rota (who is paged, when, in which order and how) and its
// notification policies (which alerts page, escalation, de-duplication, quiet hours, an
// optional webhook), kept by the unit's supervisor; and, for everyone on a rota, turning
// notifications on in this browser (docs/web.md, "Notifications").
import * as api from "../api.js";
import { FieldErrors, byName, errorText } from "../forms.js";
import * as push from "../push.js";
import { announce, clear, field, fmtTime, fromLocalInput, h, now, toLocalInput } from "../util.js";

const SEVERITIES = ["critical", "high", "medium", "low"];

export async function render(el, ctx) {
  el.append(h("h1", { text: "On call" }), await browserSection());
  if (ctx.me.role === "supervisor") {
    const users = (await api.get("/api/users")).filter((u) => u.unit_id === ctx.me.unit_id && !u.disabled && ["officer", "supervisor"].includes(u.role));
    el.append(await rotaSection(users), await policySection());
  }
  return null;
}

async function browserSection() {
  const state = h("p", { id: "push-state" });
  const button = h("button", { type: "button", id: "push-toggle" });
  const msg = h("p", { role: "status", id: "push-status" });
  async function show() {
    if (!push.supported()) {
      state.textContent = "This browser cannot receive notifications (Web Push).";
      button.hidden = true;
      return;
    }
    const on = Boolean(await push.current());
    state.textContent = on ? "This browser receives your on-call pages." : "This browser does not receive your on-call pages.";
    button.textContent = on ? "Turn off notifications here" : "Turn on notifications here";
    button.onclick = async () => {
      msg.textContent = "";
      try {
        if (on) await push.disable();
        else await push.enable();
        announce(on ? "Notifications turned off" : "Notifications turned on");
      } catch (e) {
        msg.textContent = `Not changed: ${e.message || e}`;
      }
      await show();
    };
  }
  await show();
  return h("section", { class: "panel stack", "aria-label": "Notifications on this browser" }, h("h2", { text: "Notifications on this browser" }), state, button, msg);
}

async function rotaSection(users) {
  const name = (id) => (users.find((u) => u.id === id) || { display_name: `#${id}` }).display_name;
  const tbody = h("tbody");
  const msg = h("p", { role: "status", id: "rota-status" });
  async function load() {
    const shifts = await api.get("/api/oncall/shifts");
    clear(
      tbody,
      shifts.map((s) =>
        h(
          "tr",
          {},
          h("td", { text: fmtTime(s.starts_at) }),
          h("td", { text: fmtTime(s.ends_at) }),
          h("td", { text: String(s.rank) }),
          h("td", { text: name(s.user_id) }),
          h("td", { text: s.channels.join(", ") + (s.email ? ` (${s.email})` : "") }),
          h("td", {}, h("button", { type: "button", class: "secondary", text: "Remove", "aria-label": `Remove ${name(s.user_id)}'s shift from ${fmtTime(s.starts_at)}`, onclick: () => remove(s) })),
        ),
      ),
    );
  }
  async function remove(s) {
    try {
      await api.del(`/api/oncall/shifts/${s.id}`);
      announce("Shift removed");
      await load();
    } catch (e) {
      msg.textContent = errorText(e);
    }
  }
  const user = h("select", { id: "shift-user" }, users.map((u) => h("option", { value: String(u.id), text: `${u.display_name} (${u.role})` })));
  const rank = h("input", { id: "shift-rank", type: "number", min: 1, max: 9, value: "1", required: true });
  const from = h("input", { id: "shift-from", type: "datetime-local", required: true, value: toLocalInput(now()) });
  const to = h("input", { id: "shift-to", type: "datetime-local", required: true, value: toLocalInput(now() + 12 * 3600) });
  const email = h("input", { id: "shift-email", type: "email", maxlength: 254 });
  const byEmail = h("input", { id: "shift-by-email", type: "checkbox", checked: true });
  const byPush = h("input", { id: "shift-by-push", type: "checkbox", checked: true });
  const formMsg = h("p", { role: "status", id: "shift-form-status" });
  const errors = new FieldErrors(formMsg);
  const form = h(
    "form",
    { class: "stack", "aria-label": "New shift" },
    h("h3", { text: "New shift" }),
    h("div", { class: "row" }, h("div", {}, ...field("Officer", user)), h("div", {}, ...field("Rank (1 is paged first)", rank))),
    h("div", { class: "row" }, h("div", {}, ...field("From", from)), h("div", {}, ...field("To", to))),
    h("div", { class: "row" }, h("label", {}, byEmail, " E-mail"), h("div", {}, ...field("E-mail address", email)), h("label", {}, byPush, " Push to the officer's browsers")),
    h("button", { type: "submit", text: "Add shift" }),
    formMsg,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const channels = [byEmail.checked ? "email" : null, byPush.checked ? "push" : null].filter(Boolean);
    try {
      await api.post("/api/oncall/shifts", {
        user_id: Number(user.value),
        rank: Number(rank.value),
        starts_at: fromLocalInput(from.value),
        ends_at: fromLocalInput(to.value),
        channels,
        email: email.value.trim() || null,
      });
      errors.clear();
      announce("Shift added");
      await load();
    } catch (e) {
      errors.show(e, byName({ user_id: user, rank, starts_at: from, ends_at: to, channels: byEmail, email }));
    }
  });
  await load();
  return h(
    "section",
    { class: "panel", "aria-label": "Rota" },
    h("h2", { text: "Rota" }),
    h("table", {}, h("thead", {}, h("tr", {}, ["From", "To", "Rank", "Officer", "Channels", ""].map((t) => h("th", { scope: "col", text: t })))), tbody),
    msg,
    form,
  );
}

async function policySection() {
  const tbody = h("tbody");
  const msg = h("p", { role: "status", id: "policy-status" });
  async function load() {
    const policies = await api.get("/api/oncall/policies");
    clear(
      tbody,
      policies.map((p) =>
        h(
          "tr",
          {},
          h("td", { text: p.alert_type === "*" ? "any other" : p.alert_type }),
          h("td", { text: `${p.min_severity} and above` }),
          h("td", { text: `${Math.round(p.escalate_after_s / 60)} min` }),
          h("td", { text: `${Math.round(p.dedup_s / 60)} min` }),
          h("td", { text: p.quiet_start ? `${p.quiet_start}–${p.quiet_end}` : "none" }),
          h("td", { text: p.webhook_url || "" }),
          h("td", {}, h("button", { type: "button", class: "secondary", text: "Remove", "aria-label": `Remove the policy for ${p.alert_type}`, onclick: () => remove(p) })),
        ),
      ),
    );
  }
  async function remove(p) {
    try {
      await api.del(`/api/oncall/policies/${encodeURIComponent(p.alert_type)}`);
      await load();
    } catch (e) {
      msg.textContent = errorText(e);
    }
  }
  const type = h("input", { id: "policy-type", required: true, maxlength: 48, value: "*" });
  const severity = h("select", { id: "policy-severity" }, SEVERITIES.map((s) => h("option", { value: s, text: s, selected: s === "high" })));
  const escalate = h("input", { id: "policy-escalate", type: "number", min: 1, max: 1440, value: "10", required: true });
  const dedup = h("input", { id: "policy-dedup", type: "number", min: 0, max: 10080, value: "30", required: true });
  const quietFrom = h("input", { id: "policy-quiet-from", type: "time" });
  const quietTo = h("input", { id: "policy-quiet-to", type: "time" });
  const webhook = h("input", { id: "policy-webhook", type: "url", maxlength: 500 });
  const formMsg = h("p", { role: "status", id: "policy-form-status" });
  const errors = new FieldErrors(formMsg);
  const form = h(
    "form",
    { class: "stack", "aria-label": "Policy" },
    h("h3", { text: "Set a policy" }),
    h("div", { class: "row" }, h("div", {}, ...field("Alert type (* for any other)", type)), h("div", {}, ...field("Pages from severity", severity))),
    h("div", { class: "row" }, h("div", {}, ...field("Escalate after (minutes)", escalate)), h("div", {}, ...field("Page the same condition again after (minutes)", dedup))),
    h("div", { class: "row" }, h("div", {}, ...field("Quiet hours from", quietFrom)), h("div", {}, ...field("to", quietTo)), h("div", {}, ...field("Webhook (optional)", webhook))),
    h("button", { type: "submit", text: "Save policy" }),
    formMsg,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const saved = await api.request("PUT", `/api/oncall/policies/${encodeURIComponent(type.value.trim())}`, {
        json: {
          min_severity: severity.value,
          escalate_after_s: Number(escalate.value) * 60,
          dedup_s: Number(dedup.value) * 60,
          quiet_start: quietFrom.value || null,
          quiet_end: quietTo.value || null,
          tz: Intl.DateTimeFormat().resolvedOptions().timeZone || "Europe/London",
          webhook_url: webhook.value.trim() || null,
        },
      });
      errors.clear();
      await load();
      // The webhook's signing key is shown once: the receiving system needs it.
      formMsg.textContent = saved.webhook_key ? `Saved. Webhook signing key (shown once): ${saved.webhook_key}` : "Saved.";
    } catch (e) {
      errors.show(e, byName({ min_severity: severity, escalate_after_s: escalate, dedup_s: dedup, quiet_start: quietFrom, quiet_end: quietTo, tz: type, webhook_url: webhook }));
    }
  });
  await load();
  return h(
    "section",
    { class: "panel", "aria-label": "Notification policies" },
    h("h2", { text: "Notification policies" }),
    h("table", {}, h("thead", {}, h("tr", {}, ["Alert type", "Severity", "Escalate", "De-duplicate", "Quiet hours", "Webhook", ""].map((t) => h("th", { scope: "col", text: t })))), tbody),
    msg,
    form,
  );
}
