// Your projects, each with its newest build; and the "New project" form.
import { api } from "../api.js";
import { errorBox, statusBadge, when } from "../components.js";
import { clear, field, h } from "../dom.js";

const DEFAULTS = { branch: "main", image: "node:20-alpine", buildCommand: "npm ci && npm run build" };

function newestOf(project) {
  return project.builds && project.builds.length ? project.builds[0] : null;
}

function projectCard(project) {
  const newest = newestOf(project);
  const summary = h("div.newest", { "data-newest": project.id });
  fillNewest(summary, newest);
  return h(
    "li.card.project",
    { "data-project": project.id },
    h(
      "div.project-head",
      {},
      h("a.project-name", { href: `/projects/${project.id}`, "data-link": true }, project.name),
      summary,
    ),
    h("p.repo", {}, h("span.label", {}, "Repository "), h("code", {}, project.repoUrl)),
    h("p.branch", {}, h("span.label", {}, "Branch "), h("code", {}, project.branch)),
  );
}

function fillNewest(node, build) {
  clear(node);
  if (!build) {
    node.append(statusBadge(null));
    return;
  }
  node.dataset.buildId = build.id;
  node.append(
    statusBadge(build.status),
    h("a.build-link", { href: `/builds/${build.id}`, "data-link": true }, `#${build.id}`),
    when(build.startedAt),
  );
}

function newProjectForm({ navigate, onCancel }) {
  const inputs = {
    name: h("input", { name: "name", required: true, maxlength: 200, autocomplete: "off" }),
    repoUrl: h("input", {
      name: "repoUrl",
      type: "url",
      required: true,
      placeholder: "https://github.com/you/app.git",
      autocomplete: "off",
    }),
    branch: h("input", { name: "branch", value: DEFAULTS.branch, autocomplete: "off" }),
    image: h("input", { name: "image", value: DEFAULTS.image, autocomplete: "off" }),
    buildCommand: h("textarea", { name: "buildCommand", rows: 2 }, DEFAULTS.buildCommand),
  };
  const problem = h("div.form-error", { "aria-live": "polite" });
  const submit = h("button.primary", { type: "submit" }, "Create project");
  const form = h(
    "form.card.new-project",
    { novalidate: true, "aria-label": "New project" },
    h("h2", {}, "New project"),
    h(
      "div.grid",
      {},
      field("Name", inputs.name),
      field("Repository URL", inputs.repoUrl),
      field("Branch", inputs.branch),
      field("Image", inputs.image),
    ),
    field("Build command", inputs.buildCommand),
    problem,
    h(
      "div.actions",
      {},
      submit,
      h("button", { type: "button", onclick: onCancel }, "Cancel"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    submit.disabled = true;
    submit.textContent = "Creating…";
    try {
      const body = Object.fromEntries(
        Object.entries(inputs).map(([key, input]) => [key, input.value.trim()]),
      );
      const answer = await api.createProject(body);
      navigate(`/projects/${answer.project.id}`);
    } catch (error) {
      problem.replaceChildren(errorBox(error.message));
    } finally {
      submit.disabled = false;
      submit.textContent = "Create project";
    }
  });
  return form;
}

export async function projectsView({ navigate }) {
  const answer = await api.projects();
  const list = h("ul.projects");
  const formSlot = h("div");
  const newButton = h("button.primary", { type: "button" }, "New project");
  const empty = h(
    "div.card.empty",
    { hidden: answer.projects.length > 0 },
    h("h2", {}, "No projects yet"),
    h("p", {}, "Connect a git repository: Kiln builds its branch head now, and every push after."),
  );
  const showForm = () => {
    newButton.hidden = true;
    empty.hidden = true;
    const form = newProjectForm({
      navigate,
      onCancel: () => {
        formSlot.replaceChildren();
        newButton.hidden = false;
        empty.hidden = list.children.length > 0;
      },
    });
    formSlot.replaceChildren(form);
    form.querySelector("input").focus();
  };
  newButton.addEventListener("click", showForm);
  for (const project of answer.projects) list.append(projectCard(project));
  if (!answer.projects.length) queueMicrotask(showForm);
  const node = h(
    "section",
    {},
    h("div.page-head", {}, h("h1", {}, "Projects"), newButton),
    formSlot,
    empty,
    list,
  );
  return {
    node,
    title: "Projects",
    status(build) {
      const slot = node.querySelector(`[data-newest="${build.projectId}"]`);
      if (slot && !(Number(slot.dataset.buildId) > build.id)) fillNewest(slot, build);
    },
  };
}
