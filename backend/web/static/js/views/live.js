// Live map: every subject the user may see live — last position with its accuracy circle, a
// badge for its open alerts, whether it reports as its mode should — over the home units and
// zones; updated in place by the position stream, the alert feed and a periodic refresh, so
// an open popup and the selected subject stay as they are. Subjects are found by name or
// reference; dense ones cluster (a click zooms in, subjects at one spot fan out).
import * as feed from "../alertfeed.js";
import * as api from "../api.js";
import { FRESH_COLOUR, L, baseMap, fitTo, nearestPlace, world, zoneLayer } from "../map.js";
import { announce, clear, fmtAge, fmtTime, freshnessText, freshState, h, label, setServerNow, toast } from "../util.js";

function markerIcon(s, alerts) {
  const state = s.freshness ? freshState(s.freshness) : "silent";
  const html = h(
    "span",
    { class: "pin" },
    h("span", { class: "dot" }),
    alerts ? h("span", { class: `alert-badge ${alerts.worst}`, text: String(alerts.count) }) : null,
  );
  return {
    key: `${state}|${alerts ? `${alerts.count}${alerts.worst}` : ""}`,
    icon: L.divIcon({ className: `subject-marker ${state}${alerts ? ` alerting ${alerts.worst}` : ""}`, html, iconSize: [18, 18], iconAnchor: [9, 9], popupAnchor: [0, -8] }),
  };
}

// A cluster shows how many subjects it holds, coloured by the worst open alert among them.
function clusterIcon(cluster) {
  const markers = cluster.getAllChildMarkers();
  const ranks = markers.map((m) => m.options.severityRank ?? 9);
  const worst = Math.min(...ranks);
  const sev = ["critical", "high", "medium", "low"][worst] || "";
  const alerting = markers.filter((m) => m.options.severityRank !== undefined).length;
  return L.divIcon({
    className: `subject-cluster ${sev}`,
    html: h("span", { text: String(markers.length), title: `${markers.length} subjects${alerting ? `, ${alerting} with open alerts` : ""}` }),
    iconSize: [32, 32],
  });
}

function legend() {
  const control = L.control({ position: "bottomleft" });
  control.onAdd = () => {
    const swatch = (cls, text) => h("li", {}, h("span", { class: `swatch ${cls}` }), text);
    // Open on a laptop; folded on a tablet, where it would cover much of the map.
    const el = h(
      "details",
      { class: "legend", id: "map-legend", open: window.innerWidth >= 1000 },
      h("summary", { text: "Legend" }),
      h(
        "ul",
        {},
        swatch("dot on_time", "subject, reporting on time"),
        swatch("dot late", "late for what its mode sends"),
        swatch("dot silent", "silent (past the comms-loss time)"),
        swatch("alert", "open alerts (colour: most severe)"),
        swatch("cluster", "several subjects: click to zoom"),
        swatch("home", "home unit"),
        swatch("accuracy", "accuracy of the last fix"),
        swatch("zone exclusion", "exclusion zone"),
        swatch("zone inclusion", "inclusion zone"),
        swatch("zone home", "home zone"),
      ),
    );
    L.DomEvent.disableClickPropagation(el);
    return el;
  };
  return control;
}

