// Investigations: a correlation query drawn on the map (click the place, set the radius and
// the window; purpose and reference required) with hits and their closest approach; where a
// named subject was instead (chosen in the form, or a hit's "Where instead" button); and a
// batch upload of incidents (CSV or GeoJSON).
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { L, baseMap, fitTo } from "../map.js";
import { announce, clear, errorText, field, fmtDuration, fmtTime, fromLocalInput, h, label, now, toLocalInput, ZONE_LABEL } from "../util.js";

const STATUS_COLOUR = { within: "#b3261e", possibly_within: "#a15c00", not_within: "#1e7b34", no_data: "#6b7580" };
const MAX_ROWS = 200; // fixes listed in the whereabouts table (the map shows them all)

// A signed distance to the place's edge (negative inside) in words.
function distanceText(edge) {
  if (edge === null || edge === undefined) return "distance unknown";
  return edge <= 0 ? `inside the place (${Math.round(-edge)} m from its edge)` : `${Math.round(edge)} m from the place`;
}

// The server's summary gives the closest approach's time in Unix seconds ("t=1790000000"):
// shown in civil time like every other time on the screen.
function civilSummary(text) {
  return String(text).replace(/\bt=(\d{1,12})\b/g, (_, t) => fmtTime(Number(t)));
}

