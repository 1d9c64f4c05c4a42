// Status page end-to-end in a real browser: Debian's /usr/bin/chromium driven by playwright-core,
// against the real exporter binary on config/demo.yaml and on a config with HTML-looking names.
//
//   node tests/browser/status_page.test.mjs [path/to/esim-exporter]
//
// Screenshots (desktop and phone width) go to tests/browser/artifacts/. Fails, never skips.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = resolve(process.argv[2] || join(process.env.CARGO_TARGET_DIR || join(root, "target"), "debug/esim-exporter"));
const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });
const CHROMIUM = "/usr/bin/chromium";
assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
assert.ok(existsSync(bin), `exporter binary ${bin} is missing: cargo build`);

const freePort = () => new Promise((ok) => { const s = createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startExporter(configPath, cwd) {
  const port = await freePort();
  const child = spawn(bin, ["--config.file", configPath, "--web.listen-address", `127.0.0.1:${port}`, "--web.render-interval", "100ms"], { cwd, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => { log += d; });
  const base = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(base + "-/ready")).ok) return { child, base, log: () => log }; } catch {}
    await sleep(100);
  }
  child.kill();
  throw new Error(`exporter did not become ready:\n${log}`);
}
const api = async (base, q) => (await fetch(base + "api/v1/lines?" + q)).json();

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const exporters = [];
let passed = 0;
async function check(name, fn) {
  process.stdout.write(`  ${name} ... `);
  await fn();
  passed++;
  console.log("ok");
}
async function loaded(page, after = 0) {
  await page.waitForFunction((n) => Number(document.body.dataset.loaded || 0) > n, after);
  return page.evaluate(() => Number(document.body.dataset.loaded));
}
const rowNames = (page) => page.$$eval("#rows tr[data-line]", (trs) => trs.map((t) => t.dataset.line));

