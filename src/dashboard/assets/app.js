// hal0 dashboard: renders /api/events live and writes through /api. No framework, no build.
// The rules it checks before writing (slot names, providers, devices) come from /api/rules.
"use strict";

const state = {
  slots: new Map(), revision: null, logs: null, rules: null, budget: null,
  edit: null, // { name, revision, spec } while the edit form is open
  pulls: new Map(), pollingPulls: false,
};
const $ = (id) => document.getElementById(id);

// ---- API --------------------------------------------------------------------------------

function token() { return localStorage.getItem("hal0-admin-token") || ""; }

/** A call to hal0's API. `revision`, when given, is sent as If-Match: the write fails with 409
 * if the file changed since. */
async function api(method, path, body, revision) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (revision) headers["If-Match"] = revision;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* empty body */ }
  if (!resp.ok) {
    const err = (data && data.error) || { code: "http_" + resp.status, message: resp.statusText };
    if (resp.status === 401 || (err.code || "").startsWith("admin_token")) askForToken();
    const e = new Error(err.message);
    e.status = resp.status;
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
  if (e.code === "stale_revision") return "hal0.toml changed on disk since this page read it, so nothing was written. Check and try again.";
  if (e.code === "invalid_config" && e.details && e.details.diagnostics) {
    return "Not written: " + e.details.diagnostics.map((d) => (d.field ? d.field + ": " : "") + d.message).join("; ");
  }
  return e.message;
}

function askForToken() {
  $("token-form").hidden = false;
  $("token-button").hidden = false;
}

// ---- Formatting --------------------------------------------------------------------------

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

/** The memory a slot holds or would hold: measured peak, else the estimate. */
function slotMemory(v) {
  // A sleeping provider holds only what it holds now (admission counts it the same way).
  if (v.phase === "sleeping" && v.memory_rss) return v.memory_rss;
  return v.memory_measured || v.memory_estimate || 0;
}

function memoryText(v) {
  let text;
  if (v.memory_measured) text = fmtBytes(v.memory_measured) + " measured";
  else if (v.memory_estimate) text = "~" + fmtBytes(v.memory_estimate) + " estimated";
  else return "—";
  if (state.budget) text += ` · ${Math.round((100 * slotMemory(v)) / state.budget)}% of budget`;
  return text;
}

const holdsMemory = (phase) => ["loading", "ready", "idle", "sleeping", "unloading"].includes(phase);

// ---- Rendering ---------------------------------------------------------------------------

/** Built-in slots first (in their fixed order), then the others by name. */
function sortKey(name) {
  const builtin = state.rules ? state.rules.slot_name.builtin.map((b) => b.name) : ["primary", "embed", "stt", "tts"];
  const i = builtin.indexOf(name);
  return i >= 0 ? "0" + i : "1" + name;
}

function renderSlot(v) {
  let card = document.querySelector(`.slot[data-name="${v.name}"]`);
  if (!card) {
    card = $("slot-template").content.firstElementChild.cloneNode(true);
    card.dataset.name = v.name;
    card.querySelector(".slot-name").textContent = v.name;
    card.querySelector(".load").addEventListener("click", () => act(v.name, "load"));
    card.querySelector(".unload").addEventListener("click", () => act(v.name, "unload"));
    card.querySelector(".edit-slot").addEventListener("click", () => openEdit(v.name));
    card.querySelector(".pull-slot").addEventListener("click", () => startPull((state.slots.get(v.name) || v).model));
    card.querySelector(".show-logs").addEventListener("click", () => openLogs(v.name));
    card.querySelector(".delete").addEventListener("click", () => removeSlot(v.name));
    insertSorted(card, v.name);
  }
  const spec = v.spec || {};
  const phase = v.phase || "stopped";
  const badge = card.querySelector(".badge");
  badge.textContent = phase;
  badge.className = "badge " + phase;
  card.dataset.phase = phase;
  card.querySelector(".provider").textContent = v.provider + (v.role ? " · " + v.role : "");
  card.querySelector(".model").textContent = v.model || spec.upstream || "—";
  card.querySelector(".aliases").textContent = (spec.aliases || []).concat(spec.models || []).join(", ") || "—";
  card.querySelector(".port").textContent = v.port ? String(v.port) + (v.pid ? " · pid " + v.pid : "") : "—";
  card.querySelector(".memory").textContent = memoryText(v);
  const idle = spec.idle_timeout || "10m";
  card.querySelector(".idle-timeout").textContent = idle === "0s" ? "never (0s)" : idle + (spec.idle_timeout ? "" : " (default)");
  card.querySelector(".last-load").textContent = v.last_load_ms != null ? (v.last_load_ms / 1000).toFixed(1) + " s" : "—";
  card.querySelector(".restarts").textContent = String(v.restarts || 0);
  const last = card.querySelector(".last-request");
  last.textContent = fmtAgo(v.last_request_unix_ms);
  last.dataset.ms = v.last_request_unix_ms || "";
  const err = card.querySelector(".slot-error");
  err.textContent = v.last_error ? v.last_error : "";
  err.hidden = !v.last_error || phase === "ready" || phase === "idle";
  const runsProcess = v.provider !== "openai-compatible";
  card.querySelector(".load").disabled = !runsProcess || phase === "ready" || phase === "loading" || phase === "idle";
  card.querySelector(".unload").disabled = !runsProcess || !["ready", "idle", "sleeping", "loading", "pulling"].includes(phase);
  card.querySelector(".pull-slot").hidden = !(v.model || "").startsWith("hf:");
  renderSlotPull(card, v);
}

