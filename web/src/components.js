// Small pieces shared by the views.
import { h } from "./dom.js";
import { exact, relative } from "./format.js";

/** The status as its word (colour too, never colour alone). */
export function statusBadge(status) {
  return h(`span.status.status-${status || "none"}`, { "data-status": status || "" }, status || "no builds");
}

/** A relative time that stays current ("3 min ago"), the exact time on hover. */
export function when(iso) {
  return h("time", { datetime: iso, title: exact(iso), "data-relative": iso }, relative(iso));
}

export function errorBox(message) {
  return h("p.error", { role: "alert" }, message);
}

export function copyButton(label, value) {
  const button = h("button.small", { type: "button" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value());
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  });
  return button;
}

/** Refresh every relative time under `root`. */
export function refreshTimes(root) {
  for (const node of root.querySelectorAll("[data-relative]")) {
    node.textContent = relative(node.dataset.relative);
  }
}