try {
  // The demo fleet fills within seconds of start (the first wave), so a pending line is made
  // to stay pending: two lines on an account allowed one poll an hour (the second one waits).
  const fleetDir = mkdtempSync(join(tmpdir(), "esim-browser-fleet-"));
  const demoYaml = readFileSync(join(root, "config/demo.yaml"), "utf8")
    .replace(/^accounts:\n/m, "accounts:\n  queued:\n    driver: demo\n    seed: 7\n    rate_limit: 1/h\n")
    .concat("  - {name: queued-01, account: queued, profile: steady}\n  - {name: queued-02, account: queued, profile: steady}\n");
  writeFileSync(join(fleetDir, "demo.yaml"), demoYaml);
  const demo = await startExporter(join(fleetDir, "demo.yaml"), root);
  exporters.push(demo);
  const configured = (await api(demo.base, "limit=1000")).lines.map((l) => l.name);
  assert.equal(configured.length, 29);
  const pendingNow = (await api(demo.base, "state=pending")).lines.map((l) => l.name);

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(demo.base);
  await loaded(page);

  await check("the table shows every configured line", async () => {
    assert.deepEqual([...(await rowNames(page))].sort(), [...configured].sort());
  });

  await check("a line that never polled says pending", async () => {
    // One queued line waits an hour for its account's rate limit.
    assert.ok(pendingNow.length > 0, "the fleet has pending lines right after start");
    await page.goto(demo.base);
    await loaded(page);
    const states = await page.$$eval("#rows tr[data-line]", (trs) => Object.fromEntries(trs.map((t) => [t.dataset.line, t.querySelector(".badge").textContent])));
    const stillPending = (await api(demo.base, "state=pending")).lines.map((l) => l.name);
    const both = stillPending.filter((n) => pendingNow.includes(n));
    assert.ok(both.length > 0);
    for (const n of both) assert.equal(states[n], "pending", n);
    for (const n of both) assert.doesNotMatch((await page.getAttribute(`#rows tr[data-line="${n}"]`, "class")) || "", /failing/, n);
  });

  // Let the fleet poll for the screenshots and the low/failing checks.
  for (let i = 0; i < 120 && (await api(demo.base, "state=pending")).total > 1; i++) await sleep(500);

  await check("sorting by a header, with the mouse and the keyboard", async () => {
    let n = await loaded(page);
    await page.click('thead button[data-sort="balance"]');
    n = await loaded(page, n);
    assert.equal(await page.getAttribute('th:has(button[data-sort="balance"])', "aria-sort"), "ascending");
    const expected = (await api(demo.base, "sort=balance&limit=100")).lines.map((l) => l.name);
    assert.deepEqual(await rowNames(page), expected);
    await page.focus('thead button[data-sort="balance"]');
    await page.keyboard.press("Enter");
    n = await loaded(page, n);
    assert.equal(await page.getAttribute('th:has(button[data-sort="balance"])', "aria-sort"), "descending");
    const desc = (await api(demo.base, "sort=-balance&limit=100")).lines.map((l) => l.name);
    assert.deepEqual(await rowNames(page), desc);
    assert.match(page.url(), /sort=-balance/);
  });

  await check("a low line is highlighted", async () => {
    const low = (await api(demo.base, "state=low")).lines.map((l) => l.name);
    assert.ok(low.includes("meter-04-low"), `meter-04-low is low: ${low}`);
    await page.goto(demo.base + "?sort=status");
    await loaded(page);
    for (const n of low) assert.match(await page.getAttribute(`#rows tr[data-line="${n}"]`, "class"), /\blow\b/, n);
    assert.doesNotMatch((await page.getAttribute('#rows tr[data-line="tracker-01"]', "class")) || "", /\blow\b/);
    assert.match(await page.getAttribute('#rows tr[data-line="gate-03-down"]', "class"), /\bfailing\b/);
  });

  await page.goto(demo.base);
  await loaded(page);
  await page.screenshot({ path: join(artifacts, "status-desktop.png"), fullPage: true });

  await check("a line's detail shows its recent polls and a sparkline of balance and data", async () => {
    await page.click('#rows tr[data-line="tracker-01"] button.line');
    // A flat line (one poll, or a balance that did not move) has a bounding box of height 0,
    // which Playwright counts as hidden: wait for the chart to be visible and the line attached.
    await page.waitForSelector("dialog#detail[open] svg.spark.balance");
    await page.waitForSelector("dialog#detail[open] svg.spark.balance polyline", { state: "attached" });
    assert.equal(await page.textContent("#detail-name"), "tracker-01");
    const polls = (await (await fetch(demo.base + "api/v1/line?line=tracker-01")).json()).history.polls;
    assert.ok(polls.length >= 1, "tracker-01 polled");
    const points = await page.getAttribute("dialog#detail svg.spark.balance polyline", "points");
    // Even a line with one poll draws a visible line (a one-point polyline has no extent).
    assert.ok(points.trim().split(/\s+/).length >= 2, points);
    assert.match(await page.getAttribute("dialog#detail svg.spark.balance", "aria-label"), /^Balance over the last \d+ polls: from /);
    assert.ok(await page.$("dialog#detail svg.spark.data polyline"), "data sparkline");
    await page.screenshot({ path: join(artifacts, "status-detail.png") });
    await page.keyboard.press("Escape");
    await page.waitForSelector("dialog#detail:not([open])", { state: "attached" });
  });

  await check("filtering by text, operator and state", async () => {
    let n = await loaded(page);
    await page.fill("#q", "meter");
    n = await loaded(page, n);
    const names = await rowNames(page);
    assert.equal(names.length, 5);
    assert.ok(names.every((x) => x.startsWith("meter-")), names.join());
    await page.fill("#q", "");
    n = await loaded(page, n);
    await page.selectOption("#operator", "emnify");
    n = await loaded(page, n);
    assert.deepEqual(await rowNames(page), ["asset-us-01", "asset-us-02", "asset-us-03", "asset-us-04"]);
    await page.selectOption("#operator", "");
    n = await loaded(page, n);
    await page.selectOption("#state", "failing");
    n = await loaded(page, n);
    assert.ok((await rowNames(page)).includes("gate-03-down"));
    await page.selectOption("#state", "");
    await loaded(page, n);
  });

  await check("the page refreshes itself without losing the filter or the scroll position", async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    p.on("pageerror", (e) => errors.push(String(e)));
    await p.goto(demo.base + "?q=tracker");
    let n = await loaded(p);
    assert.equal(await p.inputValue("#q"), "tracker");
    await p.evaluate(() => window.scrollTo(0, 600));
    const y = await p.evaluate(() => window.scrollY);
    assert.ok(y > 0);
    const before = await p.textContent("#updated");
    n = await loaded(p, n); // the auto-refresh (every 10 s)
    assert.equal(await p.inputValue("#q"), "tracker");
    const names = await rowNames(p);
    assert.equal(names.length, 5);
    assert.ok(names.every((x) => x.startsWith("tracker-")));
    assert.equal(await p.evaluate(() => window.scrollY), y);
    assert.ok(before.startsWith("Updated"));
    await p.goto(demo.base);
    await loaded(p);
    await p.screenshot({ path: join(artifacts, "status-phone.png"), fullPage: false });
    await phone.close();
  });

  await check("no script errors, no request leaves the exporter", async () => {
    assert.deepEqual(errors, []);
  });

  await check("HTML-looking line names are shown as text", async () => {
    const dir = mkdtempSync(join(tmpdir(), "esim-browser-"));
    writeFileSync(join(dir, "esim.yaml"), [
      "global: {poll_interval: 1s}",
      "lines:",
      '  - {name: "<b>x</b>", driver: demo, operator: "<i>op</i>"}',
      "  - {name: \"<img src=x onerror=window.pwned=1>\", driver: demo}",
      "",
    ].join("\n"));
    const evil = await startExporter("esim.yaml", dir);
    exporters.push(evil);
    const p = await context.newPage();
    await p.goto(evil.base);
    await loaded(p);
    const names = await p.$$eval("#rows tr[data-line] th", (ths) => ths.map((t) => t.textContent));
    assert.deepEqual(names.sort(), ["<b>x</b>", "<img src=x onerror=window.pwned=1>"]);
    assert.equal(await p.$$eval("#rows b, #rows img, #rows i, select i", (e) => e.length), 0);
    assert.equal(await p.evaluate(() => window.pwned), undefined);
    // The server-rendered first page escapes too.
    const html = await (await fetch(evil.base)).text();
    assert.ok(html.includes("&lt;b&gt;x&lt;/b&gt;") && !html.includes("<b>x</b>"));
  });

  await check("paging works on a 10,000-line fleet", async () => {
    const dir = mkdtempSync(join(tmpdir(), "esim-browser-big-"));
    const lines = Array.from({ length: 10000 }, (_, i) => `  - {name: "m-${String(i).padStart(5, "0")}", account: big}`);
    writeFileSync(join(dir, "esim.yaml"), ["global: {poll_interval: 1h}", "accounts:", "  big: {driver: demo}", "lines:", ...lines, ""].join("\n"));
    const big = await startExporter("esim.yaml", dir);
    exporters.push(big);
    const p = await context.newPage();
    await p.goto(big.base + "?sort=name");
    await loaded(p);
    const first = await rowNames(p);
    assert.equal(first.length, 100, "one page of rows, not the fleet");
    assert.equal(first[0], "m-00000");
    assert.match(await p.textContent("#range"), /^1–100 of 10000$/);
    assert.ok(await p.isDisabled("#prev"));
    let n = await loaded(p);
    await p.click("#next");
    n = await loaded(p, n);
    const second = await rowNames(p);
    assert.equal(second[0], "m-00100");
    assert.match(await p.textContent("#range"), /^101–200 of 10000$/);
    assert.match(p.url(), /offset=100/, "the page is in the address, so a reload keeps it");
    // The last page: straight from the address, then Next is disabled.
    await p.goto(big.base + "?sort=name&offset=9900");
    await loaded(p);
    const last = await rowNames(p);
    assert.equal(last.length, 100);
    assert.equal(last[99], "m-09999");
    assert.ok(await p.isDisabled("#next"));
    await p.click("#prev");
    await p.waitForFunction(() => document.querySelector("#rows tr[data-line]")?.dataset.line === "m-09800");
  });
  console.log(`browser tests: ${passed} passed; screenshots in ${artifacts}`);
} catch (e) {
  console.log("FAILED");
  console.error(e);
  for (const x of exporters) console.error("--- exporter log\n" + x.log().slice(-3000));
  process.exitCode = 1;
} finally {
  for (const x of exporters) x.child.kill("SIGTERM");
  await browser.close();
}
