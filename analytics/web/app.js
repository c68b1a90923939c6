// memhive dashboard: everything here goes through the analytics API
// (/api/v1/...), with the logged-in credential as HTTP Basic auth. The
// credential is kept in memory only: reloading the page logs out.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { auth: null, id: null, info: null, stats: null, history: [], creds: [], chart: null, timers: [] };

const MB = 1024 * 1024;
const fmtInt = (n) => Math.round(n).toLocaleString("en-US");
const fmtMB = (b) => (b / MB).toFixed(b < 10 * MB ? 2 : 1) + " MB";
const fmtPct = (x) => (x * 100).toFixed(1) + " %";

// api calls the analytics API and returns the decoded JSON answer. Errors
// carry the API's message ("You are not authorized ...", ...).
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: state.auth } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new Error("The server cannot be reached.");
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!resp.ok) {
    const msg = typeof data === "string" ? data : (data && data.error) || resp.statusText;
    throw new Error(`${msg} (HTTP ${resp.status})`);
  }
  return data;
}

function showError(el, err) {
  el.textContent = err ? err.message || String(err) : "";
  el.hidden = !err;
}

function setStatus(msg) {
  $("status").textContent = msg;
}

// sum adds every server's stats (one entry per server of the cache).
function sumStats(byServer) {
  const total = {};
  for (const s of Object.values(byServer || {})) {
    for (const [k, v] of Object.entries(s)) total[k] = (total[k] || 0) + v;
  }
  return total;
}

// samples merges history entries taken at the same moment on every server.
function samples() {
  const byTime = new Map();
  for (const e of state.history) {
    const t = Number(e.timestamp); // a string of unix milliseconds, as in MemCachier's API
    const acc = byTime.get(t) || {};
    for (const [k, v] of Object.entries(e.stats)) acc[k] = (acc[k] || 0) + v;
    byTime.set(t, acc);
  }
  return [...byTime.entries()].sort((a, b) => a[0] - b[0]).map(([t, s]) => ({ t, s }));
}

function renderStats() {
  const s = state.stats;
  if (!s) return;
  const limit = s.limit_maxbytes || (state.info && state.info.memory_limit) || 0;
  // Usage is the memory the cache holds (its slab pages): it reaches the
  // limit exactly when evictions begin. "bytes" counts only its items.
  const used = s.total_malloced ?? s.bytes ?? 0;
  const frac = limit ? used / limit : 0;
  $("panel-limit").textContent = `${fmtMB(used)} of ${fmtMB(limit)}`;
  $("usage-sub").textContent = `${fmtPct(frac)} used`;
  const bar = $("usage-bar");
  bar.style.width = Math.min(100, frac * 100).toFixed(1) + "%";
  bar.classList.toggle("high", frac > 0.9);
  $("panel-live-connections").textContent = fmtInt(s.curr_connections || 0);
  $("panel-total-connections").textContent = fmtInt(s.total_connections || 0);
  $("panel-items").textContent = fmtInt(s.curr_items || 0);
  $("panel-evictions").textContent = fmtInt(s.evictions || 0);
  $("panel-set-cmds").textContent = fmtInt(s.cmd_set || 0);
  $("panel-flush-cmds").textContent = fmtInt(s.cmd_flush || 0);

  const hist = samples();
  const last = hist.length ? hist[hist.length - 1].s : null;
  $("panel-new-evictions").textContent = fmtInt(last ? Math.max(0, (s.evictions || 0) - (last.evictions || 0)) : 0);
  // Hit rate over the last sampling interval when there is one, else all time.
  let hits = s.get_hits || 0, misses = s.get_misses || 0, scope = "all time";
  if (hist.length >= 2) {
    const a = hist[hist.length - 2].s, b = hist[hist.length - 1].s;
    const dh = (b.get_hits || 0) - (a.get_hits || 0), dm = (b.get_misses || 0) - (a.get_misses || 0);
    if (dh + dm > 0) { hits = dh; misses = dm; scope = "last interval"; }
  }
  $("panel-hit-rate").textContent = hits + misses ? fmtPct(hits / (hits + misses)) : "–";
  $("hit-rate-sub").textContent = `${fmtInt(hits)} hits, ${fmtInt(misses)} misses (${scope})`;
}

function renderInfo() {
  const i = state.info;
  if (!i) return;
  $("cache-name").textContent = i.name;
  const badge = $("cache-state");
  badge.textContent = i.enabled ? "enabled" : "disabled";
  badge.className = "badge " + (i.enabled ? "on" : "off");
  $("enable-toggle").checked = i.enabled;
  $("fact-servers").textContent = i.servers;
  $("fact-plan").textContent = `${i.plan} (${fmtMB(i.memory_limit)})`;
  $("fact-id").textContent = String(i.cache_id);
}

