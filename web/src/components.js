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

/** A status line under a form: a success line (role=status) or the API's message. */
export function outcome() {
  const slot = h("div.form-error", { "aria-live": "polite" });
  return {
    slot,
    ok: (...content) => slot.replaceChildren(h("p.ok", { role: "status" }, ...content)),
    failed: (error) => slot.replaceChildren(errorBox(error.message)),
    reset: () => slot.replaceChildren(),
  };
}

/** Run `action` with `button` disabled, reporting a failure to `status` (from `outcome`). */
export async function submitting(button, status, action) {
  status.reset();
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    status.failed(error);
  } finally {
    button.disabled = false;
  }
}

/** One part of a settings card: its heading, then its content. */
export function group(title, ...children) {
  return h("div.settings-group", {}, h("h3", {}, title), ...children);
}