/** A download for this slot: its own pull_on_load pull, or one started from the page. */
function renderSlotPull(card, v) {
  const box = card.querySelector(".slot-pull");
  const p = v.pull ? { state: "running", downloaded: v.pull.downloaded, total: v.pull.total } : state.pulls.get(v.model);
  if (!p || p.state === "done" && !v.pull && Date.now() - (p.finishedAt || 0) > 60000) { box.hidden = true; return; }
  box.hidden = false;
  const bar = box.querySelector("progress");
  bar.max = p.total || 1;
  bar.value = p.total ? p.downloaded : 0;
  box.querySelector(".slot-pull-text").textContent = pullText(p);
}

function insertSorted(card, name) {
  const list = $("slots");
  const after = [...list.children].find((c) => sortKey(c.dataset.name) > sortKey(name));
  list.insertBefore(card, after || null);
}

function resort() {
  const list = $("slots");
  [...list.children].sort((a, b) => (sortKey(a.dataset.name) < sortKey(b.dataset.name) ? -1 : 1)).forEach((c) => list.appendChild(c));
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

/** The whole box: what loaded slots hold against memory_budget, one segment per slot. */
function renderBudget() {
  const bar = $("budget-bar");
  const loaded = [...state.slots.values()].filter((v) => holdsMemory(v.phase) && slotMemory(v) > 0)
    .sort((a, b) => (sortKey(a.name) < sortKey(b.name) ? -1 : 1));
  const used = loaded.reduce((sum, v) => sum + slotMemory(v), 0);
  const scale = state.budget || Math.max(used, 1);
  bar.replaceChildren(...loaded.map((v, i) => {
    const seg = document.createElement("span");
    seg.className = "seg c" + (i % 6);
    seg.style.width = Math.min(100, (100 * slotMemory(v)) / scale) + "%";
    seg.title = `${v.name}: ${memoryText(v)}`;
    seg.dataset.name = v.name;
    return seg;
  }));
  bar.classList.toggle("over", !!state.budget && used > state.budget);
  const names = loaded.map((v) => `${v.name} ${fmtBytes(slotMemory(v))}`).join(", ");
  const text = state.budget
    ? `${fmtBytes(used)} of ${fmtBytes(state.budget)} memory_budget in use (${Math.round((100 * used) / state.budget)}%)`
    : `${fmtBytes(used)} in use; no memory_budget is set, so loads are not limited`;
  $("budget-text").textContent = text + (names ? ": " + names : "");
  bar.setAttribute("aria-label", $("budget-text").textContent);
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
    state.budget = list.memory_budget;
    $("config-path").textContent = list.config;
    for (const name of [...state.slots.keys()]) if (!list.slots.some((s) => s.name === name)) removeCard(name);
    state.slots = new Map(list.slots.map((s) => [s.name, s]));
    list.slots.forEach(renderSlot);
    renderConfigErrors(list.config_errors);
    renderEmpty();
    renderBudget();
    validateName();
  });
  es.addEventListener("slot", (ev) => {
    const v = JSON.parse(ev.data);
    state.slots.set(v.name, v);
    renderSlot(v);
    renderEmpty();
    renderBudget();
    validateName();
  });
  es.addEventListener("slot-removed", (ev) => {
    const { name } = JSON.parse(ev.data);
    state.slots.delete(name);
    removeCard(name);
    renderEmpty();
    renderBudget();
    validateName();
  });
  es.addEventListener("config", (ev) => {
    const c = JSON.parse(ev.data);
    if (c.revision) state.revision = c.revision;
    if (c.path) $("config-path").textContent = c.path;
    if (c.memory_budget !== state.budget) {
      state.budget = c.memory_budget;
      state.slots.forEach(renderSlot);
      renderBudget();
    }
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
    await api("DELETE", `/api/slots/${encodeURIComponent(name)}`, undefined, state.revision);
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

// ---- Edit slot ------------------------------------------------------------------------------

const EDIT_FIELDS = ["provider", "model", "upstream", "idle_timeout", "device", "aliases", "priority", "memory", "pinned", "autoload", "args", "env"];

/** The form's values as slot fields (absent = not set). */
function readEditForm() {
  const f = {};
  const text = (id) => $(id).value.trim();
  f.provider = $("edit-provider").value;
  if (text("edit-model")) f.model = text("edit-model");
  if (text("edit-upstream")) f.upstream = text("edit-upstream");
  if (text("edit-idle")) f.idle_timeout = text("edit-idle");
  if ($("edit-device").value) f.device = $("edit-device").value;
  const aliases = text("edit-aliases").split(",").map((s) => s.trim()).filter(Boolean);
  if (aliases.length) f.aliases = aliases;
  if (text("edit-priority") !== "") f.priority = Number(text("edit-priority"));
  if (text("edit-memory")) f.memory = text("edit-memory");
  if ($("edit-pinned").checked) f.pinned = true;
  if ($("edit-autoload").checked) f.autoload = true;
  const args = $("edit-args").value.split("\n").map((s) => s.trim()).filter(Boolean);
  if (args.length) f.args = args;
  const env = {};
  for (const line of $("edit-env").value.split("\n").map((s) => s.trim()).filter(Boolean)) {
    const i = line.indexOf("=");
    if (i <= 0) throw new Error(`Environment line "${line}" is not NAME=value.`);
    env[line.slice(0, i)] = line.slice(i + 1);
  }
  if (Object.keys(env).length) f.env = env;
  return f;
}

function fillEditForm(spec) {
  $("edit-provider").value = spec.provider || "";
  $("edit-model").value = spec.model || "";
  $("edit-upstream").value = spec.upstream || "";
  $("edit-idle").value = spec.idle_timeout || "";
  $("edit-device").value = spec.device || "";
  $("edit-aliases").value = (spec.aliases || []).join(", ");
  $("edit-priority").value = spec.priority != null ? String(spec.priority) : "";
  $("edit-memory").value = spec.memory || "";
  $("edit-pinned").checked = !!spec.pinned;
  $("edit-autoload").checked = !!spec.autoload;
  $("edit-args").value = (spec.args || []).join("\n");
  $("edit-env").value = Object.entries(spec.env || {}).map(([k, v]) => `${k}=${v}`).join("\n");
  showEditFields();
}

function showEditFields() {
  const p = state.rules && state.rules.providers.find((x) => x.name === $("edit-provider").value);
  const upstream = p ? !p.runs_process : $("edit-provider").value === "openai-compatible";
  document.querySelectorAll("#edit-form [data-for=process]").forEach((el) => { el.hidden = upstream; });
  document.querySelectorAll("#edit-form [data-for=upstream]").forEach((el) => { el.hidden = !upstream; });
}

/** The slot as the file has it now, and that file's revision (not the applied spec, which
 * can lag a hand edit: a form filled from it would undo that edit). */
async function freshSpec(name) {
  const w = await api("GET", `/api/slots/${encodeURIComponent(name)}/file`);
  return { spec: w.spec, revision: w.revision };
}

async function openEdit(name) {
  try {
    const { spec, revision } = await freshSpec(name);
    state.edit = { name, revision, spec };
    fillEditForm(spec);
    $("edit-title").textContent = "Edit slot · " + name;
    $("edit-revision").textContent = "revision " + revision;
    $("edit-conflict").hidden = true;
    $("edit-error").textContent = "";
    $("edit").hidden = false;
    $("edit").scrollIntoView({ block: "nearest" });
    $("edit-idle").focus();
  } catch (e) {
    notice(`edit ${name}: ${explain(e)}`, true);
  }
}

function closeEdit() {
  state.edit = null;
  $("edit").hidden = true;
}

async function reloadEdit() {
  if (!state.edit) return;
  await openEdit(state.edit.name);
}

async function submitEdit(ev) {
  ev.preventDefault();
  const ed = state.edit;
  if (!ed) return;
  let now;
  try { now = readEditForm(); } catch (e) { $("edit-error").textContent = e.message; return; }
  // Only what changed goes out; a field cleared in the form is removed from the file (null).
  const patch = {};
  for (const k of EDIT_FIELDS) {
    const before = JSON.stringify(ed.spec[k] === false ? undefined : ed.spec[k]);
    const after = JSON.stringify(now[k]);
    if (before !== after) patch[k] = now[k] === undefined ? null : now[k];
  }
  if (Object.keys(patch).length === 0) { closeEdit(); notice(`Slot "${ed.name}": nothing changed.`); return; }
  $("edit-submit").disabled = true;
  try {
    // The revision the form was filled from, not the live one: an edit made elsewhere since
    // then must not be overwritten.
    await api("PATCH", `/api/slots/${encodeURIComponent(ed.name)}`, patch, ed.revision);
    notice(`Slot "${ed.name}" saved to hal0.toml: ${Object.keys(patch).join(", ")}.`);
    closeEdit();
  } catch (e) {
    if (e.status === 409) {
      $("edit-conflict").hidden = false;
      $("edit-error").textContent = "";
    } else {
      $("edit-error").textContent = explain(e);
    }
  } finally {
    $("edit-submit").disabled = false;
  }
}

// ---- Pulls ------------------------------------------------------------------------------------

function pullText(p) {
  const pct = p.total ? ` (${Math.floor((100 * p.downloaded) / p.total)}%)` : "";
  if (p.state === "failed") return "failed: " + (p.error || "");
  if (p.state === "done") return "done: " + fmtBytes(p.downloaded) + (p.path ? " in " + p.path : "");
  return `${fmtBytes(p.downloaded)}${p.total ? " of " + fmtBytes(p.total) : ""}${pct}`;
}

function renderPulls() {
  const list = $("pulls");
  list.replaceChildren(...[...state.pulls.values()].map((p) => {
    const li = document.createElement("li");
    li.className = "pull " + p.state;
    li.dataset.model = p.model;
    const name = document.createElement("span");
    name.className = "pull-model";
    name.textContent = p.model;
    const bar = document.createElement("progress");
    bar.max = p.total || 1;
    bar.value = p.total ? p.downloaded : (p.state === "done" ? 1 : 0);
    const text = document.createElement("span");
    text.className = "pull-text";
    text.textContent = pullText(p);
    li.append(name, bar, text);
    return li;
  }));
  state.slots.forEach((v) => {
    const card = document.querySelector(`.slot[data-name="${v.name}"]`);
    if (card) renderSlotPull(card, v);
  });
}

async function pollPulls() {
  if (state.pollingPulls) return;
  state.pollingPulls = true;
  try {
    for (;;) {
      const { pulls } = await api("GET", "/api/models/pulls");
      for (const p of pulls) {
        const old = state.pulls.get(p.model);
        if (p.state !== "running" && (!old || old.state === "running")) p.finishedAt = Date.now();
        else if (old) p.finishedAt = old.finishedAt;
        state.pulls.set(p.model, p);
      }
      renderPulls();
      if (!pulls.some((p) => p.state === "running")) break;
      await new Promise((r) => setTimeout(r, 300));
    }
  } catch (e) {
    $("pull-error").textContent = explain(e);
  } finally {
    state.pollingPulls = false;
  }
}

async function startPull(model) {
  $("pull-error").textContent = "";
  try {
    const p = await api("POST", "/api/models/pull", { model });
    state.pulls.set(p.model, p);
    renderPulls();
    pollPulls();
  } catch (e) {
    $("pull-error").textContent = explain(e);
  }
}

// ---- Add slot form ---------------------------------------------------------------------------

/** Why `name` cannot be a new slot's name, or "" when it can; the rules are hal0's own. */
function nameProblem(name) {
  const r = state.rules && state.rules.slot_name;
  if (name === "") return "Give the slot a name.";
  if (!r) return "";
  if (!new RegExp(r.pattern).test(name)) return `Not a slot name: ${r.description} (${r.pattern}).`;
  if (name.length > r.max_length) return `At most ${r.max_length} characters.`;
  const builtin = r.builtin.find((b) => b.name === name);
  if (builtin) return `“${name}” is reserved for the built-in ${builtin.role} slot.`;
  if (state.slots.has(name)) return `A slot named “${name}” already exists.`;
  return "";
}

function validateName() {
  const input = $("add-name");
  const problem = input.value === "" && !input.dataset.touched ? "" : nameProblem(input.value);
  $("add-name-error").textContent = problem;
  input.setAttribute("aria-invalid", problem ? "true" : "false");
  const ok = !!state.rules && nameProblem(input.value) === "" && $("add-model").value.trim() !== "";
  $("add-submit").disabled = !ok;
  return ok;
}

async function submitAdd(ev) {
  ev.preventDefault();
  $("add-name").dataset.touched = "1";
  if (!validateName()) return;
  const provider = $("add-provider").value;
  const body = { name: $("add-name").value, provider };
  const p = state.rules.providers.find((x) => x.name === provider);
  body[p && !p.runs_process ? "upstream" : "model"] = $("add-model").value.trim();
  const idle = $("add-idle").value.trim();
  if (idle) body.idle_timeout = idle;
  if ($("add-device").value) body.device = $("add-device").value;
  $("add-submit").disabled = true;
  try {
    await api("POST", "/api/slots", body, state.revision);
    $("add-error").textContent = "";
    notice(`Slot "${body.name}" added to hal0.toml. Press Load to start it.`);
    $("add-form").reset();
    delete $("add-name").dataset.touched;
  } catch (e) {
    $("add-error").textContent = explain(e);
  }
  validateName();
}

// ---- Rules ------------------------------------------------------------------------------------

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

async function loadRules() {
  state.rules = await api("GET", "/api/rules");
  const providers = state.rules.providers.map((p) => [p.name, `${p.name} (${p.roles.join(", ")})`]);
  $("add-provider").replaceChildren(...providers.map(([v, t]) => option(v, t)));
  $("edit-provider").replaceChildren(...providers.map(([v, t]) => option(v, t)));
  for (const id of ["add-device", "edit-device"]) {
    const first = $(id).options[0];
    $(id).replaceChildren(first, ...state.rules.devices.map((d) => option(d, d)));
  }
  $("add-name").setAttribute("pattern", state.rules.slot_name.pattern);
  resort();
  validateName();
}

// ---- Wiring ----------------------------------------------------------------------------------

$("add-name").addEventListener("input", () => { $("add-name").dataset.touched = "1"; validateName(); });
$("add-model").addEventListener("input", validateName);
$("add-provider").addEventListener("change", () => {
  const p = state.rules && state.rules.providers.find((x) => x.name === $("add-provider").value);
  $("add-model").placeholder = p && !p.runs_process ? "https://api.example.com/v1 (upstream URL)" : "hf:org/repo/model.gguf or file:/path/model.gguf";
});
$("add-form").addEventListener("submit", submitAdd);
$("edit-form").addEventListener("submit", submitEdit);
$("edit-provider").addEventListener("change", showEditFields);
$("edit-cancel").addEventListener("click", closeEdit);
$("edit-reload").addEventListener("click", reloadEdit);
$("pull-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const model = $("pull-model").value.trim();
  if (model) startPull(model);
});
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
loadRules().catch((e) => notice("Cannot read /api/rules: " + explain(e), true));
pollPulls();
connect();
