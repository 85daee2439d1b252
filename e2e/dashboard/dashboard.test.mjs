// Drives hal0's dashboard in Debian's headless chromium (playwright-core, no browser download).
// tests/dashboard.rs starts hal0 and runs this with:
//   HAL0_URL          the running hal0, e.g. http://127.0.0.1:8080
//   HAL0_CONFIG       its hal0.toml (read to check what the dashboard wrote, edited to break it)
//   HAL0_FAKE_MODEL   a model path for the new slot
//   HAL0_SCREENSHOTS  where screenshots go
//   HAL0_PULL_MODEL   an hf: ref that hal0's hf_endpoint (a slow local hub) serves
//   HAL0_CHROMIUM     the browser (default /usr/bin/chromium)
// Exits non-zero, naming the failed step, when anything is not as expected.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const URL = process.env.HAL0_URL;
const CONFIG = process.env.HAL0_CONFIG;
const MODEL = "file:" + process.env.HAL0_FAKE_MODEL;
const SHOTS = process.env.HAL0_SCREENSHOTS || "screenshots";
const T = 20000;
fs.mkdirSync(SHOTS, { recursive: true });

let step = "start";
const log = (s) => { step = s; console.log("dashboard test: " + s); };
const file = () => fs.readFileSync(CONFIG, "utf8");
const fastTable = () => (file().split("[slots.fast]")[1] || "").split("\n[")[0];
const writeFile = (text) => { fs.writeFileSync(CONFIG + ".tmp", text); fs.renameSync(CONFIG + ".tmp", CONFIG); };

