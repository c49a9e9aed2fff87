// browser.js — pgwork web as a person uses it, in headless Chromium
// (Debian's chromium, driven by puppeteer-core): log in, open the
// overview, a queue, a task, requeue a dead task with a click and see it
// move. Screenshots go to OUTDIR so a person can look.
//
//   node browser.js BASE_URL TOKEN OUTDIR DEAD_TASK_ID
//
// One "ok: ..." or "FAIL: ..." line per step, then
// "browser: N passed, N failed"; exit status 1 if anything failed.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const puppeteer = require("puppeteer-core");

const [base, token, outdir, deadId] = process.argv.slice(2);
if (!base || !token || !outdir || !deadId) {
  console.error("usage: node browser.js BASE_URL TOKEN OUTDIR DEAD_TASK_ID");
  process.exit(2);
}
let passed = 0, failed = 0;
function check(cond, what) {
  if (cond) { passed++; console.log(`ok: ${what}`); }
  else { failed++; console.log(`FAIL: ${what}`); }
  return cond;
}

(async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "pgwork-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    userDataDir: profile,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 640 });
    const dialogs = [], errors = [];
    page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
    page.on("pageerror", (e) => errors.push(String(e)));
    // The login page itself answers 401, which Chromium logs as a failed
    // load: script errors are what counts here.
    page.on("console", (m) => {
      if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
    });
    const shot = (name) => page.screenshot({ path: path.join(outdir, name) });
    const clickAndWait = (selector) =>
      Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click(selector)]);

    // Not logged in: the login form, 401.
    let res = await page.goto(base + "/", { waitUntil: "load" });
    check(res.status() === 401, `/ without a session answers 401 (got ${res.status()})`);
    check(await page.$("input[name=token]") !== null, "the login form is shown");
    await shot("web-login.png");

    await page.type("input[name=token]", token);
    await clickAndWait("button[type=submit]");
    check(new URL(page.url()).pathname === "/", `logged in, on the overview (${page.url()})`);
    const cookies = await page.cookies();
    const session = cookies.find((c) => c.name === "pgwork_session");
    check(session && session.httpOnly && session.sameSite === "Strict",
          "the session cookie is HttpOnly and SameSite=Strict");
    check(!cookies.some((c) => c.value.includes(token)), "no cookie holds the token");
    const queues = await page.$$eval("#queues tbody tr", (rows) =>
      rows.map((r) => r.getAttribute("data-queue")));
    check(queues.includes("mail") && queues.includes("reports"),
          `the overview lists every queue (${queues.join(", ")})`);
    // The chart: uPlot, vendored, drew a canvas from the page's data.
    await page.waitForSelector("#chart canvas", { timeout: 10000 }).catch(() => {});
    check(await page.$("#chart canvas") !== null, "the throughput chart is drawn (uPlot canvas)");
    await shot("web-overview.png");

    // A queue, its dead tasks.
    await clickAndWait('#queues a[href="/queues/mail"]');
    check(new URL(page.url()).pathname === "/queues/mail", "the queue page opens");
    await clickAndWait('nav.tabs a[href="/queues/mail?state=dead"]');
    const errorsShown = await page.$$eval("#tasks td.err", (tds) => tds.map((t) => t.textContent));
    check(errorsShown.some((t) => t.includes("<script>")),
          "a last_error holding <script> prints as text");
    check(await page.$("#tasks script") === null, "no script element came from the database");
    await shot("web-queue-dead.png");

    // One task, then requeue it with a click.
    await clickAndWait(`#tasks a[href="/tasks/${deadId}"]`);
    const state = () => page.$eval("#task-state", (e) => e.textContent.trim());
    check(await state() === "dead", `task ${deadId} is shown dead`);
    const payload = await page.$eval("#task-payload", (e) => e.textContent);
    check(payload.includes('\n    "to": "ops@example.com"'), "its payload is pretty-printed");
    await shot("web-task.png");
    await clickAndWait(`form[action="/api/tasks/${deadId}/requeue"] button`);
    check(new URL(page.url()).pathname === `/tasks/${deadId}`, "the requeue answers back to the task");
    check(await state() === "pending", `task ${deadId} moved to pending after the click`);
    await shot("web-task-requeued.png");

    // And it left the dead list.
    res = await page.goto(base + "/queues/mail?state=dead", { waitUntil: "load" });
    const deadIds = await page.$$eval("#tasks tbody tr[data-id]", (rows) =>
      rows.map((r) => r.getAttribute("data-id")));
    check(!deadIds.includes(String(deadId)), "the dead list no longer shows it");

    check(dialogs.length === 0, `no alert ran (${dialogs.join("; ")})`);
    check(errors.length === 0, `no script error on any page (${errors.join("; ")})`);
  } catch (e) {
    check(false, `the browser run: ${e && e.stack ? e.stack : e}`);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})();
