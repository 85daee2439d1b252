// hal0 dashboard: renders /api/events live and writes through /api. No framework, no build.
"use strict";

const NAME_RE = /^[a-z][a-z0-9_-]*$/;
const MAX_NAME = 50;
const RESERVED = { primary: "chat", embed: "embeddings", stt: "speech-to-text", tts: "text-to-speech" };

const state = { slots: new Map(), revision: null, logs: null };
const $ = (id) => document.getElementById(id);

// ---- API --------------------------------------------------------------------------------

function token() { return localStorage.getItem("hal0-admin-token") || ""; }

async function api(method, path, body) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.revision && method !== "GET" && !path.endsWith("/load") && !path.endsWith("/unload")) {
    headers["If-Match"] = state.revision;
  }
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* empty body */ }
  if (!resp.ok) {
    const err = (data && data.error) || { code: "http_" + resp.status, message: resp.statusText };
    if (err.code === "stale_revision" && err.details && err.details.revision) state.revision = err.details.revision;
    if (resp.status === 401 || (err.code || "").startsWith("admin_token")) askForToken();
    const e = new Error(err.message);
    e.code = err.code;
    e.details = err.details;
    throw e;
  }
  if (data && typeof data.revision === "string") state.revision = data.revision;
  return data;
}

function notice(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.classList.toggle("error", !!isError);
  n.hidden = !text;
}

function explain(e) {
  if (e.code === "stale_revision") return "hal0.toml changed on disk since this page read it, so nothing was written. The page is up to date now: check and try again.";
  if (e.code === "invalid_config" && e.details && e.details.diagnostics) {
    return "Not written: " + e.details.diagnostics.map((d) => (d.field ? d.field + ": " : "") + d.message).join("; ");
  }
  return e.message;
}

function askForToken() {
  $("token-form").hidden = false;
  $("token-button").hidden = false;
}

// ---- Rendering ---------------------------------------------------------------------------

function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function fmtAgo(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(ms).toLocaleString();
}

function memoryText(v) {
  if (v.memory_measured) return fmtBytes(v.memory_measured) + " (measured)";
  if (v.memory_estimate) return fmtBytes(v.memory_estimate) + " (estimate)";
  return "—";
}

function renderSlot(v) {
  let card = document.querySelector(`.slot[data-name="${v.name}"]`);
  if (!card) {
    card = $("slot-template").content.firstElementChild.cloneNode(true);
    card.dataset.name = v.name;
    card.querySelector(".slot-name").textContent = v.name;
    card.querySelector(".load").addEventListener("click", () => act(v.name, "load"));
    card.querySelector(".unload").addEventListener("click", () => act(v.name, "unload"));
    card.querySelector(".show-logs").addEventListener("click", () => openLogs(v.name));
    card.querySelector(".delete").addEventListener("click", () => removeSlot(v.name));
    insertSorted(card, v.name);
  }
  const phase = v.phase || "stopped";
  const badge = card.querySelector(".badge");
  badge.textContent = phase;
  badge.className = "badge " + phase;
  card.dataset.phase = phase;
  card.querySelector(".provider").textContent = v.provider + (v.role ? " · " + v.role : "");
  card.querySelector(".model").textContent = v.model || (v.spec && v.spec.upstream) || "—";
  card.querySelector(".port").textContent = v.port ? String(v.port) + (v.pid ? " · pid " + v.pid : "") : "—";
  card.querySelector(".memory").textContent = memoryText(v);
  const last = card.querySelector(".last-request");
  last.textContent = fmtAgo(v.last_request_unix_ms);
  last.dataset.ms = v.last_request_unix_ms || "";
  const err = card.querySelector(".slot-error");
  err.textContent = v.last_error ? v.last_error : "";
  err.hidden = !v.last_error || phase === "ready" || phase === "idle";
  const runsProcess = v.provider !== "openai-compatible";
  card.querySelector(".load").disabled = !runsProcess || phase === "ready" || phase === "loading" || phase === "idle";
  card.querySelector(".unload").disabled = !runsProcess || !["ready", "idle", "loading"].includes(phase);
}

function insertSorted(card, name) {
  const list = $("slots");
  const after = [...list.children].find((c) => c.dataset.name > name);
  list.insertBefore(card, after || null);
}

function removeCard(name) {
  const card = document.querySelector(`.slot[data-name="${name}"]`);
  if (card) card.remove();
}

function renderEmpty() { $("empty").hidden = state.slots.size > 0; }

function renderConfigErrors(errors) {
  $("config-errors").hidden = !errors || errors.length === 0;
  $("config-error-lines").textContent = (errors || []).join("\n");
}

// ---- Live updates --------------------------------------------------------------------------

