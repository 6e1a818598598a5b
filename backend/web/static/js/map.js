// Leaflet (its browser build, which the clustering plugin extends), served by the backend
// from the npm packages `make` installs (no CDN), and the map pieces every screen shares: the
// base map (the configured XYZ/WMTS tiles, else the world layer drawn as one: land, roads,
// named places), a scale bar, zones drawn as the rules see them, accuracy circles, and the
// nearest named place to a position ("where", in words).
import * as api from "./api.js";
import { h } from "./util.js";

if (!window.L || !window.L.MarkerClusterGroup) throw new Error("leaflet is not loaded");
export const L = window.L;

const M_PER_DEG = 111_320;
let worldCache = null;

export const ZONE_STYLE = {
  exclusion: { color: "#b3261e", fillColor: "#b3261e", fillOpacity: 0.12, weight: 2 },
  inclusion: { color: "#1e7b34", fillColor: "#1e7b34", fillOpacity: 0.08, weight: 2 },
  home: { color: "#3d4f62", fillColor: "#3d4f62", fillOpacity: 0.1, weight: 2, dashArray: "4 3" },
};

// The world layer (GET /api/web/world), fetched once per page; null without one.
export async function world(config) {
  if (!config.world_layer) return null;
  if (!worldCache) worldCache = api.get("/api/web/world").catch(() => null);
  return worldCache;
}

// A map in `el` with the configured base layer and a metric scale bar; resolves once the
// world layer (if any) is on.
export async function baseMap(el, config, { label = "Map" } = {}) {
  el.setAttribute("role", "application");
  el.setAttribute("aria-label", `${label}. Arrow keys pan, plus and minus zoom.`);
  const maxZoom = config.tile_url ? config.tile_max_zoom : 19;
  const map = L.map(el, { zoomControl: true, keyboard: true, maxZoom }).setView(config.center, config.zoom);
  L.control.scale({ imperial: false, maxWidth: 140 }).addTo(map);
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { maxZoom, attribution: config.tile_attribution }).addTo(map);
  } else {
    const fc = await world(config);
    if (fc) worldLayer(map, fc);
  }
  // A map laid out while hidden or resized needs to measure itself again.
  const ro = new ResizeObserver(() => map.invalidateSize({ animate: false }));
  ro.observe(el);
  map.on("unload", () => ro.disconnect());
  return map;
}

// The world as a base map, in panes under everything else: land over the sea (the map's
// background), roads, and the public places' names as labels.
function worldLayer(map, fc) {
  map.createPane("world").classList.add("world-pane");
  map.createPane("world-labels").classList.add("world-labels");
  const renderer = L.canvas({ pane: "world" });
  L.geoJSON(
    { type: "FeatureCollection", features: fc.features.filter((f) => f.properties.layer !== "place") },
    {
      pane: "world",
      renderer,
      interactive: false,
      style: (f) =>
        f.properties.layer === "land"
          ? { color: "#b9c4b0", weight: 1, fillColor: "#f1efe6", fillOpacity: 1 }
          : { color: "#c9c3b3", weight: 2.5, opacity: 1 },
    },
  ).addTo(map);
  for (const f of fc.features) {
    const p = f.properties;
    if (p.layer !== "place" || !p.name) continue;
    const [lon, lat] = f.geometry.coordinates;
    const icon = L.divIcon({ className: `place-label ${p.kind}`, html: h("span", { text: p.name }), iconSize: null });
    L.marker([lat, lon], { icon, pane: "world-labels", interactive: false, keyboard: false }).addTo(map);
  }
  map.attributionControl.addAttribution("Simulated world");
}

