// The unit's tag pool: how many tags are free and due for service, each tag's state and
// battery health across the assignments it served, changing a tag's state (charging,
// cleaning, faulty, back in stock, retired; fitted and removed follow the subjects'
// equipment), taking a registered tag into the pool, and the removals still to do after a
// wearer withdrew consent.
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, field, fmtTime, h, label } from "../util.js";

const MOVES = ["in_stock", "charging", "cleaning", "faulty", "retired"];

function drainText(t) {
  const measured = t.health.filter((x) => x.drain_pct_per_h !== null);
  if (!measured.length) return "not measured yet";
  return measured.map((x) => `${x.drain_pct_per_h} %/h`).join(" → ");
}

export async function render(el) {
  const summary = h("p", { id: "pool-summary", class: "summary", role: "status" });
  const tbody = h("tbody");
  const removals = h("div");
  const status = h("p", { role: "status", id: "pool-status" });
  const errors = new FieldErrors(status);
  const device = h("input", { id: "pool-device", inputmode: "numeric", required: true });
  const note = h("input", { id: "pool-note", maxlength: 2000 });
  const addForm = h("form", { class: "row", "aria-label": "Add a tag to the pool" }, h("div", {}, ...field("Tag id", device)), h("div", {}, ...field("Note", note)), h("button", { type: "submit", text: "Add tag" }));

  async function load() {
    const pool = await api.get("/api/pool");
    summary.textContent = pool.counts.summary;
    clear(
      tbody,
      pool.tags.map((t) => {
        const choose = h("select", { "aria-label": `New state of tag ${t.device}` }, h("option", { value: "", text: "Change state…" }), MOVES.filter((s) => s !== t.state).map((s) => h("option", { value: s, text: label(s) })));
        choose.disabled = t.state === "fitted" || t.state === "retired";
        choose.addEventListener("change", async () => {
          if (!choose.value) return;
          errors.clear();
          try {
            await api.post(`/api/pool/${t.device}/state`, { state: choose.value, note: "" });
            announce(`Tag ${t.device}: ${label(choose.value)}.`);
            await load();
          } catch (e) {
            errors.show(e, byName({}));
            choose.value = "";
          }
        });
        return h(
          "tr",
          { dataset: { device: String(t.device), state: t.state } },
          h("td", { text: String(t.device) }),
          h("td", { class: "state", text: label(t.state) }),
          h("td", { text: fmtTime(t.since) }),
          h("td", { text: drainText(t) }),
          h("td", { text: t.due_for_service ? "due for service" : "" }),
          h("td", {}, choose),
        );
      }),
    );
    clear(
      removals,
      pool.removals.length
        ? h("ul", {}, pool.removals.map((r) => h("li", {}, h("a", { href: `#/subjects/${r.subject_id}`, text: r.subject_reference }), ` withdrew consent ${fmtTime(r.withdrawn_at)}: remove the equipment`)))
        : h("p", { class: "muted", text: "No removals to do." }),
    );
  }

  addForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errors.clear();
    try {
      await api.post("/api/pool", { device: Number(device.value), note: note.value.trim() });
      announce(`Tag ${device.value} added to the pool.`);
      device.value = note.value = "";
      await load();
    } catch (e) {
      errors.show(e, byName({ device, note }));
    }
  });

  el.append(
    h("h1", { text: "Tag pool" }),
    summary,
    h("table", { id: "pool-tags" }, h("thead", {}, h("tr", {}, ["Tag", "State", "Since", "Battery drain by assignment", "Service", "Change"].map((t) => h("th", { scope: "col", text: t })))), tbody),
    status,
    h("section", { class: "panel", "aria-label": "Add a tag" }, h("h2", { text: "Add a tag" }), addForm),
    h("section", { class: "panel", "aria-label": "Removals to do" }, h("h2", { text: "Removals to do" }), removals),
  );
  await load();
  return null;
}
