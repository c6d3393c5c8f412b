"""Issue 23 on the farmer's page, in real headless Chromium at a phone's 360×740: pages farmers can trust.

One truth per observation on the card and in "my photos" through a cut connection, a slip of the finger undone,
the officers' verdict worded as what they did, each language whole, and tap targets a thumb can hit.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from pestid.catalogue import load_catalogue
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.routes.pages import STATIC
from tests.onnx_models import linear_model
from tests.serving import test_farmer_page
from tests.serving.conftest import ARTIFACTS, make_settings, running, until
from tests.serving.test_farmer_page import OFFICER_PASSWORD, OUTCOME_LABELS, PHONE, _real_photo, _rows, _text

pytestmark = [pytest.mark.browser, pytest.mark.server]
farmer_app = test_farmer_page.farmer_app  # the service with its offline copy, on a real uvicorn
UNDO_S = 6  # app.js's UNDO_MS
OFFLINE = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
TRICKLE = {"offline": False, "latency": 200, "downloadThroughput": 50_000, "uploadThroughput": 4_000}  # 32 kbps up

# The card's observation and its row in "my photos", as the farmer sees them.
ONE_STATE = """() => { const card = document.getElementById("result");
    const row = document.querySelector(`#mine li[data-id="${card.dataset.id}"]`);
    const shown = (id) => !document.getElementById(id).hidden;
    return {card: card.hidden ? null : card.dataset.state, row: row && row.dataset.state, source: card.dataset.source,
            card_label: document.getElementById("state").textContent, row_label: row && row.querySelector(".state").textContent,
            error: shown("error") && document.getElementById("error").textContent, retry: shown("retry"),
            note: shown("source") && document.getElementById("source").textContent}; }"""  # fmt: skip
STORED = """() => new Promise(r => { const q = indexedDB.open("pestid"); q.onsuccess = () => {
    const g = q.result.transaction("observations").objectStore("observations").getAll();
    g.onsuccess = () => r(g.result.sort((a, b) => a.created < b.created ? -1 : 1).map(o => ({state: o.state,
        deleting: Boolean(o.deleting), submission_id: o.submission_id || null, photos: o.photos.length}))); }; })"""  # fmt: skip
IDS = STORED.replace("({state: o.state,", "({id: o.id, state: o.state,")  # the same, with the phone's own ids


def _one_state(page, state: str, timeout_s: float = 30.0) -> dict:
    """The card and its row, once both show `state`: they must say it in the same words (one snapshot)."""
    deadline = time.monotonic() + timeout_s
    while (seen := page.evaluate(ONE_STATE))["card"] != state or seen["row"] != state:
        assert time.monotonic() < deadline, f"timed out waiting for {state}: {seen}"
        time.sleep(0.02)
    assert seen["card_label"] == seen["row_label"], seen
    return seen


def _choose_and_send(page, tmp_path) -> None:
    page.set_input_files("#gallery", str(_real_photo(tmp_path)))
    page.wait_for_selector("#previews img")
    page.click("#send")


def _ready_offline(browser, url: str):
    """A phone's page that has loaded the offline model, so it answers without the server."""
    page = browser.new_page(**PHONE)
    page.goto(url + "/")
    page.wait_for_selector("#offline-ready:not([hidden])", timeout=60_000)
    return page


def test_offline_then_online_the_card_and_the_list_move_together_to_the_servers_answer(farmer_app, browser, tmp_path):
    url, app = farmer_app
    page = _ready_offline(browser, url)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", OFFLINE)
    _choose_and_send(page, tmp_path)
    waiting = _one_state(page, "waiting")
    assert waiting["source"] == "phone" and "chưa có mạng" in waiting["note"]
    assert not waiting["error"] and not waiting["retry"] and _text(page, "#state") == "Đang chờ gửi"

    cdp.send("Network.emulateNetworkConditions", TRICKLE)  # the connection returns, barely: the page sends itself
    sending = _one_state(page, "sending")
    assert sending["source"] == "phone" and not sending["error"] and not sending["retry"]
    assert sending["note"] == "Kết quả trên điện thoại."  # a connection now: no "no connection" beside it
    sent = _one_state(page, "sent", timeout_s=60)
    assert sent["source"] == "server" and not sent["note"] and not sent["error"] and not sent["retry"]
    assert _text(page, "#state") == "Đã gửi cho cán bộ, đang chờ xem" and _rows(app) == 1


