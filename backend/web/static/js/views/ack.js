// Acknowledging an alert from a page's link (#/ack/<token>): the app has signed the officer
// in first (the router keeps the address through sign-in), then sends the token with the
// session. The server accepts it once, before it expires, from the officer it was sent to.
import * as api from "../api.js";
import { errorText } from "../forms.js";
import { h } from "../util.js";

const RESULTS = {
  acknowledged: "Alert acknowledged. Nobody else will be paged for it.",
  already: "Someone had already acknowledged this alert.",
  not_open: "This alert is no longer open.",
};

export async function render(el, ctx, args) {
  const status = h("p", { role: "status", id: "ack-status", text: "Acknowledging..." });
  el.append(h("h1", { text: "Acknowledge alert" }), status);
  try {
    const r = await api.post("/api/notifications/ack", { token: args[0] || "" });
    status.textContent = RESULTS[r.result] || r.result;
    el.append(h("p", {}, h("a", { href: `#/alerts/${r.alert_id}`, id: "ack-open", text: "Open the alert" })));
  } catch (e) {
    status.className = "error";
    status.textContent = errorText(e);
    el.append(h("p", {}, h("a", { href: "#/alerts", text: "Open the alert queue" })));
  }
  return null;
}
