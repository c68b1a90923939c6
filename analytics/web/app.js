// memhive dashboard: everything here goes through the analytics API
// (/api/v1/...), with the logged-in credential as HTTP Basic auth. The
// credential is kept in memory only: reloading the page logs out.
"use strict";

const $ = (id) => document.getElementById(id);
// certForm is the open certificate binding form, if any: the credential's
// id and what is typed in it, so that reloading the list keeps it.
// stats is the cache's totals over its servers, byServer each server's own.
const state = { auth: null, id: null, info: null, stats: null, byServer: {}, history: [], creds: [], chart: null, timers: [], certForm: null };

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

// sumStats adds every server's stats (one entry per server of the cache):
// in a cluster each node holds a share of the cache, so counts, bytes and
// limit_maxbytes (each node's share of the limit) add up to the cache's,
// and ratios are taken from the sums, never averaged.
function sumStats(byServer) {
  const total = {};
  for (const s of Object.values(byServer || {})) {
    for (const [k, v] of Object.entries(s)) total[k] = (total[k] || 0) + v;
  }
  return total;
}

// samples is the cache's history as totals over its servers, oldest
// first. Each server samples on its own clock, so their samples are
// grouped into rounds: a round ends where a server it already holds comes
// again. A round's totals add each server's latest sample, carrying
// forward one that missed the round, so that a late or missing server
// does not read as a drop; its time is its latest sample's. With one
// server each sample is a round of its own.
function samples() {
  const entries = state.history
    .map((e) => ({ t: Number(e.timestamp), server: e.server, stats: e.stats })) // timestamp: unix ms as a string, as in MemCachier's API
    .sort((a, b) => a.t - b.t);
  const latest = new Map();
  const out = [];
  let round = new Set(), t = null;
  const close = () => {
    if (t === null) return;
    const acc = {};
    for (const st of latest.values()) {
      for (const [k, v] of Object.entries(st)) acc[k] = (acc[k] || 0) + v;
    }
    out.push({ t, s: acc });
  };
  for (const e of entries) {
    if (round.has(e.server)) {
      close();
      round = new Set();
    }
    round.add(e.server);
    latest.set(e.server, e.stats);
    t = e.t;
  }
  close();
  return out;
}

// used is the memory a cache (or one server's share) holds: its slab
// pages, which reach the limit exactly when evictions begin; "bytes"
// counts only its items.
const used = (s) => s.total_malloced ?? s.bytes ?? 0;

function renderStats() {
  const s = state.stats;
  if (!s) return;
  const limit = s.limit_maxbytes || (state.info && state.info.memory_limit) || 0;
  // In a cluster the limit is the sum of the nodes' shares: the cache's.
  const inUse = used(s);
  const frac = limit ? inUse / limit : 0;
  $("panel-limit").textContent = `${fmtMB(inUse)} of ${fmtMB(limit)}`;
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
  renderServers();
}

