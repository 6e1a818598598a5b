// Live map: every subject the user may see live — last position with its accuracy circle
// and freshness, home unit, zones — updated by the position stream and the alert stream.
import * as api from "../api.js";
import { FRESH_COLOUR, L, baseMap, fitTo, positionLayer, zoneLayer } from "../map.js";
import { announce, clear, fmtAge, fmtTime, freshness, h, label, setServerNow, toast } from "../util.js";

const REFRESH_MS = 30_000;

export async function render(el, ctx) {
  const abort = new AbortController();
  const mapEl = h("div", { class: "map", id: "live-map" });
  const list = h("ul", { class: "subject-list", id: "live-subjects", "aria-label": "Subjects on the map" });
  const status = h("p", { class: "muted", id: "live-status", "aria-live": "polite" });
  el.append(
    h("h1", { text: "Live map" }),
    h("div", { class: "split" }, mapEl, h("aside", { class: "panel", "aria-label": "Subjects" }, status, list)),
  );
  const map = await baseMap(mapEl, ctx.config, { label: "Live map of subjects" });
  const layers = { zones: L.featureGroup().addTo(map), homes: L.featureGroup().addTo(map), subjects: L.featureGroup().addTo(map) };
  const bySubject = new Map(); // id -> { info, layer, item }
  let fitted = false;

  function draw(s) {
    const old = bySubject.get(s.id);
    if (old && old.layer) layers.subjects.removeLayer(old.layer);
    let layer = null;
    if (s.position) {
      const fresh = freshness(s.position.t);
      layer = positionLayer(s.position.lat, s.position.lon, s.position.accuracy_m, FRESH_COLOUR[fresh]);
      layer.bindTooltip(`${s.reference} ${s.name} — ${fmtAge(s.position.t)} (±${Math.round(s.position.accuracy_m)} m)`);
      layer.bindPopup(() => popup(s));
      layers.subjects.addLayer(layer);
    }
    const item = listItem(s);
    if (old && old.item) old.item.replaceWith(item);
    else list.append(item);
    bySubject.set(s.id, { info: s, layer, item });
  }

  function popup(s) {
    return h(
      "div",
      {},
      h("strong", { text: `${s.reference} · ${s.name}` }),
      h("br"),
      `Last fix ${fmtTime(s.position.t)} (${fmtAge(s.position.t)}), ±${Math.round(s.position.accuracy_m)} m, ${label(s.position.source)}`,
      s.presence ? h("div", { text: `Home unit: ${s.presence.at_home ? "at home" : "away"} (${fmtAge(s.presence.t)})` }) : null,
      h("a", { href: `#/subjects/${s.id}`, text: "Open subject" }),
    );
  }

  function listItem(s) {
    const fresh = s.position ? freshness(s.position.t) : "old";
    const show = h("button", {
      type: "button",
      class: "secondary",
      text: "Show",
      "aria-label": `Show ${s.reference} on the map`,
      disabled: !s.position,
      onclick: () => focusSubject(s.id),
    });
    return h(
      "li",
      { dataset: { subject: String(s.id) } },
      h("a", { href: `#/subjects/${s.id}`, text: `${s.reference}` }),
      h("span", { text: s.name }),
      h("span", { class: `badge ${fresh}`, text: s.position ? fmtAge(s.position.t) : "no fix" }),
      s.presence ? h("span", { class: "badge", text: s.presence.at_home ? "home" : "away" }) : null,
      s.owner ? null : h("span", { class: "badge", text: "shared" }),
      show,
    );
  }

  function focusSubject(id) {
    const entry = bySubject.get(id);
    if (!entry || !entry.info.position) return;
    const p = entry.info.position;
    map.setView([p.lat, p.lon], Math.max(map.getZoom(), 15));
    entry.layer.openPopup();
    announce(`${entry.info.reference} shown on the map`);
  }

  async function load() {
    const view = await api.get("/api/web/live");
    setServerNow(view.now);
    layers.zones.clearLayers();
    layers.homes.clearLayers();
    for (const z of view.zones.features) layers.zones.addLayer(zoneLayer(z));
    for (const s of view.subjects) {
      if (s.home_unit && s.home_unit.lat !== null) {
        const seen = s.home_unit.last_seen_at;
        const icon = L.divIcon({ className: "home-handle", iconSize: [12, 12] });
        L.marker([s.home_unit.lat, s.home_unit.lon], { icon, keyboard: false, title: `Home unit ${s.home_unit.device} of ${s.reference}` })
          .bindTooltip(`Home unit ${s.home_unit.device} (${s.reference}) — last heard ${fmtAge(seen)}`)
          .addTo(layers.homes);
      }
    }
    const ids = new Set(view.subjects.map((s) => s.id));
    for (const [id, entry] of bySubject) {
      if (!ids.has(id)) {
        if (entry.layer) layers.subjects.removeLayer(entry.layer);
        entry.item.remove();
        bySubject.delete(id);
      }
    }
    for (const s of view.subjects) draw(s);
    status.textContent = `${view.subjects.length} subject${view.subjects.length === 1 ? "" : "s"} · updated ${fmtTime(view.now)}`;
    if (!fitted) {
      fitted = true;
      fitTo(map, [layers.subjects, layers.homes, layers.zones].filter((g) => g.getLayers().length));
    }
  }

  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);

  api.stream(
    "/api/web/live/stream",
    {},
    (event, p) => {
      if (event !== "position") return;
      const entry = bySubject.get(p.subject_id);
      if (!entry) return;
      const cur = entry.info.position;
      if (cur && cur.t >= p.t) return; // a late fix does not move the marker back
      entry.info.position = { t: p.t, lat: p.lat, lon: p.lon, accuracy_m: p.accuracy_m, source: p.source, late: p.late };
      draw(entry.info);
    },
    { signal: abort.signal },
  );
  api.stream(
    "/api/alerts/stream",
    {},
    (event, a) => {
      if (event !== "alert" || a.action !== "raised") return;
      const entry = bySubject.get(a.subject_id);
      const who = entry ? entry.info.reference : `subject ${a.subject_id}`;
      toast(`New alert: ${label(a.type)} — ${who}`, "alert");
      if (entry) {
        entry.item.classList.remove("flash");
        void entry.item.offsetWidth;
        entry.item.classList.add("flash");
      }
    },
    { signal: abort.signal },
  );

  return () => {
    abort.abort();
    clearInterval(timer);
    map.remove();
    clear(el);
  };
}
