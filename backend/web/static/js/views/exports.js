// Exports and reports of one subject, found in the server's OpenAPI description: every GET
// route with `{subject_id}` as its only path parameter whose path names an export or a
// report (the evidence bundle under /api/exports/subjects/, the compliance report under
// /api/reports/subjects/, ...) becomes a button; a `format` enumeration gives one button per
// downloadable format. A route whose guard needs a scope (its `x-scope`) the user does not
// hold for this subject is not offered (a share without it would refuse). The file is fetched with the bearer token, so it is authorized and
// audited like any other read, and the answer's evidence headers (the bundle's SHA-256, the
// audit record) are shown beside the file name so the officer can note them.
import * as api from "../api.js";
import { FieldErrors, byName } from "../forms.js";
import { announce, clear, h, label, toast } from "../util.js";

const FORMAT_NAMES = { html: "printable HTML", csv: "CSV", zip: "zip", pdf: "PDF" };

// The subject routes that produce a file: [{path, op, format, text}].
export function exportRoutes(openapi) {
  const out = [];
  for (const [path, ops] of Object.entries((openapi && openapi.paths) || {})) {
    const op = ops.get;
    if (!op || !path.includes("{subject_id}") || /\{(?!subject_id\})[^}]+\}/.test(path)) continue;
    if (!/export|report/.test(path)) continue;
    const name = path.split("/").pop();
    // A file route (evidence.zip) is named for its file; others by their OpenAPI summary.
    const stem = name.includes(".") ? label(name.split(".")[0]) : "";
    const title = stem ? `${stem[0].toUpperCase()}${stem.slice(1)} export` : op.summary || label(name);
    const format = (op.parameters || []).find((p) => p.in === "query" && p.name === "format");
    const choices = format && format.schema && format.schema.enum ? format.schema.enum.filter((f) => f !== "json") : [];
    if (choices.length) {
      for (const f of choices) out.push({ path, op, format: f, text: `${title} (${FORMAT_NAMES[f] || f})` });
    } else {
      const ext = name.includes(".") ? name.split(".").pop() : "";
      out.push({ path, op, format: null, text: ext ? `${title} (${FORMAT_NAMES[ext] || ext})` : title });
    }
  }
  return out.sort((a, b) => a.text.localeCompare(b.text));
}

// Buttons for the routes the user may use on `subject`; `values()` gives the form's current
// {from, to, purpose, reference} and `inputs` the fields (a missing or refused value is said
// next to its field); other results go to `status`. Empty: nothing to offer.
export async function exportButtons(ctx, subject, values, inputs, status) {
  const subjectId = subject.id;
  const errors = new FieldErrors(status);
  const routes = exportRoutes(await ctx.describe()).filter((r) => !r.op["x-scope"] || subject.scopes.includes(r.op["x-scope"]));
  return routes.map((r) =>
    h("button", {
      type: "button",
      class: "secondary",
      text: r.text,
      dataset: { export: r.path, format: r.format || "" },
      onclick: async () => {
        const given = values();
        const params = {};
        for (const p of r.op.parameters || []) {
          if (p.in !== "query") continue;
          const v = p.name === "format" ? r.format : given[p.name];
          if (v !== undefined && v !== null && v !== "") params[p.name] = v;
          else if (p.required) {
            errors.clear();
            if (inputs[p.name]) {
              errors.set(inputs[p.name], `${r.text} needs the ${label(p.name)}.`);
              inputs[p.name].focus();
            } else clear(status, h("span", { class: "error", text: `${r.text} needs the ${label(p.name)}.` }));
            return;
          }
        }
        const url = r.path.replace("{subject_id}", String(subjectId));
        errors.clear();
        try {
          const got = await api.download(url, params, `${subjectId}-${r.path.split("/").pop()}${r.format ? `.${r.format}` : ""}`);
          const bundle = got.headers.get("x-bundle-sha256");
          const audit = got.headers.get("x-audit-id");
          clear(
            status,
            h("span", { class: "saved-name", text: `Saved ${got.name}` }),
            bundle ? [" — SHA-256 ", h("code", { class: "sha", text: bundle })] : null,
            audit ? `, audit record ${audit}` : null,
            ".",
          );
          announce(status.textContent);
          toast(`Downloaded: ${r.text}`);
        } catch (e) {
          errors.show(e, byName(inputs), `${r.text} refused: `);
        }
      },
    }),
  );
}
