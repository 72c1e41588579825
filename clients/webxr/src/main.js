// Entry point: read the server's client configuration, sign in, start the App.

import { App } from "./app.js";
import { installHook } from "./hook.js";
import { describeClose } from "./protocol.js";

const $ = (id) => document.getElementById(id);
let app = null;
installHook(() => app);

function showSignIn(message) {
  $("sign-in").hidden = false;
  $("world").hidden = true;
  $("tools").hidden = true;
  $("sign-out").hidden = true;
  const box = $("sign-in-message");
  box.textContent = message ?? "";
  box.hidden = !message;
  $("join").disabled = false;
}

function showWorld() {
  $("sign-in").hidden = true;
  $("world").hidden = false;
  $("tools").hidden = false;
  $("sign-out").hidden = false;
  $("scene").focus({ preventScroll: true });
}

async function loadConfig() {
  const response = await fetch("./api/config", { cache: "no-store" });
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return response.json();
}

/** The WebSocket address: the server's, or a same-host override (?ws=) for testing. */
function wsUrl(config) {
  const override = new URLSearchParams(location.search).get("ws");
  if (override) {
    const url = new URL(override);
    if (url.hostname === location.hostname && /^wss?:$/.test(url.protocol)) return url.href;
  }
  return config.ws_url;
}

async function devToken(role, name, patient) {
  const body = { role, ...(name ? { name } : {}), ...(patient ? { patient } : {}) };
  const response = await fetch("./api/dev-token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error((await response.text()) || `the server answered ${response.status}`);
  }
  return (await response.json()).token;
}

/**
 * Where tokens come from for one sign-in. A pasted token is used as is. A dev token is
 * fetched once; if the server later rejects it on a reconnect (its keys changed), one
 * fresh token is fetched and the connection starts over.
 */
function tokenSource(config, form) {
  const pasted = form.token.trim();
  let token = pasted || null;
  return {
    canRefresh: !pasted && config.dev_tokens,
    async get() {
      token ??= await devToken(form.role, form.name, form.patient);
      return token;
    },
    forget() {
      token = null;
    },
  };
}

// One App (and so one WebGL renderer on the one canvas) for the page's lifetime; each
// sign-in gives it a new token source and a fresh session.
let source = null;
let welcomed = false;
let refreshed = false;

function onStopped(info) {
  const rejected = info.code === 4001;
  if (rejected && welcomed && source.canRefresh && !refreshed) {
    refreshed = true;
    source.forget();
    app.start();
    return;
  }
  if (rejected || info.code === 1000 || info.code === 4010) {
    showSignIn(info.text ?? describeClose(info.code).text);
  }
}

function start(config, form) {
  source = tokenSource(config, form);
  welcomed = false;
  refreshed = false;
  if (!app) {
    app = new App({
      wsUrl: wsUrl(config),
      tickHz: config.tick_hz,
      token: () => source.get(),
      onStopped,
    });
    app.connection.addEventListener("state", (e) => {
      if (e.detail.state === "open") {
        welcomed = true;
        refreshed = false;
        showWorld();
      }
    });
  }
  app.signIn();
}

async function main() {
  let config;
  try {
    config = await loadConfig();
  } catch (err) {
    showSignIn(`Cannot reach the clinic server (${err.message}). Reload the page to try again.`);
    $("join").disabled = true;
    return;
  }
  $("dev-fields").hidden = !config.dev_tokens;
  const showRecordId = () => ($("record-id-fields").hidden = $("role").value !== "patient");
  $("role").addEventListener("change", showRecordId);
  showRecordId();
  $("token-fields").hidden = false;
  if (config.dev_tokens) {
    $("token").setAttribute("aria-describedby", "token-help");
    const help = document.createElement("p");
    help.id = "token-help";
    help.className = "help";
    help.textContent = "Optional here: leave empty to get a development token for the role above.";
    $("token-fields").append(help);
  }
  showSignIn();
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = {
      role: $("role").value,
      name: $("name").value.trim(),
      token: $("token").value,
      patient: $("role").value === "patient" ? $("record-id").value.trim() : "",
    };
    if (!config.dev_tokens && !form.token.trim()) {
      showSignIn("Enter the access token you were given.");
      return;
    }
    $("sign-in-message").hidden = true;
    $("join").disabled = true;
    $("status").textContent = "Connecting…";
    start(config, form);
    // Until a welcome arrives the sign-in card stays; a refusal comes back through
    // onStopped, anything else shows in the status line while it retries.
    setTimeout(() => ($("join").disabled = false), 1500);
  });
  $("sign-out").addEventListener("click", () => {
    app?.stop({ leave: true });
    showSignIn("You left the clinic.");
  });
}

main();
