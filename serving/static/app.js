// The farmer's page: Vietnamese first, English on request; no external resources.
// Every observation is kept on the phone (IndexedDB) with its own idempotency key before anything is sent,
// so a cut connection or a closed page loses nothing, and a retry never stores it twice.
// What the farmer is shown about an observation comes from one function (view), drawn on the answer card and in
// "My observations" by one re-render (changed) whenever the record changes: the two can never disagree.
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
      out_of_scope: "không phải sâu bệnh lúa", nematode: "tuyến trùng", bird: "chim", weed: "cỏ dại" },
    group: "Nhóm", preparing: "Đang chuẩn bị ảnh…", sending: "Đang gửi {sent} / {total} KB",
    waiting_server: "Đã gửi xong, đang chờ kết quả…",
    local: "Kết quả trên điện thoại (chưa có mạng).", local_online: "Kết quả trên điện thoại.",
    unsure_sent: "Chưa chắc ảnh đã tới máy chủ. Trang sẽ tự gửi lại với cùng mã, nên ảnh không bị gửi hai lần.",
    timeout: "Mạng quá chậm, chưa gửi xong. Ảnh vẫn được giữ trên điện thoại.",
    cancelled: "Đã hủy gửi. Ảnh vẫn được giữ trong “Ảnh của tôi”.",
    no_offline: "Chưa có mạng và điện thoại chưa tải mô hình. Ảnh được giữ lại và sẽ gửi khi có mạng.",
    offline_now: "Đang không có mạng. Ảnh sẽ được nhận diện trên điện thoại và gửi sau.",
    offline_ready: "Đã sẵn sàng nhận diện khi không có mạng.",
    state: { waiting: "Đang chờ gửi", sending: "Đang gửi", sent: "Đã gửi cho cán bộ, đang chờ xem",
      reviewed: "Cán bộ đã xem", refused: "Máy chủ không nhận" },
    confirmed: "Cán bộ đã xác nhận: {name}", corrected: "Cán bộ đã sửa thành: {name}",
    send_now: "Gửi ngay", delete: "Xóa", deleted: "Đã xóa.", undo: "Hoàn tác", more: "Xem thêm ({n})",
    on_phone: "Trên điện thoại: {name}", server_said: "Kết quả: {name}",
    switch: "English", switch_lang: "en",
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
      out_of_scope: "not a rice pest or disease", nematode: "nematode", bird: "bird", weed: "weed" },
    group: "Group", preparing: "Preparing photos…", sending: "Sending {sent} / {total} KB",
    waiting_server: "Sent; waiting for the answer…",
    local: "Answer from this phone (no connection).", local_online: "Answer from this phone.",
    unsure_sent: "Not sure the photos reached the server. The page will send them again with the same key, so they are never stored twice.",
    timeout: "The connection is too slow; sending did not finish. The photos are kept on this phone.",
    cancelled: "Sending cancelled. The photos are kept in “My observations”.",
    no_offline: "No connection, and this phone has not downloaded the model yet. The photos are kept and will be sent when the connection returns.",
    offline_now: "No connection. Photos are identified on this phone and sent later.",
    offline_ready: "Ready to identify without a connection.",
    state: { waiting: "Waiting to send", sending: "Sending", sent: "Sent to the officers, waiting for review",
      reviewed: "Reviewed by an officer", refused: "Refused by the server" },
    confirmed: "The officer confirmed: {name}", corrected: "The officer corrected it to: {name}",
    send_now: "Send now", delete: "Delete", deleted: "Deleted.", undo: "Undo", more: "Show more ({n})",
    on_phone: "On this phone: {name}", server_said: "Answer: {name}",
    switch: "Tiếng Việt", switch_lang: "vi",
  },
};
const MAX_PHOTOS = 5;
const LONG_SIDE = 1280; // the server's model looks at 224 px: 1,280 px keeps room for an officer to zoom
const JPEG_QUALITY = 0.82; // a 12 MP phone photo leaves as ~170 KB: about 4 s at 400 kbps
const UPLOAD_TIMEOUT_MS = 90000;
const UNDO_MS = 6000; // a deleted observation stays on the phone this long after its undo bar shows
const LISTED = 10; // "My observations" shows this many until "more" is tapped
const RETRY_FIRST_MS = 5000; // a failed send is tried again after 5 s, 10 s, 20 s… up to a minute
const RETRY_LAST_MS = 60000;
const $ = (id) => document.getElementById(id);
const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, k) => values[k]);
const asked = new URLSearchParams(location.search).get("lang"); // a link's ?lang= wins over the phone's choice
let lang = ["vi", "en"].includes(asked) ? asked : localStorage.getItem("pestid.lang") || "vi";
let photos = []; // {blob, name, url} of the observation being made
let location_ = null; // {latitude, longitude, accuracy}
let shown = null; // the stored observation on the answer card
let current = null; // {xhr, id} of the upload in flight
let manifest = null;
let districts = [];
let listedAll = false;

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