export async function render(el, ctx) {
  el.append(h("h1", { text: "Investigations" }));
  if (!(await ctx.hasRoute("/api/investigations/correlate"))) {
    el.append(h("p", { class: "muted", role: "status", text: "This server does not offer the investigations API yet." }));
    return null;
  }
  // Rounded up to the minute (datetime-local has no seconds): "to" includes the newest data.
  const end = Math.ceil(now() / 60) * 60;
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
    h("div", { class: "row" }, h("div", {}, ...field(`From (${ZONE_LABEL})`, fromIn)), h("div", {}, ...field(`To (${ZONE_LABEL})`, toIn))),
    ...field("Reference", reference),
    ...field("Purpose (recorded in the audit log)", purpose),
    ...field("Subject (for where they were instead)", who),
    h("button", { type: "submit", id: "inv-run", disabled: true, text: "Run query" }),
    msg,
  );

  const file = h("input", { id: "batch-file", type: "file", accept: ".csv,.geojson,.json,text/csv,application/geo+json,application/json" });
  const batchRef = h("input", { id: "batch-reference", required: true, maxlength: 100 });
  const batchPurpose = h("input", { id: "batch-purpose", required: true, minlength: 3, maxlength: 500 });
  const batchOut = h("div", { id: "batch-results", "aria-live": "polite" });
  const batch = h(
    "form",
    { class: "stack", "aria-label": "Batch of incidents" },
    h("h2", { text: "Batch of incidents" }),
    h("p", { class: "muted", text: "CSV with a header reference,lat,lon,radius_m,from,to (times in Unix seconds or ISO 8601 with a UTC offset), or a GeoJSON FeatureCollection (Points with radius_m, or Polygons; properties reference, from, to). Bad rows are listed by line; the good ones still run." }),
    ...field("Incident file", file),
    ...field("Batch reference", batchRef),
    ...field("Purpose (recorded in the audit log)", batchPurpose),
    h("button", { type: "submit", id: "batch-run", disabled: true, text: "Upload and run" }),
    batchOut,
  );
  el.append(h("div", { class: "split" }, mapEl, h("aside", { class: "panel", "aria-label": "Query" }, form, results, batch)));

  const map = await baseMap(mapEl, ctx.config, { label: "Investigation map" });
  const place = L.featureGroup().addTo(map);
  const found = L.featureGroup().addTo(map);
  const where = L.featureGroup().addTo(map); // a hit's "where instead", over the hits

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

  function fixText(f, what) {
    return `${what} ${fmtTime(f.t)}: ${distanceText(f.edge_m)} (±${Math.round(f.accuracy_m)} m, ${label(f.source)})`;
  }

  // The exculpatory answer on the map: the fixes in the window coloured by the answer, the
  // fixes bracketing the window, home while the subject was there, the closest approach.
  function drawWhereabouts(w, layer) {
    const colour = STATUS_COLOUR[w.status];
    const pts = w.fixes.map((f) => [f.lat, f.lon]);
    if (pts.length) layer.addLayer(L.polyline(pts, { color: colour, weight: 3 }));
    for (const f of w.fixes) layer.addLayer(L.circleMarker([f.lat, f.lon], { radius: 4, color: colour }).bindTooltip(fixText(f, "")));
    for (const [f, what] of [[w.before, "Last fix before the window"], [w.after, "First fix after the window"]]) {
      if (f) layer.addLayer(L.circleMarker([f.lat, f.lon], { radius: 6, color: "#3d4f62", weight: 2, dashArray: "2 2" }).bindTooltip(fixText(f, what)));
    }
    for (const s of w.home_stays) {
      if (s.home) layer.addLayer(L.circle([s.home[1], s.home[0]], { radius: 30, color: "#3d4f62", weight: 2, fillOpacity: 0.2 }).bindTooltip(`At home ${fmtTime(s.home_from)} → ${fmtTime(s.home_until)}`));
    }
    if (w.closest) layer.addLayer(L.circleMarker([w.closest.lat, w.closest.lon], { radius: 7, color: colour, fillOpacity: 0.9 }).bindTooltip(`Closest approach: ${approachText(w.closest)}`));
  }

  // One incident of a batch on the map: its place, and each hit's closest approach.
  function drawIncident(i) {
    const g = i.area.geometry;
    const shape = g.type === "Point" ? L.circle([g.coordinates[1], g.coordinates[0]], { radius: i.area.radius_m || 1 }) : L.geoJSON(g);
    place.addLayer(shape.setStyle({ color: "#6a1b9a", weight: 2, fillOpacity: 0.1 }).bindTooltip(`${i.reference}: ${i.count} hit${i.count === 1 ? "" : "s"}`));
    for (const hit of i.hits) found.addLayer(L.circleMarker([hit.closest.lat, hit.closest.lon], { radius: 6, color: STATUS_COLOUR[hit.status], fillOpacity: 0.9 }).bindTooltip(`${i.reference} · ${hit.reference}: ${approachText(hit.closest)}`));
  }

  function whereaboutsView(w) {
    const shown = w.fixes.slice(0, MAX_ROWS);
    const gapText = w.gaps.map(([a, b]) => `${fmtTime(a)} → ${fmtTime(b)} (${fmtDuration(b - a)})`).join("; ");
    return [
      h("h2", { id: "inv-where-title", text: w.status === "not_within" ? `Where ${w.reference} was instead` : `Where ${w.reference} was` }),
      h("p", { id: "inv-summary" }, h("span", { class: `badge ${w.status}`, text: label(w.status) }), ` ${civilSummary(w.summary)}`),
      h(
        "dl",
        { class: "facts", id: "inv-where-facts" },
        h("dt", { text: "Closest approach" }), h("dd", { text: w.closest ? approachText(w.closest) : "no evidence in or around the window" }),
        h("dt", { text: "Before the window" }), h("dd", { text: w.before ? fixText(w.before, "last fix") : "no earlier fix" }),
        h("dt", { text: "After the window" }), h("dd", { text: w.after ? fixText(w.after, "first fix") : "no later fix" }),
        h("dt", { text: "Evidence covers" }), h("dd", { text: `${Math.round(w.coverage * 100)} % of the window${w.complete ? " (all of it)" : `; without data: ${gapText}`}` }),
        h("dt", { text: "Home" }),
        h("dd", { text: `${w.home_distance_m === null ? "no home zone" : `${distanceText(w.home_distance_m)}`}${w.home_stays.length ? `; at home ${w.home_stays.map((s) => `${fmtTime(s.home_from)} → ${s.home_until === null ? "still there" : fmtTime(s.home_until)} (${s.edge_m === null ? "which home unknown" : distanceText(s.edge_m)})`).join(", ")}` : "; not at home in the window"}` }),
      ),
      h("h3", { text: `Positions in the window (${w.fixes_in_window})` }),
      w.fixes.length
        ? h(
            "table",
            { id: "inv-where" },
            h("thead", {}, h("tr", {}, ["Time", "Position", "Accuracy", "From the place"].map((t) => h("th", { scope: "col", text: t })))),
            h("tbody", {}, shown.map((f) => h("tr", {}, h("td", { text: fmtTime(f.t) }), h("td", { text: `${f.lat.toFixed(5)}, ${f.lon.toFixed(5)}` }), h("td", { text: `±${Math.round(f.accuracy_m)} m` }), h("td", { text: distanceText(f.edge_m) })))),
          )
        : h("p", { class: "muted", text: "No fixes in the window." }),
      w.fixes.length > shown.length ? h("p", { class: "muted", text: `The first ${shown.length} of ${w.fixes.length} shown here; all are on the map.` }) : null,
    ];
  }

  // Where one subject was, for the place and window of `body`: listed in `out`, drawn on
  // `layer`. The answer is audited with the same purpose as the query it follows.
  async function whereabouts(subjectId, body, purposeText, out, layer) {
    const w = await api.post(`/api/investigations/subjects/${subjectId}/whereabouts`, body, { purpose: purposeText });
    layer.clearLayers();
    drawWhereabouts(w, layer);
    clear(out, ...whereaboutsView(w));
    msg.textContent = `Query recorded in the audit log (record ${w.audit_id}).`;
    return w;
  }

  // The correlation's hits, each with a "Where instead" button that asks, for the same place,
  // window, reference and purpose, where that subject was; the answer opens under the table.
  function hitsView(r, body, purposeText) {
    const whereOut = h("section", { id: "inv-where-out", "aria-label": "Where a subject was" });
    const rows = r.hits.map((hit) => {
      const button = h("button", { type: "button", class: "secondary small", dataset: { subject: String(hit.subject_id) }, "aria-label": `Where instead: ${hit.reference}`, text: "Where instead" });
      button.addEventListener("click", async () => {
        button.disabled = true;
        msg.textContent = "";
        try {
          await whereabouts(hit.subject_id, body, purposeText, whereOut, where);
          fitTo(map, [place, where]);
          announce(whereOut.querySelector("h2").textContent);
          const title = whereOut.querySelector("h2");
          title.tabIndex = -1;
          title.focus(); // the answer is read from its heading; Tab goes on into it
          // Beside the map the panel scrolls: show the answer from its heading down (focus
          // alone brings only the heading into view, at the bottom).
          const panel = title.closest(".panel");
          panel.scrollTop += title.getBoundingClientRect().top - panel.getBoundingClientRect().top;
        } catch (e) {
          clear(whereOut, h("p", { class: "error", role: "alert", text: `Where ${hit.reference} was: ${errorText(e)}` }));
        } finally {
          button.disabled = false;
        }
      });
      return h(
        "tr",
        { dataset: { subject: String(hit.subject_id) } },
        h("td", {}, h("a", { href: `#/subjects/${hit.subject_id}`, text: hit.reference }), h("div", {}, button)),
        h("td", {}, h("span", { class: `badge ${hit.status}`, text: label(hit.status) }), h("div", { text: `${fmtDuration(hit.inside_s)} inside` })),
        h("td", { text: approachText(hit.closest) }),
      );
    });
    return [
      h("h2", { text: `${r.count} subject${r.count === 1 ? "" : "s"} near ${r.reference}` }),
      h(
        "table",
        { id: "inv-hits" },
        h("thead", {}, h("tr", {}, ["Subject", "Status, time inside", "Closest approach"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, rows),
      ),
      whereOut,
    ];
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    invErrors.clear();
    found.clearLayers();
    where.clearLayers();
    const body = {
      geometry: { type: "Point", coordinates: [Number(lon.value), Number(lat.value)] },
      radius_m: Number(radius.value),
      reference: reference.value.trim(),
      from: fromLocalInput(fromIn.value),
      to: fromLocalInput(toIn.value),
    };
    const purposeText = purpose.value.trim();
    try {
      if (who.value) {
        await whereabouts(who.value, body, purposeText, results, found);
      } else {
        const r = await api.post("/api/investigations/correlate", body, { purpose: purposeText });
        for (const hit of r.hits) {
          const colour = STATUS_COLOUR[hit.status];
          if (hit.path.length) found.addLayer(L.polyline(hit.path.map(([x, y]) => [y, x]), { color: colour, weight: 2 }));
          found.addLayer(L.circleMarker([hit.closest.lat, hit.closest.lon], { radius: 6, color: colour, fillOpacity: 0.9 }).bindTooltip(`${hit.reference}: ${approachText(hit.closest)}`));
        }
        clear(results, ...hitsView(r, body, purposeText));
        msg.textContent = `Query recorded in the audit log (record ${r.audit_id}).`;
      }
      announce(results.querySelector("h2").textContent);
      fitTo(map, [place, found]);
    } catch (e) {
      // The place's geometry is typed as latitude and longitude.
      const controls = { radius_m: radius, reference, from: fromIn, to: toIn, purpose, coordinates: lat, geometry: lat };
      invErrors.show(e, byName(controls));
    }
  });
  const invErrors = new FieldErrors(msg);
  form.querySelector("#inv-run").disabled = false; // handler attached: usable now

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
      found.clearLayers();
      place.clearLayers();
      for (const i of body.incidents) drawIncident(i);
      fitTo(map, [place, found]);
      batchOut.append(
        h("p", { id: "batch-summary", text: `${body.incidents.length} incident${body.incidents.length === 1 ? "" : "s"} run, ${body.errors.length} rejected, ${body.subjects} subject${body.subjects === 1 ? "" : "s"} hit. Recorded in the audit log (record ${body.audit_id}).` }),
        body.incidents.length
          ? h(
              "table",
              { id: "batch-incidents" },
              h("caption", { text: "Hits per incident" }),
              h("thead", {}, h("tr", {}, ["In the file", "Incident", "Window", "Hits"].map((t) => h("th", { scope: "col", text: t })))),
              h(
                "tbody",
                {},
                body.incidents.map((i) =>
                  h(
                    "tr",
                    { dataset: { incident: i.reference } },
                    h("td", { text: i.at }),
                    h("td", { text: i.reference }),
                    h("td", { text: `${fmtTime(i.from)} → ${fmtTime(i.to)}` }),
                    h("td", {}, i.hits.length ? i.hits.map((x) => h("div", {}, h("a", { href: `#/subjects/${x.subject_id}`, text: x.reference }), ` ${label(x.status)}, ${approachText(x.closest)}`)) : "none"),
                  ),
                ),
              ),
            )
          : null,
        body.errors.length
          ? h(
              "table",
              { id: "batch-errors", class: "rejected" },
              h("caption", { class: "error", text: `Rejected rows (${body.errors.length}): fix them and upload them again` }),
              h("thead", {}, h("tr", {}, ["Line", "Feature", "Reason"].map((t) => h("th", { scope: "col", text: t })))),
              h("tbody", {}, body.errors.map((e) => h("tr", { dataset: { line: e.line === null ? "" : String(e.line) } }, h("td", { text: e.line === null ? "—" : String(e.line) }), h("td", { text: e.feature === null || e.feature === undefined ? "—" : String(e.feature) }), h("td", { text: e.reason })))),
            )
          : null,
      );
      announce(batchOut.querySelector("#batch-summary").textContent);
    } catch (e) {
      const general = h("p", { class: "error" });
      batchOut.append(general);
      new FieldErrors(general).show(e, byName({ file, reference: batchRef, purpose: batchPurpose }));
    }
  });
  batch.querySelector("#batch-run").disabled = false;
  return () => map.remove();
}
