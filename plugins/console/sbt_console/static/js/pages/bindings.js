// What runs on which trigger (the binding table) and which plugins are loaded.
import { api } from "../api.js";
import { badge, empty, errorBox, h, loading, pageHead, table } from "../ui.js";

function describe(trigger) {
  if (trigger.kind === "route") {
    return [h("code", {}, `${trigger.method} ${trigger.path}`), " ",
      trigger.authorizer === "none" ? badge("public") : trigger.scope ? badge(trigger.scope, "info") : null];
  }
  if (trigger.kind === "event") return [badge("event"), " ", h("code", {}, trigger.detailType)];
  if (trigger.kind === "schedule") return [badge("schedule", "warn"), " ", h("code", {}, trigger.expression)];
  return badge(trigger.kind);
}

export function bindingsPage(root) {
  const body = h("div");
  root.replaceChildren(pageHead("Bindings & plugins"), body);

  async function load() {
    body.replaceChildren(loading());
    try {
      const { bindings, plugins } = (await api("GET", "/console/api/bindings")).data;
      body.replaceChildren(
        h("h2", {}, "Bindings"),
        h("p.muted", {}, "Each hook of the selected providers and the trigger that runs it: defaults from the contract, overrides from [[bindings]], routes from plugins."),
        h("div.card", {}, bindings.length ? table([
          { label: "Hook", cell: (b) => h("code", {}, b.hook) },
          { label: "Provider", cell: (b) => b.interface ? `${b.interface}: ${b.provider}` : b.provider },
          { label: "Trigger", cell: (b) => describe(b.trigger) },
          { label: "Origin", cell: (b) => [badge(b.origin), b.enabled ? null : badge("disabled", "bad")] },
        ], bindings, { testid: "bindings-table" }) : empty("No bindings", "No provider is selected.")),
        h("h2", { style: "margin-top: 24px" }, "Plugins"),
        h("div.card", {}, table([
          { label: "Name", cell: (p) => h("strong", {}, p.name) },
          { label: "Kind", cell: (p) => p.kind || "—" },
          { label: "Interfaces", cell: (p) => p.interfaces.length ? p.interfaces.map((i) => badge(i, "info")) : "—" },
          { label: "Status", cell: (p) => [badge(p.status, p.status === "loaded" ? "ok" : p.status === "failed" ? "bad" : ""), p.error ? h("div.small", { style: "color: var(--danger)" }, p.error) : null] },
          { label: "Distribution", cell: (p) => p.distribution ? `${p.distribution} ${p.version || ""}` : "—" },
          { label: "Hooks", cell: (p) => h("span.small", {}, p.hooks.join(", ") || "—") },
        ], plugins, { testid: "plugins-table" })));
    } catch (err) {
      body.replaceChildren(errorBox(err));
    }
  }
  load();
  return { refresh: load };
}