@pytest.mark.parametrize("down", ["unreachable", "503"])
def test_a_server_down_then_up_gets_the_photo_sent_by_the_page_and_its_warning_goes(
    farmer_app, browser, tmp_path, down
):
    url, app = farmer_app
    page = _ready_offline(browser, url)
    if down == "unreachable":
        page.route("**/v1/identify*", lambda route: route.abort())
    else:
        page.route("**/v1/identify*", lambda route: route.fulfill(status=503, body="{}"))
    _choose_and_send(page, tmp_path)
    waiting = _one_state(page, "waiting")
    assert waiting["retry"] and waiting["source"] == "phone", waiting  # the phone's answer meanwhile
    assert "Chưa chắc ảnh đã tới máy chủ" in waiting["error"] and _rows(app) == 0
    page.unroute("**/v1/identify*")  # the server is back; nobody taps anything
    sent = _one_state(page, "sent", timeout_s=40)
    assert sent["source"] == "server" and not sent["error"] and not sent["retry"] and not sent["note"]
    assert page.locator("#error").is_hidden() and page.locator("#retry").is_hidden() and _rows(app) == 1


def test_a_cut_connection_is_sent_again_in_the_background_stored_once_and_the_card_follows(
    farmer_app, browser, tmp_path
):
    url, app = farmer_app
    page = _ready_offline(browser, url)
    reached, cut = [], [True]

    def cut_after_the_server_stored_it(route):
        if not cut[0]:
            route.continue_()
            return
        reached.append(route.fetch().status)  # the server stores the photo...
        route.abort("connectionreset")  # ...and its answer never reaches the phone

    page.route("**/v1/identify**", cut_after_the_server_stored_it)
    _choose_and_send(page, tmp_path)
    waiting = _one_state(page, "waiting")
    assert waiting["error"] and waiting["retry"], waiting
    assert reached[0] == 201 and _rows(app) == 1
    cut[0] = False
    sent = _one_state(page, "sent", timeout_s=40)  # resent by the page with the same key: the server replays
    assert sent["source"] == "server" and not sent["error"] and not sent["retry"] and not sent["note"]
    assert _rows(app) == 1 and _rows(app, "photos") == 1
    assert page.evaluate(STORED)[0]["state"] == "sent"


def test_a_deleted_photo_can_be_undone_even_across_a_reload_and_leaves_the_phone_only_after_the_undo_time(
    farmer_app, browser, tmp_path
):
    url, app = farmer_app
    page = browser.new_page(**PHONE)
    page.goto(url + "/")
    page.route("**/v1/identify*", lambda route: route.abort())  # the server cannot be reached: the photo waits
    _choose_and_send(page, tmp_path)
    page.wait_for_selector("#mine li[data-state=waiting]")

    def delete() -> None:
        page.click("#mine li[data-state=waiting] button:has-text('Xóa')")
        page.wait_for_selector("#undo-bar:not([hidden])")
        assert _text(page, "#undo-bar").split() == ["Đã", "xóa.", "Hoàn", "tác"]
        assert page.locator("#mine li").count() == 0 and page.locator("#result").is_hidden()

    delete()
    assert page.evaluate(STORED) == [{"state": "waiting", "deleting": True, "submission_id": None, "photos": 1}]
    page.click("#undo")
    page.wait_for_selector("#mine li[data-state=waiting]")
    assert page.locator("#undo-bar").is_hidden() and not page.evaluate(STORED)[0]["deleting"]

    delete()
    page.reload()  # within the undo time: nothing is lost, and the undo is offered again
    page.wait_for_selector("#undo-bar:not([hidden])")
    assert len(page.evaluate(STORED)) == 1 and page.locator("#mine li").count() == 0
    page.click("#undo")
    page.wait_for_selector("#mine li[data-state=waiting]")

    delete()
    time.sleep(UNDO_S + 1)
    assert page.evaluate(STORED) == [] and page.locator("#undo-bar").is_hidden()
    assert page.locator("#mine-block").is_hidden() and _rows(app) == 0


