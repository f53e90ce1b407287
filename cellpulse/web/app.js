// cellpulse ops page: cells ranked over a window, the alert queue grouped into incidents,
// one cell's anomaly score and KPIs over any range, alert actions.
// Plain browser JavaScript with no third-party code, so the page works offline.
"use strict";

const REFRESH_MS = 60000;
const TOKEN_KEY = "cellpulse-token";
const state = {
  offset: 0, limit: 25, total: 0, newest: null,
  cell: null, alert: null, detail: null, range: null, alertId: null,
};
const $ = (id) => document.getElementById(id);

// Kept in localStorage so a link from a webhook opened in a new tab needs no new paste;
// "Forget token" removes it from this browser.
function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

async function api(path, options = {}) {
  const headers = { "Authorization": "Bearer " + token(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) $("token-help").hidden = false;
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(detail || response.statusText);
  }
  return body;
}

// Numbers as people read them: a few significant digits, never a float's full tail.
function fmt(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  return Number(value).toFixed(digits);
}

function when(ts) {  // "01-13 09:15" (UTC)
  return ts ? new Date(ts).toISOString().slice(5, 16).replace("T", " ") : "–";
}

function age(ts) {  // time since `ts`, counted to the newest scored ROP (the data's "now")
  if (!ts || !state.newest) return "";
  const minutes = Math.max(0, Math.round((Date.parse(state.newest) - Date.parse(ts)) / 60000));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

// datetime-local inputs hold UTC wall time without a zone.
function toInput(ts) { return ts ? new Date(ts).toISOString().slice(0, 16) : ""; }
function fromInput(id) { const v = $(id).value; return v ? v + ":00Z" : null; }

function td(tr, text, className) {
  const cell = tr.appendChild(document.createElement("td"));
  cell.textContent = text;
  if (className) cell.className = className;
  return cell;
}

// ---------------------------------------------------------------- ranking over a window

async function loadRanking() {
  $("message").textContent = "";
  const params = new URLSearchParams({
    kind: $("kind").value, limit: state.limit, offset: state.offset,
  });
  if ($("region").value.trim()) params.set("region", $("region").value.trim());
  if ($("band").value.trim()) params.set("band", $("band").value.trim());
  if (fromInput("win-start")) params.set("start", fromInput("win-start"));
  if (fromInput("win-end")) params.set("end", fromInput("win-end"));
  let data;
  try {
    data = await api("/api/cells/top?" + params);
  } catch (err) {
    $("message").textContent = err.message;
    return false;
  }
  state.total = data.total;
  $("window").textContent = data.start
    ? `Window ${when(data.start)} – ${when(data.end)} UTC: ` + ($("kind").value === "anomaly"
      ? "each cell's worst anomaly score in it" : "each cell's peak congestion probability in it")
    : "";
  const body = $("cells").querySelector("tbody");
  body.replaceChildren();
  data.items.forEach((row, i) => {
    const tr = document.createElement("tr");
    tr.dataset.cell = row.cell_id;
    if (row.anomalous_rops > 0 || row.alert_status === "open") tr.classList.add("hot");
    td(tr, state.offset + i + 1, "num");
    td(tr, row.cell_id);
    td(tr, row.site_id || "");
    td(tr, row.region || "");
    td(tr, row.band || "");
    td(tr, fmt(row.anomaly_score), "num worst");
    td(tr, when(row.worst_at), "time");
    td(tr, (row.anomaly_kpis || []).join(", "));
    td(tr, fmt(row.congestion_prob), "num peak");
    td(tr, when(row.peak_at), "time");
    const alertCell = td(tr, row.alert_status
      ? `${row.alert_status} · ${row.alert_type || "?"} (${row.alert_severity || "?"})` : "");
    if (row.alert_status) alertCell.className = "status-" + row.alert_status;
    tr.addEventListener("click", () => openCell(row.cell_id, { alertId: row.alert_id }));
    body.appendChild(tr);
  });
  const last = Math.min(state.offset + state.limit, state.total);
  $("page").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "no cells";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= state.total;
  return true;
}

// ---------------------------------------------------------------- the alert queue

async function loadQueue() {
  const params = new URLSearchParams({ limit: 100 });
  if ($("q-status").value) params.set("status", $("q-status").value);
  if ($("q-severity").value) params.set("severity", $("q-severity").value);
  if ($("q-region").value.trim()) params.set("region", $("q-region").value.trim());
  if ($("q-type").value) params.set("alert_type", $("q-type").value);
  let data;
  try {
    data = await api("/api/incidents?" + params);
  } catch (err) {
    $("q-result").textContent = err.message;
    return;
  }
  const body = $("incidents").querySelector("tbody");
  const selected = new Set(selectedAlerts());
  body.replaceChildren();
  $("q-all").checked = false;
  data.items.forEach((incident) => {
    const tr = document.createElement("tr");
    tr.className = "incident";
    tr.dataset.incident = incident.incident_id;
    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.className = "pick";
    pick.value = incident.alert_ids.join(" ");
    pick.checked = incident.alert_ids.every((a) => selected.has(a));
    tr.appendChild(document.createElement("td")).appendChild(pick);
    const sev = td(tr, "");
    sev.appendChild(document.createElement("span")).textContent = incident.severity || "?";
    sev.firstChild.className = "sev-" + incident.severity;
    td(tr, incident.alert_type || "");
    td(tr, incident.site_id || "");
    const cells = td(tr, "", "cells");
    if (incident.cells.length > 1) {
      const tag = cells.appendChild(document.createElement("span"));
      tag.className = "incident-tag";
      tag.textContent = `incident · ${incident.cells.length} cells: `;
    }
    incident.alerts.forEach((a) => {
      const link = cells.appendChild(document.createElement("button"));
      link.type = "button";
      link.className = "cell-link";
      link.textContent = a.cell_id;
      link.addEventListener("click", () => openCell(a.cell_id, { alertId: a.alert_id }));
    });
    td(tr, incident.status, "status-" + incident.status);
    const opened = incident.opened_at ? `${when(incident.opened_at)} (${age(incident.opened_at)})` : "–";
    td(tr, opened);
    td(tr, fmt(incident.peak_score, 1), "num");
    body.appendChild(tr);
  });
  $("q-summary").textContent = `${data.total} incident(s) from ${data.alerts} alert(s)`
    + (data.truncated ? " (the oldest shown; narrow the filters)" : "");
}

function selectedAlerts() {
  return [...document.querySelectorAll("#incidents .pick:checked")]
    .flatMap((box) => box.value.split(" ").filter(Boolean));
}

async function actOnSelection(action) {
  const ids = selectedAlerts();
  const by = $("q-actor").value.trim();
  if (!ids.length) { $("q-result").textContent = "Select one or more alerts first."; return; }
  if (!by) { $("q-result").textContent = "Enter your name before acting on alerts."; return; }
  localStorage.setItem("cellpulse-actor", by);
  try {
    const answer = await api("/api/alerts/actions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ action, alert_ids: ids, by, comment: $("q-comment").value.trim() || null }),
    });
    const refused = answer.results.filter((r) => !r.ok);
    const done = { acknowledge: "acknowledged", close: "closed", false_alarm: "marked false alarm" };
    $("q-result").textContent = `${answer.done} of ${ids.length} alert(s) ${done[action]}`
      + (refused.length ? `; refused: ${refused.map((r) => `${r.alert_id} (${r.detail})`).join("; ")}` : "");
    document.querySelectorAll("#incidents .pick").forEach((box) => { box.checked = false; });
  } catch (err) {
    $("q-result").textContent = err.message;
  }
  refresh();
}

