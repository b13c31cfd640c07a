// Tenants and their registrations: status, lifecycle history from the event log; register, update, offboard.
import { all, api } from "../api.js";
import { ago, badge, confirmDialog, empty, errorBox, formDialog, h, json, loading, pageHead, short, table, toast, when } from "../ui.js";

const IN_FLIGHT = new Set(["pending", "retrying"]);
const POLL_MS = 1500;
const LIFECYCLE = /^(sbt_aws_)?(onboarding|offboarding|activate|deactivate|provision|deprovision)/i;

function statusOf(row) {
  if (!row.active) return badge("offboarded", "bad");
  const status = row.registration.registrationStatus;
  if (status === "failed") return badge("failed", "bad");
  return badge(status || "active", "ok");
}

function parseObject(text, label) {
  if (!text || !text.trim()) return {};
  let value;
  try { value = JSON.parse(text); } catch (err) { throw new Error(`${label}: not valid JSON (${err.message})`); }
  if (typeof value !== "object" || Array.isArray(value) || value === null) throw new Error(`${label}: expected a JSON object`);
  return value;
}

function deliveryBadges(deliveries) {
  return deliveries.map((d) => badge(`${d.target}: ${d.state.replace("_", " ")}`,
    d.state === "delivered" ? "ok" : d.state === "dead_lettered" ? "bad" : d.state === "retrying" ? "warn" : ""));
}

