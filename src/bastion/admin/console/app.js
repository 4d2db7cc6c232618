// Bastion console: plain JS, no build step. Every piece of data is inserted with textContent
// (events carry attacker-controlled text: paths, evidence), never as HTML.
"use strict";

const state = { csrf: null, tab: "overview", timer: null, lastTime: null, seen: new Set(), paused: false, entity: null };
const $ = (sel) => document.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, opts = {}) {
  const headers = { "Accept": "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method && opts.method !== "GET" && state.csrf) headers["X-Bastion-CSRF"] = state.csrf;
  const resp = await fetch(path, { method: opts.method || "GET", headers, credentials: "same-origin",
                                   body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
  if (resp.status === 401 && path !== "/api/v1/login") { showLogin(); throw new Error("signed out"); }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.detail || data.title || ("HTTP " + resp.status));
  return data;
}

const fmtTime = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "-";
const fmtDate = (t) => t ? new Date(t * 1000).toLocaleString() : "-";
const badge = (action) => h("span", { class: "badge a-" + action }, action);
function fmtDur(s) {
  if (s === null || s === undefined) return "permanent";
  if (s < 120) return s + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  if (s < 172800) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}
function fill(tbody, rows) { tbody.replaceChildren(...rows); }

// --- login -------------------------------------------------------------------------------------

function showLogin() {
  stopTimer();
  $("#tabs").hidden = true; $("#logout").hidden = true;
  document.querySelectorAll(".tab").forEach((s) => { s.hidden = true; });
  $("#login").hidden = false;
  api("/api/v1/login").then((d) => { $("#code-row").hidden = !d.totp; }).catch(() => {});
  $("#login-token").focus();
}

async function login(ev) {
  ev.preventDefault();
  $("#login-error").textContent = "";
  try {
    const d = await api("/api/v1/login", { method: "POST", body: { token: $("#login-token").value, code: $("#login-code").value } });
    state.csrf = d.csrf;
    $("#login-token").value = ""; $("#login-code").value = "";
    enter();
  } catch (e) { $("#login-error").textContent = e.message; }
}

async function logout() {
  try { await api("/api/v1/logout", { method: "POST" }); } catch (e) { /* already out */ }
  state.csrf = null;
  showLogin();
}

function enter() {
  $("#login").hidden = true; $("#tabs").hidden = false; $("#logout").hidden = false;
  show(state.tab);
}

// --- tabs --------------------------------------------------------------------------------------

function stopTimer() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }

function show(tab) {
  state.tab = tab;
  stopTimer();
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => { s.hidden = s.id !== tab; });
  const load = { overview: loadOverview, live: pollEvents, attackers: loadEntities, catalog: loadCatalog, decisions: loadDecisions }[tab];
  const every = { overview: 5000, live: 2000, attackers: 10000, catalog: 15000, decisions: 10000 }[tab];
  const run = () => load().catch((e) => console.warn(tab, e.message));
  run();
  state.timer = setInterval(run, every);
}

// --- overview ----------------------------------------------------------------------------------

const traffic = [];  // [time, exchanges, blocked] at each overview poll: the rates of the last 10 minutes

