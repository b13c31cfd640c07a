// Meters: list, create, deactivate or reactivate; each links to its usage chart.
import { all, api } from "../api.js";
import { ago, badge, empty, errorBox, formDialog, h, loading, pageHead, table, toast } from "../ui.js";

export const AGGREGATIONS = ["SUM", "COUNT", "MAX", "MIN", "AVG", "LATEST", "UNIQUE_COUNT"];

export function metersPage(root) {
  let meters = [];
  let filter = "";
  const list = h("div.card");
  const search = h("input", { type: "search", placeholder: "Filter meters", "aria-label": "Filter meters",
    oninput: (e) => { filter = e.target.value.toLowerCase(); draw(); } });
  root.replaceChildren(pageHead("Meters", search, h("button.primary", { onclick: () => create() }, "Create meter ", h("kbd", {}, "n"))), list);

  async function load() {
    list.replaceChildren(loading());
    try {
      meters = await all("/meters");
      draw();
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }

  function draw() {
    const shown = meters.filter((m) => !filter || [m.name, m.eventName, m.meterId].join(" ").toLowerCase().includes(filter));
    if (!meters.length) {
      list.replaceChildren(empty("No meters yet", "A meter aggregates the usage events of one eventName (Stripe Meters, OpenMeter)."));
      return;
    }
    if (!shown.length) { list.replaceChildren(empty("No meter matches the filter")); return; }
    list.replaceChildren(table([
      { label: "Name", cell: (m) => h("strong", {}, m.name) },
      { label: "Event name", cell: (m) => h("code", {}, m.eventName) },
      { label: "Aggregation", cell: (m) => m.aggregation + (m.valueProperty ? ` of ${m.valueProperty}` : "") },
      { label: "Group by", cell: (m) => (m.groupBy || []).length ? m.groupBy.map((g) => badge(g, "info")) : "—" },
      { label: "Status", cell: (m) => badge(m.status, m.status === "active" ? "ok" : "") },
      { label: "Created", cell: (m) => ago(m.created) },
      { label: "", actions: true, cell: (m) => [
        h("a.button.small", { href: `#/usage?meter=${encodeURIComponent(m.meterId)}` }, "Usage"),
        m.status === "active"
          ? h("button.small", { onclick: () => setStatus(m, "inactive") }, "Deactivate")
          : h("button.small", { onclick: () => setStatus(m, "active") }, "Activate")] },
    ], shown, { testid: "meters-table" }));
  }

  async function setStatus(meter, status) {
    try {
      await api("PUT", `/meters/${encodeURIComponent(meter.meterId)}`, { status });
      toast(`${meter.name} is ${status}`);
      await load();
    } catch (err) {
      toast(err.message, "bad");
    }
  }

  function create() {
    formDialog({
      title: "Create a meter",
      submitLabel: "Create",
      fields: [
        { name: "name", label: "Name", required: true, placeholder: "API calls" },
        { name: "eventName", label: "Event name (unique)", required: true, placeholder: "api_calls" },
        { name: "aggregation", label: "Aggregation", type: "select", options: AGGREGATIONS, value: "SUM" },
        { name: "valueProperty", label: "Value property", placeholder: "value", hint: "The property holding the number (not for COUNT)." },
        { name: "groupBy", label: "Group by (comma-separated property names)", placeholder: "region, plan" },
        { name: "description", label: "Description" },
      ],
      submit: async (v) => {
        const body = { name: v.name, eventName: v.eventName, aggregation: v.aggregation };
        if (v.valueProperty) body.valueProperty = v.valueProperty;
        const groupBy = v.groupBy.split(",").map((g) => g.trim()).filter(Boolean);
        if (groupBy.length) body.groupBy = groupBy;
        if (v.description) body.description = v.description;
        await api("POST", "/meters", body);
        toast(`Meter ${v.name} created`);
        await load();
      },
    });
  }

  load();
  return { refresh: load, create, filter: search };
}
