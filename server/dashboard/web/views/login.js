// Login: username and password → POST /api/v1/auth/login → token kept for this browser tab.

import { ApiError, post, request, setSession } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { unlockAudio } from "../sound.js";

function failure(error) {
  if (error instanceof ApiError && error.status === 401) return t("login.bad_credentials");
  if (error instanceof ApiError && error.status === 429) {
    return t("login.too_many", { s: error.retryAfter ?? "60" });
  }
  return t("error.generic", { detail: error.message });
}

export function render(container, _params, ctx) {
  const message = h("p", { class: "form-error", role: "alert", id: "login-error" });
  const username = h("input", {
    id: "login-username",
    name: "username",
    autocomplete: "username",
    required: true,
    autofocus: true,
  });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h(
    "button",
    { type: "submit", class: "primary", id: "login-submit" },
    t("login.submit"),
  );
  const form = h(
    "form",
    { class: "login-card", id: "login-form" },
    h("h1", {}, t("app.name")),
    h("p", { class: "muted" }, t("app.tagline")),
    h("label", { for: "login-username" }, t("login.username")),
    username,
    h("label", { for: "login-password" }, t("login.password")),
    password,
    submit,
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    unlockAudio(); // the click is the user gesture that lets alerts make a sound later
    submit.disabled = true;
    message.textContent = "";
    try {
      const answer = await post("/api/v1/auth/login", {
        username: username.value.trim(),
        password: password.value,
      });
      setSession(answer.token, answer.user);
      ctx.signedIn(answer.user);
    } catch (error) {
      message.textContent = failure(error);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  container.append(h("section", { class: "login-view" }, form, tokenForm(ctx)));
}

/** Sign in with an API token (`zhizhi token create`, or the one `zhizhi demo` prints). */
function tokenForm(ctx) {
  const message = h("p", { class: "form-error", role: "alert", id: "token-error" });
  const input = h("input", {
    id: "login-token",
    name: "token",
    autocomplete: "off",
    required: true,
  });
  const form = h(
    "form",
    { class: "token-form", id: "token-form" },
    h("label", { for: "login-token" }, t("login.token")),
    input,
    h("button", { type: "submit", id: "token-submit" }, t("login.submit")),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    unlockAudio();
    message.textContent = "";
    const value = input.value.trim();
    try {
      const me = await request("GET", "/api/v1/me", { bearer: value });
      setSession(value, me);
      ctx.signedIn(me);
    } catch (error) {
      message.textContent =
        error instanceof ApiError && error.status === 401 ? t("login.bad_token") : failure(error);
    }
  });
  return h(
    "details",
    { class: "login-card token-card" },
    h("summary", {}, t("login.with_token")),
    form,
  );
}