async function loadOverview() {
  const s = await api("/api/v1/stats");
  const now = Date.now() / 1000;
  traffic.push([now, s.exchanges, s.blocked]);
  while (traffic.length && traffic[0][0] < now - 600) traffic.shift();
  const rate = (i) => traffic.slice(1).map((p, k) => [p[0], Math.max(0, (p[i] - traffic[k][i]) / Math.max(0.001, p[0] - traffic[k][0]))]);
  $("#traffic").replaceChildren(chart([{ points: rate(1), cls: "req" }, { points: rate(2), cls: "blk" }],
    { width: 860, label: "requests/s (blue) and blocked/s (red), last 10 minutes", empty: "measuring the request rate…" }));
  $("#mode").textContent = s.mode + (s.workers > 1 ? " · " + s.workers + " workers" : "");
  $("#mode").className = "badge " + (s.mode === "enforce" ? "a-allow" : "a-log");
  const errs = Object.values(s.detector_errors || {}).reduce((a, b) => a + b, 0);
  const cards = [["requests", s.exchanges], ["blocked", s.blocked], ["flagged", s.flagged], ["detector errors", errs],
                 ["events stored", s.events ? s.events.written : "-"], ["events dropped", s.events ? s.events.dropped : "-"],
                 ["active decisions", s.decisions_active ?? "-"], ["alerts sent", s.alerts ? s.alerts.sent : "-"],
                 ["uptime", fmtDur(Math.round(s.uptime))]];
  $("#cards").replaceChildren(...cards.map(([k, v]) => h("div", { class: "card" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k))));
  fill($("#top-rules tbody"), s.top_rules.map((r) => h("tr", {}, h("td", {}, r.rule), h("td", { class: "num" }, r.count))));
  fill($("#top-endpoints tbody"), s.endpoints.map((e) => h("tr", {}, h("td", {}, e.method), h("td", {}, e.route),
    h("td", { class: "num" }, e.requests), h("td", { class: "num" }, e.blocked), h("td", { class: "num" }, e.mean_ms))));
}

// --- live traffic ------------------------------------------------------------------------------

function eventRow(ev) {
  const details = h("tr", { hidden: "" }, h("td", { colspan: "9", class: "findings" },
    (ev.findings || []).map((f) => `${f.rule_id}  ${f.zone || ""}${f.name ? ":" + f.name : ""}  ${f.message || ""}${f.evidence ? "  «" + f.evidence + "»" : ""}`).join("\n") || "no findings"));
  const row = h("tr", { class: "click event", "data-request-id": ev.request_id, onclick: () => { details.hidden = !details.hidden; } },
    h("td", {}, fmtTime(ev.time)), h("td", {}, badge(ev.action)), h("td", { class: "num" }, ev.status),
    h("td", {}, ev.client_ip), h("td", {}, ev.method), h("td", {}, ev.path), h("td", {}, (ev.rule_ids || []).join(" ")),
    h("td", { class: "num" }, ev.score), h("td", {}, ev.reason || ""));
  return [row, details];
}

async function pollEvents() {
  if (state.paused) return;
  const action = $("#live-action").value;
  const q = new URLSearchParams({ limit: "200" });
  if (action) q.set("action", action);
  if (state.lastTime !== null) q.set("since", String(state.lastTime));
  const d = await api("/api/v1/events?" + q);
  const tbody = $("#events tbody");
  const fresh = d.events.filter((e) => !state.seen.has(e.request_id));
  for (const ev of fresh.reverse()) {  // oldest first, each one on top
    state.seen.add(ev.request_id);
    tbody.prepend(...eventRow(ev));
    if (state.lastTime === null || ev.time > state.lastTime) state.lastTime = ev.time;
  }
  while (tbody.rows.length > 1000) tbody.lastElementChild.remove();
  $("#live-status").textContent = "updated " + new Date().toLocaleTimeString() + " · " + state.seen.size + " events";
}

function resetLive() {
  state.lastTime = null; state.seen.clear(); $("#events tbody").replaceChildren();
  pollEvents().catch(() => {});
}

// --- attackers ---------------------------------------------------------------------------------

async function loadEntities() {
  const d = await api("/api/v1/entities?limit=100");
  fill($("#entities tbody"), d.entities.map((e) => h("tr", { class: "click" + (state.entity === e.id ? " sel" : ""), "data-entity": e.id,
      onclick: () => { state.entity = e.id; loadEntity(e.id).catch((x) => console.warn(x)); loadEntities().catch(() => {}); } },
    h("td", {}, e.id), h("td", { class: "num" }, e.risk ?? "-"), h("td", { class: "num" }, e.events),
    h("td", { class: "num" }, e.blocked), h("td", {}, e.top_rules.join(" ")))));
  if (state.entity) await loadEntity(state.entity);
}

