// The console's shell: sign-in, the hash router, keyboard shortcuts.
import { decodeClaims, session, whenUnauthorized } from "./api.js";
import { bindingsPage } from "./pages/bindings.js";
import { eventsPage } from "./pages/events.js";
import { metersPage } from "./pages/meters.js";
import { tenantsPage } from "./pages/tenants.js";
import { usagePage } from "./pages/usage.js";
import { usersPage } from "./pages/users.js";

const PAGES = { tenants: tenantsPage, users: usersPage, meters: metersPage, usage: usagePage, events: eventsPage, bindings: bindingsPage };
const KEYS = { t: "tenants", u: "users", m: "meters", s: "usage", e: "events", b: "bindings" };
const $ = (id) => document.getElementById(id);
let current = null;

function signIn(message) {
  session.token = null;
  $("shell").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("signin-error").hidden = !message;
  $("signin-token").value = "";
  $("signin-token").focus();
}

function showWho() {
  const claims = session.claims() || {};
  const scopes = (claims.scope || "").split(" ").filter(Boolean);
  const expires = claims.exp ? new Date(claims.exp * 1000).toLocaleTimeString() : "?";
  $("whoami").textContent = `${claims.username || claims.sub || "?"} · ${scopes.length} scope${scopes.length === 1 ? "" : "s"} · until ${expires}`;
  $("whoami").title = scopes.join("\n");
}

function route() {
  if (!session.token) { signIn(); return; }
  $("signin").hidden = true;
  $("shell").hidden = false;
  showWho();
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "tenants").split("?");
  const name = PAGES[path] ? path : "tenants";
  for (const a of document.querySelectorAll(".sidebar a")) a.classList.toggle("active", a.dataset.page === name);
  document.title = `${document.querySelector(`.sidebar a[data-page="${name}"] span`).textContent} · sbt console`;
  const main = $("page");
  current = PAGES[name](main, new URLSearchParams(query || ""));
  main.focus({ preventScroll: true });
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("signin-token").value.trim().replace(/^Bearer\s+/i, "");
  const claims = decodeClaims(token);
  const error = !claims ? "That is not a JWT: paste the whole token (three parts separated by dots)."
    : claims.exp && claims.exp * 1000 < Date.now() ? `That token expired at ${new Date(claims.exp * 1000).toLocaleString()}: get a new one.`
      : null;
  if (error) {
    $("signin-error").textContent = error;
    $("signin-error").hidden = false;
    return;
  }
  session.token = token;
  if (!location.hash || location.hash === "#") location.hash = "#/tenants"; else route();
});
$("signin-token").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("signin-form").requestSubmit(); }
});
$("signout").addEventListener("click", () => signIn());
$("help-open").addEventListener("click", () => $("help").showModal());
whenUnauthorized((message) => signIn(`Signed out: ${message}`));
window.addEventListener("hashchange", route);

let pendingG = false;
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || !session.token || $("shell").hidden) return;
  if (document.querySelector("dialog[open]")) return; // the dialog owns the keyboard (Esc closes it)
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (event.key === "Escape") {
    if (typing) event.target.blur(); else current?.escape?.();
    return;
  }
  if (typing) return;
  if (pendingG) {
    pendingG = false;
    if (KEYS[event.key]) { event.preventDefault(); location.hash = `#/${KEYS[event.key]}`; }
    return;
  }
  if (event.key === "g") { pendingG = true; setTimeout(() => { pendingG = false; }, 1500); return; }
  if (event.key === "?") { $("help").showModal(); return; }
  if (event.key === "r") { event.preventDefault(); current?.refresh?.(); return; }
  if (event.key === "n" && current?.create) { event.preventDefault(); current.create(); return; }
  if (event.key === "/" && current?.filter) { event.preventDefault(); current.filter.focus(); }
});

route();
