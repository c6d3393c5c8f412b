// The officer's review page: sign in, filter the queue, review by keyboard, watch outbreaks.
"use strict";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("pestid.token");
let items = [];
let current = 0;
let lastAudit = null;
let rejecting = false;
const REASONS = { 1: "blurry", 2: "not_rice", 3: "duplicate", 4: "not_harmful" };

async function call(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}`,
    "Content-Type": "application/json", "Accept-Language": "vi" } });
  if (response.status === 401) { signOut(); throw new Error("unauthenticated"); }
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(body.detail_vi ? `${body.detail_vi} / ${body.detail_en}` : String(body));
  return { body, response };
}

async function api(path, options = {}) { return (await call(path, options)).body; }

// A species as officers read it: the Vietnamese name, the Latin name on hover.
function speciesName(named) { return named ? named.name_vi : "—"; }

function signOut() {
  token = null; sessionStorage.removeItem("pestid.token");
  $("app").hidden = true; $("login").hidden = false; $("signout").hidden = true; $("who").textContent = "";
}

function say(text) { $("status").textContent = text; }

// The queue, a page at a time: "more" appends the next page after the items already listed.
async function loadQueue(more = false) {
  const params = new URLSearchParams({ status: $("f-status").value, offset: more ? items.length : 0 });
  for (const [key, id] of [["district", "f-district"], ["species", "f-species"], ["decision", "f-decision"],
                           ["since", "f-since"], ["until", "f-until"]]) {
    if ($(id).value) params.set(key, $(id).value);
  }
  const { body, response } = await call(`/v1/review/queue?${params}`);
  items = more ? items.concat(body) : body;
  const total = Number(response.headers.get("x-total-count") || items.length);
  $("queue-total").textContent = `${items.length} / ${total} ảnh chờ duyệt / waiting`;
  $("more").hidden = items.length >= total;
  current = Math.min(current, Math.max(items.length - 1, 0));
  renderQueue();
}

function renderQueue() {
  $("queue").replaceChildren(...items.map((item, index) => {
    const li = document.createElement("li");
    li.textContent = `${speciesName(item.predicted)} · ${item.decision} · ${Math.round(item.confidence * 100)}% · ${item.district || item.commune || "—"}`;
    li.title = item.predicted ? item.predicted.scientific : "";
    li.className = index === current ? "active" : "";
    li.dataset.id = item.id;
    li.tabIndex = 0;  // rows are reachable with Tab; Enter or Space opens one
    li.addEventListener("click", () => { current = index; renderQueue(); });
    li.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); current = index; renderQueue(); }
    });
    return li;
  }));
  renderDetail();
}

async function renderDetail() {
  const item = items[current];
  shownAt = Infinity;  // not ready for an action until this item's photos are on screen
  $("relabel").hidden = true;
  if (!item) { $("photos").replaceChildren(); $("prediction").textContent = "Hết ảnh cần duyệt / queue is empty"; return; }
  const top = item.top.map((t) => `${t.name_vi} ${Math.round(t.probability * 100)}%`).join(" · ");
  $("prediction").textContent = `Dự đoán / predicted: ${top} — ${item.decision}`
    + ` — ${new Date(item.created_at).toLocaleString("vi-VN")}, ${[item.commune, item.district].filter(Boolean).join(", ") || "—"}`
    + (item.note ? ` — ghi chú / note: ${item.note}` : "");
  $("prediction").title = item.top.map((t) => t.scientific).join(" · ");
  drawMap(item);
  // Every photo of the submission, as the server's JPEG preview (HEIC included); a click zooms where it points.
  const frames = await Promise.all(item.previews.map(async (preview, n) => {
    const blob = await fetch(preview.large, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.blob());
    const img = document.createElement("img");
    img.src = URL.createObjectURL(blob);
    img.alt = `${speciesName(item.predicted)} — ảnh ${n + 1} / photo ${n + 1}`;
    img.addEventListener("click", (event) => {
      const box = img.getBoundingClientRect();
      img.style.transformOrigin = `${((event.clientX - box.left) / box.width) * 100}% ${((event.clientY - box.top) / box.height) * 100}%`;
      img.classList.toggle("zoomed");
    });
    const frame = document.createElement("div");
    frame.className = "frame";
    frame.appendChild(img);
    return frame;
  }));
  $("photos").replaceChildren(...frames);
  shownAt = performance.now();
}

// One action per item shown: keys pressed while an action is on its way, held down, or in the first moments
// after the next item appears are ignored, so a burst of presses never acts on photos nobody looked at.
let busy = false;
let shownAt = 0;
const SETTLE_MS = 400;

function ready(event) { return !busy && !event.repeat && performance.now() - shownAt >= SETTLE_MS; }

async function act(body) {
  const item = items[current];
  if (!item || busy) return;
  busy = true;
  try {
    const result = await api(`/v1/review/${item.id}`, { method: "POST", body: JSON.stringify(body) });
    lastAudit = result.audit_id;
    say(`Đã lưu / saved: ${result.status}${result.final ? " → " + result.final.name_vi : ""}`);
    await loadQueue();
    await loadOutbreaks();
  } catch (err) { say(err.message); } finally { busy = false; }
}

async function undoLast() {
  if (!lastAudit) return;
  try {
    const result = await api(`/v1/review/undo/${lastAudit}`, { method: "POST" });
    lastAudit = null;
    say(`Đã hoàn tác / undone: ${result.status}`);
    await loadQueue();
    await loadOutbreaks();
  } catch (err) { say(err.message); }
}

async function searchSpecies() {
  const q = $("species-search").value.trim();
  const found = q ? await fetch(`/v1/species?q=${encodeURIComponent(q)}`).then((r) => r.json()) : [];
  $("species-results").replaceChildren(...found.slice(0, 8).map((s) => {
    const li = document.createElement("li");
    li.textContent = `${s.name_vi} / ${s.name_en} (${s.scientific})`;
    li.dataset.id = s.id;
    li.addEventListener("click", () => act({ action: "relabel", label: s.id }));
    return li;
  }));
}

function outbreakQuery() {
  const params = new URLSearchParams();
  for (const [key, id] of [["group", "o-group"], ["district", "o-district"], ["weeks", "o-weeks"]]) {
    if ($(id).value) params.set(key, $(id).value.trim());
  }
  return params.toString();
}

async function loadOutbreaks() {
  const rows = await api(`/v1/outbreaks?${outbreakQuery()}`);
  $("outbreaks").tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    if (r.rising) tr.className = "rising";
    for (const value of [r.week, r.district, r.name_vi, r.reports, r.rising ? "⚠ tăng vọt / rising" : ""]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    tr.children[2].title = r.scientific;
    return tr;
  }));
  drawChart(rows);
}

// A schematic of the province: district centres as labelled dots, the submission's location (or its district,
// when it sent no coordinates) in red. No tiles, nothing from outside the server.
let districts = null;

async function drawMap(item) {
  districts = districts || await fetch("/static/districts.json").then((r) => r.json());
  const { south, north, west, east } = districts.bounds;
  const width = 320, height = Math.round(width * (north - south) / (east - west));
  const x = (lon) => ((lon - west) / (east - west)) * width;
  const y = (lat) => ((north - lat) / (north - south)) * height;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Vị trí / location: ${item.district || "—"}`);
  for (const d of districts.districts) {
    const here = d.name === item.district;
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(d.lon)); dot.setAttribute("cy", y(d.lat)); dot.setAttribute("r", here ? "6" : "3");
    dot.setAttribute("class", here && item.latitude == null ? "district here" : "district");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x(d.lon) + 7); label.setAttribute("y", y(d.lat) + 4);
    label.textContent = d.name;
    svg.append(dot, label);
  }
  if (item.latitude != null && item.longitude != null) {
    const point = document.createElementNS(ns, "circle");
    point.setAttribute("cx", x(item.longitude)); point.setAttribute("cy", y(item.latitude)); point.setAttribute("r", "6");
    point.setAttribute("class", "district here");
    svg.append(point);
  }
  $("map").replaceChildren(svg);
}