// Risk as the gateway computes it: a jump at each finding, exponential decay in between, up to now.
function riskPoints(e) {
  const pts = [], hl = e.half_life || 600;
  let prev = null;
  for (const p of e.risk_history) {
    if (prev) pts.push([p.time, prev.risk * Math.pow(0.5, (p.time - prev.time) / hl)]);
    pts.push([p.time, p.risk]);
    prev = p;
  }
  const now = Date.now() / 1000;
  if (prev && now > prev.time) {
    // decay step by step to now (a block resets the score: then the current value is lower still)
    for (let i = 1; i <= 20; i++) { const t = prev.time + (now - prev.time) * i / 20; pts.push([t, prev.risk * Math.pow(0.5, (t - prev.time) / hl)]); }
    pts.push([now, e.risk]);
  }
  return pts;
}

function chart(series, opts) {
  // series: [{points: [[t, v]...], cls}], opts: {threshold, label}
  const NS = "http://www.w3.org/2000/svg", W = opts.width || 420, H = 110, P = 18;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "spark"); svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const el = (tag, attrs, text) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); return e; };
  const all = series.flatMap((s) => s.points);
  if (all.length < 2) { el("text", { x: P, y: H / 2 }, opts.empty || "no data yet"); return svg; }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(t0 + 1, ...all.map((p) => p[0]));
  const top = Math.max(opts.threshold || 0, ...all.map((p) => p[1])) * 1.1 || 1;
  const x = (t) => P + (W - 2 * P) * (t - t0) / (t1 - t0), y = (v) => H - P - (H - 2 * P) * v / top;
  if (opts.threshold) { el("line", { class: "thr", x1: P, x2: W - P, y1: y(opts.threshold), y2: y(opts.threshold) }); el("text", { x: W - P - 70, y: y(opts.threshold) - 3 }, opts.thresholdLabel || String(opts.threshold)); }
  for (const s of series) el("polyline", { class: "line " + (s.cls || ""), points: s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") });
  el("text", { x: P, y: 12 }, opts.label || ""); el("text", { x: P, y: H - 4 }, fmtTime(t0)); el("text", { x: W - P - 60, y: H - 4 }, fmtTime(t1));
  return svg;
}

async function loadEntity(id) {
  const box = $("#entity-detail");
  let e;
  try { e = await api("/api/v1/entities/" + encodeURIComponent(id)); }
  catch (x) { box.replaceChildren(h("h2", {}, id), h("p", { class: "muted" }, x.message)); return; }
  const ip = (e.keys.find((k) => k.startsWith("ip:")) || "").slice(3);
  const block = ip ? h("button", { class: "danger", onclick: async () => {
      try { await api("/api/v1/decisions", { method: "POST", body: { kind: "ip", value: ip, action: "deny", duration: "4h", reason: "blocked from the console (entity " + e.id + ")" } }); await loadEntity(id); }
      catch (x) { alert(x.message); } } }, "Block " + ip + " for 4h") : null;
  const kv = h("dl", { class: "kv" },
    h("dt", {}, "risk now"), h("dd", {}, e.live ? e.risk + "  (block at " + e.thresholds.block + ", half-life " + e.half_life + "s)"
                                              : "not tracked by this gateway process (shown from stored events)"),
    h("dt", {}, "blocked until"), h("dd", {}, e.blocked_until ? fmtDate(e.blocked_until) : "not blocked"),
    h("dt", {}, "offenses"), h("dd", {}, e.offenses),
    h("dt", {}, "keys"), h("dd", {}, e.keys.join("  ")),
    h("dt", {}, "last seen"), h("dd", {}, fmtDate(e.last_seen)));
  const hist = h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "rule"), h("th", { class: "num" }, "+points"), h("th", { class: "num" }, "risk"))),
    h("tbody", {}, ...e.risk_history.slice().reverse().map((p) => h("tr", {}, h("td", {}, fmtTime(p.time)), h("td", {}, p.rule), h("td", { class: "num" }, p.points), h("td", { class: "num" }, p.risk)))));
  const decs = e.decisions.length ? h("ul", {}, ...e.decisions.map((d) => h("li", {}, `${d.action} ${d.kind} ${d.value} (${d.origin}, ${fmtDur(d.expires_in)})`))) : h("p", { class: "muted" }, "no decision");
  const evs = h("table", {}, h("tbody", {}, ...e.events.slice(0, 30).map((ev) => h("tr", {}, h("td", {}, fmtTime(ev.time)), h("td", {}, badge(ev.action)), h("td", {}, ev.method + " " + ev.path), h("td", {}, (ev.rule_ids || []).join(" "))))));
  box.replaceChildren(h("h2", {}, "Entity " + e.id), block, kv, h("h2", {}, "Risk history"),
                      chart([{ points: riskPoints(e) }], { threshold: e.thresholds.block, thresholdLabel: "block " + e.thresholds.block, empty: "no risk recorded" }), hist,
                      h("h2", {}, "Decisions"), decs, h("h2", {}, "Recent events"), evs);
}

