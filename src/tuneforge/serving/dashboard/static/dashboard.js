// tuneforge dashboard: SVG line charts drawn from the curves JSON, polled while a run trains; the playground;
// the job page's live status. No libraries, nothing fetched from anywhere but this server.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bf8700", "#0a7ea4", "#cf222e", "#57606a"];
const DONE = ["finished", "failed", "interrupted", "succeeded", "cancelled"];

function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function getJSON(url) {
  const resp = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (resp.status === 401) { window.location.href = "/ui/login?next=" + encodeURIComponent(location.pathname); return null; }
  if (!resp.ok) throw new Error(url + ": " + resp.status);
  return resp.json();
}

function el(name, attrs, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

// tick labels with as many decimals as the axis' step needs (a loss moving in its 4th decimal still reads)
function fmt(v, step) {
  const a = Math.abs(v);
  if (a >= 100000 || (a !== 0 && a < 1e-4)) return v.toExponential(2);
  const decimals = Math.min(6, Math.max(0, Math.ceil(-Math.log10(step || 1)) + 1));
  return v.toFixed(decimals);
}

// lines: [{name, points: [[x, y], ...]}]; one chart with axes, a polyline and dots per line, and a legend.
function chart(title, lines) {
  const W = 520, H = 276, L = 64, R = 12, T = 50, B = 36;
  const figure = document.createElement("figure");
  figure.className = "chart";
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title}, figure);
  el("text", {x: L, y: 14, class: "title"}, svg).textContent = title;
  const all = lines.flatMap(l => l.points);
  if (!all.length) {
    el("text", {x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle"}, svg).textContent = "no points yet";
    return figure;
  }
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  let [y0, y1] = [Math.min(...all.map(p => p[1])), Math.max(...all.map(p => p[1]))];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"}, svg);
  const steps = new Set();
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4, x = Math.round(x0 + (x1 - x0) * i / 4);
    el("line", {x1: L, y1: sy(y), x2: W - R, y2: sy(y), class: "grid"}, svg);
    el("text", {x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick"}, svg).textContent = fmt(y, (y1 - y0) / 4);
    if (steps.has(x)) continue;  // steps are whole numbers: one label each
    steps.add(x);
    el("text", {x: sx(x), y: H - B + 16, "text-anchor": "middle", class: "tick"}, svg).textContent = x;
  }
  el("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "tick"}, svg).textContent = "step";
  lines.forEach((line, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const pts = line.points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    el("polyline", {points: pts, fill: "none", stroke: colour, "stroke-width": 2, class: "series"}, svg);
    for (const p of line.points) el("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: colour, class: "point"}, svg);
    const lx = L + (i % 3) * 150, ly = 30 + Math.floor(i / 3) * 13;
    el("rect", {x: lx, y: ly - 8, width: 10, height: 10, fill: colour}, svg);
    el("text", {x: lx + 14, y: ly + 1, class: "legend"}, svg).textContent = line.name;
  });
  return figure;
}

function metricKeys(data) {
  const keys = Object.keys(data.series).filter(k => k.startsWith("eval_") && k !== "eval_loss");
  const primary = data.primary ? "eval_" + data.primary : null;
  return primary && keys.includes(primary) ? [primary, ...keys.filter(k => k !== primary)] : keys;
}

function drawRun(box, data) {
  const s = data.series;
  const figures = [chart("loss", [{name: "train loss", points: s.loss || []}, {name: "validation loss", points: s.eval_loss || []}])];
  const metrics = metricKeys(data).slice(0, 3);
  if (metrics.length) figures.push(chart("validation metrics", metrics.map(k => ({name: k.slice(5), points: s[k]}))));
  box.replaceChildren(...figures);
  box.dataset.points = String(data.points);
  box.dataset.status = data.status;
  const badge = document.getElementById("run-status");
  if (badge && data.status) { badge.textContent = data.status; badge.className = "status s-" + data.status; }
}

async function pollRun(box) {
  try {
    const data = await getJSON(box.dataset.curves);
    if (!data) return;
    drawRun(box, data);
    if (!DONE.includes(data.status)) setTimeout(() => pollRun(box), 1000);
  } catch (err) {
    box.textContent = "could not read the curves: " + err.message;
  }
}

async function drawCompare(box) {
  const names = JSON.parse(box.dataset.compare);
  const runs = await Promise.all(names.map(n => getJSON("/ui/api/runs/" + encodeURIComponent(n) + "/curves")));
  if (runs.some(r => !r)) return;
  const figures = [
    chart("train loss", runs.map(r => ({name: r.run, points: r.series.loss || []}))),
    chart("validation loss", runs.map(r => ({name: r.run, points: r.series.eval_loss || []}))),
  ];
  const primary = runs[0].primary;
  if (primary && runs.some(r => r.series["eval_" + primary])) {
    figures.push(chart("validation " + primary, runs.map(r => ({name: r.run, points: r.series["eval_" + primary] || []}))));
  }
  box.replaceChildren(...figures);
  box.dataset.points = String(runs.reduce((n, r) => n + r.points, 0));
  if (runs.some(r => !DONE.includes(r.status))) setTimeout(() => drawCompare(box), 2000);
}

// ---- playground -----------------------------------------------------------------------------------------
function playground(form) {
  const log = form.querySelector("#pg-log"), input = form.querySelector("#pg-input");
  const select = form.querySelector("#pg-model"), error = form.querySelector("#pg-error");
  let messages = [];
  const generative = () => select.selectedOptions[0].dataset.generative === "yes";
  const label = () => { form.querySelector("#pg-label").textContent = generative() ? "Message" : "Text to predict from"; };
  const say = (role, text) => {
    const p = document.createElement("p");
    p.className = "msg " + role;
    p.textContent = text;  // text, never HTML: a model's reply is not trusted markup
    log.appendChild(p);
    return p;
  };
  select.addEventListener("change", () => { messages = []; log.replaceChildren(); label(); });
  form.querySelector("#pg-clear").addEventListener("click", () => { messages = []; log.replaceChildren(); });
  label();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    error.hidden = true;
    const body = {model: select.value};
    if (generative()) { messages.push({role: "user", content: text}); body.messages = messages; } else { body.input = text; }
    say("user", text);
    input.value = "";
    form.querySelector("#pg-send").disabled = true;
    try {
      const resp = await fetch(form.dataset.endpoint, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()}, body: JSON.stringify(body)});
      const data = await resp.json();
      if (!resp.ok) throw new Error(data.error ? data.error.message : resp.status);
      if (data.kind === "chat") {
        messages.push({role: "assistant", content: data.reply});
        say("assistant", data.reply || "(empty reply)");
      } else {
        say("assistant", describe(data.result));
      }
    } catch (err) {
      if (generative()) messages.pop();
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      form.querySelector("#pg-send").disabled = false;
    }
  });
}

