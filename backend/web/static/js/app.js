// The application shell: sign-in, the navigation each role gets, and a hash router that
// loads one screen at a time (each screen returns a cleanup that stops its streams).
import * as feed from "./alertfeed.js";
import * as api from "./api.js";
import { announce, clear, h, setServerNow } from "./util.js";

const SCREENS = {
  // First: where officers and supervisors land after signing in.
  attention: { title: "Needs attention", module: "./views/attention.js", roles: ["supervisor", "officer"] },
  map: { title: "Live map", module: "./views/live.js", roles: ["supervisor", "officer", "partner"] },
  alerts: { title: "Alerts", module: "./views/alerts.js", roles: ["supervisor", "officer", "partner"] },
  subjects: { title: "Subjects", module: "./views/subjects.js", roles: ["supervisor", "officer", "partner"] },
  zones: { title: "Zones", module: "./views/zones.js", roles: ["supervisor", "officer"] },
  pool: { title: "Tag pool", module: "./views/pool.js", roles: ["supervisor", "officer"] },
  investigations: { title: "Investigations", module: "./views/investigations.js", roles: ["supervisor", "officer", "partner"] },
  admin: { title: "Admin", module: "./views/admin.js", roles: ["administrator", "supervisor"] },
  oncall: { title: "On call", module: "./views/oncall.js", roles: ["supervisor", "officer"] },
  // A page's link (#/ack/<token>): reached from an e-mail or a push, never from the menu.
  ack: { title: "Acknowledge alert", module: "./views/ack.js", roles: ["supervisor", "officer"], nav: false },
  audit: { title: "Audit", module: "./views/audit.js", roles: ["auditor"] },
  // Last, so no role's first screen: everyone's own sign-in settings (TOTP).
  account: { title: "Security", module: "./views/account.js", roles: ["administrator", "supervisor", "officer", "partner", "auditor", "researcher"] },
};

const ctx = { me: null, config: null, openapi: null };
let cleanup = null;
let generation = 0; // a newer route() makes an older, still loading screen discard itself

function main() {
  return document.getElementById("main");
}

function parseHash() {
  const parts = (location.hash || "").replace(/^#\/?/, "").split("/").filter(Boolean);
  return { screen: parts[0] || "", args: parts.slice(1).map(decodeURIComponent) };
}

function allowed(screen) {
  const s = SCREENS[screen];
  return s && ctx.me && s.roles.includes(ctx.me.role);
}

function home() {
  return Object.keys(SCREENS).find((k) => allowed(k) && SCREENS[k].nav !== false) || "map";
}

// The Alerts tab says how many alerts nobody has acknowledged yet.
function showCount() {
  const link = document.querySelector('#nav-list a[data-screen="alerts"]');
  if (!link) return;
  const n = feed.openCount();
  clear(link, "Alerts", n ? h("span", { class: "count", id: "alerts-count", text: String(n) }) : null);
  link.setAttribute("aria-label", n ? `Alerts, ${n} open` : "Alerts");
}

function buildNav() {
  const list = clear(document.getElementById("nav-list"));
  for (const [key, s] of Object.entries(SCREENS)) {
    if (!allowed(key) || s.nav === false) continue;
    list.append(h("li", {}, h("a", { href: `#/${key}`, dataset: { screen: key }, text: s.title })));
  }
  showCount();
  clear(document.getElementById("who"), `${ctx.me.display_name} · ${ctx.me.role} · ${ctx.me.unit_name}`);
  document.getElementById("top").hidden = false;
}

async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      // A screen that failed half-way has little to clean.
    }
    cleanup = null;
  }
  if (!api.signedIn() || !ctx.me) return showSignIn();
  let { screen, args } = parseHash();
  if (!allowed(screen)) {
    location.replace(`#/${home()}`);
    return;
  }
  for (const a of document.querySelectorAll("#nav-list a")) {
    if (a.dataset.screen === screen) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.getElementById("nav").classList.remove("open");
  document.getElementById("menu-toggle").setAttribute("aria-expanded", "false");
  // Each screen renders into its own element, so a stale one can only clear itself.
  const el = h("div", { class: "screen" });
  clear(main(), el);
  document.title = `${SCREENS[screen].title} · tagwatch`;
  const mine = ++generation;
  try {
    const view = await import(SCREENS[screen].module);
    const done = (await view.render(el, ctx, args)) || null;
    if (mine !== generation) {
      if (done) done();
      return;
    }
    cleanup = done;
  } catch (e) {
    if (mine !== generation) return;
    const missing = /leaflet|Failed to fetch dynamically imported module/i.test(String(e));
    el.append(
      h("h1", { text: SCREENS[screen].title }),
      h("p", { class: "error", role: "alert", text: missing ? "The map library is not installed on this server (run `make setup`)." : `This screen failed: ${e.message || e}` }),
    );
  }
  el.dataset.ready = "true"; // rendered (tests wait for it: the streams never go idle)
  // The new screen's heading takes the focus, unless the screen put it somewhere on purpose
  // (an alert opened from its address focuses that alert's heading).
  const heading = el.querySelector("h1");
  if (heading && !el.contains(document.activeElement)) {
    heading.tabIndex = -1;
    heading.focus();
  }
  announce(`${SCREENS[screen].title} screen`);
}

