// The farmer's page: Vietnamese first, English on request; no external resources.
// Every observation is kept on the phone (IndexedDB) with its own idempotency key before anything is sent,
// so a cut connection or a closed page loses nothing, and a retry never stores it twice.
"use strict";
const TEXT = {
  vi: {
    title: "Nhận diện sâu bệnh lúa", lead: "Chụp hoặc chọn tối đa 5 ảnh của cùng một con sâu, ốc hoặc cây lúa bị hại.",
    camera: "Chụp ảnh", gallery: "Chọn từ thư viện", send: "Nhận diện", cancel: "Hủy", retry: "Gửi lại",
    where: "Ruộng ở đâu?", gps: "Dùng vị trí hiện tại", district: "Huyện / thị xã", commune: "Xã / phường",
    gps_why: "Vị trí giúp cán bộ biết dịch hại đang ở đâu để cảnh báo các ruộng gần bên.", choose: "— Chọn —",
    gps_wait: "Đang lấy vị trí…", gps_ok: "Đã lấy vị trí (±{m} m). Kiểm tra lại huyện bên dưới.",
    gps_no: "Không lấy được vị trí. Hãy chọn huyện và ghi tên xã.",
    advice: "Khuyến cáo", what_now: "Nên làm gì", alternatives: "Có thể là", mine: "Ảnh của tôi",
    nospray: "Đây là thiên địch có ích. Không phun thuốc!",
    toomany: "Mỗi lần chỉ gửi tối đa 5 ảnh.", remove: "Bỏ ảnh", photo: "Ảnh",
    identified: "Đã nhận diện", uncertain: "Chưa chắc chắn", not_recognised: "Không nhận ra",
    not_recognised_todo: "Hãy chụp lại gần hơn, đủ sáng và rõ nét, hoặc hỏi cán bộ bảo vệ thực vật của xã. Chưa phun thuốc khi chưa biết rõ.",
    uncertain_todo: "Chụp thêm ảnh gần hơn, rõ con vật hoặc vết bệnh. Đừng phun thuốc vội: cán bộ bảo vệ thực vật sẽ xem ảnh này.",
    candidates: "Các khả năng (chưa chắc chắn)", confidence: "độ tin cậy",
    category: { insect: "côn trùng", mite: "nhện hại", mollusc: "ốc", rodent: "chuột", fungus: "bệnh do nấm",
      bacterium: "bệnh do vi khuẩn", virus: "bệnh do virus", natural_enemy: "thiên địch", healthy: "lúa khỏe",
      out_of_scope: "không phải sâu bệnh lúa" },
    group: "Nhóm", preparing: "Đang chuẩn bị ảnh…", sending: "Đang gửi {sent} / {total} KB",
    waiting_server: "Đã gửi xong, đang chờ kết quả…",
    sent_ok: "Đã gửi cho cán bộ (mã {id}).", local: "Kết quả trên điện thoại (chưa có mạng). Ảnh sẽ được gửi cho cán bộ khi có mạng.",
    unsure_sent: "Chưa chắc ảnh đã tới máy chủ. Trang sẽ tự gửi lại với cùng mã, nên ảnh không bị gửi hai lần.",
    timeout: "Mạng quá chậm, chưa gửi xong. Ảnh vẫn được giữ trên điện thoại.",
    cancelled: "Đã hủy gửi. Ảnh vẫn được giữ trong “Ảnh của tôi”.",
    no_offline: "Chưa có mạng và điện thoại chưa tải mô hình. Ảnh được giữ lại và sẽ gửi khi có mạng.",
    offline_now: "Đang không có mạng. Ảnh sẽ được nhận diện trên điện thoại và gửi sau.",
    offline_ready: "Đã sẵn sàng nhận diện khi không có mạng.",
    state: { waiting: "Đang chờ gửi", sending: "Đang gửi", sent: "Đã gửi, chờ cán bộ xem", reviewed: "Cán bộ đã xem",
      refused: "Máy chủ không nhận" },
    confirmed: "Cán bộ đã xác nhận: {name}", rejected: "Cán bộ không dùng ảnh này: {reason}",
    send_now: "Gửi ngay", delete: "Xóa", on_phone: "Trên điện thoại: {name}", server_said: "Kết quả: {name}",
    switch: "English",
  },
  en: {
    title: "Rice pest identification", lead: "Take or choose up to 5 photos of one insect, snail or damaged rice plant.",
    camera: "Take a photo", gallery: "Choose from gallery", send: "Identify", cancel: "Cancel", retry: "Send again",
    where: "Where is the field?", gps: "Use my location", district: "District", commune: "Commune",
    gps_why: "Your location tells officers where the pest is, so they can warn nearby fields.", choose: "— Choose —",
    gps_wait: "Finding your location…", gps_ok: "Location found (±{m} m). Check the district below.",
    gps_no: "Could not get your location. Choose the district and type the commune.",
    advice: "What to do", what_now: "What to do", alternatives: "It could also be", mine: "My observations",
    nospray: "This is a beneficial natural enemy. Do not spray!",
    toomany: "Send at most 5 photos at a time.", remove: "Remove photo", photo: "Photo",
    identified: "Identified", uncertain: "Not sure", not_recognised: "Not recognised",
    not_recognised_todo: "Take another photo closer up, in good light and sharp, or ask your commune's plant-protection officer. Do not spray until you know what it is.",
    uncertain_todo: "Take another, closer photo of the animal or the lesion. Do not spray yet: a plant-protection officer will look at this photo.",
    candidates: "Candidates (not certain)", confidence: "confidence",
    category: { insect: "insect", mite: "mite", mollusc: "snail", rodent: "rodent", fungus: "fungal disease",
      bacterium: "bacterial disease", virus: "viral disease", natural_enemy: "natural enemy", healthy: "healthy rice",
      out_of_scope: "not a rice pest or disease" },
    group: "Group", preparing: "Preparing photos…", sending: "Sending {sent} / {total} KB",
    waiting_server: "Sent; waiting for the answer…",
    sent_ok: "Sent to the officers (id {id}).", local: "Answer from this phone (no connection). The photos go to the officers when the connection returns.",
    unsure_sent: "Not sure the photos reached the server. The page will send them again with the same key, so they are never stored twice.",
    timeout: "The connection is too slow; sending did not finish. The photos are kept on this phone.",
    cancelled: "Sending cancelled. The photos are kept in “My observations”.",
    no_offline: "No connection, and this phone has not downloaded the model yet. The photos are kept and will be sent when the connection returns.",
    offline_now: "No connection. Photos are identified on this phone and sent later.",
    offline_ready: "Ready to identify without a connection.",
    state: { waiting: "Waiting to send", sending: "Sending", sent: "Sent, waiting for an officer", reviewed: "Reviewed by an officer",
      refused: "Refused by the server" },
    confirmed: "The officer confirmed: {name}", rejected: "The officer did not use this photo: {reason}",
    send_now: "Send now", delete: "Delete", on_phone: "On this phone: {name}", server_said: "Answer: {name}",
    switch: "Tiếng Việt",
  },
};
const MAX_PHOTOS = 5;
const LONG_SIDE = 1280; // the server's model looks at 224 px: 1,280 px keeps room for an officer to zoom
const JPEG_QUALITY = 0.82; // a 12 MP phone photo leaves as ~170 KB: about 4 s at 400 kbps
const UPLOAD_TIMEOUT_MS = 90000;
const $ = (id) => document.getElementById(id);
const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, k) => values[k]);
let lang = localStorage.getItem("pestid.lang") || "vi";
let photos = []; // {blob, name, url} of the observation being made
let location_ = null; // {latitude, longitude, accuracy}
let shown = null; // the observation whose answer is on screen
let current = null; // {xhr, id} of the upload in flight
let manifest = null;
let districts = [];

