// Usage of one meter over time: windows and range chosen by the operator, stacked by tenant or by a
// groupBy dimension; the same numbers as a table, exportable as CSV.
import { all, api } from "../api.js";
import { legend, PALETTE, stackedBars } from "../chart.js";
import { downloadCsv, empty, errorBox, fmtNumber, h, loading, pageHead, table } from "../ui.js";

const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3, "365d": 365 * 86400e3 };
const RANGE_LABELS = { "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days", "365d": "Last 12 months", custom: "Custom" };
const DEFAULT_WINDOW = { "1h": "MINUTE", "24h": "HOUR", "7d": "DAY", "30d": "DAY", "365d": "MONTH", custom: "DAY" };
const WINDOWS = ["MINUTE", "HOUR", "DAY", "MONTH"];
const STEP = { MINUTE: 60e3, HOUR: 3600e3, DAY: 86400e3 };
const MAX_WINDOWS = 500;
const ADDITIVE = new Set(["SUM", "COUNT"]);

/** The start of the UTC window holding `t` (ms). */
function floorTo(t, size) {
  if (size === "MONTH") { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1); }
  return Math.floor(t / STEP[size]) * STEP[size];
}
function next(t, size) {
  if (size === "MONTH") { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1); }
  return t + STEP[size];
}
const iso = (t) => new Date(t).toISOString().replace(".000Z", "Z");