// --- catalog -----------------------------------------------------------------------------------

async function loadCatalog() {
  const d = await api("/api/v1/catalog?limit=500");
  $("#catalog-note").textContent = `${d.total} endpoints learned from traffic (${d.source === "live" ? "live" : "from the catalog file"})`;
  fill($("#endpoints tbody"), d.endpoints.map((e) => h("tr", {},
    h("td", {}, e.method), h("td", {}, e.host), h("td", {}, e.template), h("td", { class: "num" }, e.calls),
    h("td", { class: "num" }, (e.error_rate * 100).toFixed(1) + "%"), h("td", { class: "num" }, e.p50_ms), h("td", { class: "num" }, e.p95_ms),
    h("td", {}, e.auth), h("td", {}, e.sensitive.join(" ")),
    h("td", {}, ["path", "query", "headers", "cookies"].filter((k) => e.parameters[k].length).map((k) => k + ": " + e.parameters[k].join(", ")).join("; ")))));
}

// --- decisions ---------------------------------------------------------------------------------

async function loadDecisions() {
  const d = await api("/api/v1/decisions");
  fill($("#decision-list tbody"), d.decisions.map((x) => h("tr", { "data-decision": x.id },
    h("td", {}, x.id), h("td", {}, x.kind), h("td", {}, x.value), h("td", {}, badge(x.action === "deny" ? "block" : x.action === "allow" ? "allow" : "throttle")),
    h("td", {}, x.origin), h("td", {}, fmtDur(x.expires_in)), h("td", {}, x.reason),
    h("td", {}, x.origin === "config" ? "" : h("button", { class: "danger revoke", onclick: async () => {
      try { await api("/api/v1/decisions/" + encodeURIComponent(x.id), { method: "DELETE" }); await loadDecisions(); }
      catch (e) { $("#decision-error").textContent = e.message; } } }, "Revoke")))));
}

async function addDecision(ev) {
  ev.preventDefault();
  $("#decision-error").textContent = "";
  try {
    await api("/api/v1/decisions", { method: "POST", body: { kind: $("#d-kind").value, value: $("#d-value").value,
      action: $("#d-action").value, duration: $("#d-duration").value, reason: $("#d-reason").value } });
    $("#d-value").value = ""; $("#d-reason").value = "";
    await loadDecisions();
  } catch (e) { $("#decision-error").textContent = e.message; }
}

// --- start -------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  $("#decision-form").addEventListener("submit", addDecision);
  $("#live-action").addEventListener("change", resetLive);
  $("#live-pause").addEventListener("click", () => { state.paused = !state.paused; $("#live-pause").textContent = state.paused ? "Resume" : "Pause"; });
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));
  api("/api/v1/session").then((s) => { state.csrf = s.csrf; enter(); }).catch(() => showLogin());
});
