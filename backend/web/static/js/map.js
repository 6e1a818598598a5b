// Leaflet, served by the backend from the npm package `make` installs (no CDN), and the
// map pieces every screen shares: the base map (tiles when configured, else the world
// layer as vectors), zones drawn as the rules see them, and accuracy circles.
import * as L from "/web/vendor/leaflet/leaflet-src.esm.js";
import * as api from "./api.js";

export { L };

const M_PER_DEG = 111_320;
let worldCache = null;

export const ZONE_STYLE = {
  exclusion: { color: "#b3261e", fillColor: "#b3261e", fillOpacity: 0.12, weight: 2 },
  inclusion: { color: "#1e7b34", fillColor: "#1e7b34", fillOpacity: 0.08, weight: 2 },
  home: { color: "#3d4f62", fillColor: "#3d4f62", fillOpacity: 0.1, weight: 2, dashArray: "4 3" },
};

// A map in `el` with the configured base layer; resolves once the world layer (if any) is on.
export async function baseMap(el, config, { label = "Map" } = {}) {
  el.setAttribute("role", "application");
  el.setAttribute("aria-label", `${label}. Arrow keys pan, plus and minus zoom.`);
  const map = L.map(el, { zoomControl: true, preferCanvas: false, keyboard: true }).setView(config.center, config.zoom);
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { maxZoom: config.tile_max_zoom, attribution: config.tile_attribution }).addTo(map);
  }
  if (config.world_layer) {
    try {
      worldCache = worldCache || (await api.get("/api/web/world"));
      worldLayer(worldCache).addTo(map);
    } catch {
      // The map still works on its own vector layers.
    }
  }
  // A map laid out while hidden or resized needs to measure itself again.
  const ro = new ResizeObserver(() => map.invalidateSize({ animate: false }));
  ro.observe(el);
  map.on("unload", () => ro.disconnect());
  return map;
}

function worldLayer(fc) {
  return L.geoJSON(fc, {
    interactive: false,
    style: (f) => {
      const layer = f.properties.layer;
      if (layer === "land") return { color: "#b9c4b0", weight: 1, fillColor: "#eef0e6", fillOpacity: 1 };
      if (layer === "roads") return { color: "#ffffff", weight: 2, opacity: 0.9 };
      return { color: "#999", weight: 1 };
    },
    pointToLayer: (f, latlng) => {
      const p = f.properties;
      if (p.layer === "zone") {
        return L.circle(latlng, { radius: p.radius_m, color: "#8a6d3b", weight: 1, dashArray: "2 4", fill: false });
      }
      return L.circleMarker(latlng, { radius: 3, color: "#5b6670", weight: 1, fillOpacity: 0.6 });
    },
  });
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

// A last-known position: a dot and its accuracy circle, coloured by freshness.
export const FRESH_COLOUR = { fresh: "#0b5cad", stale: "#a15c00", old: "#6b7580" };

export function positionLayer(lat, lon, accuracy, colour) {
  const group = L.featureGroup();
  group.addLayer(L.circle([lat, lon], { radius: accuracy, color: colour, weight: 1, fillOpacity: 0.12 }));
  group.addLayer(L.circleMarker([lat, lon], { radius: 7, color: "#fff", weight: 2, fillColor: colour, fillOpacity: 1 }));
  return group;
}

export function fitTo(map, layers, maxZoom = 16) {
  const group = L.featureGroup(layers.filter(Boolean));
  const b = group.getBounds();
  if (b.isValid()) map.fitBounds(b.pad(0.15), { maxZoom, animate: false });
}
