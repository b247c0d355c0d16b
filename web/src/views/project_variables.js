// A project's build environment, in its settings: plain variables (shown, saved with PATCH
// `env`), secrets (names only: a value is written once and never comes back) and git
// credentials for a private repository (write-only). Every refusal shows the API's message.
import { api } from "../api.js";
import { group, outcome, submitting, when } from "../components.js";
import { clear, field, h } from "../dom.js";

function variableRow(number, name = "", value = "") {
  const nameInput = h("input.var-name", { value: name, "aria-label": `Variable ${number} name`, spellcheck: "false", autocomplete: "off" });
  const valueInput = h("input.var-value", { value, "aria-label": `Variable ${number} value`, spellcheck: "false", autocomplete: "off" });
  const row = h("li.var-row", {}, nameInput, h("span.eq", { "aria-hidden": "true" }, "="), valueInput);
  const remove = h("button.small", { type: "button", "aria-label": `Remove variable ${number}` }, "Remove");
  remove.addEventListener("click", () => row.remove());
  row.append(remove);
  return row;
}

function variablesForm(project) {
  const rows = h("ul.vars", { "aria-label": "Variables" });
  let added = 0;
  const addRow = (name, value) => rows.append(variableRow(++added, name, value));
  for (const [name, value] of Object.entries(project.env || {})) addRow(name, value);
  const add = h("button.small", { type: "button" }, "Add variable");
  add.addEventListener("click", () => {
    addRow();
    rows.lastElementChild.querySelector("input").focus();
  });
  const status = outcome();
  const save = h("button", { type: "submit" }, "Save variables");
  const form = h(
    "form.vars-form",
    { novalidate: true, "aria-label": "Build variables" },
    h("p.hint", {}, "Plain environment variables for every build (shown to anyone who can see the project)."),
    rows,
    h("div.actions", {}, add, save),
    status.slot,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const env = {};
    for (const row of rows.querySelectorAll(".var-row")) {
      const name = row.querySelector(".var-name").value.trim();
      if (name) env[name] = row.querySelector(".var-value").value;
    }
    submitting(save, status, async () => {
      await api.updateProject(project.id, { env });
      status.ok("Variables saved.");
    });
  });
  return form;
}

function secretsForm(project) {
  const list = h("ul.secrets", { "aria-label": "Secrets" });
  const status = outcome();
  async function load() {
    try {
      const { secrets } = await api.secrets(project.id);
      clear(list);
      if (!secrets.length) list.append(h("li.hint", {}, "No secrets yet."));
      for (const secret of secrets) {
        const remove = h("button.small", { type: "button", "aria-label": `Delete secret ${secret.name}` }, "Delete");
        remove.addEventListener("click", () =>
          submitting(remove, status, async () => {
            await api.deleteSecret(project.id, secret.name);
            status.ok(`Secret ${secret.name} deleted.`);
            await load();
          }),
        );
        list.append(h("li", {}, h("code", {}, secret.name), h("span.hint", {}, " updated "), when(secret.updatedAt), " ", remove));
      }
    } catch (error) {
      list.replaceChildren(h("li.hint", {}, error.message));
    }
  }
  const name = h("input", { spellcheck: "false", autocomplete: "off", placeholder: "NPM_TOKEN" });
  const value = h("input", { type: "password", autocomplete: "new-password" });
  const save = h("button", { type: "submit" }, "Save secret");
  const form = h(
    "form.secret-form",
    { novalidate: true, "aria-label": "Secrets" },
    h("p.hint", {}, "Given to builds as environment variables; masked as *** in the log. Values are never shown again."),
    list,
    h("div.grid", {}, field("Secret name", name), field("Secret value", value)),
    save,
    status.slot,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const secretName = name.value.trim();
    submitting(save, status, async () => {
      await api.putSecret(project.id, secretName, value.value);
      value.value = "";
      name.value = "";
      status.ok(`Secret ${secretName} saved.`);
      await load();
    });
  });
  load();
  return form;
}

function credentialsForm(project) {
  let has = Boolean(project.hasCredentials);
  const state = h("p.cred-state");
  const remove = h("button.small", { type: "button" }, "Remove credentials");
  const show = () => {
    state.textContent = has
      ? "The repository is read with saved credentials."
      : "No credentials: the repository is read anonymously.";
    remove.hidden = !has;
  };
  const username = h("input", { autocomplete: "off", placeholder: "x-access-token" });
  const token = h("input", { type: "password", autocomplete: "new-password" });
  const status = outcome();
  const save = h("button", { type: "submit" }, "Save credentials");
  const form = h(
    "form.cred-form",
    { novalidate: true, "aria-label": "Git credentials" },
    state,
    h("div.grid", {}, field("Git username", username), field("Git token", token)),
    h("div.actions", {}, save, remove),
    status.slot,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(save, status, async () => {
      await api.putCredentials(project.id, { username: username.value.trim() || null, token: token.value });
      token.value = "";
      has = true;
      show();
      status.ok("Credentials saved: they open the repository.");
    });
  });
  remove.addEventListener("click", () =>
    submitting(remove, status, async () => {
      await api.deleteCredentials(project.id);
      has = false;
      show();
      status.ok("Credentials removed.");
    }),
  );
  show();
  return form;
}

/** The settings card's groups for variables, secrets and git credentials. */
export function variablesSection(project) {
  return [
    group("Variables", variablesForm(project)),
    group("Secrets", secretsForm(project)),
    group("Private repository", credentialsForm(project)),
  ];
}
