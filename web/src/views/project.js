// One project: its builds newest first (filter, load more, live), and its settings.
import { api } from "../api.js";
import { copyButton, errorBox, group, statusBadge, when } from "../components.js";
import { clear, field, h } from "../dom.js";
import { STATUSES, duration, firstLine, shortHash } from "../format.js";
import { integrationsSection } from "./project_integrations.js";
import { variablesSection } from "./project_variables.js";

const PAGE = 20;

export function buildRow(build) {
  const row = h("li.build-row", { "data-build": build.id, "data-status": build.status });
  fillRow(row, build);
  return row;
}

function fillRow(row, build) {
  row.dataset.status = build.status;
  row._build = build;
  clear(row).append(
    h("div.cell.state", {}, statusBadge(build.status)),
    h(
      "div.cell.what",
      {},
      h("a.build-link", { href: `/builds/${build.id}`, "data-link": true }, `#${build.id}`),
      h("span.message", { title: build.commit || "" }, firstLine(build.commit)),
    ),
    h(
      "div.cell.meta",
      {},
      h("code.hash", { title: build.commitHash }, shortHash(build.commitHash)),
      h("span.branch", {}, build.branch),
      build.commitAuthor ? h("span.author", {}, build.commitAuthor) : null,
    ),
    h(
      "div.cell.time",
      {},
      build.queuePosition ? h("span.queue", {}, `#${build.queuePosition} in queue`) : null,
      h("span.duration", { "data-duration": "" }, duration(build)),
      when(build.startedAt),
    ),
  );
}

/** The project's latest webhook deliveries: what each push did, and why when it did nothing. */
function deliveriesList(projectId) {
  const list = h("ul.deliveries", { "aria-label": "Recent deliveries" }, h("li.hint", {}, "Loading…"));
  api
    .deliveries(projectId)
    .then(({ deliveries }) => {
      clear(list);
      if (!deliveries.length) list.append(h("li.hint", {}, "No deliveries yet."));
      for (const delivery of deliveries.slice(0, 10)) {
        list.append(
          h(
            "li",
            {},
            h(`span.result.result-${delivery.result}`, {}, delivery.result),
            " ",
            h("code", {}, delivery.event),
            " ",
            when(delivery.receivedAt),
            delivery.reason ? h("span.hint", {}, ` — ${delivery.reason}`) : null,
            delivery.builds.map((id) => [" ", h("a", { href: `/builds/${id}`, "data-link": true }, `#${id}`)]),
          ),
        );
      }
    })
    .catch((error) => list.replaceChildren(h("li.hint", {}, error.message)));
  return list;
}

function settingsPanel(project, { navigate }) {
  const timeout = h("input", { type: "number", min: 1, max: 86400, value: project.timeoutSeconds });
  const concurrency = h("input", { type: "number", min: 1, max: 100, value: project.maxConcurrentBuilds });
  const saved = h("div.form-error", { "aria-live": "polite" });
  const save = h("button.primary", { type: "submit" }, "Save settings");
  const form = h(
    "form.settings-form",
    { novalidate: true, "aria-label": "Build settings" },
    h("div.grid", {}, field("Timeout (seconds)", timeout), field("Max concurrent builds", concurrency)),
    saved,
    save,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    saved.replaceChildren();
    save.disabled = true;
    try {
      await api.updateProject(project.id, {
        timeoutSeconds: Number(timeout.value),
        maxConcurrentBuilds: Number(concurrency.value),
      });
      saved.replaceChildren(h("p.ok", { role: "status" }, "Settings saved."));
    } catch (error) {
      saved.replaceChildren(errorBox(error.message));
    } finally {
      save.disabled = false;
    }
  });
  const webhookUrl = `${location.origin}/api/webhook/github/${project.id}`;
  const secret = h("code.secret", {}, "•".repeat(24));
  let shown = false;
  const reveal = h("button.small", { type: "button" }, "Show");
  reveal.addEventListener("click", () => {
    shown = !shown;
    secret.textContent = shown ? project.webhookSecret : "•".repeat(24);
    reveal.textContent = shown ? "Hide" : "Show";
  });
  const confirmSlot = h("div.confirm");
  const remove = h("button.danger", { type: "button" }, "Delete project");
  remove.addEventListener("click", () => {
    remove.hidden = true;
    const problem = h("div");
    const yes = h("button.danger", { type: "button" }, "Delete for good");
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await api.deleteProject(project.id);
        navigate("/");
      } catch (error) {
        problem.replaceChildren(errorBox(error.message));
        yes.disabled = false;
      }
    });
    const no = h("button", { type: "button" }, "Keep it");
    no.addEventListener("click", () => {
      confirmSlot.replaceChildren();
      remove.hidden = false;
    });
    confirmSlot.replaceChildren(
      h("p", {}, `Delete ${project.name} and all its builds? Running builds are stopped.`),
      h("div.actions", {}, yes, no),
      problem,
    );
  });
  return h(
    "section.card.settings",
    { "aria-labelledby": "settings-title" },
    h("h2", { id: "settings-title" }, "Settings"),
    h(
      "div.settings-groups",
      {},
      group("Limits", form),
      variablesSection(project),
      integrationsSection(project),
      group(
        "GitHub webhook",
        h(
          "p.hint",
          {},
          "In the repository: Settings → Webhooks → Add webhook, content type application/json, just the push event.",
        ),
        h("div.copy-row", {}, h("span.label", {}, "Payload URL"), h("code", {}, webhookUrl), copyButton("Copy URL", () => webhookUrl)),
        h("div.copy-row", {}, h("span.label", {}, "Secret"), secret, reveal, copyButton("Copy secret", () => project.webhookSecret)),
      ),
      group("Recent deliveries", deliveriesList(project.id)),
      group("Danger zone", remove, confirmSlot),
    ),
  );
}