function label(t, size) {
  const d = new Date(t);
  const opts = size === "MONTH" ? { month: "short", year: "numeric", timeZone: "UTC" }
    : size === "DAY" ? { month: "short", day: "numeric", timeZone: "UTC" }
      : { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "UTC" };
  return new Intl.DateTimeFormat(undefined, opts).format(d);
}
function title(t, size) {
  const opts = size === "MONTH" ? { month: "long", year: "numeric", timeZone: "UTC" }
    : size === "DAY" ? { dateStyle: "medium", timeZone: "UTC" } : { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" };
  return `${new Intl.DateTimeFormat(undefined, opts).format(new Date(t))} UTC`;
}
/** A datetime-local input's value (taken as UTC) <-> ms. */
const toLocalInput = (t) => new Date(t).toISOString().slice(0, 16);
const fromLocalInput = (v) => Date.parse(`${v}:00Z`);

export function usagePage(root, params) {
  const state = {
    meter: params.get("meter") || "", range: params.get("range") || "7d", window: params.get("window") || "",
    stack: params.get("stack") || "tenant", tenant: params.get("tenant") || "",
    from: params.get("from") || "", to: params.get("to") || "",
  };
  if (!state.window) state.window = DEFAULT_WINDOW[state.range] || "DAY";
  let meters = [];
  const body = h("div");
  const controls = h("div.toolbar");
  root.replaceChildren(pageHead("Usage"), controls, body);

  const select = (name, options, value, onchange, labels = {}) => h("select", { name, onchange },
    options.map((o) => h("option", { value: o, selected: o === value }, labels[o] || o)));

  function syncUrl() {
    const q = new URLSearchParams(Object.entries(state).filter(([k, v]) => v && !((k === "from" || k === "to") && state.range !== "custom")));
    history.replaceState(null, "", `#/usage?${q}`);
  }

  function field(text, control) {
    control.setAttribute("aria-label", text);
    return h("label", {}, text, control);
  }

  function drawControls() {
    const meter = meters.find((m) => m.meterId === state.meter);
    const dims = meter ? meter.groupBy || [] : [];
    if (state.stack !== "tenant" && !dims.includes(state.stack)) state.stack = "tenant";
    const custom = state.range === "custom";
    controls.replaceChildren(...[
      field("Meter", select("meter", meters.map((m) => m.meterId), state.meter, (e) => { state.meter = e.target.value; refresh(); },
        Object.fromEntries(meters.map((m) => [m.meterId, `${m.name} (${m.eventName})`])))),
      field("Range", select("range", Object.keys(RANGE_LABELS), state.range, (e) => {
        state.range = e.target.value;
        if (state.range === "custom" && !state.from) {
          const now = Date.now();
          state.from = toLocalInput(now - RANGES["7d"]); state.to = toLocalInput(now);
        } else if (state.range !== "custom") state.window = DEFAULT_WINDOW[state.range];
        refresh();
      }, RANGE_LABELS)),
      custom ? field("From (UTC)", h("input", { type: "datetime-local", name: "from", value: state.from, onchange: (e) => { state.from = e.target.value; refresh(); } })) : null,
      custom ? field("To (UTC)", h("input", { type: "datetime-local", name: "to", value: state.to, onchange: (e) => { state.to = e.target.value; refresh(); } })) : null,
      field("Window", select("window", WINDOWS, state.window, (e) => { state.window = e.target.value; refresh(); })),
      field("Stack by", select("stack", ["tenant", ...dims], state.stack, (e) => { state.stack = e.target.value; refresh(); },
        Object.fromEntries([["tenant", "Tenant"], ...dims.map((d) => [d, `${d} (groupBy)`])]))),
      field("Tenant", h("input", { type: "search", name: "tenant", placeholder: "all tenants", value: state.tenant,
        onchange: (e) => { state.tenant = e.target.value.trim(); refresh(); } })),
    ].filter(Boolean));
  }

  async function start() {
    body.replaceChildren(loading());
    try {
      meters = await all("/meters");
    } catch (err) {
      body.replaceChildren(errorBox(err));
      return;
    }
    if (!meters.length) {
      body.replaceChildren(h("div.card", {}, empty("No meters yet", h("div", {}, "Create one on the ", h("a", { href: "#/meters" }, "Meters"), " page, then send usage events."))));
      return;
    }
    if (!meters.some((m) => m.meterId === state.meter)) state.meter = meters[0].meterId;
    await refresh();
  }

  async function refresh() {
    drawControls();
    syncUrl();
    const meter = meters.find((m) => m.meterId === state.meter);
    if (!meter) return;
    const now = Date.now();
    const rawFrom = state.range === "custom" ? fromLocalInput(state.from) : now - RANGES[state.range];
    const rawTo = state.range === "custom" ? fromLocalInput(state.to) : now;
    if (!(rawFrom < rawTo)) { body.replaceChildren(errorBox(new Error("“From” must be before “To”."))); return; }
    const from = floorTo(rawFrom, state.window);
    const to = floorTo(rawTo, state.window) < rawTo ? next(floorTo(rawTo, state.window), state.window) : rawTo;
    const windows = [];
    for (let t = from; t < to && windows.length <= MAX_WINDOWS; t = next(t, state.window)) windows.push(t);
    if (windows.length > MAX_WINDOWS) {
      body.replaceChildren(errorBox(new Error(`That is more than ${MAX_WINDOWS} ${state.window.toLowerCase()} windows: choose a larger window or a shorter range.`)));
      return;
    }
    const query = new URLSearchParams({ from: iso(from), to: iso(to), windowSize: state.window });
    if (state.stack !== "tenant") query.set("groupBy", state.stack);
    if (state.tenant) query.set("tenantId", state.tenant);
    body.replaceChildren(loading("Querying usage…"));
    let rows;
    try {
      rows = await all(`/usage/${encodeURIComponent(meter.meterId)}?${query}`, { limit: 1000, max: 100000 });
    } catch (err) {
      body.replaceChildren(errorBox(err));
      return;
    }
    draw(meter, windows, rows, `${iso(from)} – ${iso(to)}`);
  }

  function draw(meter, windows, rows, span) {
    const seriesOf = (row) => state.stack === "tenant" ? row.tenantId : String(row.groups?.[state.stack] ?? "(none)");
    const values = new Map(); // series -> windowStart(ms) -> value
    for (const row of rows) {
      const name = seriesOf(row);
      const t = Date.parse(row.windowStart);
      if (!values.has(name)) values.set(name, new Map());
      const perWindow = values.get(name);
      perWindow.set(t, (perWindow.get(t) || 0) + row.value);
    }
    const totalOf = (name) => [...values.get(name).values()].reduce((a, b) => a + b, 0);
    const series = [...values.keys()].sort((a, b) => totalOf(b) - totalOf(a));
    const colours = new Map(series.map((name, i) => [name, PALETTE[i % PALETTE.length]]));
    const colour = (name) => colours.get(name);
    const total = series.reduce((sum, name) => sum + totalOf(name), 0);
    const heading = h("div.summary", {},
      h("div", {}, h("span.muted.small", {}, ADDITIVE.has(meter.aggregation) ? "Total" : `Sum of ${meter.aggregation} values`), h("strong", { "data-testid": "usage-total" }, fmtNumber(total))),
      h("div", {}, h("span.muted.small", {}, state.stack === "tenant" ? "Tenants" : `Values of ${state.stack}`), h("strong", {}, series.length)),
      h("div", {}, h("span.muted.small", {}, "Windows"), h("strong", {}, `${windows.length} × ${state.window.toLowerCase()}`)),
      h("div", {}, h("span.muted.small", {}, "Span (UTC)"), h("span.mono", { style: "display: block; margin-top: 4px" }, span)));
    if (!rows.length) {
      body.replaceChildren(h("div.card", {}, heading, empty("No usage in this range",
        h("div", {}, `Send ingestUsage events with eventName “${meter.eventName}” (POST /events or sbt events put), or widen the range.`))));
      return;
    }
    const chart = stackedBars({
      windows: windows.map((t) => ({ start: iso(t), label: label(t, state.window), title: title(t, state.window) })),
      series, colour, value: (name, start) => values.get(name).get(Date.parse(start)) || 0,
    });
    const dims = state.stack === "tenant" ? [] : [state.stack]; // the dimensions the query grouped by
    const csv = () => {
      downloadCsv(`usage-${meter.eventName}-${state.window.toLowerCase()}.csv`, ["windowStart", "windowEnd", "tenantId", ...dims.map((d) => `groups.${d}`), "value"],
        rows.map((r) => [r.windowStart, r.windowEnd, r.tenantId, ...dims.map((d) => r.groups?.[d] ?? ""), r.value]));
    };
    const tableRows = rows.slice().sort((a, b) => a.windowStart.localeCompare(b.windowStart) || seriesOf(a).localeCompare(seriesOf(b)));
    body.replaceChildren(
      h("div.card", {}, heading, chart, legend(series, colour, totalOf),
        ADDITIVE.has(meter.aggregation) ? null : h("p.small.muted", { style: "padding: 0 16px 12px" },
          `${meter.aggregation} values do not add up: a bar's height stacks each ${state.stack}'s value of that window.`)),
      h("div.page-head", { style: "margin-top: 20px" }, h("h2", {}, "Rows"), h("button", { onclick: csv }, "Export CSV")),
      h("div.card", {}, table([
        { label: "Window start (UTC)", cell: (r) => h("span.mono", {}, r.windowStart) },
        { label: "Window end", cell: (r) => h("span.mono", {}, r.windowEnd) },
        { label: "Tenant", cell: (r) => h("code", {}, r.tenantId) },
        ...dims.map((d) => ({ label: d, cell: (r) => r.groups?.[d] ?? "—" })),
        { label: "Value", num: true, cell: (r) => fmtNumber(r.value) },
      ], tableRows, { testid: "usage-table" })));
  }

  start();
  return { refresh: start };
}
