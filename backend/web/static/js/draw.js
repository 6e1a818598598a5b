// A small drawing tool on Leaflet's map events: circles (click the centre, click again at
// the edge), polygons and corridors (click each vertex, then Finish, a double-click, or a
// click on the first vertex). Once drawn, handles can be dragged to edit the shape. The
// form beside the map edits the same shape by numbers, for keyboard users.
import { L, corridorLayer, ZONE_STYLE } from "./map.js";

const M_PER_DEG = 111_320;

function distance(a, b) {
  const k = Math.cos((a.lat * Math.PI) / 180);
  return Math.hypot((b.lat - a.lat) * M_PER_DEG, (b.lng - a.lng) * M_PER_DEG * k);
}

export class DrawTool {
  constructor(map, onChange) {
    this.map = map;
    this.onChange = onChange;
    this.group = L.featureGroup().addTo(map);
    this.kind = null; // circle | polygon | corridor
    this.mode = "idle"; // idle | drawing | done
    this.points = []; // L.LatLng vertices (circle: [centre])
    this.radius = 0;
    this.width = 50;
    this.style = ZONE_STYLE.exclusion;
    this.onClick = (e) => this.click(e.latlng);
    this.onMove = (e) => this.move(e.latlng);
    this.onDbl = (e) => {
      L.DomEvent.stop(e);
      this.finish();
    };
  }

  start(kind) {
    this.clear();
    this.kind = kind;
    this.mode = "drawing";
    this.map.doubleClickZoom.disable();
    this.map.getContainer().classList.add("drawing");
    this.map.on("click", this.onClick).on("mousemove", this.onMove).on("dblclick", this.onDbl);
    this.changed();
  }

  stopListening() {
    this.map.off("click", this.onClick).off("mousemove", this.onMove).off("dblclick", this.onDbl);
    this.map.getContainer().classList.remove("drawing");
    setTimeout(() => this.map.doubleClickZoom.enable(), 300);
  }

  clear() {
    this.stopListening();
    this.group.clearLayers();
    this.kind = null;
    this.mode = "idle";
    this.points = [];
    this.radius = 0;
    this.changed();
  }

  click(ll) {
    if (this.mode !== "drawing") return;
    if (this.kind === "circle") {
      if (!this.points.length) {
        this.points = [ll];
      } else {
        this.radius = Math.max(1, Math.round(distance(this.points[0], ll)));
        this.finish();
        return;
      }
    } else {
      const first = this.points[0];
      const closes = this.kind === "polygon" && this.points.length >= 3 && this.map.latLngToContainerPoint(first).distanceTo(this.map.latLngToContainerPoint(ll)) < 10;
      if (closes) return this.finish();
      const last = this.points[this.points.length - 1];
      if (!last || !last.equals(ll)) this.points.push(ll);
    }
    this.redraw();
    this.changed();
  }

  move(ll) {
    if (this.mode !== "drawing" || !this.points.length) return;
    if (this.kind === "circle") this.radius = Math.max(1, Math.round(distance(this.points[0], ll)));
    this.redraw(ll);
  }

  finish() {
    const need = { circle: 1, polygon: 3, corridor: 2 }[this.kind];
    if (this.mode !== "drawing" || this.points.length < need || (this.kind === "circle" && this.radius <= 0)) return false;
    this.stopListening();
    this.mode = "done";
    this.redraw();
    this.changed();
    return true;
  }

  // Set the shape from numbers (the form): vertices as [lat, lon] pairs.
  set(kind, vertices, radius) {
    this.stopListening();
    this.kind = kind;
    this.points = vertices.map(([lat, lon]) => L.latLng(lat, lon));
    if (radius !== undefined) this.radius = radius;
    this.mode = this.points.length ? "done" : "idle";
    this.redraw();
    this.changed(false);
  }

  setRadius(r) {
    this.radius = r;
    this.redraw();
    this.changed(false);
  }

  setWidth(w) {
    this.width = w;
    this.redraw();
  }

  setStyle(kind) {
    this.style = ZONE_STYLE[kind] || ZONE_STYLE.exclusion;
    this.redraw();
  }

  redraw(cursor) {
    this.group.clearLayers();
    const pts = cursor && this.kind !== "circle" ? [...this.points, cursor] : this.points;
    if (!pts.length) return;
    if (this.kind === "circle") {
      if (this.radius > 0) this.group.addLayer(L.circle(pts[0], { ...this.style, radius: this.radius }));
    } else if (this.kind === "polygon") {
      this.group.addLayer(pts.length >= 3 ? L.polygon(pts, this.style) : L.polyline(pts, this.style));
    } else if (pts.length >= 2 && this.width > 0) {
      this.group.addLayer(corridorLayer(pts.map((p) => [p.lng, p.lat]), this.width, this.style));
    } else {
      this.group.addLayer(L.polyline(pts, this.style));
    }
    if (this.mode === "done") this.handles();
    else for (const p of this.points) this.group.addLayer(L.circleMarker(p, { radius: 4, color: this.style.color, fillOpacity: 1 }));
  }

  handles() {
    const icon = L.divIcon({ className: "vertex-handle", iconSize: [14, 14] });
    this.points.forEach((p, i) => {
      const m = L.marker(p, { icon, draggable: true, keyboard: false, title: `Vertex ${i + 1}` }).addTo(this.group);
      m.on("drag", (e) => {
        const before = this.points[0];
        this.points[i] = e.target.getLatLng();
        if (this.kind === "circle" && this.edge) {
          // Moving the centre moves the edge handle with it.
          const ll = this.edge.getLatLng();
          this.edge.setLatLng([ll.lat + this.points[0].lat - before.lat, ll.lng + this.points[0].lng - before.lng]);
        }
        this.shapeOnly();
      });
      m.on("dragend", () => this.finishEdit());
    });
    if (this.kind === "circle") {
      const c = this.points[0];
      const edgeAt = L.latLng(c.lat, c.lng + this.radius / (M_PER_DEG * Math.cos((c.lat * Math.PI) / 180)));
      this.edge = L.marker(edgeAt, { icon, draggable: true, keyboard: false, title: "Radius" }).addTo(this.group);
      this.edge.on("drag", (e) => {
        this.radius = Math.max(1, Math.round(distance(this.points[0], e.target.getLatLng())));
        this.shapeOnly();
      });
      this.edge.on("dragend", () => this.finishEdit());
    }
  }

  // Redraw the shape under the handles while one is dragged (handles stay put).
  shapeOnly() {
    this.group.eachLayer((l) => {
      if (!(l instanceof L.Marker)) this.group.removeLayer(l);
    });
    if (this.kind === "circle") this.group.addLayer(L.circle(this.points[0], { ...this.style, radius: this.radius }));
    else if (this.kind === "polygon") this.group.addLayer(L.polygon(this.points, this.style));
    else this.group.addLayer(corridorLayer(this.points.map((p) => [p.lng, p.lat]), this.width, this.style));
  }

  finishEdit() {
    this.redraw();
    this.changed();
  }

  changed(fromMap = true) {
    this.onChange(this, fromMap);
  }

  // GeoJSON geometry of the finished shape, or null.
  geometry() {
    if (this.mode !== "done") return null;
    const lonlat = (p) => [Number(p.lng.toFixed(7)), Number(p.lat.toFixed(7))];
    if (this.kind === "circle") return { type: "Point", coordinates: lonlat(this.points[0]) };
    if (this.kind === "polygon") {
      const ring = this.points.map(lonlat);
      return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
    }
    return { type: "LineString", coordinates: this.points.map(lonlat) };
  }
}
