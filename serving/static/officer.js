// The officer's review page: sign in, filter the queue, review by keyboard or by touch, watch outbreaks.
// One language per view: Vietnamese unless ?lang=en or the officer chose English; every text comes from TEXT.
"use strict";
const TEXT = {
  vi: {
    title: "Duyệt ảnh — cán bộ BVTV", heading: "Duyệt ảnh", switch: "English", switch_label: "Chuyển sang tiếng Anh",
    sign_out: "Đăng xuất", username: "Tên đăng nhập", password: "Mật khẩu", sign_in: "Đăng nhập",
    status_label: "trạng thái", district: "huyện", predicted: "loài dự đoán",
    decision_label: "kết quả mô hình", any_decision: "mọi kết quả", since: "từ ngày", until: "đến ngày", filter: "Lọc",
    queue_label: "ảnh chờ duyệt", more: "Tải thêm", keys_label: "thao tác duyệt (nút và phím tắt)",
    key_next: "mục sau", key_previous: "mục trước",
    key_confirm: "xác nhận", key_relabel: "đổi nhãn", key_reject: "loại ảnh", key_undo: "hoàn tác", key_photo: "ảnh khác",
    search_hint: "Tìm loài (tên Việt, Anh, khoa học)", search_label: "tìm loài", results_label: "kết quả tìm loài",
    map_caption: "Sơ đồ huyện (vị trí gần đúng)", outbreaks: "Ổ dịch theo tuần", group: "nhóm loài",
    group_hint: "nhóm loài (vd. rầy)", district_outbreaks: "huyện (ổ dịch)", weeks: "số tuần",
    weeks_label: "số tuần gần nhất", series_label: "màu trên biểu đồ",
    series: { species: "mỗi loài một màu", district: "mỗi huyện một màu" }, show: "Xem", csv: "Tải CSV",
    col: { week: "tuần", district: "huyện", species: "loài", reports: "số báo cáo", rising: "tăng vọt" },
    status: { pending_review: "chờ duyệt", disputed: "tranh chấp", approved: "đã duyệt", rejected: "đã loại" },
    decision: { identified: "đã nhận diện", uncertain: "chưa chắc chắn", not_recognised: "không nhận ra" },
    reasons: { blurry: "ảnh mờ", not_rice: "không phải lúa", duplicate: "trùng ảnh", not_harmful: "không phải dịch hại" },
    role: { officer: "cán bộ", senior: "cán bộ cấp trên", admin: "quản trị" },
    category: { insect: "côn trùng", mite: "nhện hại", mollusc: "ốc", rodent: "chuột", fungus: "bệnh do nấm",
      bacterium: "bệnh do vi khuẩn", virus: "bệnh do virus", natural_enemy: "thiên địch", healthy: "lúa khỏe",
      out_of_scope: "không phải sâu bệnh lúa", nematode: "tuyến trùng", bird: "chim", weed: "cỏ dại" },
    total: "{shown} / {total} lần gửi", empty: "Không còn ảnh cần duyệt", model_said: "Mô hình: {decision}",
    photo: "ảnh {n} / {count}", photos: "📷 {n}", photos_label: "{n} ảnh", duplicate: "trùng ảnh trước",
    duplicate_of: "Cùng ảnh với lần gửi {id}", sent_at: "Gửi lúc {time}", nowhere: "không rõ nơi", location: "Vị trí: {place}",
    note: "Ghi chú của nông dân: ", searching: "Đang tìm “{q}”…", enter_waits: "Đang tìm “{q}”… Enter sẽ lưu kết quả đầu tiên.",
    none_found: "Không tìm thấy loài nào cho “{q}”.", type_to_search: "Gõ tên loài cần lưu.", will_save: "Sẽ lưu",
    save: "Lưu", save_hint: "Lưu: bấm nút Lưu hoặc Enter · chọn loài khác: chạm vào loài hoặc ↑ ↓ · Esc: đóng",
    natural_enemy: "🐞 thiên địch", group_kind: "nhóm loài",
    reject_prompt: "Lý do loại (chạm vào lý do hoặc bấm số của nó):", reject_cancel: "hủy (phím khác)",
    saved: "Đã lưu: {status}", saved_as: "Đã lưu: {status} → {name}", undone: "Đã hoàn tác: {status}", rising: "⚠ tăng vọt",
    week_short: "T{week}", week_long: "tuần {week}, {year}", week_axis: "Tuần ({years})", chart_label: "Số báo cáo mỗi tuần",
    no_outbreaks: "Chưa có báo cáo nào được duyệt.", network: "Không kết nối được máy chủ. Hãy thử lại.",
    server_error: "Máy chủ báo lỗi. Hãy thử lại.", signed_out: "Phiên đăng nhập đã hết. Hãy đăng nhập lại.",
    blind_row: "🔍 kiểm tra mù", blind: "Kiểm tra mù: hãy chọn loài bạn thấy (đổi nhãn, phím r) hoặc loại ảnh (phím x). Câu trả lời của mô hình sẽ hiện sau khi bạn quyết định.",
    blind_no_confirm: "Ảnh kiểm tra mù: không có gì để xác nhận. Hãy chọn loài bạn thấy (đổi nhãn, phím r).",
    revealed: "Ảnh vừa kiểm tra: mô hình đã trả lời nông dân: {name}.", agreed: "Khớp với nhận định của bạn.", disagreed: "Khác với nhận định của bạn.",
    precision_heading: "Độ chính xác thực tế (kiểm tra mù)", drift_heading: "Câu trả lời thay đổi theo huyện và tuần",
    precision_summary: "Mô hình đang dùng: {version} · cam kết độ chính xác {promised} · khoảng tin cậy 95 % (Wilson)",
    no_audits: "Chưa có ảnh kiểm tra mù nào được duyệt.", below_promise: "⚠ dưới mức cam kết",
    alert_line: "⚠ Độ chính xác thấp hơn cam kết: {names}. Hãy xem lại các ảnh của những loài này.",
    by: { class: "loài", district: "huyện", version: "phiên bản" },
    pcol: { by: "theo", name: "tên", audits: "số ảnh kiểm tra", precision: "độ chính xác", interval: "khoảng 95 %", promise: "cam kết" },
    dcol: { week: "tuần", district: "huyện", answers: "số câu trả lời", not_sure: "tỉ lệ chưa chắc (tham chiếu)",
      classes: "độ lệch các loài", look: "nên xem gì" },
    drift_hint: "So với bộ ảnh kiểm tra của mô hình, hoặc với 4 tuần trước của huyện. Dòng tô màu: câu trả lời đã thay đổi rõ.",
    no_drift: "Chưa có câu trả lời nào trong các tuần gần đây.", look_unsure: "nhiều ảnh mô hình chưa chắc: hãy duyệt và gán nhãn",
    look_sure: "ít ảnh chưa chắc hơn thường lệ: kiểm tra các câu trả lời", look_rising: "tăng: {names} — hãy chụp và xác nhận",
    look_falling: "giảm: {names}", reference_weeks: "4 tuần trước",
  },
  en: {
    title: "Photo review — plant protection officers", heading: "Photo review", switch: "Tiếng Việt",
    switch_label: "Switch to Vietnamese", sign_out: "Sign out", username: "Username", password: "Password",
    sign_in: "Sign in", status_label: "status", district: "district", predicted: "predicted species",
    decision_label: "model decision", any_decision: "any decision",
    since: "since", until: "until", filter: "Filter", queue_label: "photos to review", more: "Load more",
    keys_label: "review actions (buttons and keyboard shortcuts)", key_next: "next", key_previous: "previous",
    key_confirm: "confirm", key_relabel: "relabel", key_reject: "reject", key_undo: "undo", key_photo: "other photo",
    search_hint: "Search species (Vietnamese, English, scientific)", search_label: "search species",
    results_label: "species found", map_caption: "District map (approximate location)", outbreaks: "Outbreaks by week",
    group: "species group", group_hint: "species group (e.g. planthoppers)", district_outbreaks: "district (outbreaks)",
    weeks: "weeks", weeks_label: "last weeks", series_label: "chart colours",
    series: { species: "one colour per species", district: "one colour per district" }, show: "Show",
    csv: "Download CSV",
    col: { week: "week", district: "district", species: "species", reports: "reports", rising: "rising" },
    status: { pending_review: "pending", disputed: "disputed", approved: "approved", rejected: "rejected" },
    decision: { identified: "identified", uncertain: "not sure", not_recognised: "not recognised" },
    reasons: { blurry: "blurry", not_rice: "not rice", duplicate: "duplicate", not_harmful: "not harmful" },
    role: { officer: "officer", senior: "senior officer", admin: "administrator" },
    category: { insect: "insect", mite: "mite", mollusc: "snail", rodent: "rodent", fungus: "fungal disease",
      bacterium: "bacterial disease", virus: "viral disease", natural_enemy: "natural enemy", healthy: "healthy rice",
      out_of_scope: "not a rice pest or disease", nematode: "nematode", bird: "bird", weed: "weed" },
    total: "{shown} / {total} submissions", empty: "Nothing left to review", model_said: "Model: {decision}",
    photo: "photo {n} of {count}", photos: "📷 {n}", photos_label: "{n} photos", duplicate: "duplicate",
    duplicate_of: "Same photo as submission {id}", sent_at: "Sent {time}", nowhere: "place unknown",
    location: "Location: {place}", note: "Farmer's note: ", searching: "Searching “{q}”…",
    enter_waits: "Searching “{q}”… Enter will save the first result.", none_found: "No species found for “{q}”.",
    type_to_search: "Type the species to save.", will_save: "Will save", save: "Save",
    save_hint: "Save: the Save button or Enter · another species: tap it or ↑ ↓ · Esc: close",
    natural_enemy: "🐞 natural enemy", group_kind: "species group", reject_prompt: "Reason to reject (tap one or press its number):",
    reject_cancel: "cancel (any other key)", saved: "Saved: {status}", saved_as: "Saved: {status} → {name}",
    undone: "Undone: {status}", rising: "⚠ rising", week_short: "W{week}", week_long: "week {week}, {year}",
    week_axis: "Week ({years})", chart_label: "Reports per week", no_outbreaks: "No approved reports yet.",
    network: "Cannot reach the server. Try again.", server_error: "The server reported an error. Try again.",
    signed_out: "Your sign-in has expired. Sign in again.",
    blind_row: "🔍 blind check", blind: "Blind check: name the species you see (relabel, key r) or reject the photo (key x). The model's answer shows once you have decided.",
    blind_no_confirm: "A blind check: there is nothing to confirm. Name the species you see (relabel, key r).",
    revealed: "The photo you just checked: the model told the farmer: {name}.", agreed: "It matches your verdict.", disagreed: "It differs from your verdict.",
    precision_heading: "Delivered precision (blind checks)", drift_heading: "Answers shifting by district and week",
    precision_summary: "Served model: {version} · promised precision {promised} · 95 % intervals (Wilson)",
    no_audits: "No blind check has been decided yet.", below_promise: "⚠ below the promise",
    alert_line: "⚠ Precision below the promise: {names}. Look again at the photos of these.",
    by: { class: "species", district: "district", version: "version" },
    pcol: { by: "by", name: "name", audits: "checks", precision: "precision", interval: "95 % interval", promise: "promised" },
    dcol: { week: "week", district: "district", answers: "answers", not_sure: "not sure (reference)",
      classes: "species shift", look: "where to look" },
    drift_hint: "Against the model's test photos, or the district's 4 weeks before. Shaded rows: the answers clearly moved.",
    no_drift: "No answers in recent weeks.", look_unsure: "many photos the model is not sure of: review and label them",
    look_sure: "fewer unsure answers than usual: check the answers", look_rising: "up: {names} — photograph and confirm them",
    look_falling: "down: {names}", reference_weeks: "4 weeks before",
  },
};
const LOCALE = { vi: "vi-VN", en: "en-GB" };
const REASONS = { 1: "blurry", 2: "not_rice", 3: "duplicate", 4: "not_harmful" };
const $ = (id) => document.getElementById(id);
const fill = (text, values) => text.replace(/\{(\w+)\}/g, (_, k) => values[k]);
const asked = new URLSearchParams(location.search).get("lang");
let lang = TEXT[asked] ? asked : TEXT[localStorage.getItem("pestid.lang")] ? localStorage.getItem("pestid.lang") : "vi";
let token = sessionStorage.getItem("pestid.token");
let me = null;
let items = [];
let total = 0;
let current = 0;
let lastAudit = null;
let rejecting = false;
let outbreakRows = [];

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// A species as the page's language names it (the Latin name goes in a title).
function nameOf(named) { return named ? named[`name_${lang}`] || named.name_vi : "—"; }

