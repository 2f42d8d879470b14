"use strict";
// The page of polymodal serve: plain DOM, no external scripts. User data is only ever
// written with textContent, never as HTML.

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, text) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
};

async function call(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: response.statusText }; }
  if (!response.ok) {
    const field = body && body.field ? ` (${body.field})` : "";
    throw new Error(`${response.status}: ${(body && body.error) || "request failed"}${field}`);
  }
  return body;
}

let INFO = null;

// ------------------------------------------------------------------------------ search

function showHits(result) {
  const grid = $("hits");
  grid.replaceChildren();
  for (const hit of result.hits) {
    const fig = el("figure", { class: "hit" });
    if (hit.thumbnail) fig.append(el("img", { src: hit.thumbnail, alt: hit.id, loading: "lazy" }));
    const cap = el("figcaption");
    cap.append(el("b", {}, `${hit.rank}. `), document.createTextNode(hit.id));
    cap.append(el("span", { class: "score" }, hit.score.toFixed(3)));
    if (hit.captions.length) {
      const ul = el("ul");
      for (const c of hit.captions) ul.append(el("li", {}, c));
      cap.append(ul);
    }
    fig.append(cap);
    grid.append(fig);
  }
}

async function search(body) {
  $("search-error").textContent = "";
  const index = encodeURIComponent($("search-index").value);
  try {
    showHits(await call(`/search?index=${index}`, body));
  } catch (e) {
    $("search-error").textContent = e.message;
  }
}

function searchFile(file) {
  const kind = file.type.startsWith("audio") || /\.(wav|flac|ogg)$/i.test(file.name) ? "audio" : "image";
  const form = new FormData();
  form.append(kind, file, file.name);
  form.append("k", $("search-k").value);
  return search({ method: "POST", body: form });
}

function setUpSearch(indexes) {
  for (const ix of indexes) $("search-index").append(el("option", { value: ix.name }, `${ix.name} (${ix.items} ${ix.modality})`));
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = JSON.stringify({ text: $("search-text").value, k: Number($("search-k").value) });
    search({ method: "POST", headers: { "content-type": "application/json" }, body });
  });
  const drop = $("search-drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    if (ev.dataTransfer.files.length) searchFile(ev.dataTransfer.files[0]);
  });
  $("search-file").addEventListener("change", (ev) => { if (ev.target.files.length) searchFile(ev.target.files[0]); });
  $("search").hidden = false;
}

// ----------------------------------------------------------------------------- predict

function fieldFor(input) {
  const id = `in-${input.name}`;
  const row = [];
  if (input.input === "file") {
    row.push(el("label", { for: id }, `${input.name} (${input.kind})`));
    row.push(el("input", { id, name: input.name, type: "file", accept: (input.accept || []).join(",") }));
  } else if (input.columns) {
    for (const c of input.columns) {
      row.push(el("label", { for: `in-${c}` }, `${c} (${input.name})`));
      row.push(el("input", { id: `in-${c}`, name: c, type: "number", step: "any" }));
    }
  } else {
    const hint = input.input === "text" ? "text" : `a JSON list of ${input.shape ? input.shape[0] : "N"} numbers`;
    row.push(el("label", { for: id }, `${input.name} (${input.kind})`));
    const area = el("textarea", { id, name: input.name, placeholder: `${hint}; leave empty if missing` });
    row.push(area);
  }
  return row;
}

function buildForm() {
  const model = INFO.models.find((m) => m.name === $("predict-model").value);
  const fields = $("predict-fields");
  fields.replaceChildren();
  for (const input of model.inputs) fields.append(...fieldFor(input));
  $("predict-result").replaceChildren();
}

function showPrediction(result) {
  const out = $("predict-result");
  out.replaceChildren();
  if (result.task === "regression") {
    out.append(el("div", { class: "result-label" }, `value: ${result.value.toFixed(4)}`));
    return;
  }
  const label = result.task === "multilabel" ? result.labels.join(", ") || "(none)" : result.label;
  out.append(el("div", { class: "result-label" }, label));
  for (const [name, p] of Object.entries(result.probabilities)) {
    const bar = el("div", { class: "bar" });
    bar.append(el("span", { class: "name" }, name));
    const fill = el("span", { class: "fill" });
    fill.style.width = `${Math.round(p * 300)}px`;
    bar.append(fill, el("span", {}, p.toFixed(3)));
    out.append(bar);
  }
}

