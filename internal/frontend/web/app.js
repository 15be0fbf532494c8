// The live page: sends many photos at once and watches the system answer
// them. It talks only to the web tier that served it: POST / for each
// photo, GET /status/history for the charts. Everything the server says
// reaches the DOM through textContent, never as markup.

const inFlight = 6; // uploads sent at once
const keptMs = 10 * 60 * 1000; // the chart's span, as the server keeps
const pollMs = 1000;

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// ---- sending ----

const queue = [];
let sending = 0;
const mine = { sent: 0, done: 0, failed: 0, ms: [] };

function enqueue(files) {
  // Every file goes: the web tier says why one is not an image.
  for (const f of files) {
    const row = el("li", "pending");
    const img = el("img");
    img.alt = "";
    img.src = URL.createObjectURL(f);
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
    row.append(img, el("span", "name", f.name), el("span", "label", "waiting"), el("span", "latency", ""));
    $("answers").prepend(row);
    queue.push({ file: f, row });
    mine.sent++;
  }
  summarise();
  pump();
}

function pump() {
  while (sending < inFlight && queue.length > 0) {
    const job = queue.shift();
    sending++;
    send(job).finally(() => {
      sending--;
      pump();
    });
  }
}

async function send({ file, row }) {
  const label = row.querySelector(".label");
  const latency = row.querySelector(".latency");
  label.textContent = "sending";
  const body = new FormData();
  body.append("inputFile", file, file.name);
  const start = performance.now();
  let answer;
  let ok = false;
  try {
    const resp = await fetch("/", { method: "POST", body, headers: { Accept: "application/json" } });
    answer = await resp.json().catch(() => ({ error: `HTTP ${resp.status}` }));
    ok = resp.ok && !answer.error;
  } catch (err) {
    answer = { error: `no answer: ${err.message}` };
  }
  const ms = performance.now() - start;
  latency.textContent = formatMs(ms);
  row.classList.remove("pending");
  if (ok) {
    mine.done++;
    mine.ms.push(ms);
    row.classList.add("ok");
    row.dataset.label = answer.label ?? "";
    label.textContent = answer.label ?? "";
    if (answer.cached) row.append(el("span", "tag", "cached"));
  } else {
    mine.failed++;
    row.classList.add("failed");
    label.textContent = typeof answer.error === "string" ? answer.error : (answer.error?.message ?? "failed");
  }
  summarise();
}

function summarise() {
  const s = $("summary");
  s.hidden = false;
  const left = mine.sent - mine.done - mine.failed;
  const sorted = [...mine.ms].sort((a, b) => a - b);
  const median = sorted.length ? ` · median ${formatMs(sorted[(sorted.length - 1) >> 1])}` : "";
  s.textContent = `${mine.done} answered, ${mine.failed} failed, ${left} to go${median}`;
  s.dataset.answered = String(mine.done);
  s.dataset.failed = String(mine.failed);
}

function formatMs(ms) {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

function enhanceForm() {
  const input = $("file");
  input.multiple = true;
  input.required = false;
  $("drop-text").textContent = "Drop photos here, or click to pick some";
  $("submit").hidden = true;
  $("form").addEventListener("submit", (e) => e.preventDefault());
  input.addEventListener("change", () => {
    enqueue(input.files);
    input.value = "";
  });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    enqueue(e.dataTransfer.files);
  });
}

// ---- watching ----

let points = [];
let last = 0;

async function poll() {
  try {
    const resp = await fetch(`/status/history?since=${last}`, { cache: "no-store" });
    if (resp.ok) {
      const h = await resp.json();
      if (h.points.length) {
        points = points.concat(h.points);
        last = points[points.length - 1].t;
        points = points.filter((p) => p.t > last - keptMs);
      }
      render(h.status);
    }
  } catch {
    // The web tier may be restarting: the next poll tries again.
  }
  setTimeout(poll, pollMs);
}

function render(status) {
  $("watch").hidden = false;
  const p = points[points.length - 1];
  if (p) {
    $("backlog").textContent = String(p.backlog);
    $("fleet").textContent = `${p.running} / ${p.desired}`;
    $("rate").textContent = p.seconds > 0 ? (p.answers / p.seconds).toFixed(1) : "0";
    $("latency").textContent = p.answers ? formatMs(p.p50_ms) : "–";
    const minute = points.filter((q) => q.t > p.t - 60000);
    $("errors").textContent = String(minute.reduce((n, q) => n + q.errors, 0));
  }
  drawChart();
  if (status) renderInstances(status.fleet);
}

const svgNS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function drawChart() {
  const chart = $("chart");
  const W = 640, H = 240, left = 34, bottom = 18, top = 8;
  chart.replaceChildren();
  // The span grows with the data, from two minutes up to all that is kept.
  const end = points.length ? points[points.length - 1].t : Date.now();
  const span = Math.min(keptMs, Math.max(2 * 60000, points.length ? end - points[0].t : 0));
  const start = end - span;
  const peak = Math.max(4, ...points.map((p) => Math.max(p.backlog, p.desired, p.running)));
  const x = (t) => left + ((t - start) / span) * (W - left - 4);
  const y = (v) => H - bottom - (v / peak) * (H - bottom - top);
  for (const v of [0, Math.round(peak / 2), peak]) {
    chart.append(svg("line", { x1: left, x2: W, y1: y(v), y2: y(v), class: "grid" }));
    const t = svg("text", { x: left - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" });
    t.textContent = String(v);
    chart.append(t);
  }
  for (const [ago, anchor] of [[span, "start"], [span / 2, "middle"], [0, "end"]]) {
    const t = svg("text", { x: x(end - ago), y: H - 4, class: "axis", "text-anchor": anchor });
    t.textContent = ago ? `-${formatAge(ago)}` : "now";
    chart.append(t);
  }
  for (const key of ["backlog", "desired", "running"]) {
    const line = points.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points: line, class: `series ${key}`, "data-series": key }));
  }
  chart.dataset.points = String(points.length);
  chart.dataset.runningMax = String(Math.max(0, ...points.map((p) => p.running)));
  chart.dataset.running = String(points.length ? points[points.length - 1].running : 0);
  $("span").textContent = points.length ? `${points.length} samples, every ${Math.round(points.length > 1 ? (points[points.length - 1].t - points[0].t) / (points.length - 1) / 1000 : 2)} s` : "";
}

function renderInstances(fleet) {
  const body = $("instances").tBodies[0];
  const err = $("fleet-error");
  err.hidden = !fleet.error;
  err.textContent = fleet.error ?? "";
  const rows = (fleet.instances ?? []).map((i) => {
    const tr = el("tr", `state-${String(i.state).replace(/[^a-z-]/g, "")}`);
    const up = i.launched ? formatAge(Date.now() - Date.parse(i.launched)) : "";
    for (const v of [i.name, i.state, i.ready ? "yes" : "no", i.idle ? "yes" : "no", up]) tr.append(el("td", "", v));
    return tr;
  });
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", "muted", "no workers: the fleet is at zero until photos arrive");
    td.colSpan = 5;
    tr.append(td);
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const table = $("instances");
  table.dataset.most = String(Math.max(Number(table.dataset.most ?? 0), fleet.instances?.length ?? 0));
}

function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s} s` : `${Math.round(s / 60)} min`;
}

enhanceForm();
poll();
