// Field truth on the officer's page: blind checks (audit items), delivered precision with its intervals, and drift
// per district and week. Loaded before officer.js, whose TEXT, lang, api, el, fill and nameOf these functions use
// when they are called (never before officer.js has run).
"use strict";
let precisionReport = null;
let driftReport = null;

// An audit item whose model answer this officer must not see yet: the server sends none of it.
function isBlind(item) { return Boolean(item && item.audit && item.audit.blind); }

// After a verdict on a blind check, the model's answer (what the farmer was told) and whether it matched.
function reveal(audit) {
  const t = TEXT[lang];
  const box = $("reveal");
  if (!audit || !audit.answer) { box.hidden = true; box.textContent = ""; return; }
  const verdict = audit.agreed === true ? ` ${t.agreed}` : audit.agreed === false ? ` ${t.disagreed}` : "";
  box.textContent = fill(t.revealed, { name: nameOf(audit.answer) }) + verdict;
  box.className = audit.agreed === false ? "prompt reveal differs" : "prompt reveal";
  box.hidden = false;
}

async function loadField() {
  try {
    [precisionReport, driftReport] = await Promise.all([api("/v1/precision"), api("/v1/drift")]);
  } catch (err) { precisionReport = driftReport = null; }
  renderField();
}

function renderField() { renderPrecision(); renderDrift(); }

// "10,8 %" in Vietnamese, "10.8 %" in English; a no-break space keeps the number and its sign on one line.
const percent = (x) => (x == null ? "—"
  : `${(Math.round(x * 1000) / 10).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB")}\u00a0%`);

function renderPrecision() {
  const t = TEXT[lang];
  const report = precisionReport;
  const body = $("precision").tBodies[0];
  if (!report) { body.replaceChildren(); $("p-summary").textContent = ""; $("p-alert").hidden = true; return; }
  $("p-summary").textContent = fill(t.precision_summary, { version: report.model_version || "—", promised: percent(report.promised) });
  const rows = [...report.classes.map((r) => ["class", r, nameOf(r)]), ...report.districts.map((r) => ["district", r, r.district || t.nowhere]),
                ...report.versions.map((r) => ["version", r, r.model_version])];
  body.replaceChildren(...(rows.length ? rows.map(([by, r, name]) => {
    const tr = el("tr", r.alert ? { class: "alert", "data-by": by } : { "data-by": by });
    tr.append(...[t.by[by], name, String(r.audits), percent(r.precision), `${percent(r.low)} – ${percent(r.high)}`,
                  r.promised == null ? "—" : percent(r.promised)].map((value) => el("td", {}, value)));
    if (r.alert) tr.children[3].append(" ", el("strong", {}, t.below_promise));
    if (by === "class") tr.children[1].title = r.scientific || "";
    return tr;
  }) : [el("tr", {}, el("td", { colspan: "6" }, t.no_audits))]));
  const below = report.classes.filter((r) => r.alert).map((r) => nameOf(r));
  $("p-alert").textContent = below.length ? fill(t.alert_line, { names: below.join(", ") }) : "";
  $("p-alert").hidden = !below.length;
}

// What a flagged district-week asks of officers: which photos to look at, and which organisms to photograph.
function lookAt(r) {
  const t = TEXT[lang];
  const parts = [];
  if (r.not_sure_moved) parts.push(r.not_sure_share > r.not_sure_reference ? t.look_unsure : t.look_sure);
  if (r.classes_moved && r.rising.length) parts.push(fill(t.look_rising, { names: r.rising.map(nameOf).join(", ") }));
  if (r.classes_moved && r.falling.length) parts.push(fill(t.look_falling, { names: r.falling.map(nameOf).join(", ") }));
  return parts.join("; ");
}

function renderDrift() {
  const t = TEXT[lang];
  const body = $("drift").tBodies[0];
  const rows = driftReport ? driftReport.rows : [];
  body.replaceChildren(...(rows.length ? rows.map((r) => {
    const reference = r.not_sure_reference == null ? "—" : percent(r.not_sure_reference);
    const tr = el("tr", r.flagged ? { class: "flagged" } : {});
    tr.append(...[weekName(r.week, true), r.district || t.nowhere, String(r.answers), `${percent(r.not_sure_share)} (${reference})`,
                  r.class_distance == null ? "—" : percent(r.class_distance), lookAt(r)].map((value) => el("td", {}, value)));
    return tr;
  }) : [el("tr", {}, el("td", { colspan: "6" }, t.no_drift))]));
}