export async function projectView({ params, navigate }) {
  const projectId = Number(params.id);
  const { project } = await api.project(projectId);
  const list = h("ol.builds", { "aria-label": "Builds" });
  const empty = h("p.empty-line", { hidden: true }, "No builds match.");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const problem = h("div");
  const filter = h(
    "select",
    { "aria-label": "Filter by status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((status) => h("option", { value: status }, status)),
  );
  let nextBefore = null;
  let loading = false;

  async function load(reset) {
    if (loading) return;
    loading = true;
    problem.replaceChildren();
    try {
      const page = await api.builds(projectId, {
        status: filter.value || undefined,
        before: reset ? undefined : nextBefore,
        limit: PAGE,
      });
      if (reset) clear(list);
      for (const build of page.builds) {
        if (!list.querySelector(`[data-build="${build.id}"]`)) list.append(buildRow(build));
      }
      nextBefore = page.nextBefore;
      more.hidden = nextBefore === null;
      empty.hidden = list.children.length > 0;
    } catch (error) {
      problem.replaceChildren(errorBox(error.message));
    } finally {
      loading = false;
    }
  }
  filter.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  await load(true);

  const node = h(
    "section",
    {},
    h(
      "div.page-head",
      {},
      h("div", {}, h("p.crumbs", {}, h("a", { href: "/", "data-link": true }, "Projects"), " /"), h("h1", {}, project.name)),
    ),
    h(
      "p.project-meta",
      {},
      h("span.label", {}, "Repository "),
      h("code", {}, project.repoUrl),
      h("span.label", {}, " Branch "),
      h("code", {}, project.branch),
      h("span.label", {}, " Image "),
      h("code", {}, project.image),
    ),
    h(
      "section.card.history",
      { "aria-labelledby": "builds-title" },
      h("div.section-head", {}, h("h2", { id: "builds-title" }, "Builds"), filter),
      problem,
      list,
      empty,
      more,
    ),
    settingsPanel(project, { navigate }),
  );
  return {
    node,
    title: project.name,
    status(build) {
      if (build.projectId !== projectId) return;
      const row = list.querySelector(`[data-build="${build.id}"]`);
      const wanted = !filter.value || filter.value === build.status;
      if (row && wanted) fillRow(row, build);
      else if (row) row.remove();
      else if (wanted && (!list.firstElementChild || build.id > Number(list.firstElementChild.dataset.build))) {
        list.prepend(buildRow(build));
      }
      empty.hidden = list.children.length > 0;
    },
    tick() {
      for (const row of list.querySelectorAll(".build-row")) {
        if (row._build && (row._build.status === "running")) {
          row.querySelector("[data-duration]").textContent = duration(row._build);
        }
      }
    },
    reconnected: () => load(true),
  };
}
