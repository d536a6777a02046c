// Drives the dashboard in headless Chromium as a person would, and prints
// what it saw as JSON for the Rust test (crates/nommer/tests/dashboard.rs)
// to check. Screenshots of each page go to the artifact directory.
//
//   node scripts/browser/dashboard.mjs CONFIG.json
//
// CONFIG: {url, admin, read, job, held_job, artifacts}: feederd's URL, an
// admin and a read token, a job body that runs, one for a paused queue
// (it stays PENDING), and where screenshots go.
import { createRequire } from "node:module";
import { readFileSync, mkdirSync } from "node:fs";
const require = createRequire("/var/tmp/nommer-tools/node/");
const puppeteer = require("puppeteer-core");

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
mkdirSync(config.artifacts, { recursive: true });
const seen = { steps: [] };
const step = (name, detail) => seen.steps.push(detail === undefined ? name : `${name}: ${detail}`);

async function submit(body, token) {
  const r = await fetch(`${config.url}/v1/jobs`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const job = await r.json();
  if (r.status !== 201) throw new Error(`submit answered ${r.status}: ${JSON.stringify(job)}`);
  return job.id;
}

const shot = (page, name) => page.screenshot({ path: `${config.artifacts}/${name}.png`, fullPage: true });
const stateOf = (page, selector) => page.$eval(selector, (el) => el.getAttribute("data-state")).catch(() => null);

async function signIn(page, token) {
  await page.goto(`${config.url}/`);
  await page.waitForSelector("#signin-form", { timeout: 15000 });
  await page.type("#token", token);
  await Promise.all([page.click("#signin-button"), page.waitForSelector("#whoami button", { timeout: 15000 })]);
}

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
  defaultViewport: { width: 1360, height: 900 },
});
try {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // Tokens are on: the page asks for one first.
  await page.goto(`${config.url}/`);
  await page.waitForSelector("#signin-form", { timeout: 15000 });
  seen.sign_in_required = true;
  await page.type("#token", "not-a-token");
  await page.click("#signin-button");
  await page.waitForFunction(() => document.querySelector("#signin-error").textContent.length > 0);
  seen.wrong_token_message = await page.$eval("#signin-error", (e) => e.textContent);
  await shot(page, "sign-in");
  await page.$eval("#token", (e) => { e.value = ""; });

  await page.type("#token", config.admin);
  await Promise.all([page.click("#signin-button"), page.waitForSelector("#stats", { timeout: 15000 })]);
  seen.cookie_visible_to_scripts = await page.evaluate(() => document.cookie.includes("nommer_session"));
  await shot(page, "summary");
  step("summary");

  // The jobs page, then a job submitted through the API reaches FINISHED
  // on it with no reload.
  await page.goto(`${config.url}/#/jobs`);
  await page.waitForSelector("#jobs", { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector("#live").classList.contains("on"), { timeout: 15000 });
  await page.evaluate(() => { window.__not_reloaded = true; });
  const id = await submit(config.job, config.admin);
  seen.job = id;
  await page.waitForSelector(`tr[data-job="${id}"] [data-state="FINISHED"]`, { timeout: 90000 });
  seen.finished_without_reload = await page.evaluate(() => window.__not_reloaded === true);
  seen.empty_placeholder_left = await page.evaluate(() => document.querySelector("#no-jobs") !== null);
  await shot(page, "jobs");
  step("jobs");

  await page.goto(`${config.url}/#/jobs/${id}`);
  await page.waitForSelector("#timeline li", { timeout: 15000 });
  seen.job_page_state = await stateOf(page, "#job-state [data-state]");
  seen.timeline = await page.$$eval("#timeline [data-state]", (els) => els.map((e) => e.getAttribute("data-state")));
  seen.outputs_shown = await page.$$eval("td [data-state='finished']", (els) => els.length);
  await shot(page, "job");
  step("job");

  // Cancel from the page: a job held in a paused queue.
  const held = await submit(config.held_job, config.admin);
  await page.goto(`${config.url}/#/jobs/${held}`);
  await page.waitForSelector("#cancel", { timeout: 15000 });
  await page.click("#cancel");
  await page.waitForSelector('#job-state [data-state="CANCELED"]', { timeout: 15000 });
  seen.canceled_from_page = true;
  await page.waitForSelector("#retry", { timeout: 15000 });
  seen.retry_offered = true;
  step("cancel");

  // A state change through the cookie alone, without the CSRF token, is refused.
  seen.without_csrf = await page.evaluate(async (jobId) => {
    const r = await fetch(`/v1/jobs/${jobId}/cancel`, { method: "POST", credentials: "same-origin" });
    return r.status;
  }, held);

  for (const name of ["nodes", "fleet", "presets"]) {
    await page.goto(`${config.url}/#/${name}`);
    await page.waitForSelector("h1", { timeout: 15000 });
    await page.waitForFunction((n) => document.querySelector("h1").textContent.toLowerCase() === n, { timeout: 15000 }, name);
    await shot(page, name);
  }
  seen.nodes_listed = await page.goto(`${config.url}/#/nodes`).then(() => page.waitForSelector("tr[data-node]", { timeout: 15000 })).then(() => true, () => false);
  seen.page_errors = errors;

  // The page renders from the REST API before any event arrives: with the
  // event stream blocked, a finished job still shows FINISHED.
  const blocked = await context.newPage();
  await blocked.setRequestInterception(true);
  blocked.on("request", (r) => (r.url().includes("/v1/events") ? r.abort() : r.continue()));
  await blocked.goto(`${config.url}/#/jobs/${id}`);
  await blocked.waitForSelector("#job-state [data-state]", { timeout: 15000 });
  seen.without_stream_state = await stateOf(blocked, "#job-state [data-state]");
  await blocked.close();

  // A read token: no cancel button anywhere.
  await page.click("#whoami button");
  await page.waitForSelector("#signin-form", { timeout: 15000 });
  const third = await submit(config.held_job, config.admin);
  await signIn(page, config.read);
  await page.goto(`${config.url}/#/jobs`);
  await page.waitForSelector(`tr[data-job="${third}"]`, { timeout: 15000 });
  seen.read_cancel_buttons_in_list = await page.$$eval("[data-cancel]", (els) => els.length);
  await page.goto(`${config.url}/#/jobs/${third}`);
  await page.waitForSelector("#job-state [data-state]", { timeout: 15000 });
  seen.read_sees_state = await stateOf(page, "#job-state [data-state]");
  seen.read_cancel_button = (await page.$("#cancel")) !== null;
  seen.read_redeliver_buttons = await page.$$eval("[data-redeliver]", (els) => els.length);
  await shot(page, "job-read-only");
  step("read");
  console.log(JSON.stringify(seen));
} catch (e) {
  seen.failure = String(e && e.stack ? e.stack : e);
  console.log(JSON.stringify(seen));
  process.exitCode = 1;
} finally {
  await browser.close();
}