// ---------------------------------------------------------------- one cell

async function openCell(cellId, { alertId = null, start = null, end = null } = {}) {
  const params = new URLSearchParams();
  if (start) params.set("start", start);
  if (end) params.set("end", end);
  if (alertId) params.set("alert_id", alertId);
  let detail;
  try {
    detail = await api("/api/cells/" + encodeURIComponent(cellId) + "?" + params);
  } catch (err) {
    $("message").textContent = err.message;
    return;
  }
  state.cell = cellId;
  state.alertId = alertId;
  state.detail = detail;
  state.alert = detail.alert;
  history.replaceState(null, "", "#cell=" + encodeURIComponent(cellId)
    + (alertId ? "&alert=" + encodeURIComponent(alertId) : ""));
  $("cell").hidden = false;
  document.querySelector("main").classList.remove("wide");
  $("cell-title").textContent = "Cell " + cellId;
  $("cell-start").value = toInput(detail.start);
  $("cell-end").value = toInput(detail.end);
  showAlert();
  const select = $("kpi");
  const previous = select.value;
  select.replaceChildren();
  const unit = (name) => detail.kpi_units[name] ? ` [${detail.kpi_units[name]}]` : "";
  detail.watched_kpis.forEach((name) => select.add(new Option(`${name}${unit(name)} with expected band`, name)));
  Object.keys(detail.kpi_units)
    .filter((name) => !detail.watched_kpis.includes(name))
    .forEach((name) => select.add(new Option(name + unit(name), name)));
  const driving = (state.alert && state.alert.kpis || []).find((k) => detail.watched_kpis.includes(k));
  select.value = [...select.options].some((o) => o.value === previous) ? previous
    : (driving || (select.options[0] && select.options[0].value));
  drawScores();
  drawChart();
}