// series are what the graph can show, computed from consecutive samples.
const SERIES = {
  hitrate: { label: "Hit rate (%)", f: (a, b) => { const h = b.get_hits - a.get_hits, m = b.get_misses - a.get_misses; return h + m ? (100 * h) / (h + m) : null; } },
  usage: { label: "Usage (MB)", f: (a, b) => (b.total_malloced ?? b.bytes) / MB },
  items: { label: "Items", f: (a, b) => b.curr_items },
  newevictions: { label: "New evictions", f: (a, b) => Math.max(0, b.evictions - a.evictions) },
  connections: { label: "Live connections", f: (a, b) => b.curr_connections },
  gets: { label: "Gets per interval", f: (a, b) => Math.max(0, b.cmd_get - a.cmd_get) },
  sets: { label: "Sets per interval", f: (a, b) => Math.max(0, b.cmd_set - a.cmd_set) },
};

function renderChart() {
  const hist = samples();
  const el = $("chart");
  const ka = $("series-a").value, kb = $("series-b").value;
  $("chart-empty").hidden = hist.length >= 2;
  if (hist.length < 2) {
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    return;
  }
  const xs = [], ya = [], yb = [];
  for (let i = 1; i < hist.length; i++) {
    xs.push(hist[i].t / 1000);
    ya.push(SERIES[ka].f(hist[i - 1].s, hist[i].s));
    yb.push(SERIES[kb].f(hist[i - 1].s, hist[i].s));
  }
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    width, height: 260,
    scales: { x: { time: true }, a: {}, b: {} },
    series: [
      {},
      { label: SERIES[ka].label, scale: "a", stroke: "#d97706", width: 2, spanGaps: true },
      { label: SERIES[kb].label, scale: "b", stroke: "#2563eb", width: 2, spanGaps: true },
    ],
    axes: [{}, { scale: "a", label: SERIES[ka].label }, { scale: "b", side: 1, label: SERIES[kb].label, grid: { show: false } }],
  };
  if (state.chart) state.chart.destroy();
  el.textContent = "";
  state.chart = new uPlot(opts, [xs, ya, yb], el);
}

function credRow(c) {
  const tr = document.createElement("tr");
  tr.dataset.testid = `cred-row-${c.id}`;
  tr.setAttribute("data-testid", `cred-row-${c.id}`);
  const user = document.createElement("td");
  user.className = "user";
  user.textContent = c.sasl_username + " ";
  if (c.primary) {
    const tag = document.createElement("span");
    tag.className = "primary-tag";
    tag.textContent = "primary";
    tag.setAttribute("data-testid", `cred-primary-${c.id}`);
    user.appendChild(tag);
  }
  tr.appendChild(user);
  for (const cap of ["write", "flush", "api"]) {
    const td = document.createElement("td");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = c[`${cap}_capability`];
    box.setAttribute("data-testid", `cred-${cap}-${c.id}`);
    box.setAttribute("aria-label", `${cap} capability of ${c.sasl_username}`);
    box.addEventListener("change", () => setCapability(c, cap, box));
    td.appendChild(box);
    tr.appendChild(td);
  }
  const ops = document.createElement("td");
  ops.className = "ops";
  if (!c.primary) {
    const promote = document.createElement("button");
    promote.className = "small plain";
    promote.textContent = "Promote";
    promote.setAttribute("data-testid", `cred-promote-${c.id}`);
    promote.addEventListener("click", () => act(`Promoted ${c.sasl_username} to primary`, () =>
      api("POST", `/api/v1/${state.id}/credentials/primary/${c.id}`), loadCreds));
    ops.appendChild(promote);
  }
  const del = document.createElement("button");
  del.className = "small danger";
  del.textContent = "Delete";
  del.setAttribute("data-testid", `cred-delete-${c.id}`);
  if (c.primary && state.creds.length > 1) {
    // The API refuses it (403): a primary goes last, or after another's promotion.
    del.disabled = true;
    del.title = "Promote another credential first";
  }
  del.addEventListener("click", () => {
    if (!window.confirm(`Delete credential ${c.sasl_username}? Clients using it are disconnected.`)) return;
    act(`Deleted ${c.sasl_username}`, () => api("DELETE", `/api/v1/${state.id}/credentials/${c.id}`), loadCreds);
  });
  ops.appendChild(del);
  tr.appendChild(ops);
  return tr;
}

function renderCreds() {
  const body = $("cred-rows");
  body.textContent = "";
  for (const c of state.creds) body.appendChild(credRow(c));
}