export async function render(el, ctx, args) {
  const abort = new AbortController();
  let selected = args[0] ? Number(args[0]) : null;
  const mapEl = h("div", { class: "map", id: "live-map" });
  const search = h("input", { id: "live-search", type: "search", autocomplete: "off", placeholder: "name or reference" });
  const found = h("p", { class: "muted", id: "live-found", "aria-live": "polite" });
  const list = h("ul", { class: "subject-list", id: "live-subjects", "aria-label": "Subjects on the map" });
  const status = h("p", { class: "muted", id: "live-status", "aria-live": "polite" });
  const searchForm = h(
    "form",
    { role: "search", class: "stack", onsubmit: (ev) => ev.preventDefault() },
    h("label", { for: "live-search", text: "Find a subject (name or reference)" }),
    search,
    found,
  );
  el.append(
    h("h1", { text: "Live map" }),
    h("div", { class: "split" }, mapEl, h("aside", { class: "panel", "aria-label": "Subjects" }, searchForm, status, list)),
  );
  const map = await baseMap(mapEl, ctx.config, { label: "Live map of subjects" });
  const fc = await world(ctx.config);
  // Home units sit under the subjects: at home, the subject's dot is drawn inside its unit.
  map.createPane("homes").classList.add("homes-pane");
  const layers = {
    zones: L.featureGroup().addTo(map),
    accuracy: L.featureGroup().addTo(map),
    homes: L.featureGroup().addTo(map),
    subjects: L.markerClusterGroup({ maxClusterRadius: 28, showCoverageOnHover: false, spiderfyOnMaxZoom: true, iconCreateFunction: clusterIcon }).addTo(map),
  };
  legend().addTo(map);
  const entries = new Map(); // id -> { info, marker, iconKey, accuracy, item }
  let fitted = false;

  function popup(id) {
    const s = entries.get(id).info;
    const alerts = feed.list(id);
    const p = s.position;
    return h(
      "div",
      { class: "subject-popup", dataset: { subject: String(id) } },
      h("strong", { text: `${s.reference} · ${s.name}` }),
      alerts.length
        ? h("ul", { class: "popup-alerts" }, alerts.map((a) => h("li", {}, h("span", { class: `badge ${a.severity}`, text: a.severity }), " ", h("a", { href: `#/alerts/${a.id}`, text: `${label(a.type)} (${a.state})` }))))
        : h("div", { class: "muted", text: "No open alerts." }),
      h("div", { text: freshnessText(s.freshness) }),
      p ? h("div", { text: `Last fix ${fmtTime(p.t)} (${fmtAge(p.t)}), ±${Math.round(p.accuracy_m)} m, ${p.source === "rf_home" ? "home (RF)" : "GPS"}` }) : null,
      p && fc ? h("div", { text: nearestPlace(fc, p.lat, p.lon) }) : null,
      s.presence ? h("div", { text: `Home unit: ${s.presence.at_home ? "at home" : "away"} (${fmtAge(s.presence.t)})` }) : null,
      h("div", { class: "row" }, h("a", { href: `#/subjects/${id}`, text: "Open subject" }), p ? h("a", { href: `#/subjects/${id}/trail/${p.t}`, text: "Trail" }) : null),
    );
  }

  function listItem(s) {
    const alerts = feed.summary(s.id);
    const state = s.freshness ? freshState(s.freshness) : "silent";
    return h(
      "li",
      { dataset: { subject: String(s.id) }, class: s.id === selected ? "selected" : "", "aria-current": s.id === selected ? "true" : null },
      h("a", { href: `#/subjects/${s.id}`, text: s.reference }),
      h("span", { class: "name", text: s.name }),
      alerts ? h("span", { class: `badge ${alerts.worst} alert-count`, text: `${alerts.count} alert${alerts.count === 1 ? "" : "s"}` }) : null,
      h("span", { class: `badge ${state} fresh`, text: s.freshness ? freshnessText(s.freshness) : "no tag fitted" }),
      s.owner ? null : h("span", { class: "badge", text: "shared" }),
      h("button", {
        type: "button",
        class: "secondary",
        text: "Show",
        "aria-label": `Show ${s.reference} on the map`,
        disabled: !s.position,
        onclick: () => focusSubject(s.id),
      }),
    );
  }

  function draw(s) {
    let entry = entries.get(s.id);
    if (!entry) {
      entry = { info: s, marker: null, iconKey: null, accuracy: null, item: null };
      entries.set(s.id, entry);
    }
    entry.info = s;
    const alerts = feed.summary(s.id);
    if (s.position) {
      const ll = [s.position.lat, s.position.lon];
      const { key, icon } = markerIcon(s, alerts);
      const colour = FRESH_COLOUR[s.freshness ? freshState(s.freshness) : "silent"];
      if (!entry.marker) {
        entry.marker = L.marker(ll, { icon, title: `${s.reference} ${s.name}`, alt: `${s.reference} ${s.name}`, riseOnHover: true });
        entry.marker.bindPopup(() => popup(s.id), { autoPanPadding: [40, 40] });
        entry.marker.on("popupopen", () => select(s.id));
        entry.accuracy = L.circle(ll, { radius: s.position.accuracy_m, color: colour, weight: 1, fillOpacity: 0.1, interactive: false });
        layers.accuracy.addLayer(entry.accuracy);
        layers.subjects.addLayer(entry.marker);
      } else {
        const old = entry.marker.getLatLng();
        if (old.lat !== ll[0] || old.lng !== ll[1]) entry.marker.setLatLng(ll);
        if (entry.iconKey !== key) {
          entry.marker.setIcon(icon);
          layers.subjects.refreshClusters(entry.marker);
        }
        entry.accuracy.setLatLng(ll).setRadius(s.position.accuracy_m).setStyle({ color: colour });
        if (entry.marker.isPopupOpen()) entry.marker.getPopup().update();
      }
      entry.marker.options.severityRank = alerts ? feed.SEVERITY_RANK[alerts.worst] : undefined;
      entry.iconKey = key;
    }
    const item = listItem(s);
    if (entry.item) entry.item.replaceWith(item);
    else list.append(item);
    entry.item = item;
    item.hidden = !matches(s);
  }

  function select(id) {
    selected = id;
    for (const [sid, e] of entries) {
      if (!e.item) continue;
      e.item.classList.toggle("selected", sid === id);
      if (sid === id) e.item.setAttribute("aria-current", "true");
      else e.item.removeAttribute("aria-current");
    }
  }

  // The latest request to show a subject on the map. markercluster's zoomToShowLayer may
  // call back late and more than once (a `moveend` or `spiderfied` listener it leaves
  // registered): only the latest request opens its popup, and once, so a late call neither
  // re-opens a popup the officer closed nor opens an earlier subject's over a later one's.
  let showing = 0;

  function focusSubject(id) {
    const entry = entries.get(id);
    if (!entry || !entry.marker) return;
    select(id);
    const request = ++showing;
    // Out of its cluster (zooming in, or fanning out subjects at one spot), then its popup.
    layers.subjects.zoomToShowLayer(entry.marker, () => {
      if (request !== showing) return;
      showing += 1;
      entry.marker.openPopup();
    });
    announce(`${entry.info.reference} shown on the map`);
  }

  function matches(s) {
    const q = search.value.trim().toLowerCase();
    return !q || `${s.reference} ${s.name}`.toLowerCase().includes(q);
  }

  function filterList() {
    const shown = [...entries.values()].filter((e) => {
      e.item.hidden = !matches(e.info);
      return !e.item.hidden;
    });
    found.textContent = search.value.trim() ? `${shown.length} subject${shown.length === 1 ? "" : "s"} found${shown.length ? " — Enter shows the first" : ""}` : "";
    return shown;
  }
  search.addEventListener("input", filterList);
  search.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    const first = filterList().find((e) => e.marker);
    if (first) focusSubject(first.info.id);
  });

  async function load() {
    const view = await api.get("/api/web/live");
    setServerNow(view.now);
    layers.zones.clearLayers();
    for (const z of view.zones.features) layers.zones.addLayer(zoneLayer(z));
    layers.homes.clearLayers();
    for (const s of view.subjects) {
      if (s.home_unit && s.home_unit.lat !== null) {
        const icon = L.divIcon({ className: "home-handle", iconSize: [22, 22] });
        L.marker([s.home_unit.lat, s.home_unit.lon], { icon, pane: "homes", keyboard: false, title: `Home unit ${s.home_unit.device} of ${s.reference}` })
          .bindTooltip(`Home unit ${s.home_unit.device} (${s.reference}) — last heard ${fmtAge(s.home_unit.last_seen_at)}`)
          .addTo(layers.homes);
      }
    }
    const ids = new Set(view.subjects.map((s) => s.id));
    for (const [id, entry] of entries) {
      if (ids.has(id)) continue;
      if (entry.marker) layers.subjects.removeLayer(entry.marker);
      if (entry.accuracy) layers.accuracy.removeLayer(entry.accuracy);
      entry.item.remove();
      entries.delete(id);
    }
    for (const s of view.subjects) draw(s);
    status.textContent = `${view.subjects.length} subject${view.subjects.length === 1 ? "" : "s"} · updated ${fmtTime(view.now)}`;
    if (!fitted) {
      fitted = true;
      fitTo(map, [layers.subjects, layers.homes].filter((g) => g.getLayers().length), 15);
    }
  }

  await load();
  if (selected !== null) focusSubject(selected);
  const timer = setInterval(() => load().catch(() => {}), ctx.config.live_refresh_s * 1000);

  api.stream(
    "/api/web/live/stream",
    {},
    (event, p) => {
      if (event !== "position") return;
      const entry = entries.get(p.subject_id);
      if (!entry) return;
      const cur = entry.info.position;
      if (cur && cur.t >= p.t) return; // a late fix does not move the marker back
      entry.info.position = { t: p.t, lat: p.lat, lon: p.lon, accuracy_m: p.accuracy_m, source: p.source, late: p.late };
      if (entry.info.freshness && p.t > (entry.info.freshness.last_contact || 0)) entry.info.freshness.last_contact = p.t;
      draw(entry.info);
    },
    { signal: abort.signal },
  );
  const unsubscribe = feed.subscribe((a) => {
    if (!a) return;
    const entry = entries.get(a.subject_id);
    if (entry) draw(entry.info);
    if (a.action !== "raised") return;
    toast(`New alert: ${label(a.type)} — ${entry ? entry.info.reference : `subject ${a.subject_id}`}`, "alert");
    if (entry) {
      entry.item.classList.remove("flash");
      void entry.item.offsetWidth;
      entry.item.classList.add("flash");
    }
  });

  return () => {
    abort.abort();
    unsubscribe();
    clearInterval(timer);
    map.remove();
    clear(el);
  };
}