// The named place nearest to a position, in words: "at Boscombe" or "1.2 km NE of Boscombe";
// null without a world layer.
export function nearestPlace(fc, lat, lon) {
  if (!fc) return null;
  let best = null;
  for (const f of fc.features) {
    if (f.properties.layer !== "place" || !f.properties.name) continue;
    const [plon, plat] = f.geometry.coordinates;
    const dx = (lon - plon) * M_PER_DEG * Math.cos((lat * Math.PI) / 180);
    const dy = (lat - plat) * M_PER_DEG;
    const d = Math.hypot(dx, dy);
    if (!best || d < best.d) best = { d, dx, dy, name: f.properties.name };
  }
  if (!best) return null;
  if (best.d < 250) return `at ${best.name}`;
  const dirs = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
  const dir = dirs[Math.round(((Math.atan2(best.dx, best.dy) * 180) / Math.PI + 360) / 45) % 8];
  const dist = best.d < 1000 ? `${Math.round(best.d / 50) * 50} m` : `${(best.d / 1000).toFixed(1)} km`;
  return `${dist} ${dir} of ${best.name}`;
}

// Metres -> degrees about a latitude (equirectangular; fine at zone scale).
function offset(lat, lon, dx, dy) {
  return [lat + dy / M_PER_DEG, lon + dx / (M_PER_DEG * Math.cos((lat * Math.PI) / 180))];
}

// A corridor (LineString + width) as a polygon per segment plus round joints.
export function corridorLayer(coords, width, style) {
  const group = L.featureGroup();
  const half = width / 2;
  const pts = coords.map(([lon, lat]) => [lat, lon]);
  for (let i = 0; i + 1 < pts.length; i++) {
    const [la0, lo0] = pts[i];
    const [la1, lo1] = pts[i + 1];
    const k = Math.cos((la0 * Math.PI) / 180);
    const dx = (lo1 - lo0) * M_PER_DEG * k;
    const dy = (la1 - la0) * M_PER_DEG;
    const len = Math.hypot(dx, dy) || 1;
    const nx = (-dy / len) * half;
    const ny = (dx / len) * half;
    group.addLayer(
      L.polygon([offset(la0, lo0, nx, ny), offset(la1, lo1, nx, ny), offset(la1, lo1, -nx, -ny), offset(la0, lo0, -nx, -ny)], { ...style, weight: 0 }),
    );
  }
  for (const p of pts) group.addLayer(L.circle(p, { ...style, radius: half, weight: 0 }));
  group.addLayer(L.polyline(pts, { color: style.color, weight: 1, dashArray: "6 4" }));
  return group;
}

// A zone Feature (as the API serves it) as a Leaflet layer.
export function zoneLayer(feature, extra = {}) {
  const p = feature.properties || {};
  const style = { ...(ZONE_STYLE[p.kind] || ZONE_STYLE.exclusion), ...extra };
  const g = feature.geometry;
  const grow = p.buffer_m || 0;
  let layer;
  if (g.type === "Point") {
    layer = L.circle([g.coordinates[1], g.coordinates[0]], { ...style, radius: (p.radius_m || 0) + grow });
  } else if (g.type === "Polygon") {
    layer = L.polygon(g.coordinates.map((ring) => ring.map(([lon, lat]) => [lat, lon])), style);
  } else {
    layer = corridorLayer(g.coordinates, (p.width_m || 0) + 2 * grow, style);
  }
  const sched = (p.schedule || []).length ? ` · scheduled (${p.schedule.length} window${p.schedule.length > 1 ? "s" : ""})` : "";
  layer.bindTooltip(`${p.name || "zone"} — ${p.kind}${p.victim ? " (victim)" : ""}${sched}`);
  return layer;
}

// The colour of a subject's accuracy circle by its freshness (the dot's are in app.css).
export const FRESH_COLOUR = { on_time: "#0b5cad", late: "#a15c00", silent: "#6b7580" };

export function fitTo(map, layers, maxZoom = 16) {
  const group = L.featureGroup(layers.filter(Boolean));
  const b = group.getBounds();
  if (b.isValid()) map.fitBounds(b.pad(0.15), { maxZoom, animate: false });
}