function setUpPredict(models) {
  for (const m of models) $("predict-model").append(el("option", { value: m.name }, `${m.name} (${m.task})`));
  $("predict-model").addEventListener("change", buildForm);
  buildForm();
  $("predict-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("predict-error").textContent = "";
    const form = new FormData();
    for (const node of $("predict-fields").querySelectorAll("input, textarea")) {
      if (node.type === "file") { if (node.files.length) form.append(node.name, node.files[0], node.files[0].name); }
      else if (node.value.trim() !== "") form.append(node.name, node.value.trim());
    }
    const model = encodeURIComponent($("predict-model").value);
    try {
      showPrediction(await call(`/predict?model=${model}`, { method: "POST", body: form }));
    } catch (e) {
      $("predict-result").replaceChildren();  // never show a stale answer under an error
      $("predict-error").textContent = e.message;
    }
  });
  $("predict").hidden = false;
}

// --------------------------------------------------------------------------- sentiment

function plotTimeline(utterances) {
  const W = 900, H = 220, L = 40, R = 10, T = 10, B = 28;
  const end = Math.max(1, ...utterances.map((u) => u.end));
  const x = (t) => L + (t / end) * (W - L - R);
  const y = (s) => T + (1 - (s + 1) / 2) * (H - T - B);
  const plot = svg("svg", { id: "timeline", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
  plot.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), stroke: "#aaa" }));
  for (const s of [-1, 0, 1]) {
    const t = svg("text", { x: 4, y: y(s) + 4 }); t.textContent = s.toFixed(0); plot.append(t);
  }
  const xl = svg("text", { x: W - R - 60, y: H - 6 }); xl.textContent = `${end.toFixed(1)} s`; plot.append(xl);
  const colours = { positive: "#2a7", negative: "#c33", neutral: "#888" };
  const points = [];
  for (const u of utterances) {
    const score = u.score === null ? 0 : u.score;
    const colour = colours[u.label] || "#36c";
    plot.append(svg("rect", {
      class: "utterance", x: x(u.start), width: Math.max(1, x(u.end) - x(u.start)),
      y: Math.min(y(score), y(0)), height: Math.abs(y(score) - y(0)), fill: colour, opacity: 0.35,
    }));
    points.push(`${x((u.start + u.end) / 2)},${y(score)}`);
  }
  if (points.length) plot.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#234", "stroke-width": 2 }));
  return plot;
}

function showSentiment(result) {
  const utterances = result.utterances || [];
  $("sentiment-plot").replaceChildren(plotTimeline(utterances));
  const body = $("sentiment-table").querySelector("tbody");
  body.replaceChildren();
  for (const u of utterances) {
    const tr = el("tr");
    const score = u.score === null ? "" : u.score.toFixed(3);
    for (const cell of [u.start.toFixed(2), u.end.toFixed(2), u.label || "", score, u.text || ""]) tr.append(el("td", {}, cell));
    body.append(tr);
  }
  $("sentiment-table").hidden = false;
}

function setUpSentiment() {
  $("sentiment-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("sentiment-error").textContent = "";
    const file = $("sentiment-file").files[0];
    if (!file) { $("sentiment-error").textContent = "choose a video or audio file"; return; }
    const form = new FormData();
    const kind = file.type.startsWith("audio") || /\.(wav|flac|ogg)$/i.test(file.name) ? "audio" : "video";
    form.append(kind, file, file.name);
    try {
      showSentiment(await call("/sentiment", { method: "POST", body: form }));
    } catch (e) {
      $("sentiment-error").textContent = e.message;
    }
  });
  $("sentiment").hidden = false;
}

// -------------------------------------------------------------------------------- start

(async () => {
  try {
    INFO = await call("/info");
  } catch (e) {
    $("status").textContent = `cannot reach the server: ${e.message}`;
    return;
  }
  $("status").textContent = `${INFO.models.length} model(s), ${INFO.indexes.length} index(es)`;
  if (INFO.indexes.length) setUpSearch(INFO.indexes);
  if (INFO.models.length) setUpPredict(INFO.models);
  if (INFO.sentiment) setUpSentiment();
  document.body.dataset.ready = "1";
})();