function showSignIn(message) {
  document.getElementById("top").hidden = true;
  const el = clear(main());
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const otp = h("input", { id: "otp", name: "otp", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6,8}" });
  const otpWrap = h("div", { hidden: true }, h("label", { for: "otp", text: "One-time code" }), otp);
  const status = h("p", { class: "error", role: "alert", id: "signin-error" });
  if (message) status.textContent = message;
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title", novalidate: false },
    h("h1", { id: "signin-title", text: "Sign in to tagwatch" }),
    h("label", { for: "username", text: "Username" }),
    user,
    h("label", { for: "password", text: "Password" }),
    pass,
    otpWrap,
    status,
    h("button", { type: "submit", text: "Sign in" }),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    status.textContent = "";
    try {
      await api.signIn(user.value.trim(), pass.value, otp.value.trim() || undefined);
      pass.value = "";
      await start();
    } catch (e) {
      if (e.status === 401 && /one-time code required/.test(e.message)) {
        otpWrap.hidden = false;
        otp.required = true;
        status.textContent = "Enter the one-time code from your authenticator.";
        otp.focus();
      } else if (e.status === 401 && /one-time code not accepted/.test(e.message)) {
        // The password was right: only the code is asked again (it changes every 30 s).
        otp.value = "";
        otp.focus();
        status.textContent = "That one-time code was not accepted. Enter the current code from your authenticator.";
      } else if (e.status === 429) {
        status.textContent = "Too many attempts: wait a minute and try again.";
      } else {
        status.textContent = e.status === 401 ? "Username or password not accepted." : `Sign-in failed: ${e.message}`;
      }
    }
  });
  el.append(form);
  user.focus();
}

async function start() {
  try {
    [ctx.me, ctx.config] = await Promise.all([api.get("/api/auth/me"), api.get("/api/web/config")]);
    setServerNow(ctx.config.now);
  } catch {
    await api.signOut();
    return showSignIn("Your session has ended. Sign in again.");
  }
  if (SCREENS.alerts.roles.includes(ctx.me.role)) await feed.start();
  buildNav();
  if (!parseHash().screen) location.replace(`#/${home()}`); // hashchange routes
  else await route();
}

// Which optional API routes this server has (the investigations API lands separately).
ctx.describe = async () => {
  if (!ctx.openapi) ctx.openapi = await api.get("/api/openapi.json").catch(() => ({ paths: {} }));
  return ctx.openapi;
};
ctx.hasRoute = async (path) => Object.prototype.hasOwnProperty.call((await ctx.describe()).paths || {}, path);

feed.subscribe(showCount);

api.onSession((s) => {
  if (!s) feed.stop();
  if (!s && ctx.me) {
    ctx.me = null;
    route();
  }
});

document.getElementById("sign-out").addEventListener("click", () => {
  ctx.me = null;
  // Not awaited: the screen changes now, and the server's answer (api.signOut) cannot take
  // the user away from an address they open before it comes, such as a page's link.
  api.signOut();
  location.hash = "";
  showSignIn("Signed out.");
});
document.getElementById("menu-toggle").addEventListener("click", (ev) => {
  const nav = document.getElementById("nav");
  const open = nav.classList.toggle("open");
  ev.currentTarget.setAttribute("aria-expanded", String(open));
});
window.addEventListener("hashchange", route);

if (api.signedIn()) start();
else showSignIn();