function connect() {
  const es = new EventSource("/api/events");
  const live = $("live");
  es.onopen = () => { live.textContent = "live"; live.classList.remove("off"); };
  es.onerror = () => { live.textContent = "reconnecting…"; live.classList.add("off"); };
  es.addEventListener("snapshot", (ev) => {
    const list = JSON.parse(ev.data);
    state.revision = list.revision;
    for (const name of [...state.slots.keys()]) if (!list.slots.some((s) => s.name === name)) removeCard(name);
    state.slots = new Map(list.slots.map((s) => [s.name, s]));
    list.slots.forEach(renderSlot);
    renderConfigErrors(list.config_errors);
    renderEmpty();
    validateName();
  });
  es.addEventListener("slot", (ev) => {
    const v = JSON.parse(ev.data);
    state.slots.set(v.name, v);
    renderSlot(v);
    renderEmpty();
    validateName();
  });
  es.addEventListener("slot-removed", (ev) => {
    const { name } = JSON.parse(ev.data);
    state.slots.delete(name);
    removeCard(name);
    renderEmpty();
    validateName();
  });
  es.addEventListener("config", (ev) => {
    const c = JSON.parse(ev.data);
    if (c.revision) state.revision = c.revision;
    renderConfigErrors(c.errors);
  });
}

// ---- Actions -------------------------------------------------------------------------------

async function act(name, what) {
  try {
    await api("POST", `/api/slots/${encodeURIComponent(name)}/${what}`);
    notice("");
  } catch (e) {
    notice(`${what} ${name}: ${explain(e)}`, true);
  }
}

async function removeSlot(name) {
  if (!window.confirm(`Delete slot "${name}"? Its table is removed from hal0.toml and a running slot is stopped.`)) return;
  try {
    await api("DELETE", `/api/slots/${encodeURIComponent(name)}`);
    notice(`Slot "${name}" deleted from hal0.toml.`);
  } catch (e) {
    notice(`delete ${name}: ${explain(e)}`, true);
  }
}

function openLogs(name) {
  if (state.logs) state.logs.close();
  $("logs").hidden = false;
  $("logs-title").textContent = "Logs · " + name;
  const pre = $("logs-lines");
  pre.textContent = "";
  const es = new EventSource(`/api/slots/${encodeURIComponent(name)}/logs?follow=true&tail=500`);
  es.addEventListener("line", (ev) => {
    const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent += JSON.parse(ev.data).line + "\n";
    if (stick) pre.scrollTop = pre.scrollHeight;
  });
  state.logs = es;
  $("logs").scrollIntoView({ block: "nearest" });
}

function closeLogs() {
  if (state.logs) state.logs.close();
  state.logs = null;
  $("logs").hidden = true;
}

// ---- Add slot form ---------------------------------------------------------------------------

/** Why `name` cannot be a new slot's name, or "" when it can. */
function nameProblem(name) {
  if (name === "") return "Give the slot a name.";
  if (!/^[a-z]/.test(name)) return "Must start with a lowercase letter (a–z).";
  if (!NAME_RE.test(name)) return "Only lowercase letters, digits, “-” and “_”.";
  if (name.length > MAX_NAME) return `At most ${MAX_NAME} characters.`;
  if (RESERVED[name]) return `“${name}” is reserved for the built-in ${RESERVED[name]} slot.`;
  if (state.slots.has(name)) return `A slot named “${name}” already exists.`;
  return "";
}

function validateName() {
  const input = $("add-name");
  const problem = input.value === "" && !input.dataset.touched ? "" : nameProblem(input.value);
  $("add-name-error").textContent = problem;
  input.setAttribute("aria-invalid", problem ? "true" : "false");
  const ok = nameProblem(input.value) === "" && $("add-model").value.trim() !== "";
  $("add-submit").disabled = !ok;
  return ok;
}

async function submitAdd(ev) {
  ev.preventDefault();
  $("add-name").dataset.touched = "1";
  if (!validateName()) return;
  const body = {
    name: $("add-name").value,
    provider: $("add-provider").value,
    model: $("add-model").value.trim(),
  };
  const idle = $("add-idle").value.trim();
  if (idle) body.idle_timeout = idle;
  if ($("add-device").value) body.device = $("add-device").value;
  $("add-submit").disabled = true;
  try {
    await api("POST", "/api/slots", body);
    $("add-error").textContent = "";
    notice(`Slot "${body.name}" added to hal0.toml. Press Load to start it.`);
    $("add-form").reset();
    delete $("add-name").dataset.touched;
  } catch (e) {
    $("add-error").textContent = explain(e);
  }
  validateName();
}

// ---- Wiring ----------------------------------------------------------------------------------

$("add-name").addEventListener("input", () => { $("add-name").dataset.touched = "1"; validateName(); });
$("add-model").addEventListener("input", validateName);
$("add-form").addEventListener("submit", submitAdd);
$("logs-close").addEventListener("click", closeLogs);
$("token-button").addEventListener("click", askForToken);
$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  localStorage.setItem("hal0-admin-token", $("token").value);
  $("token-form").hidden = true;
  notice("Admin token saved in this browser.");
});
if (token()) $("token-button").hidden = false;
setInterval(() => {
  document.querySelectorAll(".last-request").forEach((el) => { el.textContent = fmtAgo(Number(el.dataset.ms) || 0); });
}, 10000);
connect();
