// The event log with filters, and the dead letters with their last error; replay one or all.
import { api } from "../api.js";
import { ago, badge, confirmDialog, empty, errorBox, h, json, loading, pageHead, short, table, toast, when } from "../ui.js";

const STATES = ["any", "delivered", "pending", "retrying", "dead_lettered", "skipped_duplicate"];
const stateKind = (s) => (s === "delivered" ? "ok" : s === "dead_lettered" ? "bad" : s === "retrying" ? "warn" : "");

function tenantOf(event) {
  const d = event.detail || {};
  return d.tenantId || null;
}

export function eventsPage(root, params) {
  let tab = params.get("tab") === "dead-letters" ? "dead-letters" : "log";
  const tabs = h("div.tabs", { role: "tablist" });
  const content = h("div");
  const search = h("input", { type: "search", placeholder: "Search events", "aria-label": "Filter events" });
  root.replaceChildren(pageHead("Events", search), tabs, content);
  let page = null;

  function drawTabs() {
    tabs.replaceChildren(...[["log", "Event log"], ["dead-letters", "Dead letters"]].map(([id, text]) =>
      h("button", { role: "tab", "aria-selected": String(tab === id), onclick: () => { tab = id; show(); } }, text)));
  }

  function show() {
    drawTabs();
    history.replaceState(null, "", tab === "log" ? "#/events" : "#/events?tab=dead-letters");
    page = tab === "log" ? eventLog(content, search) : deadLetters(content, search);
  }
  show();
  return { refresh: () => page.refresh(), filter: search, escape: () => page.escape?.() };
}

function eventLog(root, search) {
  let records = [];
  let selected = null;
  const filters = { type: "any", state: "any", limit: "200" };
  const toolbar = h("div.toolbar");
  const list = h("div.card");
  const detail = h("aside.card.panel", { hidden: true, "aria-label": "Event details" });
  const split = h("div.split", {}, list, detail);
  root.replaceChildren(toolbar, split);
  search.value = "";
  search.oninput = () => draw();

  function drawToolbar() {
    const types = ["any", ...new Set(records.map((r) => r.event["detail-type"]))];
    const select = (name, label, options) => h("label", {}, label, h("select", { name, "aria-label": label, onchange: (e) => { filters[name] = e.target.value; name === "limit" ? load() : draw(); } },
      options.map((o) => h("option", { value: o, selected: filters[name] === o }, o.replace("_", " ")))));
    toolbar.replaceChildren(select("type", "Detail type", types), select("state", "Delivery state", STATES),
      select("limit", "Latest", ["50", "200", "1000"]));
  }

  async function load({ quiet = false } = {}) {
    if (!quiet) list.replaceChildren(loading());
    clearTimeout(poll);
    try {
      records = (await api("GET", `/events?limit=${filters.limit}`)).data;
      drawToolbar();
      draw();
      if (selected) {
        const again = records.find((r) => r.event.id === selected.event.id);
        if (again) open(again);
      }
    } catch (err) {
      list.replaceChildren(errorBox(err));
      return;
    }
    // While a delivery is in flight, re-read the log every few seconds so its outcome shows without a reload.
    if (records.some((r) => r.deliveries.some((d) => d.state === "pending" || d.state === "retrying"))) {
      poll = setTimeout(() => { if (list.isConnected) load({ quiet: true }); }, 1500);
    }
  }
  let poll = null;

  function draw() {
    const text = search.value.toLowerCase();
    const shown = records.filter((r) => (filters.type === "any" || r.event["detail-type"] === filters.type)
      && (filters.state === "any" || r.deliveries.some((d) => d.state === filters.state))
      && (!text || JSON.stringify(r.event).toLowerCase().includes(text)));
    if (!records.length) { list.replaceChildren(empty("The event log is empty", "Events put on the bus since the server started show here.")); return; }
    if (!shown.length) { list.replaceChildren(empty("No event matches the filters")); return; }
    list.replaceChildren(table([
      { label: "Time", cell: (r) => h("span", { style: "white-space: nowrap" }, ago(r.event.time)) },
      { label: "Detail type", cell: (r) => h("strong", {}, r.event["detail-type"]) },
      { label: "Source", cell: (r) => h("span.small", {}, r.event.source) },
      { label: "Tenant", cell: (r) => short(tenantOf(r.event)) },
      { label: "Deliveries", cell: (r) => r.deliveries.length ? r.deliveries.map((d) => badge(`${d.target} ${d.state.replace("_", " ")}`, stateKind(d.state))) : h("span.muted.small", {}, "no target") },
    ], shown, { onOpen: open, selected: (r) => r === selected, testid: "events-table" }));
  }

  function open(record) {
    selected = record;
    draw();
    split.classList.add("open");
    detail.hidden = false;
    detail.replaceChildren(
      h("div.panel-head", {}, h("h2", {}, record.event["detail-type"]), h("button.link", { onclick: close, "aria-label": "Close details" }, "✕")),
      h("dl.fields", {}, h("dt", {}, "Id"), h("dd", {}, h("code", {}, record.event.id)), h("dt", {}, "Time"), h("dd", {}, when(record.event.time)),
        h("dt", {}, "Received"), h("dd", {}, when(record.received)), h("dt", {}, "Source"), h("dd", {}, record.event.source)),
      h("h3", {}, "Deliveries"),
      record.deliveries.length ? table([
        { label: "Target", cell: (d) => h("code", {}, d.target) },
        { label: "State", cell: (d) => badge(d.state.replace("_", " "), stateKind(d.state)) },
        { label: "Attempts", num: true, cell: (d) => d.attempts },
      ], record.deliveries) : empty("No binding matched this event"),
      ...record.deliveries.filter((d) => d.lastError).map((d) => d.state === "delivered"
        ? h("p.small.muted", {}, h("strong", {}, `${d.target}`), ` recovered from: ${d.lastError}`)
        : h("div.error", {}, h("strong", {}, `${d.target}: `), d.lastError)),
      h("h3", {}, "Detail"), json(record.event.detail));
  }

  function close() { selected = null; split.classList.remove("open"); detail.hidden = true; draw(); }

  load();
  return { refresh: load, escape: () => detail.hidden || close() };
}