// Today on the phone's own calendar (YYYY-MM-DD): an early-morning photo in Vietnam is still yesterday in UTC.
function localDay() {
  const now = new Date();
  return [now.getFullYear(), now.getMonth() + 1, now.getDate()].map((n) => String(n).padStart(2, "0")).join("-");
}

// This phone's own random id: the server's per-device upload limit counts it (serving/ratelimit.py), so
// farmers who share a carrier's address do not share a limit.
function deviceKey() {
  let key = localStorage.getItem("pestid.device");
  if (!key) { key = randomKey(); localStorage.setItem("pestid.device", key); }
  return key;
}

// A record changed: store it, then draw the card and the list again from what is stored.
async function changed(record) {
  await DB.put(record);
  if (shown && shown.id === record.id) shown = record;
  await render();
}

// Read, change and store one record, so what another path stored meanwhile (a background send) is kept.
async function update(id, change) {
  const record = await DB.get(id);
  if (!record) return null;
  change(record);
  await changed(record);
  return record;
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

// A photo's thumbnail: the picture, or a tile with its format where the browser cannot draw it (HEIC).
function thumbnail(url, name, alt) {
  const tile = document.createElement("span");
  tile.className = "tile";
  tile.textContent = (name.split(".").pop() || "?").toUpperCase();
  if (!url) return tile;
  const img = document.createElement("img");
  img.src = url;
  img.alt = alt;
  img.addEventListener("error", () => img.replaceWith(tile));
  return img;
}

function renderPreviews() {
  const t = TEXT[lang];
  $("previews").replaceChildren(...photos.map((p, i) => {
    const li = document.createElement("li");
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
    li.append(thumbnail(p.url, p.name, `${t.photo} ${i + 1}`), remove);
    return li;
  }));
  $("send").disabled = photos.length === 0 || current !== null;
}

async function addPhotos(files) {
  const room = MAX_PHOTOS - photos.length;
  $("pick-error").hidden = files.length <= room;
  $("pick-error").textContent = TEXT[lang].toomany;
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

// ---- one observation as the farmer sees it ----
// The officers' verdict in the page's language: confirmed, or corrected to another organism, or set aside and why.
function verdictOf(record) {
  const t = TEXT[lang];
  const server = record.server && record.server[lang];
  const verdict = server && server.verdict;
  if (!verdict) return null;
  if (verdict.rejected) return { line: verdict.rejected, organism: null };
  if (!verdict.species) return null;
  const told = server.species ? server.species.id : null; // what the model answered at the time
  const corrected = "corrected" in verdict ? verdict.corrected : verdict.species.id !== told;
  return { line: fill(corrected ? t.corrected : t.confirmed, { name: verdict.species.name }), organism: verdict.species };
}

// The words about one record, for the card and the list alike. Once sent, the server's answer replaces the phone's;
// a full answer is shown only in the language it came in, and otherwise just its name, from the server's state.
function view(record) {
  const t = TEXT[lang];
  const server = record.server && record.server[lang];
  const answer = record.answer ? (record.answer.lang === lang ? record.answer : null)
    : record.local ? record.local[lang] : null;
  const from = answer ? (record.answer ? "server" : "phone") : "";
  const answered = answer ? (answer.decision === "identified" ? answer.species.name : t[answer.decision])
    : server ? (server.species ? server.species.name : t[server.decision]) : "";
  const verdict = verdictOf(record);
  let problem = "";
  if (record.state === "refused") problem = record.refusal ? record.refusal[lang] : "";
  else if (record.state === "waiting") {
    problem = record.error === "cancelled" ? t.cancelled : record.error === "timeout" ? t.timeout
      : record.error ? t.unsure_sent : record.local ? "" : t.no_offline;
  }
  return {
    state: record.state, answer, from, verdict, problem,
    label: record.state === "reviewed" && verdict ? verdict.line : t.state[record.state] || record.state,
    name: answered ? fill(record.answer ? t.server_said : t.on_phone, { name: answered }) : "",
    source: from === "phone" ? (navigator.onLine ? t.local_online : t.local) : "",
    retry: record.state === "waiting" && Boolean(record.error),
  };
}

function describe(species) {
  const t = TEXT[lang];
  const parts = [t.category[species.category] || ""];
  if (species.parent) parts.push(`${t.group}: ${species.parent.name}`);
  return parts.filter(Boolean).join(" · ");
}

function percent(p) {
  return p >= 0.995 ? "99%" : p < 0.01 ? "<1%" : `${Math.round(p * 100)}%`;
}

// The answer's sentence where it adds to the heading, the name and what to do: a group's "which species is not
// certain", or why a photo is out of scope. A species' "This is …" and "Not sure — …" would only repeat them.
function news(answer) {
  if (answer.decision === "identified") return answer.level === "group" ? answer.message : "";
  return answer.message.startsWith(TEXT[lang][answer.decision]) ? "" : answer.message;
}

// An API v1 answer (from the server, or made on the phone by localAnswer) as the card's parts.
// Only an identified answer (a species, or a group: "the hoppers") is shown as an answer, with its confidence and
// advice. "Not sure" shows its candidates as candidates and what to do now; "not recognised" offers no pest at all.
function answerParts(answer) {
  const t = TEXT[lang];
  const main = answer.decision === "identified" ? answer.species : null;
  const alternatives = answer.decision === "not_recognised" ? []
    : (answer.alternatives || []).filter((a) => a.probability >= 0.01);
  return {
    decision: answer.decision, nospray: answer.do_not_spray, message: news(answer),
    name: main ? main.name : "", scientific: main ? main.scientific : "",
    description: main ? [describe(main), `${t.confidence} ${percent(main.probability)}`].filter(Boolean).join(" · ") : "",
    adviceTitle: main ? t.advice : t.what_now,
    advice: main ? main.advice : answer.decision === "uncertain" ? t.uncertain_todo : t.not_recognised_todo,
    // beside a species, other species it could be, with their chances; beside a group or a guess, candidates
    // (which species, unsure) by name only: "leaf folder 99 %" under "one of the caterpillars" would undo the
    // answer, and a species is answered as its group where its sure answers were wrong on photos from new places
    alternativesTitle: main && answer.level !== "group" ? t.alternatives : t.candidates,
    alternatives: alternatives.map((s) => main && answer.level !== "group" ? `${s.name} (${percent(s.probability)})` : s.name),
  };
}

// The organism the officers named (the card's state line carries its name), with its advice.
function organismParts(organism) {
  const t = TEXT[lang];
  return { nospray: Boolean(organism.natural_enemy), scientific: organism.scientific || "",
           description: t.category[organism.category] || "", adviceTitle: t.advice, advice: organism.advice || "" };
}

function drawAnswer({ decision = "", nospray = false, name = "", scientific = "", description = "", message = "",
                      adviceTitle = "", advice = "", alternativesTitle = "", alternatives = [] }) {
  const put = (id, text) => { $(id).textContent = text; $(id).hidden = !text; };
  put("decision", decision ? TEXT[lang][decision] : "");
  $("decision").className = `decision ${decision}`;
  $("nospray").hidden = !nospray;
  put("name", name);
  put("scientific", scientific);
  put("description", description);
  put("message", message);
  $("advice-title").textContent = adviceTitle;
  $("advice").textContent = advice;
  $("advice-block").hidden = !advice;
  $("alternatives-title").textContent = alternativesTitle;
  $("alternatives-block").hidden = alternatives.length === 0;
  $("alternatives").replaceChildren(...alternatives.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

let cardPhotos = { id: null, lang: null, urls: [] }; // object URLs of the card's photos, released for the next one
function drawPhotos(record) {
  if (cardPhotos.id === record.id && cardPhotos.lang === lang) return;
  cardPhotos.urls.forEach((u) => URL.revokeObjectURL(u));
  const urls = record.photos.map((blob) => URL.createObjectURL(blob));
  cardPhotos = { id: record.id, lang, urls };
  $("card-photos").replaceChildren(...urls.map((url, i) => {
    const li = document.createElement("li");
    li.append(thumbnail(url, record.names[i] || "", `${TEXT[lang].photo} ${i + 1}`));
    return li;
  }));
}

// The card: the observation `shown`, its photos, its state, what went wrong, and the answer that stands now:
// the officers' verdict, else the server's answer, else the phone's.
function renderCard() {
  $("result").hidden = !shown;
  if (!shown) return;
  const v = view(shown);
  $("result").dataset.id = shown.id;
  $("result").dataset.state = v.state;
  $("result").dataset.source = v.from;
  $("state").textContent = v.label;
  $("state").className = `state ${v.state}`;
  $("error").textContent = v.problem;
  $("error").hidden = !v.problem;
  $("retry").hidden = !v.retry;
  $("source").textContent = v.source;
  $("source").hidden = !v.source;
  drawPhotos(shown);
  const organism = v.verdict && v.verdict.organism;
  drawAnswer(organism ? organismParts(organism) : v.verdict ? {} : v.answer ? answerParts(v.answer) : { message: v.name });
}

// Put a record on the card and bring the card into view.
function reveal(record) {
  shown = record;
  renderCard();
  $("result").scrollIntoView({ behavior: "smooth", block: "start" });
}

let thumbnails = []; // object URLs of the list's thumbnails, released on each render
let rendering = 0; // the latest render: an older one finishing later draws nothing
// The card and "My observations" drawn together, from one reading of the store: never one state in each.
async function render() {
  const turn = ++rendering;
  const stored = await DB.all();
  if (turn !== rendering) return;
  if (shown) shown = stored.find((r) => r.id === shown.id && !r.deleting) || null;
  renderCard();
  // newest news first: a verdict that just arrived or changed lifts its observation to the top
  const latest = (r) => (r.heard && r.heard > r.created ? r.heard : r.created);
  const records = stored.filter((r) => !r.deleting).sort((a, b) => (latest(a) < latest(b) ? 1 : -1));
  const t = TEXT[lang];
  thumbnails.forEach((u) => URL.revokeObjectURL(u));
  thumbnails = [];
  const listed = listedAll ? records : records.slice(0, LISTED);
  $("mine-block").hidden = records.length === 0;
  $("mine").replaceChildren(...listed.map(listItem));
  $("more-mine").hidden = listed.length === records.length;
  $("more-mine").textContent = fill(t.more, { n: records.length - listed.length });
}

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

// One row of "My observations": tapping it opens the observation on the card.
function listItem(record) {
  const t = TEXT[lang];
  const v = view(record);
  const li = document.createElement("li");
  li.dataset.state = v.state;
  li.dataset.id = record.id;
  const url = record.thumb ? URL.createObjectURL(record.thumb) : null;
  if (url) thumbnails.push(url);
  const when = new Date(record.created).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", { dateStyle: "short", timeStyle: "short" });
  const text = document.createElement("span");
  text.className = "text";
  for (const [className, words] of [["when", when], ["name", v.name], [`state ${v.state}`, v.label],
                                    ["problem", record.state === "refused" ? v.problem : ""]]) {
    if (!words) continue;
    const line = document.createElement("span");
    line.className = className;
    line.textContent = words;
    text.append(line);
  }
  const open = button("", "open", async () => reveal((await DB.get(record.id)) || record));
  open.append(thumbnail(url, (record.names && record.names[0]) || "", ""), text);
  li.append(open);
  const actions = document.createElement("div");
  actions.className = "actions";
  if (record.state === "waiting") {
    actions.append(button(t.send_now, "", async () => { await update(record.id, (r) => { r.paused = false; }); flush(); }));
  }
  if (record.state === "waiting" || record.state === "refused") actions.append(button(t.delete, "secondary", () => forget(record.id)));
  if (actions.childElementCount) li.append(actions);
  return li;
}

// ---- deleting: undone within a few seconds; the record leaves the phone only once that time is up ----
let purgeTimer = null;
async function forget(id) {
  await update(id, (record) => { record.deleting = Date.now(); }); // and off the card
  offerUndo();
}

function offerUndo() {
  $("undo-bar").hidden = false;
  clearTimeout(purgeTimer);
  purgeTimer = setTimeout(purge, UNDO_MS);
}

async function purge() {
  $("undo-bar").hidden = true;
  for (const record of await DB.all()) if (record.deleting) await DB.remove(record.id);
}

async function undo() {
  clearTimeout(purgeTimer);
  $("undo-bar").hidden = true;
  for (const record of await DB.all()) {
    if (record.deleting) { delete record.deleting; await DB.put(record); }
  }
  await render();
  flush();
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
    do_not_spray: outcome.do_not_spray, needs_review: outcome.needs_review, unfamiliar: outcome.unfamiliar,
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
  const local = { vi: localAnswer(outcome, "vi"), en: localAnswer(outcome, "en"), ms: Math.round(performance.now() - started) };
  return update(record.id, (stored) => { stored.local = local; });
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
    xhr.setRequestHeader("Device-Key", deviceKey());
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
  await changed(record);
  const result = await upload(record, onProgress);
  current = null;
  const stored = await update(record.id, (r) => {
    if (result.status === 200 || result.status === 201) {
      Object.assign(r, { state: "sent", submission_id: result.body.submission_id, receipt: result.body.receipt,
                         answer: result.body, paused: false, error: null });
    } else if (result.status >= 400 && result.status < 500 && ![408, 429].includes(result.status)) {
      // the server will never take these photos: say why, in both languages, and do not retry
      Object.assign(r, { state: "refused", error: String(result.status),
                         refusal: result.body && result.body.detail_vi ? { vi: result.body.detail_vi, en: result.body.detail_en } : null });
    } else { // unknown whether it arrived: a retry with the same key is safe
      Object.assign(r, { state: "waiting", error: result.error || String(result.status), paused: result.error === "cancelled" });
    }
  });
  return stored || record;
}

let flushing = false;
let retryTimer = null;
let retryDelay = RETRY_FIRST_MS;
// Sends what waits, then asks about what was sent. `force` (start-up, the connection back) asks every sent
// observation; otherwise each is asked at most every 10 minutes. A send that fails is tried again, later and later.
async function flush(force = false) {
  if (flushing || !navigator.onLine) return;
  flushing = true;
  let stuck = false;
  try {
    for (const { id } of await DB.all()) {
      const record = await DB.get(id); // as stored now: the form may have sent it meanwhile
      if (!record || record.state !== "waiting" || record.paused || record.deleting || current !== null) continue;
      stuck = (await send(record)).state === "waiting";
      if (stuck) break; // still no way through
    }
    await refreshVerdicts(force);
  } finally {
    flushing = false;
  }
  if (stuck) retryLater();
  else retryDelay = RETRY_FIRST_MS;
}

function retryLater() {
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => flush(), retryDelay);
  retryDelay = Math.min(2 * retryDelay, RETRY_LAST_MS);
}

// What became of a sent observation, in both languages (the page may switch): {vi, en}; null when the server
// does not know it; undefined when it cannot be reached.
async function ask(record) {
  const server = {};
  try {
    for (const l of ["vi", "en"]) {
      const response = await fetch(`/v1/submissions/${record.submission_id}?lang=${l}`, { headers: { Receipt: record.receipt } });
      if (!response.ok) return null;
      server[l] = await response.json();
    }
  } catch (err) { return undefined; }
  return server;
}

const ASK_EVERY_MS = 10 * 60 * 1000;
// An officer may undo or change a verdict (a slip, a senior settling a dispute): a recent one is asked again like a
// pending one (on start-up, on reconnecting, every 10 minutes); one older than two weeks is settled, asked daily.
const ASK_SETTLED_MS = 24 * 3600 * 1000;
const SETTLED_AFTER_MS = 14 * 24 * 3600 * 1000;
async function refreshVerdicts(force) {
  for (const record of await DB.all()) {
    if (!["sent", "reviewed"].includes(record.state) || !record.receipt) continue;
    const known = record.server && record.server.vi && record.server.en;
    const since = Date.now() - (record.asked || 0);
    const settled = known && record.state === "reviewed" && Date.now() - Date.parse(record.created) > SETTLED_AFTER_MS;
    if (settled ? since < ASK_SETTLED_MS : !force && since < ASK_EVERY_MS) continue;
    const server = await ask(record);
    if (server === undefined) return; // offline again: next time
    await update(record.id, (r) => {
      r.asked = Date.now();
      if (!server) return;
      const before = JSON.stringify((r.server && r.server.vi && r.server.vi.verdict) || null);
      if (JSON.stringify(server.vi.verdict || null) !== before) r.heard = new Date().toISOString(); // news: on top
      Object.assign(r, { server, state: server.vi.verdict ? "reviewed" : "sent" });
    });
  }
}

// ---- the form ----
function progress(loaded, total) {
  const t = TEXT[lang];
  if (loaded < 0) { $("progress").removeAttribute("value"); $("progress-text").textContent = t.waiting_server; return; }
  $("progress").value = Math.round((100 * loaded) / total);
  $("progress-text").textContent = fill(t.sending, { sent: Math.round(loaded / 1024), total: Math.round(total / 1024) });
}

// A waiting observation goes when it can: tried again shortly, and woken by Background Sync where the phone has it.
function sendLater() {
  if (navigator.onLine) retryLater();
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.ready.then((reg) => reg.sync && reg.sync.register("pestid-queue")).catch(() => null);
  }
}

async function submit(record) {
  const t = TEXT[lang];
  shown = null; // the previous answer never stays on screen beside a new observation
  renderCard();
  $("send").disabled = true;
  $("progress-block").hidden = false;
  $("progress").value = 0;
  $("progress-text").textContent = t.preparing;
  try {
    if (navigator.onLine) record = await send(record, progress);
    if (record.state === "waiting" && record.error !== "cancelled") { // meanwhile, the phone's own answer
      record = (await identifyOnPhone(record).catch(() => null)) || record;
    }
    shown = record;
    renderCard();
  } finally {
    $("progress-block").hidden = true;
    $("send").disabled = photos.length === 0;
    // scrolled once the progress block above it is gone, or the card's first line ends up above the screen
    if (shown === record) $("result").scrollIntoView({ behavior: "smooth", block: "start" });
    if (record.state === "waiting") sendLater();
    else flush(); // asks the server's state of the new observation, in both languages
  }
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (photos.length === 0 || current !== null) return;
  localStorage.setItem("pestid.place", JSON.stringify({ district: $("district").value, commune: $("commune").value }));
  const fields = { district: $("district").value, commune: $("commune").value.trim(),
                   date: localDay() };
  if (location_) Object.assign(fields, { latitude: location_.latitude.toFixed(6), longitude: location_.longitude.toFixed(6) });
  const record = { id: randomKey(), key: randomKey(), created: new Date().toISOString(), lang, fields, state: "waiting",
                   photos: photos.map((p) => p.blob), names: photos.map((p) => p.name),
                   thumb: (photos.find((p) => p.url) || { blob: null }).blob };
  await changed(record); // kept before anything is sent: nothing is lost if the page closes now
  photos.forEach((p) => p.url && URL.revokeObjectURL(p.url));
  photos = [];
  $("pick-error").hidden = true;
  renderPreviews();
  await submit(record);
});

$("retry").addEventListener("click", async () => {
  const record = shown && (await update(shown.id, (r) => { r.paused = false; }));
  if (record && record.state === "waiting") await submit(record);
});
$("cancel").addEventListener("click", () => current && current.xhr.abort());
$("camera").addEventListener("change", (e) => { addPhotos(Array.from(e.target.files)); e.target.value = ""; });
$("gallery").addEventListener("change", (e) => { addPhotos(Array.from(e.target.files)); e.target.value = ""; });
$("gps").addEventListener("click", askLocation);
$("undo").addEventListener("click", undo);
$("more-mine").addEventListener("click", () => { listedAll = true; render(); });

function applyLanguage() {
  const t = TEXT[lang];
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t[el.dataset.i18n]; });
  $("lang").textContent = t.switch;
  $("lang").lang = t.switch_lang; // the one text in the other language: its own name
  document.title = t.title;
  shown = null; // an answer is opened in one language: the other page shows it when opened again
  renderCard();
  $("pick-error").hidden = true;
  $("gps-state").textContent = "";
  $("network").hidden = navigator.onLine;
  $("network").textContent = t.offline_now;
  $("offline-ready").textContent = t.offline_ready;
  renderPreviews();
  render();
}

