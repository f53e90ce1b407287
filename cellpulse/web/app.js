// cellpulse ops page: the ranked cells, one cell's KPIs and scores, alert actions.
// Plain browser JavaScript with no third-party code, so the page works offline.
"use strict";

const state = { offset: 0, limit: 25, total: 0, cell: null, alert: null, detail: null };
const $ = (id) => document.getElementById(id);

function token() { return sessionStorage.getItem("cellpulse-token") || ""; }

async function api(path, options = {}) {
  const headers = { "Authorization": "Bearer " + token(), ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(detail || response.statusText);
  }
  return body;
}

function fmt(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function cellText(td, text) { td.textContent = text; return td; }

async function loadRanking() {
  $("message").textContent = "";
  const params = new URLSearchParams({
    kind: $("kind").value, limit: state.limit, offset: state.offset,
  });
  if ($("region").value.trim()) params.set("region", $("region").value.trim());
  if ($("band").value.trim()) params.set("band", $("band").value.trim());
  let data;
  try {
    data = await api("/api/cells/top?" + params);
  } catch (err) {
    $("message").textContent = err.message;
    return;
  }
  state.total = data.total;
  const body = $("cells").querySelector("tbody");
  body.replaceChildren();
  data.items.forEach((row, i) => {
    const tr = document.createElement("tr");
    tr.dataset.cell = row.cell_id;
    if (row.is_anomaly || row.alert_status === "open") tr.classList.add("hot");
    const td = () => tr.appendChild(document.createElement("td"));
    cellText(td(), state.offset + i + 1).className = "num";
    cellText(td(), row.cell_id);
    cellText(td(), row.site_id || "");
    cellText(td(), row.region || "");
    cellText(td(), row.band || "");
    cellText(td(), fmt(row.anomaly_score)).className = "num";
    cellText(td(), (row.anomaly_kpis || []).join(", "));
    cellText(td(), fmt(row.congestion_prob)).className = "num";
    const alertCell = cellText(td(), row.alert_status
      ? `${row.alert_status} · ${row.alert_type || "?"} (${row.alert_severity || "?"})` : "");
    if (row.alert_status) alertCell.className = "status-" + row.alert_status;
    tr.addEventListener("click", () => openCell(row.cell_id));
    body.appendChild(tr);
  });
  const last = Math.min(state.offset + state.limit, state.total);
  $("page").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "no cells";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= state.total;
  const health = await fetch("/health").then((r) => r.json()).catch(() => ({}));
  $("freshness").textContent = health.latest_ts ? "scores up to " + health.latest_ts : "";
}

async function openCell(cellId) {
  let detail, alerts;
  try {
    [detail, alerts] = await Promise.all([
      api("/api/cells/" + encodeURIComponent(cellId)),
      api("/api/alerts?limit=1&cell_id=" + encodeURIComponent(cellId)),
    ]);
  } catch (err) {
    $("message").textContent = err.message;
    return;
  }
  state.cell = cellId;
  state.detail = detail;
  history.replaceState(null, "", "#cell=" + encodeURIComponent(cellId));
  state.alert = alerts.items.find((a) => a.status === "open" || a.status === "acknowledged")
    || alerts.items[0] || null;
  $("cell").hidden = false;
  $("cell-title").textContent = "Cell " + cellId;
  showAlert();
  const select = $("kpi");
  const previous = select.value;
  select.replaceChildren();
  detail.watched_kpis.forEach((name) => select.add(new Option(name + " (with expected band)", name)));
  Object.keys(detail.kpi_units)
    .filter((name) => !detail.watched_kpis.includes(name))
    .forEach((name) => select.add(new Option(name, name)));
  const driving = (state.alert && state.alert.kpis || []).find((k) => detail.watched_kpis.includes(k));
  select.value = [...select.options].some((o) => o.value === previous) ? previous
    : (driving || (select.options[0] && select.options[0].value));
  drawChart();
}

function showAlert() {
  const a = state.alert;
  $("cell-alert").textContent = a
    ? `Alert ${a.alert_id}: ${a.severity || ""} ${a.alert_type || ""}, ${a.status}, `
      + `opened ${a.opened_at}, peak score ${fmt(a.peak_score)}`
      + (a.acknowledged_by ? `, ${a.status} by ${a.acknowledged_by}` : "")
      + ((a.kpis || []).length ? ` — driven by ${a.kpis.join(", ")}` : "")
    : "No alert on this cell.";
  $("cell-alert").className = a ? "status-" + a.status : "";
  $("alert-actions").hidden = !a || !(a.status === "open" || a.status === "acknowledged");
  $("ack").disabled = !a || a.status !== "open";
}

async function act(action) {
  const by = $("actor").value.trim();
  if (!by) { $("message").textContent = "Enter your name before acting on an alert."; return; }
  try {
    state.alert = await api(`/api/alerts/${encodeURIComponent(state.alert.alert_id)}/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ by, comment: $("comment").value.trim() || null }),
    });
    showAlert();
    loadRanking();
  } catch (err) {
    $("message").textContent = err.message;
  }
}

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
  return el;
}

function drawChart() {
  const chart = $("chart");
  chart.replaceChildren();
  const { kpis, scores, expected } = state.detail;
  const name = $("kpi").value;
  const W = 900, H = 320, L = 60, R = 50, T = 15, B = 35;
  const watched = state.detail.watched_kpis.includes(name);
  const source = watched ? expected : kpis;
  const points = source.filter((r) => r[name] !== null).map((r) => [Date.parse(r.ts), r[name]]);
  const band = watched
    ? expected.filter((r) => r[name + "_low"] !== null)
        .map((r) => [Date.parse(r.ts), r[name + "_low"], r[name + "_high"], r[name + "_expected"]])
    : [];
  const times = source.map((r) => Date.parse(r.ts)).concat(scores.map((s) => Date.parse(s.ts)));
  if (!times.length) return;
  const t0 = Math.min(...times), t1 = Math.max(...times) || t0 + 1;
  const values = points.map((p) => p[1]).concat(band.flatMap((b) => [b[1], b[2]]));
  const v0 = Math.min(0, ...values), v1 = Math.max(1, ...values);
  const x = (t) => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
  const y = (v) => H - B - (H - T - B) * (v - v0) / Math.max(1e-9, v1 - v0);
  const yp = (p) => H - B - (H - T - B) * p;
  chart.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
  chart.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  [v0, (v0 + v1) / 2, v1].forEach((v) => {
    const label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11 });
    label.textContent = fmt(v, 1);
    chart.appendChild(label);
  });
  [0, 0.5, 1].forEach((p) => {
    const label = svg("text", { x: W - R + 6, y: yp(p) + 4, "font-size": 11, fill: "#8e44ad" });
    label.textContent = p.toFixed(1);
    chart.appendChild(label);
  });
  [t0, (t0 + t1) / 2, t1].forEach((t) => {
    const label = svg("text", { x: x(t), y: H - 12, "text-anchor": "middle", "font-size": 11 });
    label.textContent = new Date(t).toISOString().slice(5, 16).replace("T", " ");
    chart.appendChild(label);
  });
  const path = (pts, fy) => pts.map((p, i) => (i ? "L" : "M") + x(p[0]) + " " + fy(p[1])).join("");
  if (band.length) {
    const upper = band.map((b) => [b[0], b[2]]);
    const lower = band.map((b) => [b[0], b[1]]).reverse();
    const outline = path(upper, y) + lower.map((p) => "L" + x(p[0]) + " " + y(p[1])).join("") + "Z";
    chart.appendChild(svg("path", { d: outline, fill: "#1f5fbf", "fill-opacity": 0.12,
                                     stroke: "none", class: "expected-band" }));
    chart.appendChild(svg("path", { d: path(band.map((b) => [b[0], b[3]]), y), fill: "none",
                                     stroke: "#1f5fbf", "stroke-opacity": 0.5,
                                     "stroke-dasharray": "2 3", class: "expected-line" }));
  }
  if (points.length) {
    chart.appendChild(svg("path", { d: path(points, y), fill: "none", stroke: "#1f5fbf",
                                     "stroke-width": 1.5, class: "kpi-line" }));
  }
  const congestion = scores.filter((s) => s.congestion_prob !== null)
    .map((s) => [Date.parse(s.ts), s.congestion_prob]);
  if (congestion.length) {
    chart.appendChild(svg("path", { d: path(congestion, yp), fill: "none", stroke: "#8e44ad",
                                     "stroke-width": 1, "stroke-dasharray": "4 3" }));
  }
  const byTime = new Map(points);
  scores.filter((s) => s.is_anomaly).forEach((s) => {
    const t = Date.parse(s.ts);
    const v = byTime.has(t) ? byTime.get(t) : v0;
    chart.appendChild(svg("circle", { cx: x(t), cy: y(v), r: 3.5, fill: "#c62828",
                                       class: "anomaly-marker" }));
  });
}

function init() {
  $("token").value = token();
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("cellpulse-token", $("token").value.trim());
    state.offset = 0;
    loadRanking();
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadRanking(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadRanking(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; loadRanking(); });
  $("kpi").addEventListener("change", drawChart);
  $("ack").addEventListener("click", () => act("acknowledge"));
  $("false-alarm").addEventListener("click", () => act("false_alarm"));
  $("close").addEventListener("click", () => act("close"));
  if (token()) {
    loadRanking();
    // Links from Prefect artifacts and webhooks open a cell directly: /#cell=<id>
    const linked = location.hash.match(/^#cell=(.+)$/);
    if (linked) openCell(decodeURIComponent(linked[1]));
  }
}

init();
