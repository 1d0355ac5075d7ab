// The ops console page: each panel fetches its JSON endpoint under /_ops/api/ and renders it.
// Libraries (served from node_modules by the edge): cytoscape + cytoscape-dagre (graph layout), chart.js.
"use strict";

const API = "api/";
const state = { cy: null, graph: null, execution: null, charts: {}, selected: null };
window.opsConsole = state; // the browser test reads the graph and the charts from here

// cytoscape-dagre registers the "dagre" layout on window.cytoscape when it loads.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

async function getJSON(path) {
  const response = await fetch(API + path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Runs a panel's loader; the section's data-state says loading / ready / error (the test waits on it).
async function panel(id, load) {
  const section = document.getElementById(id);
  section.dataset.state = "loading";
  section.querySelector(".panel-error")?.remove();
  try {
    await load();
    section.dataset.state = "ready";
  } catch (error) {
    section.dataset.state = "error";
    section.append(el("p", { class: "panel-error" }, `Could not load: ${error.message}`));
  }
}

function money(amount, currency) {
  if (amount == null) return "";
  return `${(amount / 100).toLocaleString("en-IN", { minimumFractionDigits: 2 })} ${currency || ""}`;
}

function pretty(value) {
  if (value == null) return "—";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

// ---- transfers --------------------------------------------------------------------------------------------
async function loadTransfers() {
  const body = await getJSON("transfers?limit=50");
  document.getElementById("transfers-total").textContent = `${body.total}`;
  const chips = document.getElementById("transfers-by-status");
  chips.replaceChildren(...Object.entries(body.by_status).map(
    ([status, n]) => el("span", { class: `chip status-${status}` }, `${status} ${n}`)));
  const rows = body.transfers.map((t) => el("tr", {
    "data-transfer-id": t.transfer_id, class: "clickable",
    onclick: () => panel("execution", () => loadExecution(t.transfer_id)),
  },
  el("td", { class: "mono" }, t.transfer_id),
  el("td", {}, el("span", { class: `badge status-${t.status}` }, t.status)),
  el("td", {}, t.execution_status ? el("span", { class: `badge status-${t.execution_status}` }, t.execution_status) : "—"),
  el("td", { class: "num" }, money(t.amount, t.currency)),
  el("td", { class: "mono" }, (t.created_at || "").replace("T", " ").slice(0, 19)),
  el("td", {}, t.failure_reason || "")));
  document.getElementById("transfers-rows").replaceChildren(...rows);
  return body;
}

// ---- the state machine and one execution ------------------------------------------------------------------
const GRAPH_STYLE = [
  { selector: "node", style: {
    shape: "round-rectangle", "background-color": "#eef1f5", "border-width": 1, "border-color": "#9aa5b1",
    label: "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "center",
    width: "data(width)", height: 26, color: "#1f2933" } },
  { selector: "node[type = 'Choice']", style: { shape: "diamond", height: 44 } },
  { selector: "node[type = 'Succeed'], node[type = 'Fail']", style: { shape: "ellipse" } },
  { selector: "node.taken", style: { "background-color": "#c6f6d5", "border-color": "#2f855a", "border-width": 2 } },
  { selector: "node.retried", style: { "background-color": "#feebc8", "border-color": "#dd6b20", "border-width": 3 } },
  { selector: "node.failed", style: { "background-color": "#fed7d7", "border-color": "#c53030", "border-width": 3 } },
  { selector: "node.running", style: { "background-color": "#bee3f8", "border-color": "#2b6cb0", "border-width": 2 } },
  { selector: "node.selected", style: { "border-style": "double", "border-width": 5 } },
  { selector: "edge", style: {
    width: 1, "line-color": "#cbd2d9", "target-arrow-color": "#cbd2d9", "target-arrow-shape": "triangle",
    "curve-style": "bezier", "arrow-scale": 0.8 } },
  { selector: "edge[kind = 'catch']", style: { "line-style": "dashed" } },
  { selector: "edge.taken", style: { width: 3, "line-color": "#2f855a", "target-arrow-color": "#2f855a", "z-index": 10 } },
];

async function loadGraph() {
  const body = await getJSON("state-machine");
  state.graph = body;
  const elements = [
    // Wide enough for the name and a retry badge (" ↻3"), so the label never changes the layout.
    ...body.graph.nodes.map((n) => ({ data: { ...n, label: n.id, width: 22 + 7 * (n.id.length + 3) } })),
    ...body.graph.edges.map((e) => ({ data: { ...e } })),
  ];
  state.cy = window.cytoscape({
    container: document.getElementById("graph"),
    elements,
    style: GRAPH_STYLE,
    layout: { name: "dagre", rankDir: "TB", nodeSep: 18, rankSep: 34, edgeSep: 6 },
    wheelSensitivity: 0.2,
  });
  state.cy.on("tap", "node", (event) => showState(event.target.id()));
}

async function loadExecution(transferId) {
  if (!state.cy) await loadGraph();
  const body = await getJSON(`executions/${encodeURIComponent(transferId)}`);
  state.execution = body;
  document.getElementById("execution-name").textContent = body.transfer_id;
  const status = document.getElementById("execution-status");
  status.textContent = body.status;
  status.className = `badge status-${body.status}`;
  document.getElementById("execution-error").textContent = body.error || "";
  for (const row of document.querySelectorAll("#transfers-rows tr")) {
    row.classList.toggle("selected", row.dataset.transferId === transferId);
  }
  const cy = state.cy;
  cy.elements().removeClass("taken failed retried running selected");
  for (const [name, s] of Object.entries(body.states)) {
    const node = cy.getElementById(name);
    if (node.empty()) continue;
    node.addClass(s.failed ? "failed" : s.running ? "running" : s.retries > 0 ? "retried" : "taken");
  }
  // A retried state carries its retry count on its label: MarkProcessing ↻2.
  cy.nodes().forEach((node) => {
    const s = body.states[node.id()];
    node.data("label", s && s.retries > 0 ? `${node.id()} ↻${s.retries}` : node.id());
  });
  for (const [from, to] of body.transitions) {
    cy.edges().filter((e) => e.data("source") === from && e.data("target") === to).addClass("taken");
  }
  cy.fit(undefined, 12);
  const last = body.order[body.order.length - 1];
  showState(state.selected && body.states[state.selected] ? state.selected : last);
}

function showState(name) {
  state.selected = name;
  const cy = state.cy;
  cy.nodes().removeClass("selected");
  cy.getElementById(name).addClass("selected");
  const detail = document.getElementById("state-detail");
  detail.dataset.state = name;
  const s = state.execution && state.execution.states[name];
  const node = state.graph.graph.nodes.find((n) => n.id === name) || {};
  document.getElementById("state-name").textContent = name;
  document.getElementById("state-summary").textContent = s
    ? `${node.type || ""} ${node.resource ? "· " + node.resource : ""} · entered ${s.entered}×, ` +
      `${s.attempts} attempt(s), ${s.retries} retr${s.retries === 1 ? "y" : "ies"}` +
      (s.failed ? " · FAILED" : s.running ? " · running" : "")
    : `${node.type || ""} · not taken by this execution`;
  // An EXPRESS execution's log leaves its data out (template.yaml: IncludeExecutionData false).
  const data = (value) => (!s ? "—" : value === null && state.execution.data_logged === false
    ? "not logged: the saga's execution log leaves out the data (account ids, amounts)" : pretty(value));
  document.getElementById("state-input").textContent = data(s && s.input);
  document.getElementById("state-output").textContent = data(s && s.output);
  document.getElementById("state-errors").replaceChildren(...(s ? s.errors : []).map(
    (e) => el("p", { class: "error-text" }, `${e.time.slice(11)} ${e.event}: ${e.error}`)));
}

// ---- logs ---------------------------------------------------------------------------------------------------
async function loadFunctions() {
  const body = await getJSON("functions");
  const select = document.getElementById("logs-function");
  const current = select.value;
  select.replaceChildren(...body.functions.map((f) => el("option", { value: f.name },
    `${f.logical_id} (${f.invocations} inv, ${f.errors} err)`)));
  const preferred = body.functions.find((f) => f.logical_id === "TransferStatusFunction");
  select.value = current || (preferred ? preferred.name : body.functions[0]?.name || "");
}

async function loadLogs() {
  if (!document.getElementById("logs-function").options.length) await loadFunctions();
  const fn = document.getElementById("logs-function").value;
  const filter = document.getElementById("logs-filter").value.trim();
  const since = document.getElementById("logs-since").value;
  const query = new URLSearchParams({ since_s: since, limit: "300" });
  if (filter) query.set("filter", filter);
  const body = await getJSON(`logs/${encodeURIComponent(fn)}?${query}`);
  const pre = document.getElementById("logs-lines");
  pre.replaceChildren(...body.lines.map((line) => el("div", {
    class: `log-line${/"level":"ERROR"|^\[ERROR\]|Traceback/.test(line.message) ? " error-text" : ""}`,
  }, `${line.time.slice(11, 23)} ${line.stream} ${line.message}`)));
  pre.scrollTop = pre.scrollHeight;
  document.getElementById("logs-count").textContent =
    `${body.lines.length} line(s) of ${body.log_group}${filter ? ` matching "${filter}"` : ""}`;
  document.getElementById("logs").dataset.lines = String(body.lines.length);
}

// ---- fraud, dead letters, audit -----------------------------------------------------------------------------
async function loadFraud() {
  const body = await getJSON("fraud?limit=50");
  document.getElementById("fraud-total").textContent = `${body.alerts.length}${body.more ? "+" : ""}`;
  document.getElementById("fraud-rows").replaceChildren(...body.alerts.map((a) => el("tr",
    { "data-transfer-id": a.transfer_id },
    el("td", { class: "mono" }, a.transfer_id),
    el("td", {}, el("span", { class: `badge decision-${a.decision}` }, a.decision)),
    el("td", { class: "num" }, a.score),
    el("td", { class: "num" }, money(a.amount, a.currency)),
    el("td", {}, (a.reasons || []).join(", ")),
    el("td", {}, a.review ? a.review.status + (a.review.decision ? ` (${a.review.decision})` : "") : "—"))));
  document.getElementById("review-total").textContent = `${body.review_queue.length}`;
  const queue = document.getElementById("review-queue");
  queue.replaceChildren(...(body.review_queue.length
    ? body.review_queue.map((a) => el("li", { "data-transfer-id": a.transfer_id, class: "mono" },
      `${a.transfer_id} · ${money(a.amount, a.currency)} · flagged ${(a.created_at || "").replace("T", " ").slice(0, 19)}`))
    : [el("li", { class: "muted" }, "No review is waiting.")]));
}

async function loadHealth() {
  const [dlq, audit] = await Promise.all([getJSON("dead-letters"), getJSON("audit")]);
  document.getElementById("dlq-rows").replaceChildren(...dlq.queues.map((q) => el("tr",
    { "data-queue": q.name },
    el("td", { class: "mono" }, q.name),
    el("td", { class: `num ${q.messages ? "error-text" : ""}` }, q.messages),
    el("td", { class: "num" }, q.in_flight))));
  const status = document.getElementById("audit-status");
  status.textContent = audit.status;
  status.className = `badge audit-${audit.status}`;
  const bad = audit.first_bad_record;
  document.getElementById("audit-detail").textContent =
    `${audit.records_checked} records of ${audit.table} through ${audit.checkpoints_checked ?? 0} signed ` +
    `checkpoint(s) in ${audit.seconds} s; head ${audit.head_seq}:` +
    `${String(audit.head_hash).slice(0, 16)}…` +
    (bad ? ` · first bad: seq ${bad.seq} (${bad.reason}: ${bad.detail})` : "");
}

// ---- webhooks -----------------------------------------------------------------------------------------------
async function loadWebhooks() {
  const body = await getJSON("webhooks");
  for (const [status, n] of Object.entries(body.deliveries)) {
    const cell = document.querySelector(`#webhook-deliveries td[data-status="${status}"]`);
    if (cell) cell.textContent = `${n}${body.more ? "+" : ""}`;
  }
  document.getElementById("webhook-attempts-failed").textContent = body.attempts_failed;
  document.getElementById("webhook-endpoints").replaceChildren(...Object.entries(body.endpoints).map(
    ([status, n]) => el("span", { class: `chip ${n ? `status-${status}` : ""}`, "data-status": status },
      `${status} ${n}`)));
  const oldest = body.oldest_pending_s;
  const age = document.getElementById("webhook-oldest");
  age.textContent = oldest == null ? "none pending" : `${oldest} s`;
  // Red past WebhookDeliveriesBehindAlarm's threshold (template.yaml: 900 s).
  age.className = `mono ${oldest != null && oldest > 900 ? "error-text" : ""}`;
}

// ---- metrics ------------------------------------------------------------------------------------------------
const COLORS = ["#2b6cb0", "#c53030", "#dd6b20", "#2f855a", "#6b46c1", "#718096"];
const STATUS_COLORS = { SUCCEEDED: "#2f855a", FAILED: "#c53030", RUNNING: "#2b6cb0", TIMED_OUT: "#dd6b20", ABORTED: "#718096" };

function drawChart(id, config) {
  state.charts[id]?.destroy();
  state.charts[id] = new window.Chart(document.getElementById(id), config);
}

async function loadMetrics() {
  const body = await getJSON("metrics");
  document.getElementById("sample-interval").textContent = body.sample_interval_s;
  const lambda = body.lambda;
  drawChart("chart-lambda", {
    type: "line",
    data: {
      labels: lambda.times,
      datasets: Object.entries(lambda.series).map(([name, values], i) => ({
        label: name.replace("_", " "), data: values, borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length], tension: 0.2, pointRadius: 1,
      })),
    },
    options: { animation: false, maintainAspectRatio: false,
      plugins: { title: { display: true, text: "Lambda, per minute (each sample interval)" } },
      scales: { y: { beginAtZero: true } } },
  });
  const ex = body.executions;
  drawChart("chart-executions", {
    type: "bar",
    data: {
      labels: ex.minutes.map((m) => m.slice(11, 16)),
      datasets: Object.entries(ex.series).map(([status, values]) => ({
        label: status, data: values, backgroundColor: STATUS_COLORS[status] || "#718096",
      })),
    },
    options: { animation: false, maintainAspectRatio: false,
      plugins: { title: { display: true, text: "Transfer executions started per minute (UTC)" } },
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
}

// ---- page ---------------------------------------------------------------------------------------------------
async function refresh() {
  const transfers = panel("transfers", async () => {
    const body = await loadTransfers();
    const first = state.execution?.transfer_id || body.transfers[0]?.transfer_id;
    if (first) await panel("execution", () => loadExecution(first));
    else await panel("execution", loadGraph);
  });
  await Promise.all([
    transfers,
    panel("logs", async () => { await loadFunctions(); await loadLogs(); }),
    panel("fraud", loadFraud),
    panel("health", loadHealth),
    panel("webhooks", loadWebhooks),
    panel("metrics", loadMetrics),
  ]);
  document.getElementById("updated").textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
}

document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("logs-form").addEventListener("submit", (event) => {
  event.preventDefault();
  panel("logs", loadLogs);
});
refresh();