function drawChart(rows) {
  const totals = {};
  rows.forEach((r) => { totals[r.name_vi] = (totals[r.name_vi] || 0) + r.reports; });
  const entries = Object.entries(totals).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "100%");
  svg.setAttribute("height", String(24 * entries.length + 10));
  entries.forEach(([species, count], i) => {
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", "230"); bar.setAttribute("y", String(i * 24 + 4));
    bar.setAttribute("width", String((count / max) * 400)); bar.setAttribute("height", "18"); bar.setAttribute("fill", "#2f6b2a");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "0"); label.setAttribute("y", String(i * 24 + 18));
    label.textContent = `${species} (${count})`;
    svg.append(bar, label);
  });
  $("chart").replaceChildren(svg);
}

document.addEventListener("keydown", (event) => {
  if ($("app").hidden || event.target.tagName === "INPUT" && event.target.id !== "species-search") return;
  if (event.target.id === "species-search") {
    if (event.key === "Enter") {
      const first = $("species-results").querySelector("li");
      if (first) act({ action: "relabel", label: first.dataset.id });
    } else if (event.key === "Escape") { $("relabel").hidden = true; }
    return;
  }
  if (rejecting) {
    rejecting = false;
    if (REASONS[event.key] && ready(event)) act({ action: "reject", reason: REASONS[event.key] });
    return;
  }
  if (event.key === "j") { current = Math.min(current + 1, items.length - 1); renderQueue(); }
  else if (event.key === "k") { current = Math.max(current - 1, 0); renderQueue(); }
  else if (event.key === "c") { if (ready(event)) act({ action: "confirm" }); }
  else if (event.key === "x") { rejecting = true; say("Lý do / reason: 1 mờ/blurry · 2 không phải lúa/not rice · 3 trùng/duplicate · 4 không phải dịch hại/not harmful"); }
  else if (event.key === "r") { $("relabel").hidden = false; $("species-search").value = ""; $("species-search").focus(); event.preventDefault(); }
  else if (event.key === "u") undoLast();
});

$("species-search").addEventListener("input", searchSpecies);
$("more").addEventListener("click", () => loadQueue(true));
$("o-filters").addEventListener("submit", (event) => { event.preventDefault(); loadOutbreaks(); });
$("signout").addEventListener("click", async () => {
  try { await api("/v1/auth/logout", { method: "POST" }); } catch (err) { /* signed out either way */ }
  signOut();
});
$("filters").addEventListener("submit", (event) => { event.preventDefault(); current = 0; loadQueue(); });
$("csv").addEventListener("click", async (event) => {
  event.preventDefault();
  const text = await api(`/v1/outbreaks.csv?${outbreakQuery()}`);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  link.download = "outbreaks.csv";
  link.click();
});

async function start() {
  try {
    const me = await api("/v1/auth/me");
    $("who").textContent = `${me.username} (${me.role})`;
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    await loadQueue();
    await loadOutbreaks();
  } catch (err) { signOut(); }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/v1/auth/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }) });
  const body = await response.json();
  if (!response.ok) { $("login-error").textContent = `${body.detail_vi} / ${body.detail_en}`; $("login-error").hidden = false; return; }
  token = body.token;
  sessionStorage.setItem("pestid.token", token);
  start();
});

if (token) start();