const browser = await chromium.launch({
  executablePath: process.env.HAL0_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const pageErrors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // The browser logs every failed request; the one 409 of the conflict step is expected.
  let expect409 = false;
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expect409 && m.text().includes("status of 409")) { expect409 = false; return; }
    pageErrors.push(m.text());
  });
  const shot = (name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
  const card = (name) => page.locator(`.slot[data-name="${name}"]`);

  log("the Slots view lists the declared slot, live, and names the config file");
  await page.goto(URL);
  await card("primary").waitFor({ timeout: T });
  assert.equal(await card("primary").locator(".badge").textContent(), "stopped");
  await page.locator("#live:not(.off)").waitFor({ timeout: T });
  assert.equal(await page.locator("#config-path").textContent(), path.resolve(CONFIG));
  assert.equal(await card("primary").locator(".idle-timeout").textContent(), "10m");
  assert.equal(await card("primary").locator(".last-request").textContent(), "never");

  log("the name rules come from /api/rules, not from the page");
  const rules = await (await fetch(URL + "/api/rules")).json();
  assert.equal(rules.slot_name.pattern, "^[a-z][a-z0-9_-]*$");
  const js = await (await fetch(URL + "/assets/app.js")).text();
  assert.ok(!js.includes("a-z0-9_-"), "app.js does not re-code the name pattern");
  assert.ok(!js.includes('"speech-to-text"'), "app.js does not re-code the built-in names");

  log("invalid names are refused as you type");
  const name = page.locator("#add-name");
  const nameError = page.locator("#add-name-error");
  await page.locator("#add-model").fill(MODEL);
  for (const [value, want] of [
    ["Fast", "Not a slot name: a lowercase letter"], ["9lives", "Not a slot name"], ["my slot", "digits, '-' or '_'"],
    ["primary", "reserved for the built-in chat slot"], ["tts", "reserved for the built-in text-to-speech slot"],
    ["a".repeat(51), "At most 50 characters"],
  ]) {
    await name.fill(value);
    assert.match(await nameError.textContent(), new RegExp(want), `${value}`);
    assert.equal(await page.locator("#add-submit").isDisabled(), true, `${value}: submit disabled`);
    assert.equal(await name.getAttribute("aria-invalid"), "true");
  }
  await name.fill("my slot");
  const before = file();
  await page.locator("#add-form").evaluate((f) => f.requestSubmit());
  await page.locator("#add-model").press("Enter");
  assert.equal(file(), before, "an invalid name never reaches the file");
  await shot("1-invalid-name.png");

  log("a valid slot is added through the form");
  await name.fill("fast");
  assert.equal(await nameError.textContent(), "");
  await page.selectOption("#add-provider", "llama.cpp");
  await page.locator("#add-idle").fill("30m");
  await page.selectOption("#add-device", "cpu");
  await page.locator("#add-submit").click();
  await card("fast").waitFor({ timeout: T });
  const written = file();
  assert.match(written, /\[slots\.fast\]\nprovider = "llama\.cpp"\nmodel = "file:.*"\nidle_timeout = "30m"\ndevice = "cpu"\n/);
  for (const comment of before.split("\n").filter((l) => l.includes("#"))) {
    assert.ok(written.includes(comment), `comment kept: ${comment}`);
  }
  assert.equal(await card("fast").locator(".badge").textContent(), "stopped");
  const order = await page.locator(".slot").evaluateAll((cards) => cards.map((c) => c.dataset.name));
  assert.deepEqual(order, ["primary", "fast"], "built-in slots first, then the others by name");
  await name.fill("fast");
  assert.match(await nameError.textContent(), /already exists/);
  await name.fill("");
  await shot("2-slot-added.png");

  log("Load brings the slot to ready");
  await card("fast").locator("button.load").click();
  await card("fast").locator(".badge.ready").waitFor({ timeout: T });
  assert.match(await card("fast").locator(".port").textContent(), /^\d+ · pid \d+$/);
  assert.match(await card("fast").locator(".last-load").textContent(), /^\d+\.\d s$/);
  assert.equal(await card("fast").locator(".restarts").textContent(), "0");
  assert.equal(await card("fast").locator(".idle-timeout").textContent(), "30m");
  await page.locator("#budget-bar .seg[data-name=fast]").waitFor({ timeout: T });
  assert.match(await card("fast").locator(".memory").textContent(), /(measured|estimated) · \d+% of budget/);
  assert.match(await page.locator("#budget-text").textContent(), /of 1\.0 GiB memory_budget in use/);
  await shot("3-slot-ready.png");

  log("the logs panel shows the provider's output");
  await card("fast").locator("button.show-logs").click();
  await page.locator("#logs-lines", { hasText: "fake-provider listening" }).waitFor({ timeout: T });
  await shot("4-logs.png");
  await page.locator("#logs-close").click();

  log("config errors are shown plainly while the file is invalid");
  const good = file();
  writeFile(good.replace('idle_timeout = "30m"', 'idle_timeout = "half an hour"'));
  await page.locator("#config-errors:not([hidden])").waitFor({ timeout: T });
  assert.match(await page.locator("#config-error-lines").textContent(), /slots\.fast\.idle_timeout/);
  await shot("5-config-error.png");
  writeFile(good);
  await page.locator("#config-errors[hidden]").waitFor({ state: "attached", timeout: T });

  log("Edit opens a form filled with the slot's fields and PATCHes only what changed");
  await card("fast").locator("button.edit-slot").click();
  await page.locator("#edit:not([hidden])").waitFor({ timeout: T });
  assert.equal(await page.locator("#edit-conflict").isVisible(), false, "no conflict shown on open");
  assert.equal(await page.locator("#edit-upstream").isVisible(), false, "no upstream field for llama.cpp");
  assert.equal(await page.locator("#edit-args").isVisible(), true);
  assert.equal(await page.locator("#edit-idle").inputValue(), "30m");
  assert.equal(await page.locator("#edit-device").inputValue(), "cpu");
  assert.match(await page.locator("#edit-model").inputValue(), /^file:/);
  await page.locator("#edit-idle").fill("45m");
  await page.locator("#edit-aliases").fill("quick, speedy");
  await shot("6-edit-form.png");
  await page.locator("#edit-submit").click();
  await page.locator("#edit[hidden]").waitFor({ state: "attached", timeout: T });
  assert.match(fastTable(), /idle_timeout = "45m"/);
  assert.match(fastTable(), /aliases = \["quick", "speedy"\]/);
  await card("fast").locator(".aliases", { hasText: "quick, speedy" }).waitFor({ timeout: T });

  log("an edit based on an old revision is refused: changed elsewhere, reload");
  await card("fast").locator("button.edit-slot").click();
  await page.locator("#edit:not([hidden])").waitFor({ timeout: T });
  writeFile(file().replace('idle_timeout = "45m"', 'idle_timeout = "50m"'));
  await page.locator("#edit-priority").fill("60");
  const beforeConflict = file();
  expect409 = true;
  await page.locator("#edit-submit").click();
  await page.locator("#edit-conflict:not([hidden])").waitFor({ timeout: T });
  assert.match(await page.locator("#edit-conflict").textContent(), /Changed elsewhere: reload/);
  assert.equal(file(), beforeConflict, "the stale edit wrote nothing");
  await shot("7-edit-conflict.png");
  await page.locator("#edit-reload").click();
  await page.locator("#edit-conflict").waitFor({ state: "hidden", timeout: T });
  assert.equal(await page.locator("#edit-idle").inputValue(), "50m", "reload shows the file's values");
  await page.locator("#edit-priority").fill("60");
  await page.locator("#edit-submit").click();
  await page.locator("#edit[hidden]").waitFor({ state: "attached", timeout: T });
  assert.match(fastTable(), /idle_timeout = "50m"/);
  assert.match(fastTable(), /priority = 60/);

  log("a model pull starts from the page and its progress is shown until done");
  await page.locator("#pull-model").fill(process.env.HAL0_PULL_MODEL);
  await page.locator("#pull-submit").click();
  const pull = page.locator(`.pull[data-model="${process.env.HAL0_PULL_MODEL}"]`);
  await page.locator(".pull.running .pull-text", { hasText: /%\)$/ }).waitFor({ timeout: T });
  const seen = Number(await pull.locator("progress").getAttribute("value"));
  await shot("8-pull-running.png");
  await page.locator(".pull.done").waitFor({ timeout: 60000 });
  assert.ok(Number(await pull.locator("progress").getAttribute("value")) >= seen, "progress only grows");
  assert.match(await pull.locator(".pull-text").textContent(), /^done: /);
  await shot("9-pull-done.png");

  log("Unload stops the slot");
  await card("fast").locator("button.unload").click();
  await card("fast").locator(".badge.stopped").waitFor({ timeout: T });

  log("delete asks first, then removes the slot from the file");
  page.once("dialog", (d) => d.dismiss());
  await card("fast").locator("button.delete").click();
  assert.match(file(), /\[slots\.fast\]/, "a dismissed confirmation deletes nothing");
  page.once("dialog", (d) => d.accept());
  await card("fast").locator("button.delete").click();
  await card("fast").waitFor({ state: "detached", timeout: T });
  assert.doesNotMatch(file(), /\[slots\.fast\]/);

  log("usable on a phone-sized screen");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("10-phone.png");
  await card("primary").locator("button.edit-slot").click();
  await page.locator("#edit:not([hidden])").waitFor({ timeout: T });
  await page.locator("#edit").screenshot({ path: path.join(SHOTS, "11-phone-edit.png") });
  const editOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(editOverflow <= 0, `the edit form fits the phone (overflow ${editOverflow}px)`);
  await page.locator("#edit-cancel").click();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling (overflow ${overflow}px)`);
  const box = await card("primary").boundingBox();
  assert.ok(box && box.width <= 390, "cards fit the screen");

  assert.deepEqual(pageErrors, [], "no errors in the page");
  log("passed");
} catch (e) {
  console.error(`dashboard test failed at step "${step}": ${e.stack || e}`);
  if (pageErrors.length) console.error("page errors:\n" + pageErrors.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
