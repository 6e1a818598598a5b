// Acknowledging an alert from a page's link (#/ack/<token>): the app has signed the officer
// in first (the router keeps the address through sign-in), then sends the token with the
// session. The server acknowledges with it once, before it expires, for the officer it was
// sent to; that officer sending it again is told how the alert stands.
import * as api from "../api.js";
import { errorText } from "../forms.js";
import { h } from "../util.js";

const RESULTS = {
  acknowledged: "Alert acknowledged. Nobody else will be paged for it.",
  already: "This alert had already been acknowledged. Nobody else will be paged for it.",
  not_open: "This alert is no longer open.",
};

// The link's request while it is under way: the screen drawn again meanwhile (a double tap,
// two routings in a row) waits for the same answer instead of sending the link twice. Sent
// again later, the server answers how the alert stands.
const pending = new Map();

function use(token) {
  if (!pending.has(token)) {
    pending.set(token, api.post("/api/notifications/ack", { token }).finally(() => pending.delete(token)));
  }
  return pending.get(token);
}

export async function render(el, ctx, args) {
  const status = h("p", { role: "status", id: "ack-status", text: "Acknowledging..." });
  el.append(h("h1", { text: "Acknowledge alert" }), status);
  try {
    const r = await use(args[0] || "");
    status.textContent = RESULTS[r.result] || r.result;
    el.append(h("p", {}, h("a", { href: `#/alerts/${r.alert_id}`, id: "ack-open", text: "Open the alert" })));
  } catch (e) {
    status.className = "error";
    status.textContent = errorText(e);
    el.append(h("p", {}, h("a", { href: "#/alerts", text: "Open the alert queue" })));
  }
  return null;
}
