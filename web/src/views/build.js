// One build: its record, its live log, and the Rebuild / Cancel buttons.
import { api } from "../api.js";
import { errorBox, statusBadge, when } from "../components.js";
import { append, clear, h } from "../dom.js";
import { duration, firstLine, isActive, shortHash } from "../format.js";
import { LogView } from "../logview.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function byteLength(text) {
  return encoder.encode(text).length;
}

/** The log from the server's offsets: join late or after a reconnect with no gap, no repeat. */
class LogFollower {
  constructor(buildId, view) {
    this.buildId = buildId;
    this.view = view;
    this.next = 0; // the offset of the first byte not yet shown
    this.chain = Promise.resolve();
  }
  catchUp() {
    this.chain = this.chain.then(async () => {
      const answer = await api.logs(this.buildId, this.next);
      this.show(answer.offset, answer.logs);
    });
    return this.chain;
  }
  event(event) {
    this.chain = this.chain.then(async () => {
      if (event.offset > this.next) {
        // Output we never saw (we joined late, or missed events): fetch it first.
        const answer = await api.logs(this.buildId, this.next);
        this.show(answer.offset, answer.logs);
      }
      this.show(event.offset, event.chunk);
    });
  }
  show(offset, text) {
    const end = offset + byteLength(text);
    if (end <= this.next) return; // already shown
    if (offset < this.next) {
      text = decoder.decode(encoder.encode(text).slice(this.next - offset));
    }
    this.view.append(text);
    this.next = end;
  }
}

function details(build, project) {
  const rows = [
    ["Project", h("a", { href: `/projects/${project.id}`, "data-link": true }, project.name)],
    ["Exit code", build.exitCode === null ? "—" : String(build.exitCode)],
    ["Commit", h("span", { title: build.commit }, firstLine(build.commit))],
    ["Hash", h("code", { title: build.commitHash }, shortHash(build.commitHash))],
    ["Branch", h("code", {}, build.branch)],
    ["Author", build.commitAuthor || "—"],
    ["Queued", when(build.startedAt)],
    ["Finished", build.finishedAt ? when(build.finishedAt) : "—"],
    ["Duration", h("span", { "data-duration": "" }, duration(build) || "—")],
  ];
  if (build.queuePosition) rows.push(["Queue position", `${build.queuePosition} (1 starts next)`]);
  return h(
    "dl.details",
    {},
    rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

async function download(buildId) {
  const answer = await api.logs(buildId, 0);
  const blob = new Blob([answer.logs], { type: "text/plain;charset=utf-8" });
  const link = h("a", { href: URL.createObjectURL(blob), download: `kiln-build-${buildId}.log` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

export async function buildView({ params, navigate }) {
  const buildId = Number(params.id);
  let [{ build }, config] = await Promise.all([api.build(buildId), api.config()]);
  const project = build.project;
  const log = new LogView();
  const follower = new LogFollower(buildId, log);
  const head = h("div.build-head");
  const info = h("div");
  const problem = h("div");

  const rebuild = h("button.primary", { type: "button" }, "Rebuild");
  rebuild.addEventListener("click", async () => {
    rebuild.disabled = true;
    try {
      const answer = await api.rebuild(buildId);
      navigate(`/builds/${answer.build.id}`);
    } catch (error) {
      problem.replaceChildren(errorBox(error.message));
      rebuild.disabled = false;
    }
  });
  const cancel = h("button.danger", { type: "button" }, "Cancel build");
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      await api.cancel(buildId);
      cancel.textContent = "Canceling…";
    } catch (error) {
      problem.replaceChildren(errorBox(error.message));
      cancel.disabled = false;
    }
  });
  const save = h("button", { type: "button" }, "Download log");
  save.addEventListener("click", () =>
    download(buildId).catch((error) => problem.replaceChildren(errorBox(error.message))),
  );

  const workflowLink = () =>
    config.temporalUiUrl && build.workflowId
      ? h(
          "a.small-link",
          {
            href: `${config.temporalUiUrl}/namespaces/${encodeURIComponent(config.temporalNamespace)}/workflows/${encodeURIComponent(build.workflowId)}`,
            target: "_blank",
            rel: "noopener",
          },
          "Workflow in Temporal UI ↗",
        )
      : null;

  function render() {
    clear(head).append(
      h("p.crumbs", {}, h("a", { href: "/", "data-link": true }, "Projects"), " / ",
        h("a", { href: `/projects/${project.id}`, "data-link": true }, project.name), " /"),
      h("h1", {}, statusBadge(build.status), ` Build #${build.id}`),
    );
    append(clear(info), [details(build, project), workflowLink()]);
    cancel.hidden = !isActive(build.status);
  }
  render();
  await follower.catchUp();

  const node = h(
    "section",
    {},
    head,
    h("div.actions.toolbar", {}, rebuild, cancel, save),
    problem,
    h(
      "div.build-layout",
      {},
      h("aside.card", {}, info),
      h("section.card.log-card", { "aria-label": "Log" }, h("h2", {}, "Log"), log.node),
    ),
  );
  return {
    node,
    title: `Build #${buildId}`,
    status(update) {
      if (update.id !== buildId) return;
      build = { ...update, project };
      render();
    },
    log(event) {
      if (event.buildId === buildId) follower.event(event);
    },
    async reconnected() {
      // Events sent while we were away are lost: fetch the current record and the missed output.
      const answer = await api.build(buildId);
      build = answer.build;
      render();
      await follower.catchUp();
    },
    tick() {
      if (build.status === "running") {
        const node = info.querySelector("[data-duration]");
        if (node) node.textContent = duration(build);
      }
    },
  };
}