// renderServers fills the per-server table, shown only when the cache has
// more than one server: with one, every row would repeat the panels.
function renderServers() {
  const names = Object.keys(state.byServer || {}).sort();
  $("servers-card").hidden = names.length < 2;
  const body = $("server-rows");
  body.textContent = "";
  if (names.length < 2) return;
  $("servers-count").textContent = `${names.length} servers`;
  for (const name of names) {
    const st = state.byServer[name] || {};
    const tr = document.createElement("tr");
    tr.setAttribute("data-testid", `server-row-${name}`);
    const lim = st.limit_maxbytes || 0;
    const cells = [
      name,
      fmtInt(st.curr_items || 0),
      `${fmtMB(used(st))} of ${fmtMB(lim)}` + (lim ? ` (${fmtPct(used(st) / lim)})` : ""),
      fmtInt(st.curr_connections || 0),
      fmtInt(st.cmd_get || 0),
      fmtInt(st.get_hits || 0),
      fmtInt(st.evictions || 0),
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 0) td.className = "server";
      else td.className = "num";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
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

// SHA-256 round constants (FIPS 180-4, 4.2.2).
const SHA256_K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

// sha256JS is SHA-256 in plain JavaScript (FIPS 180-4), for pages where
// crypto.subtle is missing: browsers give it only to secure contexts
// (HTTPS, localhost), and --http often serves plain HTTP on a LAN address.
function sha256JS(data) {
  const ror = (x, n) => (x >>> n) | (x << (32 - n));
  const H = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  // The message, a 1 bit, zeros, and its length in bits (64-bit big-endian).
  const len = Math.ceil((data.length + 9) / 64) * 64;
  const buf = new Uint8Array(len);
  buf.set(data);
  buf[data.length] = 0x80;
  const view = new DataView(buf.buffer);
  view.setUint32(len - 8, Math.floor(data.length / 0x20000000));
  view.setUint32(len - 4, (data.length * 8) >>> 0);
  const w = new Uint32Array(64);
  for (let off = 0; off < len; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      w[i] = w[i - 16] + (ror(x, 7) ^ ror(x, 18) ^ (x >>> 3)) + w[i - 7] + (ror(y, 17) ^ ror(y, 19) ^ (y >>> 10));
    }
    let [a, b, c, d, e, f, g, h] = H;
    for (let i = 0; i < 64; i++) {
      // Sums of a few 32-bit words are exact in a double; | 0 wraps them.
      const t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + SHA256_K[i] + w[i]) | 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    [a, b, c, d, e, f, g, h].forEach((v, i) => { H[i] += v; });
  }
  const out = new Uint8Array(32);
  H.forEach((v, i) => new DataView(out.buffer).setUint32(4 * i, v));
  return out;
}

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// sha256Hex is the SHA-256 of bytes in hex, by the browser's own
// implementation where it offers one.
async function sha256Hex(bytes) {
  if (window.crypto && window.crypto.subtle) {
    return toHex(new Uint8Array(await window.crypto.subtle.digest("SHA-256", bytes)));
  }
  return toHex(sha256JS(bytes));
}

// pemCertificate is the DER of the first CERTIFICATE block of a PEM text
// (a file may hold a chain, or a key too), or null when it has none.
function pemCertificate(text) {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(text);
  if (!m) return null;
  let bin;
  try {
    bin = atob(m[1].replace(/\s+/g, ""));
  } catch (e) {
    throw new Error("The PEM certificate is not valid base64.");
  }
  return Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
}

// certFingerprint reads the bind form's certificate field: a PEM
// certificate, whose fingerprint (the SHA-256 of its DER) is computed
// here, or a fingerprint as openssl prints it, which the API checks and
// normalises. Only the fingerprint leaves the page.
async function certFingerprint(text) {
  text = text.trim();
  if (!text.includes("-----BEGIN")) return text;
  const der = pemCertificate(text);
  if (!der) throw new Error("The PEM text has no CERTIFICATE block: paste the certificate, not its key.");
  return sha256Hex(der);
}

// fingerprintText writes a fingerprint as openssl does (upper-case pairs
// joined by colons), so it reads like `openssl x509 -fingerprint`'s output.
const fingerprintText = (hex) => hex.toUpperCase().match(/../g).join(":");
const shortFingerprint = (hex) => {
  const pairs = fingerprintText(hex).split(":");
  return pairs.slice(0, 4).join(":") + "…" + pairs.slice(-2).join(":");
};

// certLine shows the client certificate bound to credential c (or that
// none is), with the button that binds or unbinds its fingerprint. A CN
// binding is shown but cannot be changed here: a CN names an identity in
// the operator's CA, so only the operator binds one (admin API, CLI), and
// the analytics API refuses any request that names cert_cn.
function certLine(c) {
  const line = document.createElement("div");
  line.className = "cert";
  line.setAttribute("data-testid", `cred-cert-${c.id}`);
  const btn = document.createElement("button");
  btn.type = "button";
  btn.className = "link";
  const label = document.createElement("span");
  label.textContent = c.cert_sha256 || c.cert_cn ? "Certificate" : "No client certificate";
  line.appendChild(label);
  if (c.cert_sha256) {
    const fp = document.createElement("code");
    fp.textContent = shortFingerprint(c.cert_sha256);
    fp.title = `SHA-256 fingerprint ${fingerprintText(c.cert_sha256)}`;
    fp.setAttribute("data-testid", `cred-cert-sha256-${c.id}`);
    fp.dataset.fingerprint = c.cert_sha256;
    line.appendChild(fp);
  }
  if (c.cert_cn) {
    const cn = document.createElement("span");
    cn.textContent = `CN ${c.cert_cn} (set by the operator)`;
    cn.title = "Matches a certificate with this subject CN that the server verified against its client CAs (--tls-ca)";
    cn.setAttribute("data-testid", `cred-cert-cn-${c.id}`);
    line.appendChild(cn);
  }
  if (c.cert_sha256) {
    btn.textContent = "Unbind";
    btn.title = c.cert_cn ? "Unbinds the fingerprint; the CN stays bound" : "Unbinds the fingerprint";
    btn.setAttribute("data-testid", `cred-unbind-${c.id}`);
    btn.addEventListener("click", () => {
      if (!window.confirm(`Unbind the client certificate fingerprint of ${c.sasl_username}? Clients logged in with it are disconnected.`)) return;
      // The fingerprint alone: the API refuses cert_cn, and the CN half
      // of the binding is left as the operator set it.
      act(`Unbound the client certificate of ${c.sasl_username}`,
        () => api("PATCH", `/api/v1/${state.id}/credentials/${c.id}`, { cert_sha256: "" }), loadCreds);
    });
  } else {
    btn.textContent = "Bind…";
    btn.title = "Binds a client certificate by its fingerprint";
    btn.setAttribute("data-testid", `cred-bind-${c.id}`);
    btn.addEventListener("click", () => {
      state.certForm = { id: c.id, cert: "" };
      renderCreds();
      $(`cert-input-${c.id}`).focus();
    });
  }
  line.appendChild(btn);
  if (c.cert_cn) {
    // There is no button for the CN: the note says why, so that its
    // absence does not read as something the page forgot.
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = "Only the server's operator can change or remove the CN.";
    note.setAttribute("data-testid", `cred-cert-note-${c.id}`);
    line.appendChild(note);
  }
  return line;
}

// certFormRow is the form that binds a client certificate's fingerprint
// to credential c, a row under c's own. Its errors (the API's message)
// show in it.
function certFormRow(c) {
  const draft = state.certForm;
  const tr = document.createElement("tr");
  tr.className = "cert-form-row";
  const td = document.createElement("td");
  td.colSpan = 5;
  const form = document.createElement("form");
  form.className = "cert-form";
  form.setAttribute("data-testid", `cert-form-${c.id}`);
  form.innerHTML = `
    <label for="cert-input-${c.id}">Client certificate (PEM) or its SHA-256 fingerprint</label>
    <textarea id="cert-input-${c.id}" rows="3" spellcheck="false" autocapitalize="off"
      placeholder="-----BEGIN CERTIFICATE-----&#10;…&#10;or the fingerprint: openssl x509 -noout -fingerprint -sha256 -in client.pem"></textarea>
    <p class="sub">A PEM certificate stays in this browser: only its fingerprint is sent.</p>
    <p class="error" hidden></p>
    <div class="cert-buttons">
      <button type="submit" class="small">Bind</button>
      <button type="button" class="small plain">Cancel</button>
    </div>`;
  const text = form.querySelector("textarea");
  const err = form.querySelector(".error");
  const [submit, cancel] = form.querySelectorAll("button");
  text.value = draft.cert;
  text.setAttribute("data-testid", `cert-input-${c.id}`);
  err.setAttribute("data-testid", `cert-error-${c.id}`);
  submit.setAttribute("data-testid", `cert-submit-${c.id}`);
  text.addEventListener("input", () => { draft.cert = text.value; });
  cancel.addEventListener("click", () => { state.certForm = null; renderCreds(); });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(err, null);
    submit.disabled = true;
    try {
      const fp = await certFingerprint(text.value);
      if (!fp) throw new Error("Paste the certificate or its fingerprint.");
      // The fingerprint alone: a CN the operator bound stays.
      await api("PATCH", `/api/v1/${state.id}/credentials/${c.id}`, { cert_sha256: fp });
    } catch (e) {
      showError(err, e);
      submit.disabled = false;
      return;
    }
    state.certForm = null;
    showError($("dash-error"), null);
    setStatus(`Bound a client certificate to ${c.sasl_username}`);
    await loadCreds().catch((e) => showError($("dash-error"), e));
  });
  td.appendChild(form);
  tr.appendChild(td);
  return tr;
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
  user.appendChild(certLine(c));
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
  if (state.certForm && !state.creds.some((c) => c.id === state.certForm.id)) state.certForm = null;
  for (const c of state.creds) {
    body.appendChild(credRow(c));
    if (state.certForm && state.certForm.id === c.id) body.appendChild(certFormRow(c));
  }
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
  state.byServer = (await api("GET", `/api/v1/${state.id}/stats`)) || {};
  state.stats = sumStats(state.byServer);
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
  Object.assign(state, { auth: null, id: null, info: null, stats: null, byServer: {}, history: [], creds: [], timers: [], certForm: null });
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