// ---- the queue: IndexedDB, one record per observation, created before anything is sent ----
const DB = (() => {
  let opened = null;
  function open() {
    opened = opened || new Promise((resolve, reject) => {
      const request = indexedDB.open("pestid", 1);
      request.onupgradeneeded = () => request.result.createObjectStore("observations", { keyPath: "id" });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return opened;
  }
  async function run(mode, work) {
    const db = await open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("observations", mode);
      const result = work(tx.objectStore("observations"));
      tx.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  }
  return {
    put: (record) => run("readwrite", (store) => store.put(record)),
    get: (id) => run("readonly", (store) => store.get(id)),
    all: () => run("readonly", (store) => store.getAll()),
    remove: (id) => run("readwrite", (store) => store.delete(id)),
  };
})();

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- photos: resized on the phone before sending ----
async function shrink(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (err) {
    return { blob: file, decoded: false }; // e.g. HEIC where the browser has no decoder: send the original
  }
  const scale = Math.min(1, LONG_SIDE / Math.max(bitmap.width, bitmap.height));
  const width = Math.round(bitmap.width * scale), height = Math.round(bitmap.height * scale);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
  return { blob: blob || file, decoded: Boolean(blob) };
}

function renderPreviews() {
  const t = TEXT[lang];
  $("previews").replaceChildren(...photos.map((p, i) => {
    const li = document.createElement("li");
    if (p.url) {
      const img = document.createElement("img");
      img.src = p.url;
      img.alt = `${t.photo} ${i + 1}`;
      li.append(img);
    } else {
      const tile = document.createElement("span");
      tile.className = "tile";
      tile.textContent = (p.name.split(".").pop() || "?").toUpperCase();
      li.append(tile);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `${t.remove} ${i + 1}`);
    remove.addEventListener("click", () => {
      if (p.url) URL.revokeObjectURL(p.url);
      photos.splice(i, 1);
      renderPreviews();
    });
    li.append(remove);
    return li;
  }));
  $("send").disabled = photos.length === 0 || current !== null;
}

async function addPhotos(files) {
  const t = TEXT[lang];
  hideError();
  const room = MAX_PHOTOS - photos.length;
  if (files.length > room) showError(t.toomany);
  for (const file of files.slice(0, Math.max(0, room))) {
    const { blob, decoded } = await shrink(file);
    const name = decoded ? file.name.replace(/\.[^.]+$/, "") + ".jpg" : file.name;
    photos.push({ blob, name, url: decoded ? URL.createObjectURL(blob) : null });
  }
  renderPreviews();
}

// ---- where ----
function nearestDistrict(latitude, longitude) {
  let best = null;
  for (const d of districts) {
    const dy = d.lat - latitude, dx = (d.lon - longitude) * Math.cos((latitude * Math.PI) / 180);
    const distance = dx * dx + dy * dy;
    if (!best || distance < best.distance) best = { name: d.name, distance };
  }
  return best && best.distance < 0.25 * 0.25 ? best.name : ""; // within ~25 km of a district centre
}

function askLocation() {
  const t = TEXT[lang];
  if (!navigator.geolocation) { $("gps-state").textContent = t.gps_no; return; }
  $("gps-state").textContent = t.gps_wait;
  navigator.geolocation.getCurrentPosition((position) => {
    const { latitude, longitude, accuracy } = position.coords;
    location_ = { latitude, longitude, accuracy };
    const district = nearestDistrict(latitude, longitude);
    if (district) $("district").value = district;
    $("gps-state").textContent = fill(t.gps_ok, { m: Math.round(accuracy) });
  }, () => { location_ = null; $("gps-state").textContent = t.gps_no; },
  { enableHighAccuracy: true, timeout: 20000, maximumAge: 300000 });
}

// ---- answers ----
function hideError() { $("error").hidden = true; $("retry").hidden = true; }
function showError(text, retry = false) { $("error").textContent = text; $("error").hidden = false; $("retry").hidden = !retry; }

function describe(species) {
  const t = TEXT[lang];
  const parts = [t.category[species.category] || ""];
  if (species.parent) parts.push(`${t.group}: ${species.parent.name}`);
  return parts.filter(Boolean).join(" · ");
}

function percent(p) {
  return p >= 0.995 ? "99%" : p < 0.01 ? "<1%" : `${Math.round(p * 100)}%`;
}

// An API v1 answer (from the server, or made on the phone by localAnswer) on screen, in its own language.
// Only an identified answer (a species, or a group: "the hoppers") is shown as an answer, with its confidence and
// advice. "Not sure" shows its candidates as candidates and what to do now; "not recognised" offers no pest at all.
function render(answer, record) {
  const t = TEXT[lang];
  const main = answer.decision === "identified" ? answer.species : null;
  $("result").hidden = false;
  $("decision").textContent = t[answer.decision];
  $("decision").className = `decision ${answer.decision}`;
  $("nospray").hidden = !answer.do_not_spray;
  $("name").textContent = main ? main.name : "";
  $("name").hidden = !main;
  $("scientific").textContent = main ? main.scientific : "";
  $("description").textContent = main ? [describe(main), `${t.confidence} ${percent(main.probability)}`].filter(Boolean).join(" · ") : "";
  $("message").textContent = answer.message;
  $("advice-title").textContent = main ? t.advice : t.what_now;
  $("advice").textContent = main ? main.advice
    : answer.decision === "uncertain" ? t.uncertain_todo : t.not_recognised_todo;
  const alts = answer.decision === "not_recognised" ? []
    : (answer.alternatives || []).filter((a) => a.probability >= 0.01);
  // beside a species, other species it could be; beside a group or a guess, candidates (which species, unsure)
  $("alternatives-title").textContent = main && answer.level !== "group" ? t.alternatives : t.candidates;
  $("alternatives-block").hidden = alts.length === 0;
  $("alternatives").replaceChildren(...alts.map((s) => {
    const li = document.createElement("li");
    li.textContent = `${s.name} (${percent(s.probability)})`;
    return li;
  }));
  $("source").hidden = !record || record.state !== "waiting";
  $("source").textContent = t.local;
  $("sent").textContent = record && record.submission_id ? fill(t.sent_ok, { id: record.submission_id.slice(0, 8) }) : "";
  shown = record ? record.id : null;
}

// The phone's answer in API v1's shape, from offline.js's decision and the manifest's catalogue.
function localAnswer(outcome, answerLang) {
  const catalogue = manifest.catalogue;
  const named = (id, probability) => {
    const entry = catalogue[id];
    const parent = entry.parent ? { id: entry.parent, name: catalogue[entry.parent][`name_${answerLang}`] } : null;
    return { id, name: entry[`name_${answerLang}`], probability, scientific: entry.scientific, category: entry.category,
             parent, natural_enemy: entry.natural_enemy, advice: entry[`advice_${answerLang}`] };
  };
  const answer = outcome.decision !== "identified" ? null
    : outcome.level === "group" ? outcome.nearest_group : outcome.ranked[0];
  const shownAlternatives = outcome.level === "species" ? outcome.ranked.slice(1)
    : outcome.ranked.filter((r) => catalogue[r.id].in_scope);
  return {
    decision: outcome.decision, message: outcome.messages[answerLang], lang: answerLang, level: outcome.level,
    species: answer ? named(answer.id, answer.probability) : null,
    nearest_group: outcome.nearest_group ? named(outcome.nearest_group.id, outcome.nearest_group.probability) : null,
    alternatives: shownAlternatives.map((r) => ({ id: r.id, name: catalogue[r.id][`name_${answerLang}`], probability: r.probability })),
    do_not_spray: outcome.do_not_spray, needs_review: outcome.needs_review,
  };
}

// The offline runtime (onnxruntime-web and offline.js) is loaded after the page, never on its first paint.
let runtimeLoading = null;
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = resolve;
    script.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(script);
  });
}
function runtime() {
  runtimeLoading = runtimeLoading || loadScript("/static/vendor/ort.wasm.min.js").then(() => loadScript("/static/offline.js"))
    .catch((err) => { runtimeLoading = null; throw err; });
  return runtimeLoading;
}

