// Drives memhive's dashboard in Debian's Chromium with playwright-core.
//
//   node dashboard.mjs BASE_URL USERNAME PASSWORD OUTDIR
//
// The caller (e2e/dashboard_test.go) starts the server and sends traffic
// first. Every step is checked; the script exits 1 at the first failure
// and prints "dashboard: N checks passed" at the end.
import { chromium } from "playwright-core";
import path from "node:path";

const [base, username, password, outdir] = process.argv.slice(2);
if (!outdir) {
  console.error("usage: node dashboard.mjs BASE_URL USERNAME PASSWORD OUTDIR");
  process.exit(2);
}

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  checks++;
  console.log(`ok ${checks} - ${what}`);
}

const number = (s) => Number(String(s).replace(/[^0-9.]/g, ""));

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("dialog", (d) => d.accept());

  await page.goto(base + "/");
  await page.fill("#login-user", username);
  await page.fill("#login-pass", password);
  await page.click("#login-submit");
  await page.waitForSelector("#dash-view:not([hidden])");
  await page.waitForFunction(() => document.querySelector("[data-testid=panel-items]").textContent !== "…");
  const items = number(await page.textContent("[data-testid=panel-items]"));
  const sets = number(await page.textContent("[data-testid=panel-set-cmds]"));
  check(items > 0, `items panel shows the stored items (${items})`);
  check(sets > 0, `set cmds panel shows the sets (${sets})`);
  const hit = await page.textContent("[data-testid=panel-hit-rate]");
  check(/%/.test(hit), `hit rate is a percentage (${hit})`);
  const limit = await page.textContent("[data-testid=panel-limit]");
  check(/MB of .*MB/.test(limit), `limit panel shows usage of the limit in MB (${limit})`);
  await page.waitForSelector("#chart .u-wrap", { timeout: 10000 });
  check(true, "the history graph is drawn");
  await page.screenshot({ path: path.join(outdir, "dashboard.png"), fullPage: true });

  // Credentials: create, promote, toggle a capability.
  const rowsBefore = await page.locator("#cred-rows tr").count();
  await page.click("#cred-create");
  await page.waitForSelector("[data-testid=new-password]:not([hidden])");
  const shown = await page.textContent("[data-testid=new-password]");
  check(/:[A-Za-z0-9]{32}/.test(shown), "a new credential's password is shown once");
  const id = await page.getAttribute("[data-testid=new-password]", "data-cred-id");
  await page.waitForFunction((n) => document.querySelectorAll("#cred-rows tr").length === n + 1, rowsBefore);
  check(true, `the new credential ${id} is listed`);
  await page.click(`[data-testid=cred-promote-${id}]`);
  await page.waitForSelector(`[data-testid=cred-primary-${id}]`);
  check(true, "the new credential is promoted to primary");
  const write = `[data-testid=cred-write-${id}]`;
  check(await page.isChecked(write), "a new credential may write");
  await page.click(write);
  await page.waitForFunction(() => /Saved: write removed/.test(document.querySelector("[data-testid=status]").textContent));
  await page.click("#refresh");
  await page.waitForFunction(() => document.querySelector("[data-testid=status]").textContent === "Refreshed");
  check(!(await page.isChecked(write)), "the write capability stays off after a reload");

  // Flush, confirmed.
  await page.click("#flush-button");
  await page.waitForFunction(() => document.querySelector("[data-testid=status]").textContent === "Cache flushed");
  await page.waitForFunction(() => document.querySelector("[data-testid=panel-items]").textContent === "0");
  check(true, "after a flush the cache holds no items");
  const flushes = number(await page.textContent("[data-testid=panel-flush-cmds]"));
  check(flushes >= 1, `flush cmds counts the flush (${flushes})`);
  await page.screenshot({ path: path.join(outdir, "after.png"), fullPage: true });

  await page.setViewportSize({ width: 375, height: 800 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(outdir, "phone.png"), fullPage: true });
  const overflow = await page.evaluate(() => {
    const wide = [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
      .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.className && typeof e.className === "string" ? "." + e.className.split(" ")[0] : ""));
    return { px: document.documentElement.scrollWidth - window.innerWidth, wide: wide.slice(0, 5).join(" ") };
  });
  check(overflow.px <= 1, `no horizontal scrolling at phone width (${overflow.px}px too wide: ${overflow.wide})`);

  // A wrong password is refused, visibly.
  const other = await context.newPage();
  await other.goto(base + "/");
  await other.fill("#login-user", username);
  await other.fill("#login-pass", password + "x");
  await other.click("#login-submit");
  await other.waitForSelector("[data-testid=error]:not([hidden])");
  const err = await other.textContent("[data-testid=error]");
  check(/not authorized/.test(err), `a wrong password shows the API's refusal (${err.trim()})`);
  check(await other.isHidden("#dash-view"), "a wrong password shows no dashboard");

  check(external.length === 0, `no request leaves the server (${external.join(", ")})`);
  check(pageErrors.length === 0, `no script errors (${pageErrors.join("; ")})`);
  console.log(`dashboard: ${checks} checks passed`);
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
