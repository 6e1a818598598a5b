// Small bar charts drawn as SVG (no chart library: two kinds of chart, drawn from numbers the
// screen also lists in tables, which is what screen readers are given). A value may be null:
// a figure withheld because it is about fewer people than the server's minimum; it is drawn
// as a dashed outline marked "<N", never as a zero.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function frame(width, height, label) {
  // Drawn at its own size (narrower on a small screen, never blown up past it).
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img", "aria-label": label, preserveAspectRatio: "xMinYMin meet" });
}

function scale(values) {
  const top = Math.max(0, ...values.filter((v) => v !== null));
  return top > 0 ? top : 1;
}

// One horizontal bar per item ({label, value}), longest first as given.
export function bars(items, { label, unit, min }) {
  const rowH = 22, left = 150, width = 640, right = 70;
  const out = frame(width, rowH * items.length + 8, label);
  const top = scale(items.map((i) => i.value));
  items.forEach((item, n) => {
    const y = 4 + n * rowH;
    const g = svg("g", { class: "bar", "data-label": item.label });
    g.append(svg("text", { x: left - 6, y: y + 15, "text-anchor": "end", class: "axis" }, item.label));
    if (item.value === null) {
      g.append(svg("rect", { x: left, y: y + 3, width: 24, height: rowH - 6, class: "withheld" }));
      g.append(svg("text", { x: left + 30, y: y + 15, class: "value" }, `<${min}`));
    } else {
      const w = Math.max(1, ((width - left - right) * item.value) / top);
      g.append(svg("rect", { x: left, y: y + 3, width: w, height: rowH - 6, class: "fill" }));
      g.append(svg("text", { x: left + w + 6, y: y + 15, class: "value" }, `${item.value}${unit ? ` ${unit}` : ""}`));
    }
    g.append(svg("title", {}, `${item.label}: ${item.value === null ? `fewer than ${min}` : `${item.value}${unit ? ` ${unit}` : ""}`}`));
    out.append(g);
  });
  return out;
}

// One column per item ({label, parts: [{value}], note}), the parts stacked and the note
// above; a column with any part withheld is drawn withheld whole (its other parts would
// tell the missing one).
export function columns(items, { label, names, min }) {
  const colW = 44, gap = 10, height = 190, base = 160, left = 8;
  const width = Math.max(320, left + items.length * (colW + gap));
  const out = frame(width, height, label);
  const known = items.filter((i) => i.parts.every((p) => p.value !== null));
  const top = scale(known.map((i) => i.parts.reduce((s, p) => s + p.value, 0)));
  items.forEach((item, n) => {
    const x = left + n * (colW + gap);
    const g = svg("g", { class: "column", "data-label": item.label });
    g.append(svg("text", { x: x + colW / 2, y: base + 18, "text-anchor": "middle", class: "axis" }, item.label));
    if (item.parts.some((p) => p.value === null)) {
      g.append(svg("rect", { x, y: base - 24, width: colW, height: 24, class: "withheld" }));
      g.append(svg("text", { x: x + colW / 2, y: base - 30, "text-anchor": "middle", class: "value" }, `<${min}`));
      g.append(svg("title", {}, `${item.label}: withheld (fewer than ${min})`));
    } else {
      let y = base;
      item.parts.forEach((p, k) => {
        const h = ((base - 20) * p.value) / top;
        y -= h;
        g.append(svg("rect", { x, y, width: colW, height: Math.max(0, h), class: `part part-${k}` }));
      });
      g.append(svg("text", { x: x + colW / 2, y: y - 6, "text-anchor": "middle", class: "value" }, item.note));
      g.append(svg("title", {}, `${item.label}: ${item.parts.map((p, k) => `${names[k]} ${p.value}`).join(", ")}`));
    }
    out.append(g);
  });
  out.append(svg("line", { x1: 0, y1: base, x2: width, y2: base, class: "baseline" }));
  return out;
}