async function loadManifest() {
  if (manifest) return manifest;
  const response = await fetch("/v1/offline/manifest");
  if (!response.ok) throw new Error("no offline model");
  manifest = await response.json();
  return manifest;
}

async function identifyOnPhone(record) {
  await runtime();
  const m = await loadManifest();
  await Offline.load(m); // once per page (a few seconds on a cheap phone): not part of the answer's time
  const started = performance.now();
  const outcome = await Offline.identify(m, record.photos);
  record.local = { vi: localAnswer(outcome, "vi"), en: localAnswer(outcome, "en"), ms: Math.round(performance.now() - started) };
  await DB.put(record);
  return record.local;
}

// ---- sending: one observation, one key, however many tries ----
function upload(record, onProgress) {
  return new Promise((resolve) => {
    const form = new FormData();
    record.photos.forEach((blob, i) => form.append("photos", blob, record.names[i] || `photo-${i + 1}.jpg`));
    for (const [k, v] of Object.entries(record.fields)) if (v !== null && v !== "") form.append(k, String(v));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/identify?lang=${record.lang}`);
    xhr.setRequestHeader("Idempotency-Key", record.key);
    xhr.setRequestHeader("Accept-Language", record.lang);
    xhr.timeout = UPLOAD_TIMEOUT_MS;
    xhr.upload.onprogress = (e) => onProgress && e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.upload.onload = () => onProgress && onProgress(-1, -1);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => resolve({ status: 0, error: "network" });
    xhr.ontimeout = () => resolve({ status: 0, error: "timeout" });
    xhr.onabort = () => resolve({ status: 0, error: "cancelled" });
    current = { xhr, id: record.id };
    xhr.send(form);
  });
}

// Send one stored observation; its state changes only on what the server said.
async function send(record, onProgress) {
  record.state = "sending";
  const result = await upload(record, onProgress);
  current = null;
  if (result.status === 200 || result.status === 201) {
    Object.assign(record, { state: "sent", submission_id: result.body.submission_id, receipt: result.body.receipt,
                            answer: result.body, paused: false, error: null });
  } else if (result.status >= 400 && result.status < 500 && ![408, 429].includes(result.status)) {
    record.state = "refused"; // the server will never take these photos: say why, do not retry
    record.error = result.body ? (record.lang === "en" ? result.body.detail_en : result.body.detail_vi) : String(result.status);
  } else {
    record.state = "waiting"; // unknown whether it arrived: a retry with the same key is safe
    record.error = result.error || String(result.status);
    if (result.error === "cancelled") record.paused = true;
  }
  await DB.put(record);
  return record;
}

let flushing = false;
// Sends what waits, then asks about what was sent. `force` (start-up, the connection back) asks every sent
// observation; the minute's timer asks each at most every 10 minutes.
async function flush(force = false) {
  if (flushing || !navigator.onLine) return;
  flushing = true;
  try {
    for (const record of await DB.all()) {
      if (record.state === "waiting" && !record.paused && current === null) {
        await send(record);
        if (record.state === "waiting") break; // still no way through: try again later
      }
    }
    await refreshVerdicts(force);
  } finally {
    flushing = false;
    renderMine();
  }
}

const ASK_EVERY_MS = 10 * 60 * 1000;
async function refreshVerdicts(force) {
  for (const record of await DB.all()) {
    if (record.state !== "sent" || !record.receipt) continue;
    if (!force && record.asked && Date.now() - record.asked < ASK_EVERY_MS) continue;
    record.asked = Date.now();
    try {
      const response = await fetch(`/v1/submissions/${record.submission_id}?lang=${lang}`,
                                   { headers: { Receipt: record.receipt } });
      if (!response.ok) continue;
      const state = await response.json();
      if (state.verdict) Object.assign(record, { state: "reviewed", verdict: state.verdict, verdict_lang: lang });
      await DB.put(record);
    } catch (err) { return; } // offline again: next time
  }
}

function recordName(record) {
  const t = TEXT[lang];
  const answer = record.answer && record.answer.lang === lang ? record.answer : record.local ? record.local[lang] : null;
  if (!answer) return "";
  const main = answer.decision === "identified" ? answer.species : null; // a guess is never named as the answer
  const name = main ? main.name : t[answer.decision];
  return fill(record.answer ? t.server_said : t.on_phone, { name });
}

let thumbnails = []; // object URLs of the list's thumbnails, released on each render
async function renderMine() {
  const t = TEXT[lang];
  thumbnails.forEach((u) => URL.revokeObjectURL(u));
  thumbnails = [];
  const records = (await DB.all()).sort((a, b) => (a.created < b.created ? 1 : -1));
  $("mine-block").hidden = records.length === 0;
  $("mine").replaceChildren(...records.map((record) => {
    const li = document.createElement("li");
    li.dataset.state = record.state;
    li.dataset.id = record.id;
    const img = document.createElement("img");
    img.alt = "";
    if (record.thumb) { img.src = URL.createObjectURL(record.thumb); thumbnails.push(img.src); }
    const text = document.createElement("div");
    const when = new Date(record.created).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", { dateStyle: "short", timeStyle: "short" });
    const lines = [when, recordName(record), t.state[record.state] || record.state];
    if (record.verdict && record.verdict.species) lines.push(fill(t.confirmed, { name: record.verdict.species.name }));
    if (record.verdict && record.verdict.rejected) lines.push(fill(t.rejected, { reason: record.verdict.rejected }));
    if (record.state === "refused" && record.error) lines.push(record.error);
    lines.filter(Boolean).forEach((line, i) => {
      const p = document.createElement(i === 0 ? "small" : "p");
      p.textContent = line;
      if (line.startsWith(fill(t.confirmed, { name: "" }))) p.className = "verdict";
      text.append(p);
    });
    li.append(img, text);
    if (record.state === "waiting" || record.state === "refused") {
      const actions = document.createElement("div");
      if (record.state === "waiting") {
        const now = document.createElement("button");
        now.type = "button";
        now.textContent = t.send_now;
        now.addEventListener("click", async () => { record.paused = false; await DB.put(record); flush(); });
        actions.append(now);
      }
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary";
      remove.textContent = t.delete;
      remove.addEventListener("click", async () => { await DB.remove(record.id); renderMine(); });
      actions.append(remove);
      li.append(actions);
    }
    return li;
  }));
}

// ---- the form ----
function progress(loaded, total) {
  const t = TEXT[lang];
  if (loaded < 0) { $("progress").removeAttribute("value"); $("progress-text").textContent = t.waiting_server; return; }
  $("progress").value = Math.round((100 * loaded) / total);
  $("progress-text").textContent = fill(t.sending, { sent: Math.round(loaded / 1024), total: Math.round(total / 1024) });
}

async function submit(record) {
  const t = TEXT[lang];
  hideError();
  $("result").hidden = true; // the previous answer never stays on screen beside a new observation
  $("send").disabled = true;
  $("progress-block").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = t.preparing;
  let unsure = false;
  try {
    if (navigator.onLine) {
      await send(record, progress);
      if (record.state === "sent") { render(record.answer, record); return; }
      if (record.state === "refused") { showError(record.error); return; }
      const why = record.error === "cancelled" ? t.cancelled : record.error === "timeout" ? t.timeout : t.unsure_sent;
      showError(why, true);
      unsure = true;
      if (record.error === "cancelled") return;
    } else {
      $("network").hidden = false;
      $("network").textContent = t.offline_now;
    }
    try { // meanwhile, the phone's own answer
      const local = await identifyOnPhone(record);
      render(local[lang], record);
    } catch (err) {
      if (!unsure) showError(t.no_offline); // what the network did stays said
    }
  } finally {
    $("progress-block").hidden = true;
    $("send").disabled = photos.length === 0;
    renderMine();
    if ("serviceWorker" in navigator && record.state === "waiting") {
      navigator.serviceWorker.ready.then((reg) => reg.sync && reg.sync.register("pestid-queue")).catch(() => null);
    }
  }
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (photos.length === 0 || current !== null) return;
  const fields = { district: $("district").value, commune: $("commune").value.trim(),
                   date: new Date().toISOString().slice(0, 10) };
  if (location_) Object.assign(fields, { latitude: location_.latitude.toFixed(6), longitude: location_.longitude.toFixed(6) });
  const record = { id: randomKey(), key: randomKey(), created: new Date().toISOString(), lang, fields, state: "waiting",
                   photos: photos.map((p) => p.blob), names: photos.map((p) => p.name),
                   thumb: (photos.find((p) => p.url) || { blob: null }).blob };
  await DB.put(record); // kept before anything is sent: nothing is lost if the page closes now
  photos.forEach((p) => p.url && URL.revokeObjectURL(p.url));
  photos = [];
  renderPreviews();
  await submit(record);
});

$("retry").addEventListener("click", async () => {
  const record = shown ? await DB.get(shown) : null;
  const waiting = record || (await DB.all()).find((r) => r.state === "waiting");
  if (waiting) { waiting.paused = false; await submit(waiting); }
});
$("cancel").addEventListener("click", () => current && current.xhr.abort());
$("camera").addEventListener("change", (e) => { addPhotos(Array.from(e.target.files)); e.target.value = ""; });
$("gallery").addEventListener("change", (e) => { addPhotos(Array.from(e.target.files)); e.target.value = ""; });
$("gps").addEventListener("click", askLocation);

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = TEXT[lang][el.dataset.i18n]; });
  $("lang").textContent = TEXT[lang].switch;
  document.title = TEXT[lang].title;
  $("result").hidden = true; // an answer comes in one language: the other page does not show it
  $("network").hidden = navigator.onLine;
  $("network").textContent = TEXT[lang].offline_now;
  renderPreviews();
  renderMine();
}

$("lang").addEventListener("click", () => {
  lang = lang === "vi" ? "en" : "vi";
  localStorage.setItem("pestid.lang", lang);
  applyLanguage();
});

window.addEventListener("online", () => { $("network").hidden = true; flush(true); });
window.addEventListener("offline", () => { $("network").hidden = false; $("network").textContent = TEXT[lang].offline_now; });

async function start() {
  applyLanguage();
  try {
    const response = await fetch("/static/districts.json");
    districts = (await response.json()).districts;
    $("district").append(...districts.map((d) => new Option(d.name, d.name)));
  } catch (err) { districts = []; }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.addEventListener("message", (event) => event.data === "flush" && flush());
    try {
      await navigator.serviceWorker.register("/sw.js");
      await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) { // first visit: let the worker take the page, so the model is fetched once
        await new Promise((resolve) => {
          navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true });
          setTimeout(resolve, 5000);
        });
      }
    } catch (err) { /* the page still works online */ }
  }
  flush(true);
  setInterval(() => flush(), 60000);
  // Ready for the field: the service worker keeps the runtime and the model (fetched once, on the first visit,
  // unless the phone asked to save data); the model is loaded now so an offline answer does not wait for it.
  const saveData = navigator.connection && navigator.connection.saveData;
  if (!navigator.onLine || !saveData) {
    try {
      await runtime();
      const m = await loadManifest();
      await Offline.load(m);
      const cached = "caches" in window && (await caches.match(m.model.url));
      $("offline-ready").textContent = TEXT[lang].offline_ready;
      $("offline-ready").hidden = !cached;
    } catch (err) { /* online only */ }
  }
}

start();