@contextmanager
def _officer(app, url: str) -> Iterator[httpx.Client]:
    """An officer signed in to the review API."""
    with app.state.sessions() as session, session.begin():
        add_user(session, "lan", OFFICER_PASSWORD, "officer", None)
    with httpx.Client(base_url=url) as api:
        token = api.post("/v1/auth/login", json={"username": "lan", "password": OFFICER_PASSWORD}).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"
        yield api


def _sent_ids(page, count: int) -> list[str]:
    until(page, f"() => document.querySelectorAll('#mine li[data-state=sent]').length === {count}")
    return [o["submission_id"] for o in page.evaluate(STORED)]


def _row(page, index: int):
    """The row of the index-th observation sent (oldest first) in "my photos", wherever news has put it."""
    return page.locator(f'#mine li[data-id="{page.evaluate(IDS)[index]["id"]}"]')


def test_officer_verdicts_read_as_confirmed_or_corrected_with_the_officers_advice_in_each_language(browser, tmp_path):
    model = linear_model(tmp_path / "model.onnx", OUTCOME_LABELS, weight=np.zeros((3, 5)), bias=[6.0, 0, 0, 0, 0])
    catalogue = load_catalogue()
    hopper, beetle = catalogue.get("brown_planthopper"), catalogue.get("lady_beetle")
    app = create_app(make_settings(model, tmp_path / "data"))
    with running(app) as url:
        page = browser.new_page(**PHONE)
        page.goto(url + "/")
        for _ in range(3):
            _choose_and_send(page, tmp_path)
            page.wait_for_selector("#result[data-state=sent]")
        agreed, corrected, blurred = _sent_ids(page, 3)
        with _officer(app, url) as api:
            for sub, body in [(agreed, {"action": "relabel", "label": "brown_planthopper"}),
                              (corrected, {"action": "relabel", "label": "lady_beetle"}),
                              (blurred, {"action": "reject", "reason": "blurry"})]:  # fmt: skip
                assert api.post(f"/v1/review/{sub}", json=body).status_code == 200
        page.reload()  # later: the page asks with each receipt
        until(page, "() => document.querySelectorAll('#mine li[data-state=reviewed]').length === 3")
        assert _row(page, 0).locator(".state").inner_text() == f"Cán bộ đã xác nhận: {hopper.name_vi}"
        assert _row(page, 1).locator(".state").inner_text() == f"Cán bộ đã sửa thành: {beetle.name_vi}"
        assert _row(page, 2).locator(".state").inner_text().startswith("Ảnh bị mờ")  # the reason, said once

        _row(page, 1).locator(".open").click()  # the corrected one, opened: its photo, the verdict, the advice
        page.wait_for_selector("#result[data-state=reviewed]")
        assert _text(page, "#state") == f"Cán bộ đã sửa thành: {beetle.name_vi}"
        assert _text(page, "#advice") == beetle.advice_vi and page.locator("#nospray").is_visible()
        assert _text(page, "#scientific") == beetle.scientific
        assert (
            page.locator("#decision").is_hidden() and page.locator("#alternatives-block").is_hidden()
        )  # not the model's
        until(page, "() => { const i = document.querySelector('#card-photos img'); return i && i.naturalWidth > 0; }")
        assert page.locator("#card-photos img").get_attribute("src").startswith("blob:")  # from the phone's own store
        until(page, "() => { const r = document.getElementById('result').getBoundingClientRect(); "
                    "return r.top >= 0 && r.top < innerHeight / 2; }")  # fmt: skip  # brought into view
        _row(page, 0).locator(".open").click()
        until(page, f"() => document.getElementById('state').textContent.endsWith({json.dumps(hopper.name_vi)})")
        assert _text(page, "#advice") == hopper.advice_vi and page.locator("#nospray").is_hidden()

        page.click("#lang")  # English: the verdicts fetched in English, the model's answer named in English
        until(
            page, "() => document.documentElement.lang === 'en' && document.querySelectorAll('#mine li').length === 3"
        )
        assert _row(page, 0).locator(".state").inner_text() == f"The officer confirmed: {hopper.name_en}"
        assert _row(page, 0).locator(".name").inner_text() == f"Answer: {hopper.name_en}"  # answered in Vietnamese
        assert _row(page, 1).locator(".state").inner_text() == f"The officer corrected it to: {beetle.name_en}"
        assert _row(page, 2).locator(".state").inner_text().startswith("The photo was too blurry")
        _row(page, 1).locator(".open").click()
        page.wait_for_selector("#result[data-state=reviewed]")
        assert _text(page, "#advice") == beetle.advice_en and _text(page, "#nospray").startswith("This is a beneficial")