async function setCapability(c, cap, box) {
  box.disabled = true;
  const body = { [`${cap}_capability`]: box.checked };
  await act(`Saved: ${cap} ${box.checked ? "allowed" : "removed"} for ${c.sasl_username}`,
    () => api("PATCH", `/api/v1/${state.id}/credentials/${c.id}`, body), loadCreds);
  box.disabled = false;
}

// act runs an API action, reports it in the status line (or the error
// box), then reloads what it changed.
async function act(done, fn, reload) {
  showError($("dash-error"), null);
  try {
    const res = await fn();
    setStatus(done);
    if (reload) await reload();
    return res;
  } catch (err) {
    setStatus("");
    showError($("dash-error"), err);
    if (reload) await reload().catch(() => {});
    return null;
  }
}

async function loadStats() {
  state.stats = sumStats(await api("GET", `/api/v1/${state.id}/stats`));
  renderStats();
}

async function loadHistory() {
  state.history = await api("GET", `/api/v1/${state.id}/history`);
  renderStats();
  renderChart();
}

async function loadInfo() {
  state.info = await api("GET", `/api/v1/${state.id}`);
  renderInfo();
}

async function loadCreds() {
  state.creds = await api("GET", `/api/v1/${state.id}/credentials`);
  renderCreds();
}

async function refreshAll() {
  showError($("dash-error"), null);
  try {
    await Promise.all([loadInfo(), loadStats(), loadHistory(), loadCreds()]);
  } catch (err) {
    showError($("dash-error"), err);
  }
}

async function login(ev) {
  ev.preventDefault();
  const user = $("login-user").value.trim(), pass = $("login-pass").value;
  state.auth = "Basic " + btoa(`${user}:${pass}`);
  showError($("login-error"), null);
  $("login-submit").disabled = true;
  try {
    const res = await api("GET", "/api/v1/login");
    state.id = res.cache_id;
    $("login-view").hidden = true;
    $("dash-view").hidden = false;
    $("cache-title").hidden = false;
    $("top-actions").hidden = false;
    await refreshAll();
    state.timers.push(setInterval(() => loadStats().catch((e) => showError($("dash-error"), e)), 10000));
    state.timers.push(setInterval(() => loadHistory().catch((e) => showError($("dash-error"), e)), 60000));
  } catch (err) {
    state.auth = null;
    showError($("login-error"), err);
  } finally {
    $("login-submit").disabled = false;
  }
}

function logout(ev) {
  if (ev) ev.preventDefault();
  state.timers.forEach(clearInterval);
  Object.assign(state, { auth: null, id: null, info: null, stats: null, history: [], creds: [], timers: [] });
  if (state.chart) { state.chart.destroy(); state.chart = null; }
  $("dash-view").hidden = true;
  $("cache-title").hidden = true;
  $("top-actions").hidden = true;
  $("login-view").hidden = false;
  $("login-pass").value = "";
  setStatus("");
}

function setup() {
  const [a, b] = [$("series-a"), $("series-b")];
  for (const [key, s] of Object.entries(SERIES)) {
    a.add(new Option(s.label, key));
    b.add(new Option(s.label, key));
  }
  a.value = "hitrate";
  b.value = "usage";
  a.addEventListener("change", renderChart);
  b.addEventListener("change", renderChart);
  window.addEventListener("resize", () => { if (state.id) renderChart(); });

  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("refresh").addEventListener("click", async () => { await refreshAll(); setStatus("Refreshed"); });

  $("cred-create").addEventListener("click", async () => {
    const c = await act("Created a credential: copy its password now, it is shown only once",
      () => api("POST", `/api/v1/${state.id}/credentials`, {}), loadCreds);
    const box = $("new-password");
    if (!c) return;
    box.textContent = "";
    box.dataset.credId = String(c.id);
    const strong = document.createElement("b");
    strong.textContent = "New credential ";
    box.appendChild(strong);
    const code = document.createElement("code");
    code.textContent = `${c.sasl_username}:${c.sasl_password}`;
    box.appendChild(code);
    box.hidden = false;
  });

  $("enable-toggle").addEventListener("change", (ev) => {
    const on = ev.target.checked;
    act(on ? "Cache enabled" : "Cache disabled: its connections were closed",
      () => api("POST", `/api/v1/${state.id}/settings`, { enabled: on }), loadInfo);
  });

  $("flush-button").addEventListener("click", () => {
    if (!window.confirm("Flush the cache? Every item is removed.")) return;
    act("Cache flushed", () => api("POST", `/api/v1/${state.id}/flush`), loadStats);
  });
}

setup();
