// Log in and sign up.
import { api, remember } from "../api.js";
import { errorBox } from "../components.js";
import { field, h } from "../dom.js";

export function authView({ mode, navigate, signedIn }) {
  const signup = mode === "signup";
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: signup ? "new-password" : "current-password",
    required: true,
    minlength: signup ? 8 : undefined,
  });
  const name = h("input", { type: "text", name: "name", autocomplete: "name", required: true });
  const problem = h("div.form-error", { "aria-live": "polite" });
  const submit = h("button.primary", { type: "submit" }, signup ? "Sign up" : "Log in");
  const form = h(
    "form.card.auth",
    { novalidate: true },
    h("h1", {}, signup ? "Create your Kiln account" : "Log in to Kiln"),
    signup ? field("Name", name) : null,
    field("Email", email),
    field("Password", password, signup ? "At least 8 characters." : undefined),
    problem,
    submit,
    h(
      "p.switch",
      {},
      signup ? "Already have an account? " : "New to Kiln? ",
      h("a", { href: signup ? "/login" : "/signup", "data-link": true }, signup ? "Log in" : "Sign up"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    submit.disabled = true;
    try {
      const body = { email: email.value.trim(), password: password.value };
      const answer = signup ? await api.register({ ...body, name: name.value.trim() }) : await api.login(body);
      remember(answer);
      signedIn();
      navigate("/");
    } catch (error) {
      problem.replaceChildren(errorBox(error.message));
    } finally {
      submit.disabled = false;
    }
  });
  return { node: h("section.narrow", {}, form), title: signup ? "Sign up" : "Log in" };
}
