// The farmer's page: Vietnamese first, English on request; no external resources.
"use strict";
const TEXT = {
  vi: {
    title: "Nhận diện sâu bệnh lúa", lead: "Chụp hoặc chọn tối đa 5 ảnh của cùng một con sâu, ốc hoặc cây lúa bị hại.",
    pick: "Chụp hoặc chọn ảnh", commune: "Xã / phường (không bắt buộc)", send: "Nhận diện", sending: "Đang nhận diện…",
    advice: "Khuyến cáo", alternatives: "Có thể là", nospray: "Đây là thiên địch có ích. Không phun thuốc!",
    toomany: "Chỉ chọn tối đa 5 ảnh.", offline: "Không kết nối được máy chủ. Ảnh chưa được gửi, hãy thử lại.",
    identified: "Đã nhận diện", uncertain: "Chưa chắc chắn — cán bộ sẽ kiểm tra", not_recognised: "Không nhận ra",
    category: { insect: "côn trùng", mite: "nhện hại", mollusc: "ốc", rodent: "chuột", fungus: "bệnh do nấm",
      bacterium: "bệnh do vi khuẩn", virus: "bệnh do virus", natural_enemy: "thiên địch", healthy: "lúa khỏe" },
    group: "Nhóm", model: "Mô hình", switch: "English",
  },
  en: {
    title: "Rice pest identification", lead: "Take or choose up to 5 photos of one insect, snail or damaged rice plant.",
    pick: "Take or choose photos", commune: "Commune (optional)", send: "Identify", sending: "Identifying…",
    advice: "What to do", alternatives: "It could also be", nospray: "This is a beneficial natural enemy. Do not spray!",
    toomany: "Choose at most 5 photos.", offline: "Cannot reach the server. Nothing was sent; please try again.",
    identified: "Identified", uncertain: "Not sure — an officer will check", not_recognised: "Not recognised",
    category: { insect: "insect", mite: "mite", mollusc: "snail", rodent: "rodent", fungus: "fungal disease",
      bacterium: "bacterial disease", virus: "viral disease", natural_enemy: "natural enemy", healthy: "healthy rice" },
    group: "Group", model: "Model", switch: "Tiếng Việt",
  },
};
let lang = localStorage.getItem("pestid.lang") || "vi";
let last = null;
const $ = (id) => document.getElementById(id);

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = TEXT[lang][el.dataset.i18n]; });
  $("lang").textContent = TEXT[lang].switch;
  document.title = TEXT[lang].title;
  if (last && last.lang === lang) render(last);
  else $("result").hidden = true;  // an answer comes in one language: the other page does not show it
}

function describe(species) {
  const t = TEXT[lang];
  const parts = [t.category[species.category] || species.category];
  if (species.parent) parts.push(`${t.group}: ${species.parent.name}`);
  return parts.join(" · ");
}

function render(body) {
  const t = TEXT[lang];
  const main = body.species || body.nearest_group;
  $("result").hidden = false;
  $("decision").textContent = t[body.decision];
  $("decision").className = `decision ${body.decision}`;
  $("nospray").hidden = !body.do_not_spray;
  $("name").textContent = main ? main.name : body.message;
  $("scientific").textContent = main ? main.scientific : "";
  $("description").textContent = main ? describe(main) : "";
  $("advice").textContent = main ? main.advice : "";
  const alts = body.alternatives || [];
  $("alternatives-block").hidden = alts.length === 0;
  $("alternatives").replaceChildren(...alts.map((s) => {
    const li = document.createElement("li");
    li.textContent = `${s.name} (${Math.round(s.probability * 100)}%)`;
    return li;
  }));
  $("model").textContent = `${t.model}: ${body.model.version}`;
}

$("lang").addEventListener("click", () => {
  lang = lang === "vi" ? "en" : "vi";
  localStorage.setItem("pestid.lang", lang);
  applyLanguage();
});

$("photos").addEventListener("change", () => {
  const files = Array.from($("photos").files);
  $("error").hidden = files.length <= 5;
  $("error").textContent = files.length > 5 ? TEXT[lang].toomany : "";
  $("send").disabled = files.length === 0 || files.length > 5;
  $("previews").replaceChildren(...files.slice(0, 5).map((f) => {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(f);
    img.alt = f.name;
    return img;
  }));
});

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  Array.from($("photos").files).slice(0, 5).forEach((f) => form.append("photos", f, f.name));
  if ($("commune").value.trim()) form.append("commune", $("commune").value.trim());
  $("send").disabled = true;
  $("send").textContent = TEXT[lang].sending;
  $("error").hidden = true;
  try {
    const response = await fetch(`/v1/identify?lang=${lang}`, {
      method: "POST", body: form, headers: { "Accept-Language": lang, "Idempotency-Key": randomKey() },
    });
    const body = await response.json();
    if (!response.ok) {
      $("error").textContent = lang === "vi" ? body.detail_vi : body.detail_en;
      $("error").hidden = false;
    } else {
      last = body;
      render(body);
    }
  } catch (err) {
    $("error").textContent = TEXT[lang].offline;
    $("error").hidden = false;
  } finally {
    $("send").disabled = false;
    $("send").textContent = TEXT[lang].send;
  }
});

applyLanguage();
