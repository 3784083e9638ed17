// fz-web's page: plain JavaScript, no build step, no CDN. Everything the broker or an agent
// sent is put into the page with textContent (never innerHTML): agent output is hostile.
"use strict";

const STATES = ["queued", "waiting", "held", "running", "retrying", "succeeded", "failed",
  "cancelled", "dep-failed"];
const COLORS = { queued: "#3b82f6", waiting: "#a78bfa", held: "#f59e0b", running: "#10b981",
  retrying: "#f97316", succeeded: "#16a34a", failed: "#dc2626", cancelled: "#6b7280", "dep-failed": "#b91c1c" };
const MAX_ROWS = 250; // rows per table on the overview: a big factory stays quick to draw
const app = { config: { admin: false }, overview: null, view: null, es: null, taskES: null,
  progress: new Map(), pending: false, refetchAt: 0, timer: null, viewGen: 0 };
window.fzApp = app; // for tests: counts of renders, load time

// ------------------------------------------------------------------ helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
// Control characters made visible (ESC as \x1b), so ANSI escapes show as text.
function visible(s) {
  return String(s ?? "").replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g,
    (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"));
}
function oneline(s, max) {
  let t = visible(s).replace(/[\r\n\t]+/g, " ");
  return max && t.length > max ? t.slice(0, max - 1) + "…" : t;
}
const money = (v) => { v = Number(v || 0); return "$" + v.toFixed(v > 0 && v < 0.1 ? 4 : 2); };
function dur(ms) {
  ms = Number(ms || 0);
  if (ms < 1000) return Math.round(ms) + "ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}
function when(ts) {
  if (!ts) return "-";
  return new Date(ts * 1000).toISOString().replace(".000", "").replace("T", " ");
}
function stateTag(s) { return el("span", { class: "st st-" + s, "data-state": s }, s); }
function taskLink(t) { return el("a", { href: "#/task/" + t.id }, "#" + t.id); }
function title(t) { return oneline(t.name || t.prompt || "", 70); }
function toast(msg, bad) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = "show";
  t.style.background = bad ? "#b91c1c" : "#1d1f21";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 4000);
}
async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => ({ error: "unreadable reply" }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function table(head, rows, cls) {
  return el("table", { class: cls }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

// ------------------------------------------------------------------ controls
function token() { return sessionStorage.getItem("fz-token") || ""; }
async function control(path, label) {
  const headers = { "Content-Type": "application/json" };
  if (token()) headers["X-FZ-Token"] = token();
  try {
    const r = await fetch("/api/" + path, { method: "POST", headers, body: "{}" });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { toast(label + ": " + (body.error || r.statusText), true); return false; }
    toast(label + ": done" + (body.count !== undefined ? " (" + body.count + ")" : ""));
    scheduleRefresh(0);
    return true;
  } catch (e) { toast(label + ": " + e.message, true); return false; }
}
function ctlButton(label, path, danger) {
  return el("button", { class: danger ? "danger" : "", "data-control": path,
    disabled: !app.config.admin, title: app.config.admin ? "" : "controls are off (no --admin-token-file)",
    onclick: () => control(path, label) }, label);
}

// ------------------------------------------------------------------ live stream
function connect() {
  if (app.es) app.es.close();
  const es = new EventSource("/events");
  app.es = es;
  const live = document.getElementById("live");
  es.onopen = () => { live.textContent = "live"; live.className = "pill ok"; };
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "pill warn"; };
  es.addEventListener("gap", () => scheduleRefresh(0)); // missed events: reload what we show
  es.addEventListener("fz", (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    app.events = (app.events || 0) + 1;
    app.lastEvent = ev;
    if (ev.topic === "task.progress") {
      app.progress.set(ev.task, ev);
      if (!app.pending) { app.pending = true; requestAnimationFrame(applyProgress); }
    } else scheduleRefresh(700); // at most one reload of the view per 0.7 s, however busy
  });
}
function scheduleRefresh(delay) {
  const at = Date.now() + delay;
  if (app.timer && app.refetchAt <= at) return;
  clearTimeout(app.timer);
  app.refetchAt = at;
  app.timer = setTimeout(() => { app.timer = null; refresh(); }, delay);
}
function applyProgress() {
  app.pending = false;
  for (const [id, ev] of app.progress) {
    const row = app.runRows && app.runRows.get(id);
    if (!row) continue;
    setProgress(row, ev.progress, ev.progress_text, ev.elapsed_ms, ev.cost_usd);
  }
  app.progress.clear();
}
function setProgress(row, pct, text, elapsed, cost) {
  const c = row.children;
  c[4].firstChild.firstChild.style.width = Math.max(0, Math.min(100, pct || 0)) + "%";
  c[5].textContent = oneline(text || "", 80);
  if (elapsed !== undefined) c[6].textContent = dur(elapsed);
  if (cost !== undefined) c[7].textContent = money(cost);
}

// ------------------------------------------------------------------ views
const views = {
  overview: { load: () => getJSON("/api/overview"), render: renderOverview },
  tasks: { load: (arg) => getJSON("/api/tasks?limit=500&tail=1" + (arg ? "&state=" + encodeURIComponent(arg) : "")), render: renderTasks },
  task: { load: (arg) => getJSON("/api/task/" + encodeURIComponent(arg)), render: renderTask },
  graph: { load: () => getJSON("/api/tasks?limit=400&tail=1"), render: renderGraph },
  cost: { load: async () => ({ day: await getJSON("/api/cost?by=day"), model: await getJSON("/api/cost?by=model") }), render: renderCost },
  digest: { load: (arg) => getJSON("/api/digest?since=" + encodeURIComponent(arg || "24h")), render: renderDigest },
};
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const name = views[parts[0]] ? parts[0] : "overview";
  return { name, arg: decodeURIComponent(parts.slice(1).join("/")) };
}
async function refresh() {
  const r = route(), gen = app.viewGen;
  const t0 = performance.now();
  try {
    const data = await views[r.name].load(r.arg);
    if (gen !== app.viewGen) return;
    if (r.name === "overview") app.overview = data;
    const root = document.getElementById("view");
    const keepScroll = window.scrollY;
    root.replaceChildren(views[r.name].render(data, r.arg));
    window.scrollTo(0, keepScroll);
    if (data.status) setDispatch(data.status);
    app.renders = (app.renders || 0) + 1;
    app.lastRenderMs = performance.now() - t0;
    document.body.setAttribute("data-ready", String(app.renders));
  } catch (e) {
    if (gen !== app.viewGen) return;
    document.getElementById("view").replaceChildren(el("p", { class: "why" }, "Cannot load: " + e.message));
  }
}
function setDispatch(st) {
  const d = document.getElementById("dispatch");
  d.textContent = st.paused ? "dispatch paused" : "dispatching";
  d.className = "pill " + (st.paused ? "bad" : "ok");
}
function onRoute() {
  app.viewGen++;
  const r = route();
  for (const a of document.querySelectorAll("nav a"))
    a.classList.toggle("on", a.dataset.view === r.name || (r.name === "task" && a.dataset.view === "tasks"));
  if (app.taskES) { app.taskES.close(); app.taskES = null; }
  if (r.name === "task") followTask(r.arg);
  clearTimeout(app.timer); app.timer = null;
  refresh();
}

function renderOverview(d) {
  const st = d.status, counts = st.counts || {};
  const cards = el("div", { class: "cards", id: "counts" }, STATES.map((s) =>
    el("a", { class: "card", href: "#/tasks/" + s, "data-count": s },
      el("div", { class: "n" }, String(counts[s] || 0)), el("div", { class: "l" }, stateTag(s)))));
  const b = d.budget, cap = b.cap || 0;
  const pct = (v) => (cap > 0 ? Math.min(100, (100 * v) / cap) : 0) + "%";
  const gauge = el("div", {},
    el("div", { class: "gauge", id: "budget" },
      el("div", { class: "spent", style: "width:" + pct(b.spent) }),
      el("div", { class: "res", style: "left:" + pct(b.spent) + ";width:" + pct(b.reserved) })),
    el("div", { class: "gnote" }, "spent " + money(b.spent) + " · reserved " + money(b.reserved) +
      " · left " + money(b.left) + " · cap " + money(cap) + " (" + b.day + " UTC)"));
  const now = Date.now() / 1000;
  app.runRows = new Map(); // task id -> its row, for progress events (no DOM search per event)
  const runRows = (d.running.tasks || []).slice(0, MAX_ROWS).map((t) => {
    const row = el("tr", { "data-run": t.id, "data-task": t.id },
      el("td", {}, taskLink(t)), el("td", { class: "txt" }, title(t)), el("td", {}, oneline(t.worker, 30)),
      el("td", {}, oneline(t.model, 30)), el("td", {}, el("div", { class: "bar" }, el("i", { style: "width:0%" }))),
      el("td", { class: "txt" }, ""), el("td", { class: "num" }, dur((now - (t.updated || now)) * 1000)),
      el("td", { class: "num" }, money(t.cost_usd)));
    app.runRows.set(t.id, row);
    return row;
  });
  const allWorkers = d.workers.workers || [];
  const workers = allWorkers.slice().sort((a, b) => (a.name < b.name ? -1 : 1)).slice(0, MAX_ROWS).map((w) => el("tr", { "data-worker": w.name },
    el("td", {}, oneline(w.name, 40)), el("td", {}, w.any_model ? "any" : oneline((w.models || []).join(", "), 50)),
    el("td", {}, w.state), el("td", {}, w.task ? el("a", { href: "#/task/" + w.task }, "#" + w.task) : "-",
      // fz-worker --prefetch: the task it holds to start next
      w.next ? [" then ", el("a", { href: "#/task/" + w.next }, "#" + w.next)] : null),
    el("td", {}, (w.unhealthy || []).length ? "unhealthy: " + oneline(w.unhealthy.map((m) => m || "all").join(", "), 40) : "ok")));
  const recent = (d.recent.tasks || []).slice().reverse().map((t) => el("tr", { "data-task": t.id },
    el("td", {}, taskLink(t)), el("td", {}, stateTag(t.state)), el("td", { class: "txt" }, title(t)),
    el("td", {}, oneline(t.model, 24)), el("td", { class: "num" }, String(t.attempts)),
    el("td", { class: "num" }, money(t.cost_usd)), el("td", {}, when(t.updated))));
  const ctl = el("div", { class: "controls" },
    ctlButton("Pause", "pause"), ctlButton("Resume", "resume"), ctlButton("Stop (cancel running)", "stop", true),
    app.config.admin ? null : el("span", { class: "muted" }, "controls are off"));
  return el("div", {},
    el("h2", {}, "Tasks by state"), cards,
    el("div", { class: "row2" },
      el("div", {}, el("h2", {}, "Budget today"), gauge),
      el("div", {}, el("h2", {}, "Dispatch"), el("div", { class: "gnote" },
        (st.paused ? "paused" : "running") + " · " + st.running + " of " + st.max_running + " agents · " +
        st.workers + " workers (" + st.idle_workers + " idle)"), ctl)),
    el("h2", {}, "Running agents (" + st.running + ")"),
    table(["task", "what", "worker", "model", "progress", "doing", "elapsed", "cost so far"], runRows, "running"),
    st.running > runRows.length ? el("p", { class: "muted" }, "the first " + runRows.length + " shown; ",
      el("a", { href: "#/tasks/running" }, "all running tasks")) : null,
    el("h2", {}, "Workers (" + allWorkers.length + ": " + ["idle", "busy", "drain"].map((s) =>
      allWorkers.filter((x) => x.state === s).length + " " + s).join(", ") + ")"),
    table(["name", "models", "state", "task", "health"], workers, "workers"),
    allWorkers.length > workers.length ? el("p", { class: "muted" }, "the first " + workers.length + " by name shown") : null,
    el("h2", {}, "Recent tasks"),
    table(["task", "state", "what", "model", "attempts", "cost", "updated"], recent, "recent"));
}

function renderTasks(d, state) {
  const sel = el("select", { onchange: (e) => { location.hash = "#/tasks/" + e.target.value; } },
    el("option", { value: "" }, "all states"), STATES.map((s) => el("option", { value: s, selected: s === state }, s)));
  const rows = (d.tasks || []).slice().reverse().map((t) => el("tr", { "data-task": t.id },
    el("td", {}, taskLink(t)), el("td", {}, stateTag(t.state)), el("td", { class: "txt" }, title(t)),
    el("td", {}, oneline(t.model, 24)), el("td", { class: "num" }, String(t.priority)),
    el("td", { class: "num" }, String(t.attempts)), el("td", { class: "num" }, money(t.cost_usd)),
    el("td", { class: "txt" }, oneline(t.hold_detail || t.waiting_for || t.summary || "", 90))));
  return el("div", {}, el("h2", {}, "Tasks ", sel, " ", el("span", { class: "muted" },
    rows.length + " of " + d.total + (d.truncated ? " (truncated)" : ""))),
    table(["task", "state", "what", "model", "prio", "attempts", "cost", "why / summary"], rows, "tasks"));
}

function followTask(id) {
  const es = new EventSource("/events?task=" + encodeURIComponent(id));
  app.taskES = es;
  es.addEventListener("gap", () => scheduleRefresh(0));
  es.addEventListener("fz", (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    if (ev.topic === "task.output") {
      const pre = document.getElementById("live-output");
      if (pre) { pre.textContent = (pre.textContent + visible(ev.data || "")).slice(-65536); pre.scrollTop = pre.scrollHeight; }
    } else if (ev.topic !== "task.progress") scheduleRefresh(200);
  });
}

function kv(pairs) {
  return el("div", { class: "kv" }, pairs.filter((p) => p[1] !== undefined && p[1] !== "" && p[1] !== null)
    .map(([k, v]) => [el("div", { class: "k" }, k), el("div", { "data-field": k }, v instanceof Node ? v : oneline(v, 400))]));
}

function renderTask(d) {
  const t = d.task;
  const why = [];
  if (t.hold_detail || t.hold_reason) why.push("held (" + (t.hold_reason || "") + "): " + (t.hold_detail || ""));
  if (t.waiting_for) why.push("cannot start: " + t.waiting_for);
  if (t.deps_pending) why.push("waits for " + t.deps_pending + " dependencies");
  if (t.stalled_since) why.push("no sign of life since " + when(t.stalled_since));
  if (t.not_before) why.push("not before " + when(t.not_before));
  const live = ["queued", "waiting", "held", "running", "retrying"].includes(t.state);
  const ctl = el("div", { class: "controls" }, ctlButton("Cancel", "task/" + t.id + "/cancel", true),
    ctlButton("Retry", "task/" + t.id + "/retry"), ctlButton("Escalate", "task/" + t.id + "/escalate"));
  const attempts = (d.attempts || []).slice().reverse().map((a) => el("div", { class: "attempt", "data-attempt": a.n },
    el("div", {}, el("b", {}, "attempt " + a.n), " · ", oneline(a.worker, 40), " · ", oneline(a.model, 40), " · ",
      el("span", { "data-outcome": a.outcome }, a.outcome), a.class ? " · class " + a.class : "",
      " · exit " + a.exit_code + (a.signal ? " signal " + a.signal : ""),
      " · " + dur(a.duration_ms) + " · " + money(a.cost_usd) + " · tokens " + a.tokens_in + " in / " + a.tokens_out + " out",
      a.tokens_cache_read ? " (+" + a.tokens_cache_read + " cached)" : ""),
    a.summary ? el("div", {}, "summary: ", el("span", { class: "summary" }, oneline(a.summary, 600))) : null,
    a.branch ? el("div", {}, "branch ", oneline(a.branch, 100), a.base_commit ? " from " + oneline(a.base_commit, 12) : "",
      a.head_commit ? " at " + oneline(a.head_commit, 12) : "",
      a.files !== undefined ? " · " + a.files + " files, +" + (a.insertions || 0) + " −" + (a.deletions || 0) : "") : null,
    a.check_status ? el("div", {}, "check " + a.check_status + (a.check_exit !== undefined ? " (exit " + a.check_exit + ")" : "")) : null,
    a.check_output ? el("pre", { class: "out" }, visible(a.check_output)) : null,
    a.log ? el("div", { class: "muted" }, "full log on the worker: " + oneline(a.log, 200)) : null,
    a.output_dropped ? el("div", { class: "muted" }, "(output left out of this reply)") : null,
    el("pre", { class: "out", "data-output": a.n }, visible(a.output || ""))));
  return el("div", {},
    el("h2", {}, "Task #" + t.id + " ", stateTag(t.state), " ", title(t)),
    ctl,
    why.length ? el("div", { class: "why", id: "why" }, why.map((w) => el("div", {}, oneline(w, 300)))) : null,
    kv([["state", t.state], ["name", t.name], ["model", t.model], ["priority", t.priority +
      (t.effective_priority !== undefined ? " (effective " + t.effective_priority + (t.priority_why ? ", " + t.priority_why : "") + ")" : "")],
    ["attempts", t.attempts + " (retries " + t.retries + ")"], ["cost", money(t.cost_usd)],
    ["tokens", t.tokens_in + " in / " + t.tokens_out + " out"], ["worker", t.worker], ["outcome", t.outcome],
    ["class", t.class], ["summary", t.summary], ["created", when(t.created)], ["updated", when(t.updated)],
    ["timeout", t.timeout ? t.timeout + " s" : ""], ["max cost", t.max_cost ? money(t.max_cost) : ""],
    ["fallback", (t.fallback || []).join(", ")], ["labels", Object.entries(t.labels || {}).map(([k, v]) => k + "=" + v).join(" ")],
    ["repo", t.repo], ["base", t.base], ["branch", t.branch], ["check", t.check], ["submitted by", t.submitted_by],
    ["parent", t.parent ? el("a", { href: "#/task/" + t.parent }, "#" + t.parent) : ""],
    ["after", (t.after || []).length ? el("span", {}, t.after.map((i) => [el("a", { href: "#/task/" + i }, "#" + i), " "])) : ""],
    ["after any", (t.after_any || []).length ? el("span", {}, t.after_any.map((i) => [el("a", { href: "#/task/" + i }, "#" + i), " "])) : ""],
    ["children", (d.children || []).length ? el("span", {}, d.children.map((i) => [el("a", { href: "#/task/" + i }, "#" + i), " "])) : ""]]),
    el("h2", {}, "Prompt"), el("pre", { class: "out", id: "prompt" }, visible(t.prompt)),
    live ? [el("h2", {}, "Live output"), el("pre", { class: "out", id: "live-output" }, "")] : null,
    el("h2", {}, "Attempts (" + attempts.length + ")"), el("div", { id: "attempts" }, attempts));
}

// A layered drawing of the tasks that have edges: after (solid), after_any (dashed), parent
// (purple). Layer = longest path from a root; O(n + e).
function renderGraph(d) {
  const tasks = new Map((d.tasks || []).map((t) => [t.id, t]));
  const edges = [];
  for (const t of tasks.values()) {
    for (const a of t.after || []) if (tasks.has(a)) edges.push([a, t.id, "after"]);
    for (const a of t.after_any || []) if (tasks.has(a)) edges.push([a, t.id, "any"]);
    if (t.parent && tasks.has(t.parent)) edges.push([t.parent, t.id, "parent"]);
  }
  const inGraph = new Set(edges.flatMap((e) => [e[0], e[1]]));
  const ids = [...inGraph].sort((a, b) => a - b);
  const layer = new Map(ids.map((i) => [i, 0]));
  for (const i of ids) for (const e of edges) if (e[1] === i) layer.set(i, Math.max(layer.get(i), layer.get(e[0]) + 1));
  const cols = new Map();
  for (const i of ids) { const l = layer.get(i); if (!cols.has(l)) cols.set(l, []); cols.get(l).push(i); }
  const W = 170, H = 44, pos = new Map();
  let maxRows = 0;
  for (const [l, list] of cols) { list.forEach((i, k) => pos.set(i, [20 + l * W, 20 + k * H])); maxRows = Math.max(maxRows, list.length); }
  const s = svg("svg", { width: 40 + cols.size * W, height: 40 + maxRows * H, id: "graph" });
  for (const [a, b, kind] of edges) {
    const [x1, y1] = pos.get(a), [x2, y2] = pos.get(b);
    s.append(svg("path", { class: "edge " + kind, d: "M" + (x1 + 130) + "," + (y1 + 14) + " C" + (x1 + 150) + "," + (y1 + 14) +
      " " + (x2 - 20) + "," + (y2 + 14) + " " + x2 + "," + (y2 + 14) }));
  }
  for (const i of ids) {
    const t = tasks.get(i), [x, y] = pos.get(i);
    const g = svg("a", { href: "#/task/" + i, "data-node": i });
    g.append(svg("rect", { x, y, width: 130, height: 28, rx: 5, fill: COLORS[t.state] || "#888", opacity: 0.9 }));
    g.append(svg("text", { x: x + 6, y: y + 18, fill: "#fff" }, "#" + i + " " + oneline(t.name || t.prompt, 16)));
    s.append(g);
  }
  return el("div", {}, el("h2", {}, "Pipelines and subtasks (" + ids.length + " of the newest " + tasks.size + " tasks)"),
    ids.length ? el("div", { style: "overflow:auto" }, s) : el("p", { class: "muted" }, "No dependencies or subtasks among the newest tasks."),
    el("p", { class: "muted" }, "solid: after · dashed: after-any · purple: parent → subtask"));
}

function barChart(rows, id) {
  const max = Math.max(0.000001, ...rows.map((r) => r.cost_usd));
  const W = 640, bh = 20, s = svg("svg", { width: W, height: 10 + rows.length * (bh + 6), id });
  rows.forEach((r, k) => {
    const y = 5 + k * (bh + 6), w = Math.max(1, ((W - 260) * r.cost_usd) / max);
    s.append(svg("text", { x: 0, y: y + 14 }, oneline(r.key || "(any)", 22)));
    s.append(svg("rect", { x: 150, y, width: w, height: bh, fill: "#2563eb" }));
    s.append(svg("text", { x: 156 + w, y: y + 14 }, money(r.cost_usd) + " · " + r.attempts + " att."));
  });
  return s;
}
function renderCost(d) {
  return el("div", {}, el("h2", {}, "Cost by day (total " + money(d.day.total_cost) + ")"), barChart((d.day.rows || []).slice(-30), "cost-day"),
    el("h2", {}, "Cost by model"), barChart(d.model.rows || [], "cost-model"));
}

function renderDigest(d, since) {
  const sel = el("select", { onchange: (e) => { location.hash = "#/digest/" + e.target.value; } },
    ["1h", "4h", "24h", "7d"].map((v) => el("option", { value: v, selected: v === (since || "24h") }, "last " + v)));
  const sec = (label, s, fmt) => [el("h2", {}, label + " (" + (s.count || 0) + ")"),
    (s.tasks || []).length ? table(["task", "what", "detail"], s.tasks.slice(0, 100).map((t) =>
      el("tr", { "data-task": t.id }, el("td", {}, taskLink(t)), el("td", { class: "txt" }, title(t)), el("td", {}, fmt(t))))) : null];
  const b = d.budget;
  return el("div", {}, el("h2", {}, "Digest since " + when(d.since) + " ", sel),
    el("p", {}, "Budget " + b.day + ": spent " + money(b.spent) + " of " + money(b.cap) + ", " + money(b.reserved) +
      " reserved, " + money(b.left) + " left" + (d.status.paused ? " · dispatch is PAUSED" : "")),
    sec("Succeeded", d.succeeded, (t) => money(t.cost_usd) + (t.branch ? " · branch " + oneline(t.branch, 60) : "") + " · " + oneline(t.summary, 120)),
    sec("Failed", d.failed, (t) => "[" + (t.class || t.state) + "] " + oneline(t.summary, 120) + " · " + t.retry),
    sec("Dep-failed", d.dep_failed, (t) => oneline(t.summary, 120)),
    sec("Held now", d.held, (t) => oneline(t.hold_detail || t.hold_reason, 160)),
    sec("Stalled now", d.stalled, (t) => "since " + when(t.stalled_since) + " on " + oneline(t.worker, 40)),
    sec("Retrying now", d.retrying, (t) => oneline(t.class, 40)),
    sec("Waiting now", d.waiting, (t) => t.deps_pending ? "waits for " + t.deps_pending + " dependencies" : oneline(t.waiting_for, 160)),
    el("h2", {}, "Cost by model since " + d.cost_since_day + ": " + money(d.cost.total_cost)), barChart(d.cost.rows || [], "digest-cost"));
}

// ------------------------------------------------------------------ start
async function start() {
  app.t0 = performance.now();
  try { app.config = await getJSON("/api/config"); } catch (e) { /* shown by the first load */ }
  const input = document.getElementById("token");
  if (!app.config.admin) document.getElementById("admin").style.display = "none";
  input.value = token();
  input.addEventListener("change", () => { sessionStorage.setItem("fz-token", input.value); });
  window.addEventListener("hashchange", onRoute);
  connect();
  onRoute();
}
document.addEventListener("DOMContentLoaded", start);
