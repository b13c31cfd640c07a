// Small DOM helpers: elements, tables, dialogs, toasts, formatting.

/** h("tag.class", {attrs}, ...children): an element. on* attributes become listeners. */
export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function badge(text, kind = "") { return h(`span.badge${kind ? "." + kind : ""}`, {}, text); }

export function empty(title, hint) { return h("div.empty", {}, h("strong", {}, title), hint || ""); }

export function errorBox(err) { return h("div.error", { role: "alert" }, err.message || String(err)); }

export function loading(text = "Loading…") { return h("div.loading", {}, text); }

/** A table: columns [{label, cell(row) -> node|string, num?}], rows; onOpen(row) makes rows clickable
 *  (click, Enter or Space) and keyboard-navigable (arrow keys). */
export function table(columns, rows, { onOpen, selected, testid } = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h(`th${c.num ? ".num" : ""}`, {}, c.label))));
  const body = h("tbody", {}, rows.map((row) => {
    const tr = h("tr", { tabindex: onOpen ? "0" : null },
      columns.map((c) => h(`td${c.num ? ".num" : ""}${c.actions ? ".actions" : ""}`, {}, c.cell(row))));
    if (onOpen) {
      tr.classList.add("clickable");
      if (selected && selected(row)) tr.classList.add("selected");
      tr.addEventListener("click", (e) => { if (!e.target.closest("button, a")) onOpen(row); });
      tr.addEventListener("keydown", (e) => {
        if (e.target !== tr) return;
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onOpen(row); }
        if (e.key === "ArrowDown") { e.preventDefault(); tr.nextElementSibling?.focus(); }
        if (e.key === "ArrowUp") { e.preventDefault(); tr.previousElementSibling?.focus(); }
      });
    }
    return tr;
  }));
  return h("div.scroll", {}, h("table.data", { "data-testid": testid }, head, body));
}

export function toast(message, kind = "") {
  const el = h(`div.toast${kind ? "." + kind : ""}`, { role: "status" }, message);
  const stack = document.getElementById("toasts");
  stack.append(el);
  while (stack.children.length > 3) stack.firstElementChild.remove(); // the latest few are what matter
  setTimeout(() => el.remove(), kind === "bad" ? 7000 : 3500);
}

/** A modal form: fields [{name, label, type?, options?, value?, required?, placeholder?, hint?}].
 *  submit(values) may throw; its message is shown in the dialog, which stays open. */
export function formDialog({ title, fields, submitLabel = "Save", danger = false, intro, submit }) {
  const error = h("p.error", { role: "alert", hidden: true });
  const inputs = fields.map((f) => {
    let input;
    if (f.type === "select") {
      input = h("select", { name: f.name }, f.options.map((o) => h("option", { value: o, selected: o === f.value }, o)));
    } else if (f.type === "textarea") {
      input = h("textarea", { name: f.name, rows: f.rows || 4, placeholder: f.placeholder, spellcheck: "false" });
      input.value = f.value || "";
    } else {
      input = h("input", { name: f.name, type: f.type || "text", required: f.required, placeholder: f.placeholder,
                           autocomplete: "off" });
      input.value = f.value ?? "";
    }
    return h("label", {}, f.label, input, f.hint ? h("span.small.muted", {}, f.hint) : null);
  });
  const submitButton = h(`button.${danger ? "danger.solid" : "primary"}`, { type: "submit" }, submitLabel);
  const form = h("form.fields", {}, intro ? h("p", {}, intro) : null, inputs, error,
    h("div.buttons", {}, h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), submitButton));
  const dialog = h("dialog.dialog", { "aria-label": title }, h("h2", {}, title), form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form).entries());
    submitButton.disabled = true;
    error.hidden = true;
    try {
      await submit(values);
      dialog.close();
    } catch (err) {
      error.textContent = err.message || String(err);
      error.hidden = false;
    } finally {
      submitButton.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  (form.querySelector("input, select, textarea") || submitButton).focus();
  return dialog;
}

export function confirmDialog({ title, message, action, submit }) {
  return formDialog({ title, fields: [], intro: message, submitLabel: action, danger: true, submit });
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : dateTime.format(d);
}

/** "3 min ago"-style relative time, with the exact time in a title attribute. */
export function ago(iso) {
  if (!iso) return "—";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  const units = [["day", 86400], ["hour", 3600], ["minute", 60]];
  let text = "just now";
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) {
      text = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }).format(-Math.round(seconds / size), unit);
      break;
    }
  }
  return h("span", { title: when(iso) }, text);
}

export function short(id) { return id ? h("code", { title: id }, id.length > 12 ? `${id.slice(0, 8)}…` : id) : "—"; }

export function fmtNumber(n) {
  return typeof n === "number" ? n.toLocaleString(undefined, { maximumFractionDigits: 6 }) : String(n ?? "");
}

export function json(value) { return h("pre.json", {}, JSON.stringify(value, null, 2)); }

/** Download `rows` (arrays) as a CSV file named `name`. */
export function downloadCsv(name, header, rows) {
  const quote = (v) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const text = [header, ...rows].map((r) => r.map(quote).join(",")).join("\r\n") + "\r\n";
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The page skeleton: a heading, actions on the right, then the content. */
export function pageHead(title, ...actions) {
  return h("div.page-head", {}, h("h1", {}, title), actions);
}
