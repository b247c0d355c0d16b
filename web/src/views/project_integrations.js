// A project's integrations, in its settings: the GitHub token commit statuses are posted with
// (write-only) and notification hooks (a URL and the events it hears of; the signing secret is
// shown once, when the hook is made). Every refusal shows the API's message.
import { api } from "../api.js";
import { copyButton, group, outcome, submitting, when } from "../components.js";
import { clear, field, h } from "../dom.js";

const EVENTS = ["failed", "passed", "canceled", "running"];

function githubTokenForm(project) {
  let has = Boolean(project.hasGithubToken);
  const state = h("p.cred-state");
  const remove = h("button.small", { type: "button" }, "Remove GitHub token");
  const show = () => {
    state.textContent = has
      ? "Each build's status is posted to its commit on GitHub."
      : "No GitHub token: no commit statuses are posted.";
    remove.hidden = !has;
  };
  const token = h("input", { type: "password", autocomplete: "new-password" });
  const status = outcome();
  const save = h("button", { type: "submit" }, "Save GitHub token");
  const form = h(
    "form.github-form",
    { novalidate: true, "aria-label": "GitHub commit statuses" },
    state,
    field("GitHub token", token, "A token that may write commit statuses on the repository."),
    h("div.actions", {}, save, remove),
    status.slot,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(save, status, async () => {
      await api.putGithubToken(project.id, token.value);
      token.value = "";
      has = true;
      show();
      status.ok("GitHub token saved.");
    });
  });
  remove.addEventListener("click", () =>
    submitting(remove, status, async () => {
      await api.deleteGithubToken(project.id);
      has = false;
      show();
      status.ok("GitHub token removed.");
    }),
  );
  show();
  return form;
}

function hooksForm(project) {
  const list = h("ul.hooks", { "aria-label": "Hooks" });
  const status = outcome();
  async function load() {
    try {
      const { hooks } = await api.hooks(project.id);
      clear(list);
      if (!hooks.length) list.append(h("li.hint", {}, "No hooks yet."));
      for (const hook of hooks) {
        const remove = h("button.small", { type: "button", "aria-label": `Delete hook ${hook.url}` }, "Delete");
        remove.addEventListener("click", () =>
          submitting(remove, status, async () => {
            await api.deleteHook(project.id, hook.id);
            status.ok("Hook deleted.");
            await load();
          }),
        );
        list.append(
          h("li", {}, h("code.hook-url", {}, hook.url), h("span.hint", {}, ` on ${hook.events.join(", ")} · added `), when(hook.createdAt), " ", remove),
        );
      }
    } catch (error) {
      list.replaceChildren(h("li.hint", {}, error.message));
    }
  }
  const url = h("input", { type: "url", placeholder: "https://hooks.slack.com/services/…", autocomplete: "off" });
  const boxes = EVENTS.map((name) => h("input", { type: "checkbox", value: name, checked: name === "failed" }));
  const choices = h(
    "fieldset.events",
    {},
    h("legend", {}, "Events"),
    EVENTS.map((name, index) => h("label.check", {}, boxes[index], ` ${name}`)),
  );
  const save = h("button", { type: "submit" }, "Add hook");
  const form = h(
    "form.hooks-form",
    { novalidate: true, "aria-label": "Notification hooks" },
    h("p.hint", {}, "Kiln POSTs JSON (with a readable text field) to each hook, signed with X-Kiln-Signature-256."),
    list,
    field("Hook URL", url),
    choices,
    save,
    status.slot,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const events = boxes.filter((box) => box.checked).map((box) => box.value);
    submitting(save, status, async () => {
      const answer = await api.createHook(project.id, { url: url.value.trim(), events });
      url.value = "";
      status.ok(
        "Hook added. Its signing secret, shown this once: ",
        h("code.secret", {}, answer.secret),
        " ",
        copyButton("Copy secret", () => answer.secret),
      );
      await load();
    });
  });
  load();
  return form;
}

/** The settings card's groups for GitHub commit statuses and notification hooks. */
export function integrationsSection(project) {
  return [group("GitHub commit statuses", githubTokenForm(project)), group("Notifications", hooksForm(project))];
}