function showAlert() {
  const a = state.alert;
  $("cell-alert").textContent = a
    ? `Alert ${a.alert_id}: ${a.severity || ""} ${a.alert_type || ""}, ${a.status}, `
      + `opened ${when(a.opened_at)}, last anomalous ${when(a.last_anomalous_at)}, `
      + `peak score ${fmt(a.peak_score, 1)}`
      + (a.acknowledged_by ? `, ${a.status} by ${a.acknowledged_by}` : "")
      + ((a.kpis || []).length ? ` — driven by ${a.kpis.join(", ")}` : "")
    : "No alert on this cell in this period.";
  $("cell-alert").className = a ? "status-" + a.status : "";
  const active = !!a && (a.status === "open" || a.status === "acknowledged");
  $("alert-actions").hidden = !active;
  $("ack").disabled = !a || a.status !== "open";
}

async function act(action) {
  // The buttons show only for an open or acknowledged alert; a stale click does nothing.
  if (!state.alert || !["open", "acknowledged"].includes(state.alert.status)) return;
  const by = $("actor").value.trim();
  if (!by) { $("message").textContent = "Enter your name before acting on an alert."; return; }
  localStorage.setItem("cellpulse-actor", by);
  try {
    state.alert = await api(`/api/alerts/${encodeURIComponent(state.alert.alert_id)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ by, comment: $("comment").value.trim() || null }),
    });
    showAlert();
    refresh();
  } catch (err) {
    $("message").textContent = err.message;
  }
}

// ---------------------------------------------------------------- charts (SVG)

function svg(tag, attrs, title) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
  if (title) el.appendChild(svg("title", {})).textContent = title;
  return el;
}

// An axis that fits the values (with a little room), on round ticks: never forced to 0.
function niceAxis(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { const pad = Math.max(Math.abs(lo) * 0.01, 0.5); lo -= pad; hi += pad; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  const raw = (hi - lo) / 4, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) ticks.push(t);
  const digits = Math.max(0, -Math.floor(Math.log10(step)) + (step / mag === 2.5 ? 1 : 0));
  return { lo, hi, ticks, digits };
}

function frame(chart, H, t0, t1, axis, unit) {
  const W = 900, L = 70, R = 50, T = 12, B = 28;
  const x = (t) => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => H - B - (H - T - B) * (v - axis.lo) / Math.max(1e-9, axis.hi - axis.lo);
  chart.setAttribute("data-ymin", axis.lo);
  chart.setAttribute("data-ymax", axis.hi);
  chart.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
  chart.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  axis.ticks.forEach((v) => {
    chart.appendChild(svg("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), stroke: "#eceff3" }));
    const label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, class: "ytick" });
    label.textContent = v.toFixed(axis.digits);
    chart.appendChild(label);
  });
  if (unit) {
    const label = svg("text", { x: 12, y: T + (H - T - B) / 2, "font-size": 11, class: "unit",
                                transform: `rotate(-90 12 ${T + (H - T - B) / 2})`, "text-anchor": "middle" });
    label.textContent = unit;
    chart.appendChild(label);
  }
  const steps = 4;
  for (let i = 0; i <= steps; i++) {
    const t = t0 + (t1 - t0) * i / steps;
    const label = svg("text", { x: x(t), y: H - 8, "text-anchor": "middle", "font-size": 11 });
    label.textContent = when(t);
    chart.appendChild(label);
  }
  return { x, y, W, L, R, T, B, H };
}

function linePath(points, x, y) {
  // Gaps (missing ROPs) break the line rather than bridging them.
  return points.map((p, i) => (i && p[0] - points[i - 1][0] <= state.gapMs ? "L" : "M")
    + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join("");
}

function timeSpan() {
  const { start, end } = state.detail;
  return [Date.parse(start), Date.parse(end)];
}

function drawScores() {
  const chart = $("score-chart");
  chart.replaceChildren();
  const scores = state.detail.scores;
  const [t0, t1] = timeSpan();
  state.gapMs = 2.5 * medianStep(scores.map((s) => Date.parse(s.ts)));
  const points = scores.filter((s) => s.anomaly_score !== null).map((s) => [Date.parse(s.ts), s.anomaly_score]);
  const axis = niceAxis(points.map((p) => p[1]).concat([0]));
  const f = frame(chart, 170, t0, t1, axis, "spreads");
  const yp = (p) => f.H - f.B - (f.H - f.T - f.B) * p;
  [0, 0.5, 1].forEach((p) => {
    const label = svg("text", { x: f.W - f.R + 6, y: yp(p) + 4, "font-size": 11, fill: "#8e44ad" });
    label.textContent = p.toFixed(1);
    chart.appendChild(label);
  });
  const congestion = scores.filter((s) => s.congestion_prob !== null).map((s) => [Date.parse(s.ts), s.congestion_prob]);
  if (congestion.length) {
    chart.appendChild(svg("path", { d: linePath(congestion, f.x, yp), fill: "none", stroke: "#8e44ad",
                                    "stroke-width": 1, "stroke-dasharray": "4 3", class: "congestion-line" }));
  }
  if (points.length) {
    chart.appendChild(svg("path", { d: linePath(points, f.x, f.y), fill: "none", stroke: "#2e7d32",
                                    "stroke-width": 1.5, class: "score-line" }));
  }
  scores.forEach((s) => {
    if (s.anomaly_score === null) return;
    const t = Date.parse(s.ts);
    const text = `${when(s.ts)} UTC · anomaly score ${fmt(s.anomaly_score)}`
      + (s.congestion_prob !== null ? ` · P(congested) ${fmt(s.congestion_prob)}` : "")
      + ((s.anomaly_kpis || []).length ? ` · driven by ${s.anomaly_kpis.join(", ")}` : "");
    chart.appendChild(svg("circle", { cx: f.x(t), cy: f.y(s.anomaly_score), r: s.is_anomaly ? 3.5 : 3,
                                      class: s.is_anomaly ? "anomaly-marker score-pt" : "pt score-pt",
                                      fill: s.is_anomaly ? "#c62828" : "transparent" }, text));
  });
}

function medianStep(times) {
  const steps = times.slice(1).map((t, i) => t - times[i]).filter((d) => d > 0).sort((a, b) => a - b);
  return steps.length ? steps[Math.floor(steps.length / 2)] : 15 * 60000;
}

function drawChart() {
  const chart = $("chart");
  chart.replaceChildren();
  const { kpis, scores, expected, kpi_units: units } = state.detail;
  const name = $("kpi").value;
  if (!name) return;
  const unit = units[name] || "";
  const watched = state.detail.watched_kpis.includes(name);
  const source = watched ? expected : kpis;
  const rows = source.filter((r) => r[name] !== null && r[name] !== undefined);
  const points = rows.map((r) => [Date.parse(r.ts), r[name]]);
  const band = watched
    ? expected.filter((r) => r[name + "_low"] !== null)
        .map((r) => [Date.parse(r.ts), r[name + "_low"], r[name + "_high"], r[name + "_expected"]])
    : [];
  const [t0, t1] = timeSpan();
  const values = points.map((p) => p[1]).concat(band.flatMap((b) => [b[1], b[2]]));
  const axis = niceAxis(values);
  const f = frame(chart, 280, t0, t1, axis, `${name}${unit ? " [" + unit + "]" : ""}`);
  if (band.length) {
    const upper = band.map((b) => [b[0], b[2]]);
    const lower = band.map((b) => [b[0], b[1]]).reverse();
    const outline = upper.map((p, i) => (i ? "L" : "M") + f.x(p[0]).toFixed(1) + " " + f.y(p[1]).toFixed(1)).join("")
      + lower.map((p) => "L" + f.x(p[0]).toFixed(1) + " " + f.y(p[1]).toFixed(1)).join("") + "Z";
    chart.appendChild(svg("path", { d: outline, fill: "#1f5fbf", "fill-opacity": 0.12,
                                    stroke: "none", class: "expected-band" }));
    chart.appendChild(svg("path", { d: linePath(band.map((b) => [b[0], b[3]]), f.x, f.y), fill: "none",
                                    stroke: "#1f5fbf", "stroke-opacity": 0.5,
                                    "stroke-dasharray": "2 3", class: "expected-line" }));
  }
  if (points.length) {
    chart.appendChild(svg("path", { d: linePath(points, f.x, f.y), fill: "none", stroke: "#1f5fbf",
                                    "stroke-width": 1.5, class: "kpi-line" }));
  }
  const anomalous = new Set(scores.filter((s) => s.is_anomaly).map((s) => Date.parse(s.ts)));
  const digits = Math.max(2, axis.digits);
  rows.forEach((r) => {
    const t = Date.parse(r.ts);
    const hit = anomalous.has(t);
    const text = `${when(r.ts)} UTC · ${name} ${fmt(r[name], digits)} ${unit}`
      + (watched && r[name + "_expected"] !== null
        ? ` · expected ${fmt(r[name + "_expected"], digits)} (band ${fmt(r[name + "_low"], digits)} – ${fmt(r[name + "_high"], digits)})`
        : "")
      + (hit ? " · anomalous" : "");
    chart.appendChild(svg("circle", { cx: f.x(t), cy: f.y(r[name]), r: hit ? 3.5 : 3,
                                      class: hit ? "anomaly-marker kpi-pt" : "pt kpi-pt",
                                      fill: hit ? "#c62828" : "transparent" }, text));
  });
}

// ---------------------------------------------------------------- refresh, token, wiring

async function refresh() {
  const health = await fetch("/health").then((r) => r.json()).catch(() => ({}));
  state.newest = health.latest_ts || null;
  $("freshness").textContent = health.latest_ts ? "scores up to " + when(health.latest_ts) + " UTC" : "";
  const ok = await loadRanking();
  await loadQueue();
  if (ok) $("updated").textContent = "updated at " + new Date().toTimeString().slice(0, 8);
}

function forgetToken() {
  localStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  $("cells").querySelector("tbody").replaceChildren();
  $("incidents").querySelector("tbody").replaceChildren();
  $("cell").hidden = true;
  document.querySelector("main").classList.add("wide");
  $("token-help").hidden = false;
}

function init() {
  $("token").value = token();
  $("token-help").hidden = !!token();
  const actor = localStorage.getItem("cellpulse-actor") || "";
  $("actor").value = actor;
  $("q-actor").value = actor;
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-help").hidden = !!token();
    state.offset = 0;
    refresh();
  });
  $("forget").addEventListener("click", forgetToken);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadRanking(); });
  $("win-reset").addEventListener("click", () => {
    $("win-start").value = ""; $("win-end").value = ""; state.offset = 0; loadRanking();
  });
  $("queue-filters").addEventListener("submit", (e) => { e.preventDefault(); loadQueue(); });
  $("q-all").addEventListener("change", () => {
    document.querySelectorAll("#incidents .pick").forEach((box) => { box.checked = $("q-all").checked; });
  });
  $("q-ack").addEventListener("click", () => actOnSelection("acknowledge"));
  $("q-close").addEventListener("click", () => actOnSelection("close"));
  $("q-false").addEventListener("click", () => actOnSelection("false_alarm"));
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadRanking(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; loadRanking(); });
  $("kpi").addEventListener("change", drawChart);
  $("cell-range").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.cell) openCell(state.cell, { start: fromInput("cell-start"), end: fromInput("cell-end") });
  });
  $("cell-default").addEventListener("click", () => {
    if (state.cell) openCell(state.cell, { alertId: state.alertId });
  });
  $("ack").addEventListener("click", () => act("acknowledge"));
  $("false-alarm").addEventListener("click", () => act("false_alarm"));
  $("close").addEventListener("click", () => act("close"));
  setInterval(() => { if ($("auto").checked && token()) refresh(); }, REFRESH_MS);
  if (token()) {
    refresh();
    // Links from Prefect artifacts and webhooks open a cell directly: /#cell=<id>[&alert=<id>]
    const linked = new URLSearchParams(location.hash.slice(1));
    if (linked.get("cell")) openCell(linked.get("cell"), { alertId: linked.get("alert") });
  }
}

init();
