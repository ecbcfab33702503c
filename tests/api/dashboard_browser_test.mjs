// The dashboard of a real `backstop run` in headless Chromium: brokers' health, working orders
// with stop verification, live events and the reliability comparison must render with real data
// from the running session; the page must load nothing from elsewhere and must not keep the
// token in its address bar; `backstop run` must not print the token. Saves a screenshot.
//
// node dashboard_browser_test.mjs --backstop BIN --config sim-api.json --playwright DIR --out DIR
// Exit 0 pass, 1 fail, 77 skip (playwright-core or chromium not installed: scripts/setup.sh).
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const k of ["backstop", "config", "playwright", "out"]) {
  if (!args[k]) { console.error(`missing --${k}`); process.exit(2); }
}
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
if (!fs.existsSync(args.playwright) || !fs.existsSync(CHROMIUM)) {
  console.log(`skip: needs ${args.playwright} and ${CHROMIUM} (bash scripts/setup.sh installs both)`);
  process.exit(77);
}
const { chromium } = createRequire(import.meta.url)(path.resolve(args.playwright));

fs.mkdirSync(args.out, { recursive: true });
const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.on("error", reject);
  s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
});

// The example config with this run's port and files (comments are whole lines in it).
const port = await freePort();
const config = JSON.parse(fs.readFileSync(args.config, "utf8").split("\n").filter((l) => !/^\s*\/\//.test(l)).join("\n"));
const tokenFile = path.join(args.out, "api.token");
const journal = path.join(args.out, "journal.db");
// The journal of an earlier run and everything beside it (its -wal and -shm, the simulated
// broker's state file): each run starts from nothing.
for (const f of fs.readdirSync(args.out)) if (f.startsWith("journal.db")) fs.rmSync(path.join(args.out, f), { force: true });
config.api = { ...config.api, port, token_file: tokenFile };
const configFile = path.join(args.out, "sim-api-browser.json");
fs.writeFileSync(configFile, JSON.stringify(config, null, 2));

const run = spawn(args.backstop, ["run", "--config", configFile, "--for", "40s", "--journal", journal], { stdio: ["ignore", "pipe", "pipe"] });
let output = "";
run.stdout.on("data", (d) => { output += d; });
run.stderr.on("data", (d) => { output += d; });
const exited = new Promise((resolve) => run.on("exit", (code) => resolve(code)));

let browser;
let page;
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };
try {
  const deadline = Date.now() + 30000;
  while (!/api: http:\/\//.test(output)) {
    if (Date.now() > deadline || run.exitCode !== null) throw new Error("backstop run did not start the API:\n" + output);
    await new Promise((r) => setTimeout(r, 100));
  }
  const token = fs.readFileSync(tokenFile, "utf8").trim();
  check((fs.statSync(tokenFile).mode & 0o777) === 0o600, "token file mode is not 0600");
  const base = `http://127.0.0.1:${port}`;

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const foreign = [];
  const pageErrors = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) foreign.push(r.url()); });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(`${base}/?token=${token}`);

  // Health of the configured broker, from /api/v1/brokers.
  const healthBadge = page.locator('#brokers tbody tr[data-broker="sim"] td:nth-child(2) .badge');
  await healthBadge.waitFor({ timeout: 15000 });
  check(["up", "degraded", "down"].includes(await healthBadge.textContent()), "broker health badge");
  check((await page.locator('#brokers tbody tr[data-broker="sim"] td:nth-child(3)').textContent()).length > 0, "circuit");
  // The live stream connects and delivers the session's order events.
  await page.locator("#stream-status", { hasText: "stream: live" }).waitFor({ timeout: 15000 });
  await page.locator('#events li[data-type="order"]').first().waitFor({ timeout: 20000 });
  // Working orders with the stop verification state (the breakout strategy's brackets).
  await page.locator("#orders tbody tr").first().waitFor({ timeout: 25000 });
  await page.locator("#orders tbody tr td:nth-child(12) .badge").first().waitFor({ timeout: 25000 });
  const verification = await page.locator("#orders tbody tr td:nth-child(12) .badge").first().textContent();
  check(/^(pending|verified|mismatch|missing|timeout)/.test(verification), `stop verification badge: ${verification}`);
  // Orders name the strategy (route) that sent them (the guard's own orders name none).
  const named = await page.locator("#orders tbody tr td:nth-child(3)", { hasText: config.strategies[0].name }).count();
  check(named > 0, `orders naming strategy ${config.strategies[0].name}: ${named}`);
  // The stops section names each strategy's protection policy (not one for all), and each stop
  // row the policy it is under.
  const strategy = config.strategies[0];
  await page.locator("#stops-policy", { hasText: `${strategy.name} ${strategy.protection}` }).waitFor({ timeout: 15000 });
  await page.locator("#stops tbody tr td:nth-child(3)", { hasText: strategy.protection }).first().waitFor({ timeout: 25000 });
  // The reliability comparison: a latency bar with a measured value and orders counted.
  await page.waitForFunction(() => {
    const bar = document.querySelector('#chart-latency rect[data-broker="sim"]');
    return bar && Number(bar.getAttribute("width")) > 0 && /ms$/.test(bar.querySelector("title").textContent);
  }, null, { timeout: 20000 });
  const created = await page.locator("#reliability tbody tr:first-child td:nth-child(2)").textContent();
  check(Number(created) > 0, `orders created in the comparison: ${created}`);
  check(await page.locator("#chart-trouble").count() === 1, "trouble chart");

  check(!page.url().includes("token="), "the token stayed in the address bar");
  check(foreign.length === 0, "requests outside Backstop: " + foreign.join(", "));
  check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  check(!output.includes(token), "backstop run printed the token");
  await page.screenshot({ path: path.join(args.out, "dashboard.png"), fullPage: true });
} catch (e) {
  failures.push(String(e && e.stack || e));
  if (page) await page.screenshot({ path: path.join(args.out, "dashboard-failure.png"), fullPage: true }).catch(() => {});
} finally {
  if (browser) await browser.close();
  if (run.exitCode === null) run.kill("SIGINT");
  const code = await exited;
  if (code !== 0 && code !== null) failures.push(`backstop run exited ${code}:\n${output}`);
}
if (failures.length) {
  console.error("FAIL:\n" + failures.join("\n"));
  process.exit(1);
}
console.log(`ok: dashboard rendered live data; screenshot ${path.join(args.out, "dashboard.png")}`);