$("lang").addEventListener("click", () => {
  lang = TEXT[lang].switch_lang;
  localStorage.setItem("pestid.lang", lang);
  const url = new URL(location.href); // the farmer's choice now wins over the link's ?lang=
  if (url.searchParams.has("lang")) { url.searchParams.delete("lang"); history.replaceState(null, "", url); }
  applyLanguage();
});

window.addEventListener("online", () => { $("network").hidden = true; renderCard(); flush(true); });
window.addEventListener("offline", () => {
  $("network").hidden = false;
  $("network").textContent = TEXT[lang].offline_now;
  renderCard();
});

async function start() {
  applyLanguage();
  for (const record of await DB.all()) { // a send cut short by a closed page: unknown whether it arrived
    if (record.state === "sending") await DB.put({ ...record, state: "waiting", error: "network" });
  }
  await render();
  if ((await DB.all()).some((r) => r.deleting)) offerUndo(); // deleted just before the page closed: still undoable
  try {
    const response = await fetch("/static/districts.json");
    districts = (await response.json()).districts;
    $("district").append(...districts.map((d) => new Option(d.name, d.name)));
    let place = {}; // the farmer's field rarely moves: the last place sent is offered again
    try { place = JSON.parse(localStorage.getItem("pestid.place") || "{}") || {}; } catch (err) { place = {}; }
    if (districts.some((d) => d.name === place.district)) $("district").value = place.district;
    if (typeof place.commune === "string" && !$("commune").value) $("commune").value = place.commune;
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
      $("offline-ready").hidden = !cached;
    } catch (err) { /* online only */ }
  }
}

start();
