// Drives memhive's dashboard in Debian's Chromium with playwright-core.
//
//   node dashboard.mjs BASE_URL USERNAME PASSWORD OUTDIR
//
// The caller (e2e/dashboard_test.go) starts the server, sends a known
// traffic first and passes what the page must show in the environment:
// EXPECT_ITEMS, EXPECT_SETS (the panels), EXPECT_HITS, EXPECT_MISSES and
// EXPECT_HIT_RATE (as the page formats it, e.g. "62.5 %"), and
// EXPECT_TRAFFIC_SETS, EXPECT_TRAFFIC_GETS (what the history graph's
// intervals must add up to), CERT_PEM, a PEM file whose first
// certificate the page binds to a credential, with EXPECT_CERT_SHA256, its
// fingerprint, and OPERATOR_CRED, the id of a credential the operator
// bound to CN EXPECT_OPERATOR_CN through the admin API (which the page
// must show and the tenant cannot remove). Every step is checked; the
// script exits 1 at the first failure and prints "dashboard: N checks
// passed" at the end.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [base, username, password, outdir] = process.argv.slice(2);
if (!outdir) {
  console.error("usage: node dashboard.mjs BASE_URL USERNAME PASSWORD OUTDIR");
  process.exit(2);
}
const expect = {};
const strings = ["HIT_RATE", "CERT_SHA256", "OPERATOR_CN"];
for (const k of ["ITEMS", "SETS", "HITS", "MISSES", "HIT_RATE", "TRAFFIC_SETS", "TRAFFIC_GETS", "CERT_SHA256", "OPERATOR_CN"]) {
  const v = process.env["EXPECT_" + k];
  if (v === undefined || v === "") {
    console.error(`EXPECT_${k} is not set`);
    process.exit(2);
  }
  expect[k] = strings.includes(k) ? v : Number(v);
}
for (const k of ["CERT_PEM", "OPERATOR_CRED"]) {
  if (!process.env[k]) {
    console.error(`${k} is not set`);
    process.exit(2);
  }
}
const opId = process.env.OPERATOR_CRED;
const certPEM = fs.readFileSync(process.env.CERT_PEM, "utf8");

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  checks++;
  console.log(`ok ${checks} - ${what}`);
}

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
  // The history the page draws its graph from, as the API gave it.
  const historyResponse = page.waitForResponse((r) => /\/api\/v1\/\d+\/history$/.test(new URL(r.url()).pathname));
  await page.click("#login-submit");
  await page.waitForSelector("#dash-view:not([hidden])");
  const history = await (await historyResponse).json();
  await page.waitForFunction(() => document.querySelector("[data-testid=panel-items]").textContent !== "…");

  // The panels show the traffic's figures, exactly as the page formats them.
  const text = async (sel) => (await page.textContent(sel)).trim();
  const items = await text("[data-testid=panel-items]");
  check(items === String(expect.ITEMS), `items panel shows the ${expect.ITEMS} stored items (${items})`);
  const sets = await text("[data-testid=panel-set-cmds]");
  check(sets === String(expect.SETS), `set cmds panel shows the ${expect.SETS} sets (${sets})`);
  const hit = await text("[data-testid=panel-hit-rate]");
  check(hit === expect.HIT_RATE, `hit rate panel shows ${expect.HIT_RATE} (${hit})`);
  const hitSub = await text("#hit-rate-sub");
  const wantSub = `${expect.HITS} hits, ${expect.MISSES} misses (all time)`;
  check(hitSub === wantSub, `the hit rate counts ${wantSub} (${hitSub})`);
  const flushesBefore = await text("[data-testid=panel-flush-cmds]");
  check(flushesBefore === "0", `flush cmds panel shows no flush yet (${flushesBefore})`);
  const limit = await text("[data-testid=panel-limit]");
  check(/^[0-9.]+ MB of 16\.0 MB$/.test(limit), `limit panel shows usage of the 16 MB limit (${limit})`);

  // The graph: one point per interval between the API's samples (summed
  // over servers at the same moment), at the later sample's time.
  await page.waitForSelector("#chart .u-wrap", { timeout: 10000 });
  const byTime = new Map();
  for (const e of history) {
    const t = Number(e.timestamp);
    const acc = byTime.get(t) || {};
    for (const [k, v] of Object.entries(e.stats)) acc[k] = (acc[k] || 0) + v;
    byTime.set(t, acc);
  }
  const hist = [...byTime.entries()].sort((a, b) => a[0] - b[0]);
  check(hist.length >= 3, `the API has samples from before and after the traffic (${hist.length})`);
  const plotted = () => page.evaluate(() => state.chart.data.map((s) => Array.from(s)));
  const want = (f) => hist.slice(1).map(([, s], i) => f(hist[i][1], s));
  const same = (got, exp) => got.length === exp.length && got.every((v, i) => (v === null ? exp[i] === null : Math.abs(v - exp[i]) < 1e-9));
  let [xs, ya, yb] = await plotted();
  check(same(xs, hist.slice(1).map(([t]) => t / 1000)), `the graph plots ${hist.length - 1} points, at the samples' times (${xs.length})`);
  const hitRate = (a, b) => { const h = b.get_hits - a.get_hits, m = b.get_misses - a.get_misses; return h + m ? (100 * h) / (h + m) : null; };
  check(same(ya, want(hitRate)), `the hit rate series is each interval's (${JSON.stringify(ya)})`);

  // The per-interval series add up to the traffic, and the items series
  // ends at the items stored.
  await page.selectOption("#series-a", "sets");
  await page.selectOption("#series-b", "gets");
  [xs, ya, yb] = await plotted();
  const sum = (v) => v.reduce((a, b) => a + b, 0);
  check(same(ya, want((a, b) => b.cmd_set - a.cmd_set)) && sum(ya) === expect.TRAFFIC_SETS,
    `the sets per interval add up to the ${expect.TRAFFIC_SETS} sets (${JSON.stringify(ya)})`);
  check(same(yb, want((a, b) => b.cmd_get - a.cmd_get)) && sum(yb) === expect.TRAFFIC_GETS,
    `the gets per interval add up to the ${expect.TRAFFIC_GETS} gets (${JSON.stringify(yb)})`);
  await page.selectOption("#series-a", "items");
  await page.selectOption("#series-b", "hitrate");
  const [, itemSeries, rates] = await plotted();
  check(itemSeries[itemSeries.length - 1] === expect.ITEMS, `the items series ends at ${expect.ITEMS} (${JSON.stringify(itemSeries)})`);
  const hitsPlotted = sum(rates.map((r, i) => (r === null ? 0 : (r * yb[i]) / 100)));
  check(Math.abs(hitsPlotted - expect.HITS) < 1e-9, `the hit rates plotted weigh to the ${expect.HITS} hits (${hitsPlotted})`);
  await page.selectOption("#series-a", "hitrate");
  await page.selectOption("#series-b", "usage");
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

  // Client certificates. The operator bound a CN to credential opId
  // (admin API): the page shows it, read-only, with a note and no Unbind.
  // The tenant binds a fingerprint to it by pasting its PEM (the page
  // computes the fingerprint; the form has no CN field), sees it listed
  // and in the API beside the CN; a second credential is refused the same
  // certificate, and a malformed fingerprint, with the API's message; the
  // API refuses to clear the CN; unbinding removes the fingerprint only.
  const fp = expect.CERT_SHA256;
  const opensslFP = fp.toUpperCase().match(/../g).join(":");
  const cacheId = await page.evaluate(() => state.id);
  const auth = "Basic " + Buffer.from(`${username}:${password}`).toString("base64");
  const apiCreds = async () =>
    (await context.request.get(`${base}/api/v1/${cacheId}/credentials`, { headers: { Authorization: auth } })).json();
  const apiCred = async (credId) => (await apiCreds()).find((c) => String(c.id) === String(credId));
  const cnSel = `[data-testid=cred-cert-cn-${opId}]`, noteSel = `[data-testid=cred-cert-note-${opId}]`;
  const unbindSel = `[data-testid=cred-unbind-${opId}]`;
  const wantCN = `CN ${expect.OPERATOR_CN} (set by the operator)`;
  // cnOnly tells whether the operator's credential shows its CN alone:
  // the CN, the note, a Bind link and no Unbind.
  const cnOnly = async () => {
    const shownCN = (await page.textContent(cnSel)).trim();
    return shownCN === wantCN && (await page.isVisible(noteSel)) && (await page.locator(unbindSel).count()) === 0 &&
      (await page.isVisible(`[data-testid=cred-bind-${opId}]`)) && (await page.locator(`[data-testid=cred-cert-sha256-${opId}]`).count()) === 0;
  };
  check(await cnOnly(), `the operator's CN is shown (${(await page.textContent(cnSel)).trim()}), with a note (${(await page.textContent(noteSel)).trim()}) and no Unbind`);
  const [jsFP, subtleFP] = await page.evaluate(async (pem) => {
    const der = pemCertificate(pem);
    return [toHex(sha256JS(der)), await sha256Hex(der)];
  }, certPEM);
  check(jsFP === fp && subtleFP === fp, `the page's SHA-256 of the PEM's first certificate, in JavaScript and crypto.subtle, is its fingerprint (${jsFP}, ${subtleFP})`);
  await page.click(`[data-testid=cred-bind-${opId}]`);
  const fields = await page.locator(`[data-testid=cert-form-${opId}]`).locator("input, textarea, select").count();
  check(fields === 1, `the bind form has one field, the certificate, and none for a CN (${fields})`);
  await page.fill(`[data-testid=cert-input-${opId}]`, certPEM);
  await page.click(`[data-testid=cert-submit-${opId}]`);
  await page.waitForSelector(`[data-testid=cred-cert-sha256-${opId}]`);
  const shownFP = page.locator(`[data-testid=cred-cert-sha256-${opId}]`);
  const short = (await shownFP.textContent()).trim();
  check(short === `${opensslFP.slice(0, 11)}…${opensslFP.slice(-5)}` && (await shownFP.getAttribute("title")).endsWith(opensslFP),
    `the credential shows the fingerprint shortened (${short}), in full in its title`);
  let shownCN = (await page.textContent(cnSel)).trim();
  check(shownCN === wantCN && (await page.isVisible(unbindSel)) && (await page.isVisible(noteSel)),
    `beside it the CN stays (${shownCN}), with an Unbind for the fingerprint and the note`);
  let cred = await apiCred(opId);
  check(cred.cert_sha256 === fp && cred.cert_cn === expect.OPERATOR_CN, `the API lists the binding (${cred.cert_sha256} ${cred.cert_cn})`);

  const loginId = (await apiCreds()).find((c) => c.sasl_username === username).id;
  await page.click(`[data-testid=cred-bind-${loginId}]`);
  await page.fill(`[data-testid=cert-input-${loginId}]`, `sha256 Fingerprint=${opensslFP}`);
  await page.click(`[data-testid=cert-submit-${loginId}]`);
  const certError = `[data-testid=cert-error-${loginId}]`;
  await page.waitForSelector(`${certError}:not([hidden])`);
  let msg = (await page.textContent(certError)).trim();
  check(msg === `Conflict: certificate ${fp} is bound to credential ${cred.sasl_username}. (HTTP 409)`,
    `binding it to a second credential shows the API's refusal (${msg})`);
  await page.screenshot({ path: path.join(outdir, "certificate.png"), fullPage: true });
  await page.fill(`[data-testid=cert-input-${loginId}]`, "AB:CD:zz");
  await page.click(`[data-testid=cert-submit-${loginId}]`);
  await page.waitForFunction((sel) => /Bad request/.test(document.querySelector(sel).textContent), certError);
  msg = (await page.textContent(certError)).trim();
  check(/^Bad request: certificate fingerprint: .*\(HTTP 400\)$/.test(msg), `a malformed fingerprint shows the API's refusal (${msg})`);
  const loginCred = await apiCred(loginId);
  check(!loginCred.cert_sha256 && !loginCred.cert_cn, "the refused bindings changed nothing");
  await page.click(`[data-testid=cert-form-${loginId}] button.plain`);
  await page.waitForSelector(`[data-testid=cert-form-${loginId}]`, { state: "detached" });

  // What the page does not offer, the API refuses: the tenant's own
  // credential cannot clear the operator's CN.
  const clear = await context.request.patch(`${base}/api/v1/${cacheId}/credentials/${opId}`,
    { headers: { Authorization: auth, "Content-Type": "application/json" }, data: JSON.stringify({ cert_cn: "" }) });
  const clearBody = await clear.json();
  cred = await apiCred(opId);
  check(clear.status() === 403 && clearBody === "Forbidden: a certificate CN binding is set by the server's operator (admin API)." &&
    cred.cert_cn === expect.OPERATOR_CN && cred.cert_sha256 === fp,
    `the API refuses to clear the CN (${clear.status()} ${JSON.stringify(clearBody)}) and the binding stays`);

  await page.click(unbindSel);
  await page.waitForSelector(`[data-testid=cred-bind-${opId}]`);
  cred = await apiCred(opId);
  check(cred.cert_sha256 === undefined && cred.cert_cn === expect.OPERATOR_CN,
    `unbinding clears the fingerprint in the API and leaves the CN (${JSON.stringify(cred)})`);
  check(await cnOnly(), "the panel shows the CN alone again, with the note and no Unbind");

  // Flush, confirmed.
  await page.click("#flush-button");
  await page.waitForFunction(() => document.querySelector("[data-testid=status]").textContent === "Cache flushed");
  await page.waitForFunction(() => document.querySelector("[data-testid=panel-items]").textContent === "0");
  check(true, "after a flush the cache holds no items");
  const flushes = (await page.textContent("[data-testid=panel-flush-cmds]")).trim();
  check(flushes === "1", `flush cmds counts the one flush (${flushes})`);
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

  // A cache split over two servers, as a cluster's API answers (stubbed
  // here: the cluster's API itself is tested in Go): the panels show the
  // sums, the limit is the shares' sum, the hit rate comes from the
  // summed hits and misses (33.3 %, where averaging the servers' rates
  // would give 43.8 %), and a table lists each server. One server shows
  // no table.
  await page.setViewportSize({ width: 1280, height: 900 });
  check(await page.isHidden("[data-testid=servers-card]"), "one server: no per-server table");
  const MiB = 1024 * 1024;
  const twoServers = {
    "10.0.0.2:11211": { curr_items: 7, get_hits: 10, get_misses: 70, cmd_get: 80, limit_maxbytes: 8 * MiB, total_malloced: 1 * MiB,
      curr_connections: 1, total_connections: 4, cmd_set: 3, cmd_flush: 1, evictions: 0 },
    "10.0.0.1:11211": { curr_items: 5, get_hits: 30, get_misses: 10, cmd_get: 40, limit_maxbytes: 8 * MiB, total_malloced: 2 * MiB,
      curr_connections: 2, total_connections: 7, cmd_set: 9, cmd_flush: 1, evictions: 3 },
  };
  let stubHistory = [];
  await page.route(/\/api\/v1\/\d+\/stats$/, (r) => r.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(twoServers) }));
  await page.route(/\/api\/v1\/\d+\/history$/, (r) => r.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(stubHistory) }));
  await page.click("#refresh");
  await page.waitForSelector("[data-testid=servers-card]:not([hidden])");
  const panels = {};
  for (const k of ["items", "limit", "live-connections", "total-connections", "evictions", "set-cmds", "hit-rate"]) panels[k] = await text(`[data-testid=panel-${k}]`);
  check(panels.items === "12" && panels["live-connections"] === "3" && panels["total-connections"] === "11" &&
    panels.evictions === "3" && panels["set-cmds"] === "12", `two servers: the panels show the sums (${JSON.stringify(panels)})`);
  check(panels.limit === "3.00 MB of 16.0 MB", `two servers: the limit is the sum of their shares (${panels.limit})`);
  check(panels["hit-rate"] === "33.3 %", `two servers: the hit rate is the summed hits over the summed gets (${panels["hit-rate"]})`);
  const rows = await page.$$eval("[data-testid=servers-table] tbody tr", (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
  check(JSON.stringify(rows) === JSON.stringify([
    ["10.0.0.1:11211", "5", "2.00 MB of 8.00 MB (25.0 %)", "2", "40", "30", "3"],
    ["10.0.0.2:11211", "7", "1.00 MB of 8.00 MB (12.5 %)", "1", "80", "10", "0"],
  ]), `the servers table lists each server in order (${JSON.stringify(rows)})`);
  // Their history: each server samples on its own clock, a second apart;
  // the graph sums one sample of each per interval: three rounds, two points.
  stubHistory = [];
  for (let k = 0; k < 3; k++) {
    for (const [i, server] of ["10.0.0.1:11211", "10.0.0.2:11211"].entries()) {
      stubHistory.push({ memcachier_id: "1", server, timestamp: String(1700000000000 + k * 60000 + i * 1000),
        stats: { cmd_set: 10 * k + i, cmd_get: 0, get_hits: 0, get_misses: 0, curr_items: k, evictions: 0, curr_connections: 1 } });
    }
  }
  await page.selectOption("#series-a", "sets");
  await page.click("#refresh");
  await page.waitForFunction(() => state.chart && state.chart.data[0].length === 2);
  const [sxs, sets2] = await page.evaluate(() => state.chart.data.map((s) => Array.from(s)));
  check(JSON.stringify(sxs) === JSON.stringify([1700000061, 1700000121]) && JSON.stringify(sets2) === "[20,20]",
    `two servers' samples merge into one point per interval (${JSON.stringify(sxs)} ${JSON.stringify(sets2)})`);
  await page.screenshot({ path: path.join(outdir, "cluster.png"), fullPage: true });
  await page.unroute(/\/api\/v1\/\d+\/stats$/);
  await page.unroute(/\/api\/v1\/\d+\/history$/);

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
