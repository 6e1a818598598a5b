// The signed-in user's own security: two-step sign-in with an authenticator app (TOTP,
// RFC 6238). The API enrols in two steps: /totp/enroll (with the password) gives a new
// secret, which counts only once /totp/confirm has a code from the app — a mistyped secret
// never locks anyone out, and an app already in use stays in use until then. While it is on,
// moving to a new app or turning it off asks for the password AND a current code from the
// app in use (a stolen session plus the password cannot remove the second step); a lost
// phone is an administrator's reset.
import * as api from "../api.js";
import { announce, clear, errorText, field, h } from "../util.js";

// Groups of four, as authenticator apps show and accept them (spaces are ignored there).
function grouped(secret) {
  return secret.match(/.{1,4}/g).join(" ");
}

// What was refused, by the API's answer: which field to retype, and what to say.
function refusal(e, fallback) {
  const text = errorText(e);
  if (e.status === 403 && /password/.test(text)) return { field: "password", text: "That password is not right." };
  if (e.status === 403 && /code required/.test(text)) return { field: "code", text: "Enter the 6-digit code your authenticator app shows now." };
  if (e.status === 403 && /not accepted/.test(text)) return { field: "code", text: "That code was not accepted (mistyped, or already used): enter the code your authenticator app shows now." };
  if (e.status === 429) return { field: "password", text: "Too many failed attempts: your account is locked for up to 15 minutes. An administrator can unlock it sooner." };
  return { field: "password", text: `${fallback}: ${text}` };
}