# Vietnamese letters (beyond ASCII), and common English words that must not be left on the Vietnamese page.
VIETNAMESE = re.compile(r"[đĐ]|[^\x00-\x7f]", re.UNICODE)
ENGLISH = re.compile(r"\b(the|photos?|send|sent|sending|officers?|waiting|identified|not sure|advice|answer|review(ed)?|"
                     r"delete|undo|more|phone|spray|error|server|connection|take|choose|gallery|district|commune|"
                     r"cancel|location|field|candidates|confidence|again)\b", re.IGNORECASE)  # fmt: skip
# Every text a farmer meets: visible text nodes and the attributes read aloud, without Latin (.scientific) or
# what is marked as another language (the language switch names its language in that language).
TEXTS = """() => { const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
    const other = (el) => el.closest(".scientific") || el.closest(`[lang]:not([lang="${document.documentElement.lang}"])`);
    const texts = [document.title];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (n.textContent.trim() && !el.closest("option, script") && visible(el) && !other(el)) texts.push(n.textContent.trim());
    }
    for (const el of document.querySelectorAll("[placeholder], [aria-label], [title], [alt]")) {
        if (!visible(el) || other(el)) continue;
        for (const a of ["placeholder", "aria-label", "title", "alt"]) if (el.getAttribute(a)) texts.push(el.getAttribute(a));
    }
    const district = document.getElementById("district");
    texts.push(district.options[district.selectedIndex].text);
    return texts; }"""  # fmt: skip


def _speaks_only(page, lang: str, screen: str, proper_names: set[str]) -> None:
    wrong = []
    for text in page.evaluate(TEXTS):
        for name in proper_names:
            text = text.replace(name, "")
        if lang == "en" and VIETNAMESE.search(unicodedata.normalize("NFC", text).replace("—", "").replace("…", "")
                                              .replace("“", "").replace("”", "").replace("×", "").replace("±", "")
                                              .replace("·", "").replace("’", "")):  # fmt: skip
            wrong.append(text)
        if lang == "vi" and ENGLISH.search(text):
            wrong.append(text)
    assert not wrong, f"{screen}: {wrong}"


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_screen_speaks_one_language(farmer_app, browser, tmp_path, lang):
    url, app = farmer_app
    other = "en" if lang == "vi" else "vi"
    districts = json.loads((STATIC / "districts.json").read_text(encoding="utf-8"))["districts"]
    proper_names = {d["name"] for d in districts} | {"Phú Thạnh"}  # the commune the farmer typed
    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.goto(url + "/")
    page.evaluate(f"localStorage.setItem('pestid.lang', '{other}')")
    page.goto(f"{url}/?lang={lang}")  # the link's language wins over the one the phone kept
    assert page.evaluate("document.documentElement.lang") == lang
    check = lambda screen: _speaks_only(page, lang, screen, proper_names)  # noqa: E731
    check("start")
    page.fill("#commune", "Phú Thạnh")
    for _ in range(3):
        _choose_and_send(page, tmp_path)
        page.wait_for_selector("#result[data-state=sent]")
    check("an answer")
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"these are not pixels")
    page.set_input_files("#gallery", str(notes))
    page.wait_for_selector("#previews .tile")
    page.click("#send")
    page.wait_for_selector("#result[data-state=refused]")
    check("a refused photo")
    agreed, blurred, _, _ = _sent_ids(page, 3)
    with _officer(app, url) as api:
        api.post(f"/v1/review/{agreed}", json={"action": "relabel", "label": "brown_planthopper"}).raise_for_status()
        api.post(f"/v1/review/{blurred}", json={"action": "reject", "reason": "blurry"}).raise_for_status()
    page.reload()
    until(page, "() => document.querySelectorAll('#mine li[data-state=reviewed]').length === 2")
    page.wait_for_selector("#offline-ready:not([hidden])", timeout=60_000)
    check("my photos: sent, reviewed, set aside, refused")
    _row(page, 0).locator(".open").click()
    page.wait_for_selector("#result[data-state=reviewed]")
    opened = page.evaluate("document.getElementById('result').dataset.id")
    check("an opened observation")
    _row(page, 1).locator(".open").click()
    until(page, f"() => document.getElementById('result').dataset.id !== {json.dumps(opened)}")
    check("an opened observation the officers set aside")

    context.set_offline(True)
    page.wait_for_selector("#network:not([hidden])")
    page.set_input_files("#gallery", str(_real_photo(tmp_path)))
    page.wait_for_selector("#previews img")
    check("the offline banner and a photo chosen")
    page.click("#send")
    page.wait_for_selector("#result[data-state=waiting]")
    check("the phone's answer, waiting")
    page.locator("#mine li[data-state=waiting] .actions .secondary").click()
    page.wait_for_selector("#undo-bar:not([hidden])")
    check("the undo bar")
    page.click("#undo")
    page.set_input_files("#gallery", [str(_real_photo(tmp_path))] * 6)
    page.wait_for_selector("#pick-error:not([hidden])")
    check("too many photos")
    context.close()


