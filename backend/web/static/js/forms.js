// The API's refusals, said in sentences next to the fields they are about. A 422 from the
// API carries FastAPI's validation detail ([{loc, msg, type, ctx}]): each item becomes a
// sentence from its type and limits (never pydantic's own text), placed after the control
// that `locate(loc)` names (with aria-invalid and aria-describedby), and removed as soon as
// that control changes. Anything no field claims — a refusal, a conflict, an item without a
// field — goes to the form's general message.

// The control's label, as a sentence's subject ("Radius (m)" -> "Radius").
function nameOf(control) {
  const lab = control.id ? document.querySelector(`label[for="${CSS.escape(control.id)}"]`) : null;
  const legend = control.tagName === "FIELDSET" ? control.querySelector("legend") : null;
  const text = (lab || legend || { textContent: control.getAttribute("aria-label") || "This field" }).textContent;
  return text.replace(/\s*\(.*?\)\s*/g, " ").trim() || "This field";
}

const PLURAL = (n, one, many) => (n === 1 ? one : many);

// One validation item as a sentence about the field called `name`.
export function sentence(item, name = "This field") {
  // The API may leave out the limits (ctx): they are then read from its message's number.
  const n = /(-?\d+(?:\.\d+)?)/.exec(String(item.msg || ""));
  const limit = n ? n[1] : "";
  const quoted = [...String(item.msg || "").matchAll(/'([^']*)'/g)].map((m) => m[1]).join(", ");
  const c = { min_length: limit, max_length: limit, gt: limit, ge: limit, lt: limit, le: limit, expected: quoted, ...(item.ctx || {}) };
  switch (item.type) {
    case "missing":
      return `${name} is required.`;
    case "too_short":
      return Number(c.min_length) === 1 ? `${name}: choose at least one.` : `${name} needs at least ${c.min_length} entries.`;
    case "too_long":
      return `${name} can have at most ${c.max_length} ${PLURAL(Number(c.max_length), "entry", "entries")}.`;
    case "string_too_short":
      return Number(c.min_length) === 1 ? `${name} cannot be empty.` : `${name} needs at least ${c.min_length} characters.`;
    case "string_too_long":
      return `${name} can be at most ${c.max_length} characters long.`;
    case "greater_than":
      return `${name} must be more than ${c.gt}.`;
    case "greater_than_equal":
      return `${name} must be ${c.ge} or more.`;
    case "less_than":
      return `${name} must be less than ${c.lt}.`;
    case "less_than_equal":
      return `${name} must be ${c.le} or less.`;
    case "int_parsing":
    case "int_type":
    case "int_from_float":
      return `${name} must be a whole number.`;
    case "float_parsing":
    case "float_type":
    case "finite_number":
      return `${name} must be a number.`;
    case "bool_parsing":
    case "bool_type":
      return `${name} must be yes or no.`;
    case "literal_error":
    case "enum":
      return `Choose ${name.toLowerCase()} from the list${c.expected ? ` (${String(c.expected).replaceAll("'", "")})` : ""}.`;
    case "string_pattern_mismatch":
      return `${name} contains characters that are not allowed.`;
    case "time_parsing":
    case "time_type":
      return `${name} must be a time (hh:mm).`;
    case "extra_forbidden":
      return `${name} is not expected here.`;
    case "value_error":
    case "assertion_error": {
      // Our own validators' messages are written as sentences for people.
      const text = String(item.msg || "").replace(/^(Value|Assertion) error,\s*/i, "");
      return text ? `${text[0].toUpperCase()}${text.slice(1)}${/[.!?]$/.test(text) ? "" : "."}` : `${name} is not valid.`;
    }
    default:
      return `${name} is not valid.`;
  }
}

export class FieldErrors {
  // `general`: the element for messages no field claims.
  constructor(general) {
    this.general = general;
    this.shown = new Map(); // control -> message element
  }

  clear() {
    for (const control of [...this.shown.keys()]) this.unset(control);
    if (this.general) this.general.textContent = "";
  }

  unset(control) {
    const msg = this.shown.get(control);
    if (!msg) return;
    msg.remove();
    this.shown.delete(control);
    control.removeAttribute("aria-invalid");
    const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== msg.id);
    if (ids.length) control.setAttribute("aria-describedby", ids.join(" "));
    else control.removeAttribute("aria-describedby");
  }

  // A sentence next to a control; gone when the control changes.
  set(control, text) {
    this.unset(control);
    if (!control.id) control.id = `field-${Math.random().toString(36).slice(2, 8)}`;
    const msg = document.createElement("p");
    msg.className = "field-error";
    msg.id = `${control.id}-error`;
    msg.textContent = text;
    if (control.tagName === "FIELDSET") control.append(msg);
    else (control.closest("label.inline") || control).after(msg);
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", `${control.getAttribute("aria-describedby") || ""} ${msg.id}`.trim());
    this.shown.set(control, msg);
    const off = () => {
      this.unset(control);
      control.removeEventListener("input", off);
      control.removeEventListener("change", off);
    };
    control.addEventListener("input", off);
    control.addEventListener("change", off);
  }

  // Show an API error: validation items next to their fields, the rest in the general
  // message. Returns true if something went next to a field (which is then focused).
  show(e, locate, prefix = "") {
    this.clear();
    const detail = e && e.detail;
    const loose = [];
    let first = null;
    if (Array.isArray(detail)) {
      for (const item of detail) {
        const control = locate(item.loc || []);
        const text = sentence(item, control ? nameOf(control) : "A value");
        if (control && !this.shown.has(control)) {
          this.set(control, text);
          first = first || control;
        } else if (!control) loose.push(text);
      }
    } else loose.push(refusal(e));
    if (this.general) this.general.textContent = loose.length ? `${prefix}${loose.join(" ")}` : "";
    if (first) (first.tagName === "FIELDSET" ? first.querySelector("input, select, textarea") || first : first).focus();
    return first !== null;
  }
}

// A refusal that is not about a field, in a sentence: the API's own (its refusals are
// written for people), else one for the status.
export function refusal(e) {
  if (!e) return "Something went wrong.";
  if (typeof e.detail === "string" && e.detail) return e.detail;
  if (e.status === 403) return "Your role or your unit's share does not allow this.";
  if (e.status === 404) return "Not found, or not visible to your unit.";
  if (e.status === 429) return "Too many requests: wait a minute and try again.";
  return String(e.message || e);
}

// locate() for flat forms: the last named part of the error's location -> a control.
export function byName(controls) {
  return (loc) => {
    for (let i = loc.length - 1; i >= 0; i--) {
      if (typeof loc[i] === "string" && controls[loc[i]]) return controls[loc[i]];
    }
    return null;
  };
}

// An error as sentences without a form: validation items named by their field's name.
export function errorText(e) {
  if (e && Array.isArray(e.detail)) {
    return e.detail
      .map((item) => {
        const key = [...(item.loc || [])].reverse().find((x) => typeof x === "string" && !["body", "query", "path"].includes(x));
        const name = key ? key.replace(/_(m|s|at)$/, "").replaceAll("_", " ") : "A value";
        return sentence(item, `${name[0].toUpperCase()}${name.slice(1)}`);
      })
      .join(" ");
  }
  return refusal(e);
}
