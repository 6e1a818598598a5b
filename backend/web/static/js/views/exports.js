// Export buttons for a subject, found in the server's OpenAPI description: every GET under
// /api/subjects/{subject_id}/ whose path names an export or a report becomes a button that
// downloads the file with the bearer token (so the export is authorized and audited like
// any other read). The investigations API adds these routes; without them, none show.
import * as api from "../api.js";
import { errorText, h, toast } from "../util.js";

const PREFIX = "/api/subjects/{subject_id}/";

export async function exportButtons(ctx, subjectId, values) {
  if (!ctx.openapi) await ctx.hasRoute(PREFIX);
  const paths = ctx.openapi.paths || {};
  const out = [];
  for (const [path, ops] of Object.entries(paths)) {
    if (!path.startsWith(PREFIX) || !/export|report/.test(path) || !ops.get) continue;
    if (/\{(?!subject_id)[^}]+\}/.test(path)) continue;
    const op = ops.get;
    const names = new Set((op.parameters || []).filter((p) => p.in === "query").map((p) => p.name));
    const params = {};
    for (const [k, v] of Object.entries(values)) if (names.has(k)) params[k] = v;
    const text = op.summary || path.slice(PREFIX.length).replaceAll("/", " ");
    const url = path.replace("{subject_id}", String(subjectId));
    out.push(
      h("button", {
        type: "button",
        class: "secondary",
        text,
        dataset: { export: path.slice(PREFIX.length) },
        onclick: async () => {
          try {
            await api.download(url, params, `${subjectId}-${path.split("/").pop()}`);
            toast(`Downloaded: ${text}`);
          } catch (e) {
            toast(`Export failed: ${errorText(e)}`, "alert");
          }
        },
      }),
    );
  }
  if (!out.length) out.push(h("p", { class: "muted", text: "This server offers no exports yet." }));
  return out;
}