INTERACTIVE = """() => [...document.querySelectorAll(
        "button, a, input:not([type=hidden]), select, label.pick, [role=button]")]
    .filter((el) => el.getClientRects().length > 0)
    .map((el) => { const r = el.getBoundingClientRect();
        return {what: `${el.tagName.toLowerCase()}#${el.id}.${el.className}`, width: r.width, height: r.height}; })"""


def test_every_tap_target_is_at_least_44_px_and_the_answer_comes_into_view(farmer_app, browser, tmp_path):
    url, _ = farmer_app
    page = browser.new_page(**PHONE)
    page.goto(url + "/")
    seen = []
    measure = lambda: seen.extend(page.evaluate(INTERACTIVE))  # noqa: E731
    measure()
    page.set_input_files("#gallery", str(_real_photo(tmp_path)))
    page.wait_for_selector("#previews img")
    measure()  # the photo's remove button
    page.click("#send")
    page.wait_for_selector("#result[data-state=sent]")
    until(page, "() => { const r = document.getElementById('result').getBoundingClientRect(); "
                "return r.top >= 0 && r.top < innerHeight / 2; }")  # fmt: skip  # the answer scrolled into view
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "farmer-answer-360x740.png"))
    measure()
    page.evaluate("""async (n) => { const db = await new Promise((r) => { const q = indexedDB.open("pestid");
        q.onsuccess = () => r(q.result); });
        const tx = db.transaction("observations", "readwrite");
        for (let i = 0; i < n; i++) tx.objectStore("observations").put({id: `old-${i}`, key: `key-${i}`,
            created: new Date(Date.now() - (i + 1) * 3600e3).toISOString(), lang: "vi", fields: {}, state: "refused",
            photos: [new Blob(["x"])], names: ["x.jpg"], thumb: null, refusal: {vi: "Tệp hỏng.", en: "A broken file."}});
        await new Promise((r) => { tx.oncomplete = r; }); }""", 11)  # fmt: skip
    page.reload()  # twelve observations: ten listed, the rest behind "more"
    page.wait_for_selector("#more-mine:not([hidden])")
    assert page.locator("#mine li").count() == 10 and _text(page, "#more-mine") == "Xem thêm (2)"
    measure()
    page.click("#more-mine")
    until(page, "() => document.querySelectorAll('#mine li').length === 12")
    page.locator("#mine li[data-state=refused] .actions .secondary").first.click()
    page.wait_for_selector("#undo-bar:not([hidden])")
    measure()  # the list's buttons and the undo bar
    page.route("**/v1/identify*", lambda route: route.abort())
    _choose_and_send(page, tmp_path)
    page.wait_for_selector("#retry:not([hidden])")
    measure()  # "send again", "send now"
    smallest = min(seen, key=lambda s: min(s["width"], s["height"]))
    print(f"{len(seen)} tap targets measured at 360×740; the smallest: {smallest}")
    assert min(s["width"] for s in seen) >= 44 and min(s["height"] for s in seen) >= 44, smallest
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