export async function render(el, ctx) {
  const title = h("h2", { id: "totp-title", text: "Two-step sign-in" });
  const state = h("p", { id: "totp-state" });
  const body = h("div", { id: "totp-body", class: "stack" });
  el.append(
    h("h1", { text: "Security" }),
    h("p", { class: "muted", text: `Signed in as ${ctx.me.username} (${ctx.me.display_name}).` }),
    h("section", { class: "panel stack account", "aria-labelledby": "totp-title" }, title, state, body),
  );

  // After a change the new content starts at the section's heading: focus goes there so a
  // keyboard or screen-reader user carries on from the top of it.
  function focusTitle() {
    title.tabIndex = -1;
    title.focus();
  }

  function showState() {
    const on = ctx.me.totp_enabled;
    clear(
      state,
      h("span", { class: `badge ${on ? "resolved" : "open"}`, text: on ? "on" : "off" }),
      on ? " Signing in asks for a code from your authenticator app as well as your password." : " You sign in with your password only. An authenticator app (any app that shows 6-digit codes that change every 30 seconds) adds a second step.",
      on && ctx.me.totp_pending ? " A new app was being set up and not confirmed: the app in use stays in use. Set up a new app again to replace it." : "",
    );
    if (on) showManage();
    else showStart();
  }

  function passwordInput(idText) {
    return h("input", { id: idText, type: "password", autocomplete: "current-password", required: true, maxlength: 1024 });
  }

  // Off: the password, then a new secret.
  function showStart() {
    const password = passwordInput("totp-password");
    const error = h("p", { class: "error", role: "alert", id: "totp-error" });
    const form = h(
      "form",
      { class: "stack", "aria-label": "Set up an authenticator app" },
      ...field("Your password", password),
      h("button", { type: "submit", id: "totp-start", text: "Set up an authenticator app" }),
      error,
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      enrol({ password }, error);
    });
    clear(body, form);
  }

  // On: a new app (new secret, confirmed like the first) or off; both need the password and
  // a current code from the app in use.
  function showManage() {
    const password = passwordInput("totp-manage-password");
    const code = codeInput("totp-current-code", "totp-current-help");
    const error = h("p", { class: "error", role: "alert", id: "totp-error" });
    const form = h(
      "form",
      { class: "stack", "aria-label": "Change two-step sign-in" },
      ...field("Your password", password),
      ...field("The 6-digit code your authenticator app shows now", code),
      h("p", { class: "muted", id: "totp-current-help", text: "A new app replaces the one in use only once you confirm it with a code from the new app; until then signing in keeps asking for codes from this one. Lost the phone with the app? Ask an administrator to reset two-step sign-in for your account." }),
      h("div", { class: "row" }, h("button", { type: "submit", id: "totp-reenrol", value: "reenrol", text: "Set up a new authenticator app" }), h("button", { type: "submit", id: "totp-disable", class: "danger", value: "disable", text: "Turn off two-step sign-in" })),
      error,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      // Enter in a field submits with the first button: a new app, not "off".
      if (ev.submitter && ev.submitter.value === "disable") {
        error.textContent = "";
        try {
          await api.post("/api/auth/totp/disable", { password: password.value, code: code.value.replace(/\s+/g, "") });
        } catch (e) {
          refused({ password, code }, error, refusal(e, "Could not turn it off"));
          return;
        }
        ctx.me.totp_enabled = false;
        ctx.me.totp_pending = false;
        showState();
        announce("Two-step sign-in is off.");
        focusTitle();
      } else {
        enrol({ password, code }, error);
      }
    });
    clear(body, form);
  }

  function codeInput(idText, describedBy) {
    return h("input", { id: idText, inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxlength: 8, required: true, "aria-describedby": describedBy });
  }

  // A refusal names the field to retype: it is cleared and focused, the message says why.
  // A code is cleared with a wrong password too: by the next try it may have changed.
  function refused(fields, error, why) {
    if (fields.code) fields.code.value = "";
    const again = why.field === "code" && fields.code ? fields.code : fields.password;
    if (again === fields.password) fields.password.value = "";
    again.focus();
    error.textContent = why.text;
  }

  async function enrol(fields, error) {
    error.textContent = "";
    let secret;
    const request = { password: fields.password.value };
    if (fields.code) request.code = fields.code.value.replace(/\s+/g, "");
    try {
      secret = await api.post("/api/auth/totp/enroll", request);
    } catch (e) {
      refused(fields, error, refusal(e, "Could not start the set-up"));
      return;
    }
    // The new secret is pending: an app already in use stays in use until it is confirmed.
    ctx.me.totp_pending = true;
    showConfirm(secret);
  }

  // A new secret: shown for typing (and as the otpauth:// address some apps accept pasted),
  // then confirmed with the first code the app shows.
  function showConfirm(secret) {
    const replacing = ctx.me.totp_enabled;
    const code = codeInput("totp-code", "totp-code-help");
    const uri = h("textarea", { id: "totp-uri", readonly: true, rows: 3, spellcheck: "false" });
    uri.value = secret.uri;
    const error = h("p", { class: "error", role: "alert", id: "totp-error" });
    const form = h(
      "form",
      { class: "stack", "aria-label": "Confirm the authenticator app" },
      h(
        "ol",
        { class: "steps" },
        h("li", {}, "In your authenticator app, add an account and choose to type a set-up key. Account: ", h("strong", { text: ctx.me.username }), ". Key (time based; the spaces are optional):", h("code", { id: "totp-secret", class: "secret", text: grouped(secret.secret) })),
        h("li", {}, ...field("Or, if your app accepts one, the set-up address", uri)),
        h("li", {}, ...field("Then the 6-digit code the app shows", code), h("p", { class: "muted", id: "totp-code-help", text: replacing ? "The new app replaces the one in use once this code is accepted; until then signing in asks for codes from the one in use." : "Two-step sign-in is on once this code is accepted." })),
      ),
      h("button", { type: "submit", id: "totp-confirm", text: replacing ? "Confirm and switch to the new app" : "Confirm and turn on" }),
      error,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        await api.post("/api/auth/totp/confirm", { code: code.value.replace(/\s+/g, "") });
      } catch (e) {
        // The code changes every 30 s: ask for the current one in the same field.
        code.value = "";
        code.focus();
        if (e.status === 403) error.textContent = "That code did not match. Check that the key was typed correctly and the phone's clock is right, then enter the code the app shows now.";
        else if (e.status === 422) error.textContent = "Enter the 6-digit code the app shows.";
        else if (e.status === 409) error.textContent = "This set-up is no longer in progress (another window may have changed it): reload the page and start again.";
        else error.textContent = `The code could not be checked: ${errorText(e)}`;
        return;
      }
      ctx.me.totp_enabled = true;
      ctx.me.totp_pending = false;
      showState();
      announce(replacing ? "Two-step sign-in now uses the new app." : "Two-step sign-in is on.");
      focusTitle();
    });
    if (replacing) clear(state, h("span", { class: "badge resolved", text: "on" }), " ", h("span", { class: "badge acknowledged", text: "new app: setting up" }), " Signing in still asks for codes from the app in use until the new one is confirmed.");
    else clear(state, h("span", { class: "badge acknowledged", text: "setting up" }), " Not on yet: confirm with a code from the app.");
    clear(body, form);
    announce("Set-up key shown. Type it into your authenticator app, then enter the code it shows.");
    focusTitle(); // the steps read from here; Tab reaches the address, then the code
  }

  ctx.me = await api.get("/api/auth/me"); // current, not as it was at sign-in
  showState();
  return null;
}
