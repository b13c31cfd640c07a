// Users of the auth provider: list, create, disable/enable, delete.
import { all, api } from "../api.js";
import { ago, badge, confirmDialog, empty, errorBox, formDialog, h, loading, pageHead, table, toast } from "../ui.js";

export function usersPage(root) {
  let users = [];
  let filter = "";
  const list = h("div.card");
  const search = h("input", { type: "search", placeholder: "Filter users", "aria-label": "Filter users",
    oninput: (e) => { filter = e.target.value.toLowerCase(); draw(); } });
  root.replaceChildren(pageHead("Users", search, h("button.primary", { onclick: () => create() }, "Create user ", h("kbd", {}, "n"))), list);

  async function load() {
    list.replaceChildren(loading());
    try {
      users = await all("/users", { limit: 60 });
      draw();
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  }

  function draw() {
    const shown = users.filter((u) => !filter || [u.userName, u.email, u.userRole].join(" ").toLowerCase().includes(filter));
    if (!users.length) { list.replaceChildren(empty("No users", "Create the first one with “Create user”.")); return; }
    if (!shown.length) { list.replaceChildren(empty("No user matches the filter")); return; }
    list.replaceChildren(table([
      { label: "User", cell: (u) => h("strong", {}, u.userName) },
      { label: "Email", cell: (u) => u.email || "—" },
      { label: "Role", cell: (u) => u.userRole || "—" },
      { label: "Status", cell: (u) => [u.enabled === false ? badge("disabled", "bad") : badge("enabled", "ok"), u.status ? badge(u.status) : null] },
      { label: "Created", cell: (u) => ago(u.created) },
      { label: "", actions: true, cell: (u) => [
        u.enabled === false
          ? h("button.small", { onclick: () => toggle(u, "enable") }, "Enable")
          : h("button.small", { onclick: () => toggle(u, "disable") }, "Disable"),
        h("button.small.danger", { onclick: () => remove(u) }, "Delete")] },
    ], shown, { testid: "users-table" }));
  }

  async function toggle(user, action) {
    try {
      await api("PUT", `/users/${encodeURIComponent(user.userName)}/${action}`);
      toast(`${user.userName} ${action}d`);
      await load();
    } catch (err) {
      toast(err.message, "bad");
    }
  }

  function remove(user) {
    confirmDialog({
      title: `Delete ${user.userName}?`,
      message: "The user is removed from the auth provider and can no longer sign in. This cannot be undone.",
      action: "Delete",
      submit: async () => {
        await api("DELETE", `/users/${encodeURIComponent(user.userName)}`);
        toast(`${user.userName} deleted`);
        await load();
      },
    });
  }

  function create() {
    formDialog({
      title: "Create a user",
      submitLabel: "Create",
      fields: [
        { name: "userName", label: "User name", required: true, placeholder: "jane" },
        { name: "email", label: "Email", type: "email", required: true, placeholder: "jane@example.com" },
        { name: "userRole", label: "Role", required: true, value: "TenantAdmin" },
      ],
      submit: async (v) => {
        await api("POST", "/users", v);
        toast(`${v.userName} created`);
        await load();
      },
    });
  }

  load();
  return { refresh: load, create, filter: search };
}