// The server stores UTC and sends an offset; a time without one (an older server) is UTC too.
function localTime(iso, long = true) {
  const date = new Date(/(Z|[+-]\d\d:?\d\d)$/i.test(iso) ? iso : `${iso}Z`);
  const style = long ? { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }
    : { day: "numeric", month: "numeric", hour: "2-digit", minute: "2-digit" };
  return date.toLocaleString(LOCALE[lang], style);
}

async function call(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}`,
      "Content-Type": "application/json", "Accept-Language": lang } });
  } catch (err) { throw new Error(TEXT[lang].network); }
  if (response.status === 401) { signOut(TEXT[lang].signed_out); throw new Error(TEXT[lang].signed_out); }
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error(problemText(body));
  return { body, response };
}

async function api(path, options = {}) { return (await call(path, options)).body; }

function problemText(body) { return (body && body[`detail_${lang}`]) || TEXT[lang].server_error; }

function signOut(why = "") {
  token = null; me = null; sessionStorage.removeItem("pestid.token");
  $("app").hidden = true; $("login").hidden = false; $("signout").hidden = true; $("who").textContent = "";
  $("login-error").textContent = why;
  $("login-error").hidden = !why;
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
  total = Number(response.headers.get("x-total-count") || items.length);
  $("more").hidden = items.length >= total;
  current = Math.min(current, Math.max(items.length - 1, 0));
  renderQueue();
}

function renderRows() {
  const t = TEXT[lang];
  $("queue-total").textContent = fill(t.total, { shown: items.length, total });
  $("queue").replaceChildren(...items.map((item, index) => {
    const count = item.photo_count ?? (item.previews || []).length;
    const blind = isBlind(item);
    const facts = [...(blind ? [] : [t.decision[item.decision] || item.decision, `${Math.round(item.confidence * 100)}%`]),
                   item.district || item.commune || "—", localTime(item.created_at, false)];
    const li = el("li", { class: index === current ? "active" : "", tabindex: "0", title: item.predicted ? item.predicted.scientific : "" },
      el("span", { class: "name" }, blind ? t.blind_row : nameOf(item.predicted)), el("span", { class: "facts" }, facts.join(" · ")),
      el("span", { class: "badge", title: fill(t.photos_label, { n: count }) }, fill(t.photos, { n: count })));
    if (item.duplicate_of) li.append(el("span", { class: "badge duplicate", title: fill(t.duplicate_of, { id: item.duplicate_of }) }, t.duplicate));
    li.dataset.id = item.id;  // rows are reachable with Tab; Enter or Space opens one
    li.addEventListener("click", () => { current = index; reveal(null); renderQueue(); });
    li.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); current = index; reveal(null); renderQueue(); }
    });
    return li;
  }));
}

function renderQueue() { renderRows(); renderDetail(); }

// The decision beside the photo: what the model said, its guesses, when and where, the farmer's note.
function describe(item) {
  const t = TEXT[lang];
  if (!item) {
    $("decision").textContent = t.empty;
    for (const id of ["guesses", "meta", "map"]) $(id).replaceChildren();
    $("note").hidden = true;
    return;
  }
  // a blind check: nothing of the model's answer (the server sends none until the officer has decided)
  $("decision").textContent = isBlind(item) ? t.blind : fill(t.model_said, { decision: t.decision[item.decision] || item.decision });
  $("guesses").replaceChildren(...item.top.map((guess) => {
    const meter = el("span", { class: "meter" }, el("span", {}));
    meter.firstChild.style.width = `${Math.round(guess.probability * 100)}%`;  // set from script: the CSP allows no style=""
    return el("li", { title: guess.scientific }, el("span", { class: "name" }, nameOf(guess)), meter,
              el("span", { class: "pct" }, `${Math.round(guess.probability * 100)}%`));
  }));
  const count = item.photo_count ?? (item.previews || []).length;
  const place = [item.commune, item.district].filter(Boolean).join(", ") || t.nowhere;
  $("meta").replaceChildren(`${fill(t.sent_at, { time: localTime(item.created_at) })} · ${place} · `,
    el("span", { class: "badge", title: fill(t.photos_label, { n: count }) }, fill(t.photos, { n: count })));
  if (item.duplicate_of) {
    $("meta").append(" ", el("span", { class: "badge duplicate", title: fill(t.duplicate_of, { id: item.duplicate_of }) }, t.duplicate));
  }
  $("note").hidden = !item.note;
  $("note").replaceChildren(t.note, el("q", {}, item.note || ""));
}

// Photos of the item last asked for; a slower answer for an item the officer already left is dropped.
let renderSeq = 0;
let photoUrls = [];

async function renderDetail() {
  const item = items[current];
  const seq = ++renderSeq;
  shownAt = Infinity;  // not ready for an action until this item's photos are on screen
  closeRelabel();
  endReject();
  clearPhotos();  // never the last item's photos beside this item's guesses
  describe(item);
  if (!item) return;
  drawMap(item);
  const blobs = await Promise.all((item.previews || []).map((preview) =>
    fetch(preview.large, { headers: { Authorization: `Bearer ${token}` } }).then((r) => (r.ok ? r.blob() : null), () => null)));
  if (seq !== renderSeq) return;
  photoUrls = blobs.filter(Boolean).map((blob) => URL.createObjectURL(blob));
  $("strip").replaceChildren(...(photoUrls.length > 1 ? photoUrls.map((url, n) => {
    const thumb = el("button", { type: "button", "aria-label": fill(TEXT[lang].photo, { n: n + 1, count: photoUrls.length }) },
                     el("img", { src: url, alt: "" }));
    thumb.addEventListener("click", () => showPhoto(n));
    return thumb;
  }) : []));
  showPhoto(0);
  shownAt = performance.now();
}

function clearPhotos() {
  photoUrls.forEach((url) => URL.revokeObjectURL(url));
  photoUrls = [];
  $("photos").replaceChildren();
  $("strip").replaceChildren();
}

// One photo large (a click zooms where it points); the strip of thumbnails beside it marks which.
let photoShown = 0;

function showPhoto(n) {
  const item = items[current];
  if (!item || !photoUrls.length) { $("photos").replaceChildren(); return; }
  photoShown = (n + photoUrls.length) % photoUrls.length;
  const img = el("img", { src: photoUrls[photoShown],
                          alt: `${nameOf(item.predicted)} — ${fill(TEXT[lang].photo, { n: photoShown + 1, count: photoUrls.length })}` });
  img.addEventListener("click", (event) => {
    const box = img.getBoundingClientRect();
    img.style.transformOrigin = `${((event.clientX - box.left) / box.width) * 100}% ${((event.clientY - box.top) / box.height) * 100}%`;
    img.classList.toggle("zoomed");
  });
  $("photos").replaceChildren(el("div", { class: "frame" }, img));
  [...$("strip").children].forEach((thumb, k) => thumb.classList.toggle("active", k === photoShown));
}

// One action per item shown: keys pressed while an action is on its way, held down, or in the first moments
// after the next item appears are ignored, so a burst of presses never acts on photos nobody looked at.
let busy = false;
let sending = false;  // a verdict's POST is on its way (busy also covers the reloads after it)
let shownAt = 0;
const SETTLE_MS = 400;

function ready(event) { return !busy && !event.repeat && performance.now() - shownAt >= SETTLE_MS; }

async function act(body) {
  const item = items[current];
  if (!item || busy) return;
  busy = sending = true;
  try {
    let result;
    try { result = await api(`/v1/review/${item.id}`, { method: "POST", body: JSON.stringify(body) }); } finally { sending = false; }
    lastAudit = result.audit_id;
    const status = TEXT[lang].status[result.status] || result.status;
    say(result.final ? fill(TEXT[lang].saved_as, { status, name: nameOf(result.final) }) : fill(TEXT[lang].saved, { status }));
    reveal(result.audit);
    await loadQueue();
    await loadOutbreaks();
    await loadField();
  } catch (err) { say(err.message); } finally { busy = false; }
}

async function undoLast() {
  // An undo while a verdict is on its way would take back the one before it; once its answer is in, the undo
  // is for that verdict (the reloads after it may still run). One undo per verdict: taken before it is sent.
  const audit = lastAudit;
  if (!audit || sending) return;
  lastAudit = null;
  try {
    const result = await api(`/v1/review/undo/${audit}`, { method: "POST" });
    say(fill(TEXT[lang].undone, { status: TEXT[lang].status[result.status] || result.status }));
    reveal(null);
    await loadQueue();
    await loadOutbreaks();
    await loadField();
  } catch (err) { if (lastAudit === null) lastAudit = audit; say(err.message); }
}

// The reasons as buttons that say their number keys: a tap and a key both go through command().
function startReject() {
  const t = TEXT[lang];
  rejecting = true;
  const reasons = Object.entries(REASONS).map(([key, reason]) =>
    el("button", { type: "button", "data-key": key }, el("kbd", {}, key), ` ${t.reasons[reason]}`));
  const cancel = el("button", { type: "button", "data-key": "Escape", class: "cancel" }, t.reject_cancel);
  $("reject").replaceChildren(el("span", {}, t.reject_prompt), ...reasons, cancel);
  $("reject").hidden = false;
}

function endReject() { rejecting = false; $("reject").hidden = true; }

// The relabel search. Each result list belongs to the text it answered: a list for other text (an earlier
// search, a slower earlier answer) is never shown nor taken, so Enter saves a species found for the text in
// the box now. Enter before that text's results are in waits for them and then takes the first.
const search = { query: null, results: [], pick: 0, enterWaiting: false, controller: null };

function searchText() { return $("species-search").value.trim(); }

async function searchSpecies() {
  const q = searchText();
  if (search.controller) search.controller.abort();
  Object.assign(search, { query: null, results: [], pick: 0, enterWaiting: false, controller: null });
  renderResults();
  if (!q) return;
  const controller = search.controller = new AbortController();
  let found;
  try {
    const response = await fetch(`/v1/species?q=${encodeURIComponent(q)}`, { signal: controller.signal, headers: { "Accept-Language": lang } });
    if (!response.ok) throw new Error(TEXT[lang].server_error);
    found = await response.json();
  } catch (err) {
    if (err.name !== "AbortError" && q === searchText()) say(err instanceof TypeError ? TEXT[lang].network : err.message);
    return;
  }
  if (q !== searchText() || controller !== search.controller) return;  // an answer to text no longer in the box
  Object.assign(search, { query: q, results: found.slice(0, 6), pick: 0 });
  renderResults();
  if (search.enterWaiting) saveRelabel();
}

function tags(species) {
  const t = TEXT[lang];
  const parts = [el("i", {}, species.scientific)];
  if (species.kind === "group") parts.push(" · ", el("span", { class: "tag group" }, t.group_kind));
  if (species.natural_enemy) parts.push(" · ", el("span", { class: "tag enemy" }, t.natural_enemy));  // its category too
  else parts.push(` · ${t.category[species.category] || species.category}`);
  return parts;
}

function renderResults() {
  const t = TEXT[lang];
  const q = searchText();
  $("species-results").replaceChildren(...search.results.map((species, n) => {
    const li = el("li", { role: "option", "aria-selected": String(n === search.pick), class: n === search.pick ? "picked" : "" },
                  el("span", { class: "name" }, nameOf(species)), " ", el("span", { class: "tags" }, ...tags(species)));
    li.dataset.id = species.id;
    li.addEventListener("mousedown", (event) => event.preventDefault());  // the search box keeps the focus
    li.addEventListener("click", () => { search.pick = n; renderResults(); });
    return li;
  }));
  const box = $("will-save");
  box.className = "will-save";
  if (!q) box.replaceChildren(t.type_to_search);
  else if (search.query !== q) box.replaceChildren(fill(search.enterWaiting ? t.enter_waits : t.searching, { q }));
  else if (!search.results.length) box.replaceChildren(fill(t.none_found, { q }));
  else {
    const chosen = search.results[search.pick];
    box.className = chosen.natural_enemy ? "will-save chosen enemy" : "will-save chosen";
    const save = el("button", { type: "button", class: "save" }, t.save);
    save.addEventListener("mousedown", (event) => event.preventDefault());  // the search box keeps the focus
    save.addEventListener("click", submitRelabel);  // as Enter does
    box.replaceChildren(save, el("span", { class: "label" }, t.will_save), el("strong", { class: "name" }, nameOf(chosen)),
                        el("span", { class: "tags" }, ...tags(chosen)), el("span", { class: "hint" }, t.save_hint));
  }
}

function saveRelabel() {
  search.enterWaiting = false;
  const chosen = search.results[search.pick];
  if (chosen) act({ action: "relabel", label: chosen.id });  // the relabel box closes whenever the item changes
}

// Enter in the search box, or the Save button: save what is shown, or wait for the text's results and take the first.
function submitRelabel(event) {
  if (event.repeat || !searchText()) return;
  if (search.query === searchText()) saveRelabel();
  else { search.enterWaiting = true; renderResults(); }
}

function relabelKey(event) {
  if (event.key === "Enter") {
    event.preventDefault();
    submitRelabel(event);
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const n = search.results.length;
    if (n) { search.pick = (search.pick + (event.key === "ArrowDown" ? 1 : n - 1)) % n; renderResults(); }
  } else if (event.key === "Escape") closeRelabel();
}

function openRelabel() {
  $("relabel").hidden = false;
  $("species-search").value = "";
  searchSpecies();
  $("species-search").focus();
}

function closeRelabel() {
  if (search.controller) search.controller.abort();
  Object.assign(search, { query: null, results: [], pick: 0, enterWaiting: false, controller: null });
  // Chromium moves the focus off a hidden box only at its next layout: a key pressed at once (r, x, c…)
  // would still land in the search box. Let go of it now.
  $("species-search").blur();
  $("relabel").hidden = true;
}

function outbreakQuery() {
  const params = new URLSearchParams();
  for (const [key, id] of [["group", "o-group"], ["district", "o-district"], ["weeks", "o-weeks"]]) {
    if ($(id).value.trim()) params.set(key, $(id).value.trim());  // as typed: the server resolves group names
  }
  return params.toString();
}

async function loadOutbreaks() {
  try {
    outbreakRows = await api(`/v1/outbreaks?${outbreakQuery()}`);
    $("o-error").hidden = true;
  } catch (err) {
    outbreakRows = [];
    $("o-error").textContent = err.message;
    $("o-error").hidden = false;
  }
  renderOutbreaks();
}

// ISO weeks ("2026-W48") to their Mondays (UTC) and back: the chart keeps a place for weeks without reports.
const DAY_MS = 86400000;

function mondayOf(iso) {
  const [year, week] = iso.split("-W").map(Number);
  const jan4 = new Date(Date.UTC(year, 0, 4));  // always in week 1
  return new Date(jan4.getTime() + ((week - 1) * 7 - ((jan4.getUTCDay() + 6) % 7)) * DAY_MS);
}

function isoWeek(monday) {
  const thursday = new Date(monday.getTime() + 3 * DAY_MS);  // a week belongs to the year of its Thursday
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY_MS));
  return `${year}-W${String(week).padStart(2, "0")}`;
}

function weeksBetween(first, last) {
  const weeks = [];
  for (let day = mondayOf(first); day <= mondayOf(last); day = new Date(day.getTime() + 7 * DAY_MS)) weeks.push(isoWeek(day));
  return weeks;
}

// "2026-W48" as the page's language writes a week, short (axis) or long (table).
function weekName(iso, long) {
  const [year, week] = iso.split("-W");
  return fill(TEXT[lang][long ? "week_long" : "week_short"], { year, week: Number(week) });
}

function renderOutbreaks() {
  const t = TEXT[lang];
  $("outbreaks").tBodies[0].replaceChildren(...outbreakRows.map((r) => {
    const tr = el("tr", r.rising ? { class: "rising" } : {});
    tr.append(...[weekName(r.week, true), r.district || r.commune || "—", nameOf(r), r.reports, r.rising ? t.rising : ""]
      .map((value) => el("td", {}, String(value))));
    tr.children[2].title = r.scientific || "";
    return tr;
  }));
  drawChart(outbreakRows);
}

// A schematic of the province: district centres as labelled dots, the submission's location (or its district,
// when it sent no coordinates) in red. No tiles, nothing from outside the server.
const SVG = "http://www.w3.org/2000/svg";
let districts = null;

function svgEl(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

async function drawMap(item) {
  districts = districts || await fetch("/static/districts.json").then((r) => r.json());
  const { south, north, west, east } = districts.bounds;
  const width = 320, height = Math.round(width * (north - south) / (east - west));
  const x = (lon) => ((lon - west) / (east - west)) * width;
  const y = (lat) => ((north - lat) / (north - south)) * height;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": fill(TEXT[lang].location, { place: item.district || "—" }) });
  for (const d of districts.districts) {
    const here = d.name === item.district;
    svg.append(svgEl("circle", { cx: x(d.lon), cy: y(d.lat), r: here ? 6 : 3,
                                 class: here && item.latitude == null ? "district here" : "district" }),
               svgEl("text", { x: x(d.lon) + 7, y: y(d.lat) + 4 }, d.name));
  }
  if (item.latitude != null && item.longitude != null) {
    svg.append(svgEl("circle", { cx: x(item.longitude), cy: y(item.latitude), r: 6, class: "district here" }));
  }
  if (items[current] === item) $("map").replaceChildren(svg);
}

// Reports per week as grouped bars, one colour per species (or district). Every label sits outside the plot:
// counts on the left, weeks below (thinned out to fit), the legend on the right; so no text covers a bar.
const COLOURS = ["#2f6b2a", "#c0392b", "#2b5aa0", "#d68910", "#7d3c98", "#117a65", "#a04000", "#5d6d7e"];
const PLOT = { left: 44, top: 10, width: 620, height: 180 };

function drawChart(rows) {
  const t = TEXT[lang];
  if (!rows.length) { $("chart").replaceChildren(el("p", { class: "hint" }, t.no_outbreaks)); return; }
  const byDistrict = $("o-series").value === "district";
  const key = (r) => (byDistrict ? r.district || r.commune || "—" : r.species);
  const names = new Map(rows.map((r) => [key(r), byDistrict ? key(r) : nameOf(r)]));
  const seen = rows.map((r) => r.week).sort();
  const weeks = weeksBetween(seen[0], seen.at(-1));
  const counts = new Map();
  rows.forEach((r) => counts.set(`${r.week}|${key(r)}`, (counts.get(`${r.week}|${key(r)}`) || 0) + r.reports));
  const max = Math.max(1, ...counts.values());
  const { left, top, width, height } = PLOT;
  const bottom = top + height;
  const y = (n) => bottom - (n / max) * height;
  const svg = svgEl("svg", { role: "img", "aria-label": t.chart_label });
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].find((s) => (s / max) * height >= 18) || Math.ceil(max / 5);
  for (let n = 0; n <= max; n += step) {
    svg.append(svgEl("line", { x1: left, x2: left + width, y1: y(n), y2: y(n), class: "grid" }),
               svgEl("text", { x: left - 6, y: y(n) + 4, "text-anchor": "end" }, String(n)));
  }
  const group = width / weeks.length;
  const bar = (group * 0.8) / names.size;
  const every = Math.ceil((7 * Math.max(...weeks.map((w) => weekName(w, false).length)) + 8) / group);
  weeks.forEach((week, w) => {
    [...names.keys()].forEach((series, s) => {
      const n = counts.get(`${week}|${series}`) || 0;
      if (!n) return;
      svg.append(svgEl("rect", { class: "bar", x: left + w * group + group * 0.1 + s * bar, y: y(n), width: Math.max(1, bar - 1),
                                 height: bottom - y(n), fill: COLOURS[s % COLOURS.length] },
                       svgEl("title", {}, `${names.get(series)} · ${weekName(week, true)}: ${n}`)));
    });
    if (w % every === 0) {
      svg.append(svgEl("text", { x: left + (w + 0.5) * group, y: bottom + 15, "text-anchor": "middle" }, weekName(week, false)));
    }
  });
  const [first, last] = [weeks[0].slice(0, 4), weeks.at(-1).slice(0, 4)];
  svg.append(svgEl("line", { x1: left, x2: left + width, y1: bottom, y2: bottom, class: "axis" }),
             svgEl("text", { x: left, y: bottom + 34 }, fill(t.week_axis, { years: first === last ? first : `${first}–${last}` })));
  const legendX = left + width + 20;
  const legend = [...names.values()].map((name, s) => {
    svg.append(svgEl("rect", { class: "swatch", x: legendX, y: top + s * 20, width: 12, height: 12, fill: COLOURS[s % COLOURS.length] }));
    const label = svgEl("text", { x: legendX + 18, y: top + s * 20 + 10 }, name);
    svg.append(label);
    return label;
  });
  $("chart").replaceChildren(svg);
  // As wide as the longest legend name, measured once the browser has laid the text out.
  const widest = Math.max(0, ...legend.map((label) => label.getComputedTextLength()));
  const svgHeight = Math.max(bottom + 44, top + names.size * 20 + 10);
  svg.setAttribute("viewBox", `0 0 ${Math.ceil(legendX + 18 + widest + 8)} ${svgHeight}`);
}

// What a key does, pressed or tapped: the keydown listener and the buttons (data-key) both call this, so a tap
// meets every guard a key does (the settle time, one action at a time, nothing to confirm on a blind check).
function command(key, event) {
  if (rejecting) {  // a reason acts; anything else cancels
    endReject();
    if (REASONS[key] && ready(event)) act({ action: "reject", reason: REASONS[key] });
    return;
  }
  // Moving on hides the last check's answer: it is about the photo just decided, never the one shown next.
  if (key === "j") { current = Math.min(current + 1, items.length - 1); reveal(null); renderQueue(); }
  else if (key === "k") { current = Math.max(current - 1, 0); reveal(null); renderQueue(); }
  else if (key === "c") { if (isBlind(items[current])) say(TEXT[lang].blind_no_confirm); else if (ready(event)) act({ action: "confirm" }); }
  else if (key === "x") { if (items[current]) startReject(); }
  else if (key === "r") { if (items[current]) { event.preventDefault(); openRelabel(); } }
  else if (key === "u") undoLast();
  else if (key === "ArrowRight" || key === "ArrowLeft") showPhoto(photoShown + (key === "ArrowRight" ? 1 : -1));
}

document.addEventListener("keydown", (event) => {
  if ($("app").hidden) return;
  if (event.target.id === "species-search" && !$("relabel").hidden) { relabelKey(event); return; }
  if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.tagName === "BUTTON" && (event.key === "Enter" || event.key === " ")) {
    if (event.repeat) event.preventDefault();  // a held Enter clicks once, not once per item it moves on to
    return;  // it clicks the button
  }
  command(event.key, event);
});

$("detail").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-key]");
  if (button) command(button.dataset.key, event);
});

$("species-search").addEventListener("input", searchSpecies);
$("more").addEventListener("click", () => loadQueue(true).catch((err) => say(err.message)));
$("o-filters").addEventListener("submit", (event) => { event.preventDefault(); loadOutbreaks(); });
$("o-series").addEventListener("change", () => drawChart(outbreakRows));
$("signout").addEventListener("click", async () => {
  try { await api("/v1/auth/logout", { method: "POST" }); } catch (err) { /* signed out either way */ }
  signOut();
});
$("filters").addEventListener("submit", (event) => { event.preventDefault(); current = 0; loadQueue().catch((err) => say(err.message)); });
$("csv").addEventListener("click", async (event) => {
  event.preventDefault();
  try {
    const text = await api(`/v1/outbreaks.csv?${outbreakQuery()}`);
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: "outbreaks.csv" });
    link.click();
  } catch (err) { $("o-error").textContent = err.message; $("o-error").hidden = false; }
});

// Every fixed text in the page's language; what the server sent is drawn again from what is already here.
function applyLanguage() {
  const t = TEXT[lang];
  const text = (key) => key.split(".").reduce((table, part) => table[part], t);
  document.documentElement.lang = lang;
  document.title = t.title;
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = text(node.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((node) => { node.placeholder = text(node.dataset.i18nPlaceholder); });
  document.querySelectorAll("[data-i18n-aria]").forEach((node) => node.setAttribute("aria-label", text(node.dataset.i18nAria)));
  $("lang").textContent = t.switch;
  $("lang").lang = lang === "vi" ? "en" : "vi";
  for (const id of ["status", "login-error", "o-error", "reveal"]) $(id).textContent = "";  // said in the other language
  $("login-error").hidden = true;
  $("o-error").hidden = true;
  if (me) $("who").textContent = `${me.username} (${t.role[me.role] || me.role})`;
  if ($("app").hidden) return;
  renderRows();
  describe(items[current]);
  showPhoto(photoShown);
  if (items[current]) drawMap(items[current]);
  if (rejecting) startReject();
  renderResults();
  renderOutbreaks();
  renderField();
}

$("lang").addEventListener("click", () => {
  lang = lang === "vi" ? "en" : "vi";
  localStorage.setItem("pestid.lang", lang);
  if (asked) history.replaceState(null, "", `?lang=${lang}`);  // a reload keeps the choice: ?lang= wins
  applyLanguage();
});

async function start() {
  try { me = await api("/v1/auth/me"); } catch (err) { signOut(err.message); return; }
  $("who").textContent = `${me.username} (${TEXT[lang].role[me.role] || me.role})`;
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  try { await loadQueue(); } catch (err) { say(err.message); }
  await loadOutbreaks();
  await loadField();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  let response, body;
  try {
    response = await fetch("/v1/auth/login", { method: "POST", headers: { "Content-Type": "application/json", "Accept-Language": lang },
      body: JSON.stringify({ username: $("username").value, password: $("password").value }) });
    body = await response.json();
  } catch (err) { body = null; }
  if (!response || !response.ok) {
    $("login-error").textContent = response ? problemText(body) : TEXT[lang].network;
    $("login-error").hidden = false;
    return;
  }
  $("login-error").hidden = true;
  token = body.token;
  sessionStorage.setItem("pestid.token", token);
  start();
});

applyLanguage();
if (token) start();
