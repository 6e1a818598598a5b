// Investigations: a correlation query drawn on the map (click the place, set the radius and
// the window; purpose and reference required) with hits and their closest approach; where a
// named subject was instead; and a batch upload of incidents (CSV or GeoJSON).
import * as api from "../api.js";
import { L, baseMap, fitTo } from "../map.js";
import { announce, clear, errorText, field, fmtDuration, fmtTime, fromLocalInput, h, label, now, toLocalInput } from "../util.js";

const STATUS_COLOUR = { within: "#b3261e", possibly_within: "#a15c00", not_within: "#1e7b34", no_data: "#6b7580" };

export async function render(el, ctx) {
  el.append(h("h1", { text: "Investigations" }));
  if (!(await ctx.hasRoute("/api/investigations/correlate"))) {
    el.append(h("p", { class: "muted", role: "status", text: "This server does not offer the investigations API yet." }));
    return null;
  }
  const end = Math.floor(now());
  const lat = h("input", { id: "inv-lat", type: "number", step: "any", required: true });
  const lon = h("input", { id: "inv-lon", type: "number", step: "any", required: true });
  const radius = h("input", { id: "inv-radius", type: "number", min: 1, max: 50000, value: 200, required: true });
  const fromIn = h("input", { id: "inv-from", type: "datetime-local", value: toLocalInput(end - 6 * 3600), required: true });
  const toIn = h("input", { id: "inv-to", type: "datetime-local", value: toLocalInput(end), required: true });
  const reference = h("input", { id: "inv-reference", required: true, maxlength: 100, placeholder: "crime reference" });
  const purpose = h("input", { id: "inv-purpose", required: true, minlength: 3, maxlength: 500, placeholder: "why this query is made" });
  const subjects = await api.get("/api/subjects", { limit: 1000 });
  const who = h("select", { id: "inv-subject" }, h("option", { value: "", text: "— everyone I may see —" }), subjects.filter((s) => s.scopes.includes("trail")).map((s) => h("option", { value: String(s.id), text: `${s.reference} · ${s.name}` })));
  const msg = h("p", { role: "status", id: "inv-status" });
  const results = h("div", { id: "inv-results" });
  const mapEl = h("div", { class: "map", id: "inv-map" });
  const form = h(
    "form",
    { class: "stack", "aria-label": "Correlation query" },
    h("p", { class: "muted", text: "Click the map to place the incident, or type its position." }),
    h("div", { class: "row" }, h("div", {}, ...field("Latitude", lat)), h("div", {}, ...field("Longitude", lon)), h("div", {}, ...field("Radius (m)", radius))),
    h("div", { class: "row" }, h("div", {}, ...field("From", fromIn)), h("div", {}, ...field("To", toIn))),
    ...field("Reference", reference),
    ...field("Purpose (recorded in the audit log)", purpose),
    ...field("Subject (for where they were instead)", who),
    h("button", { type: "submit", id: "inv-run", text: "Run query" }),
    msg,
  );

  const file = h("input", { id: "batch-file", type: "file", accept: ".csv,.geojson,.json,text/csv,application/geo+json,application/json" });
  const batchRef = h("input", { id: "batch-reference", maxlength: 100 });
  const batchPurpose = h("input", { id: "batch-purpose", minlength: 3, maxlength: 500 });
  const batchOut = h("div", { id: "batch-results", "aria-live": "polite" });
  const batch = h(
    "form",
    { class: "stack", "aria-label": "Batch of incidents" },
    h("h2", { text: "Batch of incidents" }),
    h("p", { class: "muted", text: "CSV with reference,lat,lon,radius_m,from,to — or a GeoJSON FeatureCollection." }),
    ...field("Incident file", file),
    ...field("Batch reference", batchRef),
    ...field("Purpose (recorded in the audit log)", batchPurpose),
    h("button", { type: "submit", id: "batch-run", text: "Upload and run" }),
    batchOut,
  );
  el.append(h("div", { class: "split" }, mapEl, h("aside", { class: "panel", "aria-label": "Query" }, form, results, batch)));

  const map = await baseMap(mapEl, ctx.config, { label: "Investigation map" });
  const place = L.featureGroup().addTo(map);
  const found = L.featureGroup().addTo(map);

  function drawPlace() {
    place.clearLayers();
    const la = Number(lat.value);
    const lo = Number(lon.value);
    if (!lat.value || !lon.value || !Number.isFinite(la) || !Number.isFinite(lo)) return;
    place.addLayer(L.circle([la, lo], { radius: Number(radius.value) || 1, color: "#6a1b9a", weight: 2, fillOpacity: 0.1 }));
    place.addLayer(L.circleMarker([la, lo], { radius: 4, color: "#6a1b9a", fillOpacity: 1 }));
  }
  map.on("click", (e) => {
    lat.value = e.latlng.lat.toFixed(6);
    lon.value = e.latlng.lng.toFixed(6);
    drawPlace();
  });
  for (const input of [lat, lon, radius]) input.addEventListener("input", drawPlace);

  function approachText(c) {
    return `${fmtTime(c.t)} — ${Math.round(c.distance_m)} m from the place (±${Math.round(c.accuracy_m)} m, ${label(c.source)})`;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    found.clearLayers();
    const body = {
      geometry: { type: "Point", coordinates: [Number(lon.value), Number(lat.value)] },
      radius_m: Number(radius.value),
      reference: reference.value.trim(),
      from: fromLocalInput(fromIn.value),
      to: fromLocalInput(toIn.value),
    };
    try {
      if (who.value) {
        const w = await api.post(`/api/investigations/subjects/${who.value}/whereabouts`, body, { purpose: purpose.value.trim() });
        const pts = w.fixes.map((f) => [f.lat, f.lon]);
        if (pts.length) found.addLayer(L.polyline(pts, { color: STATUS_COLOUR[w.status], weight: 3 }));
        for (const f of w.fixes) found.addLayer(L.circleMarker([f.lat, f.lon], { radius: 4, color: STATUS_COLOUR[w.status] }).bindTooltip(`${fmtTime(f.t)} ±${f.accuracy_m} m`));
        clear(
          results,
          h("h2", { text: `Where ${w.reference} was` }),
          h("p", { id: "inv-summary" }, h("span", { class: "badge", text: label(w.status) }), ` ${w.summary}`),
          w.closest ? h("p", { text: `Closest approach: ${approachText(w.closest)}` }) : null,
          h("p", { text: `Evidence covers ${Math.round(w.coverage * 100)} % of the window; ${w.fixes_in_window} fixes in it.` }),
        );
      } else {
        const r = await api.post("/api/investigations/correlate", body, { purpose: purpose.value.trim() });
        for (const hit of r.hits) {
          const colour = STATUS_COLOUR[hit.status];
          if (hit.path.length) found.addLayer(L.polyline(hit.path.map(([x, y]) => [y, x]), { color: colour, weight: 2 }));
          found.addLayer(L.circleMarker([hit.closest.lat, hit.closest.lon], { radius: 6, color: colour, fillOpacity: 0.9 }).bindTooltip(`${hit.reference}: ${approachText(hit.closest)}`));
        }
        clear(
          results,
          h("h2", { text: `${r.count} subject${r.count === 1 ? "" : "s"} near ${r.reference}` }),
          h(
            "table",
            { id: "inv-hits" },
            h("thead", {}, h("tr", {}, ["Subject", "Status", "Closest approach", "Time inside"].map((t) => h("th", { scope: "col", text: t })))),
            h(
              "tbody",
              {},
              r.hits.map((hit) =>
                h("tr", {}, h("td", {}, h("a", { href: `#/subjects/${hit.subject_id}`, text: hit.reference })), h("td", {}, h("span", { class: "badge", text: label(hit.status) })), h("td", { text: approachText(hit.closest) }), h("td", { text: fmtDuration(hit.inside_s) })),
              ),
            ),
          ),
        );
        msg.textContent = `Query recorded in the audit log (record ${r.audit_id}).`;
      }
      announce(results.querySelector("h2").textContent);
      fitTo(map, [place, found]);
    } catch (e) {
      msg.textContent = errorText(e);
    }
  });

  batch.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(batchOut);
    if (!file.files.length) {
      batchOut.append(h("p", { class: "error", text: "Choose a file." }));
      return;
    }
    const data = new FormData();
    data.append("file", file.files[0]);
    try {
      const r = await api.raw(`/api/investigations/batch${api.query({ purpose: batchPurpose.value.trim(), reference: batchRef.value.trim() })}`, { method: "POST", body: data });
      const body = await r.json();
      if (!r.ok) throw new api.ApiError(r.status, body.detail);
      batchOut.append(
        h("p", { id: "batch-summary", text: `${body.incidents.length} incidents run, ${body.errors.length} rejected, ${body.subjects} subjects hit.` }),
        h("ul", {}, body.incidents.map((i) => h("li", { text: `${i.at} ${i.reference}: ${i.count} hit${i.count === 1 ? "" : "s"}${i.hits.length ? ` (${i.hits.map((x) => x.reference).join(", ")})` : ""}` }))),
        body.errors.length ? h("ul", { class: "error" }, body.errors.map((e) => h("li", { text: `${e.at}: ${e.reason}` }))) : null,
      );
    } catch (e) {
      batchOut.append(h("p", { class: "error", text: errorText(e) }));
    }
  });
  return () => map.remove();
}
