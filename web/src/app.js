// Kiln's dashboard: a small client-side router over the REST API and Socket.io.
import { forget, session } from "./api.js";
import { errorBox, refreshTimes } from "./components.js";
import { h } from "./dom.js";
import { connectLive } from "./live.js";
import { authView } from "./views/auth.js";
import { buildView } from "./views/build.js";
import { projectView } from "./views/project.js";
import { projectsView } from "./views/projects.js";

const main = document.getElementById("main");
const banner = document.getElementById("connection");
const routes = [
  [/^\/login$/, (ctx) => authView({ ...ctx, mode: "login" }), false],
  [/^\/signup$/, (ctx) => authView({ ...ctx, mode: "signup" }), false],
  [/^\/$/, projectsView, true],
  [/^\/projects\/(?<id>\d+)$/, projectView, true],
  [/^\/builds\/(?<id>\d+)$/, buildView, true],
];

let view = null;
let pending = null; // events that arrive while a view loads, replayed once it is shown
let socket = null;
let generation = 0;

function dispatch(kind, payload) {
  if (pending) pending.push([kind, payload]);
  else if (view && view[kind]) view[kind](payload);
}

function startLive() {
  const current = session();
  if (!current || socket) return;
  socket = connectLive(current.token, {
    status: (build) => dispatch("status", build),
    log: (event) => dispatch("log", event),
    reconnected: () => dispatch("reconnected"),
    state: (text) => {
      banner.hidden = !text;
      banner.textContent = text || "";
    },
  });
}

function stopLive() {
  if (socket) socket.disconnect();
  socket = null;
  banner.hidden = true;
}

function renderShell() {
  const current = session();
  document.getElementById("session").hidden = !current;
  document.getElementById("nav-projects").hidden = !current;
  document.getElementById("who").textContent = current ? current.user.name || current.user.email : "";
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

async function route() {
  const mine = ++generation;
  const path = location.pathname.replace(/\/+$/, "") || "/";
  const match = routes.find(([pattern]) => pattern.test(path));
  renderShell();
  if (!match) {
    show({ node: h("section.card", {}, h("h1", {}, "Not found"), h("p", {}, "There is no such page.")), title: "Not found" });
    return;
  }
  const [pattern, make, needsLogin] = match;
  if (needsLogin && !session()) return navigate("/login", { replace: true });
  if (!needsLogin && session()) return navigate("/", { replace: true });
  if (needsLogin) startLive();
  pending = [];
  if (view && view.destroy) view.destroy();
  view = null;
  main.setAttribute("aria-busy", "true");
  try {
    const next = await make({
      params: pattern.exec(path).groups || {},
      navigate,
      signedIn: () => {
        renderShell();
        startLive();
      },
    });
    if (mine !== generation) return; // the user went elsewhere meanwhile
    show(next);
  } catch (error) {
    if (mine !== generation) return;
    pending = null;
    if (!session()) return navigate("/login", { replace: true });
    show({ node: h("section.card", {}, h("h1", {}, "Something went wrong"), errorBox(error.message)), title: "Error" });
  }
}

function show(next) {
  view = next;
  main.replaceChildren(next.node);
  main.removeAttribute("aria-busy");
  document.title = next.title ? `${next.title} · Kiln` : "Kiln";
  const queued = pending || [];
  pending = null;
  for (const [kind, payload] of queued) dispatch(kind, payload);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
document.getElementById("logout").addEventListener("click", () => {
  forget();
  stopLive();
  navigate("/login");
});
window.addEventListener("kiln:signed-out", () => {
  stopLive();
  navigate("/login", { replace: true });
});
window.addEventListener("popstate", route);
setInterval(() => {
  refreshTimes(main);
  if (view && view.tick) view.tick();
}, 1000);
route();