function describe(result) {
  if (result.entities) return result.entities.length ? result.entities.map(e => `${e.text} → ${e.type}`).join("; ") : "no entities";
  if (result.top) return result.top.map(t => `${t.label} ${(100 * t.score).toFixed(1)}%`).join(" · ");
  if (result.labels) return result.labels.join(", ") || "no label over the threshold";
  return result.label || JSON.stringify(result);
}

// ---- jobs -----------------------------------------------------------------------------------------------
async function pollJob(box) {
  try {
    const data = await getJSON(box.dataset.job);
    if (!data) return;
    const status = document.getElementById("job-status");
    status.textContent = data.status;
    status.className = "status s-" + data.status;
    const events = document.getElementById("job-events");
    events.replaceChildren(...data.events.map(e => {
      const li = document.createElement("li");
      const when = document.createElement("time");
      when.textContent = new Date(e.created_at * 1000).toISOString().slice(11, 19);
      li.append(when, " ", e.message);
      li.className = "lvl-" + (e.level || "info");
      return li;
    }));
    const link = document.getElementById("job-run");
    if (data.run && link) { link.href = "/ui/runs/" + encodeURIComponent(data.run); link.hidden = false; }
    const actions = document.getElementById("job-actions");
    if (actions && DONE.includes(data.status)) actions.hidden = true;
    const model = document.getElementById("job-model");
    if (data.fine_tuned_model && model) { model.textContent = data.fine_tuned_model; }
    const curves = box.querySelector("[data-job-curves]");
    if (curves && data.run) {
      const run = await getJSON("/ui/api/runs/" + encodeURIComponent(data.run) + "/curves");
      if (run) drawRun(curves, run);
    } else if (curves) {
      drawRun(curves, {series: {loss: data.points.train_loss, eval_loss: data.points.valid_loss}, primary: null,
                       points: data.points.train_loss.length + data.points.valid_loss.length, status: data.status});
    }
    if (!DONE.includes(data.status)) setTimeout(() => pollJob(box), 1000);
  } catch (err) {
    box.querySelector(".muted") && (box.querySelector(".muted").textContent = "could not read the job: " + err.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-curves]").forEach(pollRun);
  document.querySelectorAll("[data-compare]").forEach(box => drawCompare(box).catch(err => { box.textContent = err.message; }));
  document.querySelectorAll("#playground").forEach(playground);
  document.querySelectorAll("[data-job]").forEach(pollJob);
});