export function tenantsPage(root) {
  let rows = [];
  let selectedId = null;
  let filter = "";
  const list = h("div.card");
  const detail = h("aside.card.panel", { hidden: true, "aria-label": "Tenant details" });
  const split = h("div.split", {}, list, detail);
  const search = h("input", { type: "search", placeholder: "Filter tenants", "aria-label": "Filter tenants",
    oninput: (e) => { filter = e.target.value.toLowerCase(); draw(); } });
  root.replaceChildren(pageHead("Tenants", search, h("button.primary", { onclick: () => register() }, "Register tenant ", h("kbd", {}, "n"))), split);

  async function load() {
    list.replaceChildren(loading());
    try {
      const [registrations, tenants] = await Promise.all([all("/tenant-registrations"), all("/tenants")]);
      const byId = new Map(tenants.map((t) => [t.tenantId, t]));
      rows = registrations.map((r) => {
        const tenant = byId.get(r.tenantId) || {};
        return { id: r.tenantRegistrationId, tenantId: r.tenantId, registration: r, tenant,
                 active: r.sbtaws_active !== false && tenant.sbtaws_active !== false,
                 name: tenant.tenantName || r.tenantName || "(unnamed)" };
      });
      draw();
      if (selectedId) open(rows.find((r) => r.id === selectedId));
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }

  function draw() {
    const shown = rows.filter((r) => !filter || JSON.stringify([r.name, r.id, r.tenantId, r.tenant, r.registration]).toLowerCase().includes(filter));
    if (!rows.length) {
      list.replaceChildren(empty("No tenants yet", h("div", {}, "Register one to start onboarding: ",
        h("button.link", { onclick: () => register() }, "Register tenant"))));
      return;
    }
    if (!shown.length) { list.replaceChildren(empty("No tenant matches the filter")); return; }
    list.replaceChildren(table([
      { label: "Name", cell: (r) => h("strong", {}, r.name) },
      { label: "Status", cell: statusOf },
      { label: "Tier", cell: (r) => r.registration.tier || r.tenant.tier || "—" },
      { label: "Email", cell: (r) => r.tenant.email || "—" },
      { label: "Tenant id", cell: (r) => short(r.tenantId) },
      { label: "Registration id", cell: (r) => short(r.id) },
    ], shown, { onOpen: (r) => open(r), selected: (r) => r.id === selectedId, testid: "tenants-table" }));
  }

  async function open(row) {
    if (!row) { close(); return; }
    selectedId = row.id;
    draw();
    split.classList.add("open");
    detail.hidden = false;
    const history = h("div", {}, loading("Reading the event log…"));
    detail.replaceChildren(
      h("div.panel-head", {}, h("h2", {}, row.name), h("button.link", { onclick: close, "aria-label": "Close details" }, "✕")),
      h("dl.fields", {},
        h("dt", {}, "Status"), h("dd", {}, statusOf(row)),
        h("dt", {}, "Tenant id"), h("dd", {}, h("code", {}, row.tenantId || "—")),
        h("dt", {}, "Registration"), h("dd", {}, h("code", {}, row.id))),
      h("div.toolbar", {},
        h("button", { onclick: () => update(row), disabled: !row.active }, "Update"),
        h("button.danger", { onclick: () => offboard(row), disabled: !row.active }, "Offboard")),
      h("h3", {}, "Lifecycle"), history,
      h("h3", {}, "Tenant data"), json(row.tenant),
      h("h3", {}, "Registration data"), json(row.registration));
    await loadHistory(row, history);
  }

  /** The tenant's events, oldest first; re-read every few seconds while a delivery is still in flight. */
  async function loadHistory(row, history) {
    let inFlight = false;
    try {
      const events = (await api("GET", "/events?limit=1000")).data;
      const mine = events.filter((rec) => {
        const d = rec.event.detail || {};
        return d.tenantId === row.tenantId || d.tenantRegistrationId === row.id;
      }).reverse();
      inFlight = mine.some((rec) => rec.deliveries.some((d) => IN_FLIGHT.has(d.state)));
      history.replaceChildren(mine.length ? h("ol.timeline", { "data-testid": "tenant-history" }, mine.map((rec) => h("li", {},
        h("div", {}, h("strong", {}, rec.event["detail-type"]), " ", LIFECYCLE.test(rec.event["detail-type"]) ? "" : h("span.muted.small", {}, rec.event.source)),
        h("div.small.muted", {}, when(rec.event.time)),
        h("div", {}, deliveryBadges(rec.deliveries))))) : empty("No events for this tenant in the event log",
        "The log is kept in the server's memory: events from before its last start are gone."));
    } catch (err) {
      history.replaceChildren(errorBox(err));
    }
    if (inFlight) {
      setTimeout(() => { if (history.isConnected && selectedId === row.id) loadHistory(row, history); }, POLL_MS);
    }
  }

  function close() {
    selectedId = null;
    split.classList.remove("open");
    detail.hidden = true;
    draw();
  }

  function register() {
    formDialog({
      title: "Register a tenant",
      submitLabel: "Register",
      fields: [
        { name: "tenantName", label: "Name", required: true, placeholder: "acme" },
        { name: "email", label: "Owner email", type: "email", required: true, placeholder: "owner@acme.test" },
        { name: "tier", label: "Tier", placeholder: "basic" },
        { name: "extra", label: "More registration data (JSON object, optional)", type: "textarea", rows: 3,
          placeholder: '{"prices": [{"id": "price_123"}]}' },
      ],
      submit: async (v) => {
        const registrationData = parseObject(v.extra, "More registration data");
        if (v.tier) registrationData.tier = v.tier;
        const answer = await api("POST", "/tenant-registrations", {
          tenantData: { tenantName: v.tenantName, email: v.email }, tenantRegistrationData: registrationData });
        toast(`Registered ${v.tenantName}: onboarding started`);
        selectedId = answer.data.tenantRegistrationId;
        await load();
      },
    });
  }

  function update(row) {
    const { tenantName, email, tenantId, tenantRegistrationId, sbtaws_active, ...rest } = row.tenant;
    formDialog({
      title: `Update ${row.name}`,
      fields: [
        { name: "tenantName", label: "Name", value: tenantName || "", required: true },
        { name: "email", label: "Owner email", type: "email", value: email || "" },
        { name: "tier", label: "Tier", value: row.registration.tier || "" },
        { name: "more", label: "Other tenant data (JSON object)", type: "textarea", rows: 4, value: JSON.stringify(rest, null, 2) },
      ],
      submit: async (v) => {
        const tenantData = { ...parseObject(v.more, "Other tenant data"), tenantName: v.tenantName };
        if (v.email) tenantData.email = v.email;
        const body = { tenantData };
        if (v.tier) body.tenantRegistrationData = { tier: v.tier };
        await api("PATCH", `/tenant-registrations/${encodeURIComponent(row.id)}`, body);
        toast(`Updated ${v.tenantName}`);
        await load();
      },
    });
  }

  function offboard(row) {
    confirmDialog({
      title: `Offboard ${row.name}?`,
      message: "This emits offboardingRequest: providers delete the tenant's customers and the application plane deprovisions it. The records are kept, marked inactive.",
      action: "Offboard",
      submit: async () => {
        await api("DELETE", `/tenant-registrations/${encodeURIComponent(row.id)}`);
        toast(`Offboarding ${row.name}`);
        await load();
      },
    });
  }

  load();
  return { refresh: load, create: register, filter: search, escape: () => detail.hidden || close() };
}