function deadLetters(root, search) {
  let letters = [];
  const list = h("div.card");
  const replayAll = h("button.primary", { onclick: () => replay(null) }, "Replay all");
  root.replaceChildren(h("div.toolbar", {}, h("p.muted", { style: "margin: 0; flex: 1 1 420px" },
    "Events a target failed after every attempt. Fix the cause (a provider's credentials, a service that was down), then replay: each goes back to the target that failed it."), replayAll), list);
  search.value = "";
  search.oninput = () => draw();

  async function load() {
    list.replaceChildren(loading());
    try {
      letters = (await api("GET", "/dead-letters")).data;
      draw();
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }

  function draw() {
    replayAll.disabled = !letters.length;
    const text = search.value.toLowerCase();
    const shown = letters.filter((l) => !text || JSON.stringify(l).toLowerCase().includes(text));
    if (!letters.length) { list.replaceChildren(empty("No dead letters", "Every event reached its targets.")); return; }
    if (!shown.length) { list.replaceChildren(empty("No dead letter matches the filter")); return; }
    list.replaceChildren(table([
      { label: "Dead-lettered", cell: (l) => ago(l.deadLettered) },
      { label: "Event", cell: (l) => [h("strong", {}, l.event["detail-type"]), h("div.small", {}, short(l.event.id))] },
      { label: "Target", cell: (l) => h("code", {}, l.target) },
      { label: "Attempts", num: true, cell: (l) => l.attempts },
      { label: "Last error", cell: (l) => h("span.small", { style: "color: var(--danger)" }, l.lastError || "—") },
      { label: "", actions: true, cell: (l) => h("button.small", { onclick: () => replay(l) }, "Replay") },
    ], shown, { testid: "dead-letters-table" }));
  }

  async function replay(letter) {
    const go = async () => {
      const body = letter ? { eventId: letter.event.id, target: letter.target } : {};
      const answer = await api("POST", "/dead-letters/replay", body);
      const n = (answer.data || []).length;
      toast(`Replayed ${n} dead letter${n === 1 ? "" : "s"}: delivery is under way`);
      await load();
    };
    if (letter) {
      try { await go(); } catch (err) { toast(err.message, "bad"); }
    } else {
      confirmDialog({ title: `Replay all ${letters.length} dead letters?`, message: "Each event is delivered again to the target that failed it.", action: "Replay all", submit: go });
    }
  }

  load();
  return { refresh: load };
}
