"""The officer's review page, issue 23 ("pages officers can trust"), in real headless Chromium: a relabel saves
the species found for the text in the box whatever the network delay; photo and decision share one laptop
screen; times are the officer's; each language is whole; the outbreak chart's labels never cover its bars."""

import json
import re
from datetime import UTC, datetime

import httpx
import pytest

from pestid.serving.accounts import add_user
from pestid.serving.db import Submission
from pestid.serving.routes.pages import STATIC
from tests.serving.conftest import ARTIFACTS, jpeg

pytestmark = [pytest.mark.browser, pytest.mark.server]

PASSWORD = "mật khẩu dài"
LAPTOP = {"width": 1366, "height": 768}
DISTRICTS = [d["name"] for d in json.loads((STATIC / "districts.json").read_text(encoding="utf-8"))["districts"]]


def officer(app) -> None:
    with app.state.sessions() as session, session.begin():
        add_user(session, "lan", PASSWORD, "officer", "Phú Tân")


def send(url: str, *seeds: int, **fields: str) -> str:
    """One submission from Phú Tân with a photo per seed; returns its id."""
    photos = [("photos", (f"p{seed}.jpg", jpeg(seed), "image/jpeg")) for seed in seeds]
    sent = httpx.post(f"{url}/v1/identify", files=photos, data={"district": "Phú Tân", **fields})
    assert sent.status_code == 201, sent.text
    return sent.json()["submission_id"]


def sign_in(browser, url: str, query: str = "", **context):
    page = browser.new_context(viewport=LAPTOP, **context).new_page()
    page.goto(f"{url}/officer{query}")
    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#photos img")
    page.wait_for_timeout(450)  # an officer looks before pressing: action keys wait 400 ms after an item appears
    return page


def submission(app, submission_id: str) -> Submission:
    with app.state.sessions() as session:
        return session.get(Submission, submission_id)


def approver(url: str):
    """Approve submissions as "lan" through the API (one sign-in: each costs an argon2 hash)."""
    token = httpx.post(f"{url}/v1/auth/login", json={"username": "lan", "password": PASSWORD}).json()["token"]

    def approve(submission_id: str, label: str) -> None:
        done = httpx.post(f"{url}/v1/review/{submission_id}", json={"action": "relabel", "label": label},
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert done.status_code == 200, done.text

    return approve


@pytest.mark.parametrize("latency_ms", [0, 100, 300])
def test_relabel_saves_the_species_found_for_the_text_in_the_box(live_server, browser, latency_ms):
    """The officer's report: after an earlier search, r, "bac la" typed fast and Enter approved a bacterial leaf
    blight photo as whatever the earlier results said. Enter must take a result for "bac la", at any delay."""
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    sent = send(url, 70)
    page = sign_in(browser, url)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": latency_ms, "downloadThroughput": -1, "uploadThroughput": -1})  # fmt: skip
    page.keyboard.press("r")  # an earlier search leaves its results on screen
    page.keyboard.type("chuon chuon")
    page.wait_for_selector("#species-results li")
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    page.keyboard.type("bac la")  # no delay between keys: faster than any answer
    page.keyboard.press("Enter")
    expect(page.locator("#queue li")).to_have_count(0, timeout=10_000)
    assert submission(app, sent).final_label == "bacterial_leaf_blight"


def test_search_keeps_the_servers_ranking_and_shows_what_will_be_saved(live_server, browser):
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    sent = send(url, 71)
    page = sign_in(browser, url)
    page.keyboard.press("r")
    page.keyboard.type("nhen")
    expect(page.locator("#species-results li").first).to_have_attribute("data-id", "spiders")  # hunting spiders first
    expect(page.locator("#will-save")).to_contain_text("Nhện bắt mồi")  # shown large before anything is saved
    expect(page.locator("#will-save")).to_contain_text("🐞 thiên địch")  # a natural enemy, marked
    assert "🐞 thiên địch" in page.locator("#species-results li").first.inner_text()
    page.fill("#species-search", "chuon chuon")
    expect(page.locator("#species-results li").first).to_have_attribute("data-id", "dragonfly")
    ids = [li.get_attribute("data-id") for li in page.locator("#species-results li").all()]
    page.keyboard.press("ArrowDown")  # the officer picks the second match: it is what will be saved
    second = page.locator("#species-results li").nth(1).locator(".name").inner_text()
    expect(page.locator("#will-save .name")).to_have_text(second)
    page.keyboard.press("Enter")
    expect(page.locator("#queue li")).to_have_count(0)
    assert submission(app, sent).final_label == ids[1]
    expect(page.locator("#status")).to_contain_text(second)


def test_photo_and_decision_fit_one_laptop_screen(live_server, browser):
    """At 1366×768 the photo sits beside the guesses, keys and relabel box: nothing to scroll to decide."""
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    send(url, 80, 81, 82)
    send(url, 80)  # the same photo again, later
    page = sign_in(browser, url)
    rows = page.locator("#queue li")
    expect(rows).to_have_count(2)
    expect(page.locator("#queue li", has_text="📷 3")).to_have_count(1)
    expect(page.locator("#queue li", has_text="trùng ảnh trước")).to_have_count(1)
    page.locator("#queue li", has_text="📷 3").click()
    expect(page.locator("#strip img")).to_have_count(3)  # three photos: a strip of thumbnails, one large
    page.wait_for_timeout(450)
    page.keyboard.press("r")
    page.keyboard.type("bac la")
    expect(page.locator("#will-save .name")).to_be_visible()
    for selector in ["#photos img", "#guesses", ".keys", "#relabel", "#will-save", "#strip"]:
        box = page.locator(selector).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= LAPTOP["height"], (selector, box)
        assert box["x"] + box["width"] <= LAPTOP["width"], (selector, box)
    photo, guesses = page.locator("#photos img").bounding_box(), page.locator("#guesses").bounding_box()
    assert photo["x"] + photo["width"] <= guesses["x"]  # beside, not above
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "officer-1366x768.png"))
    page.keyboard.press("ArrowDown")  # arrows in the search box move the highlight, not the photo
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowRight")  # outside it, the next photo
    expect(page.locator("#strip button").nth(1)).to_have_class("active")


@pytest.mark.parametrize(("query", "local"), [("", "16:00"), ("?lang=en", "16:00")])
def test_times_show_in_the_officers_time_zone(live_server, browser, query, local):
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    sent = send(url, 90)
    with app.state.sessions() as session, session.begin():
        session.get(Submission, sent).created_at = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    page = sign_in(browser, url, query, timezone_id="Asia/Ho_Chi_Minh")
    expect(page.locator("#meta")).to_contain_text(local)  # 09:00 UTC is 16:00 in An Giang
    expect(page.locator("#queue li").first).to_contain_text(local)
    assert "09:00" not in page.locator("#meta").inner_text() + page.locator("#queue").inner_text()
    expect(page.locator("#meta")).to_contain_text("2026")


VISIBLE_TEXT = """() => {
  const shown = (node) => node.getClientRects().length > 0;
  const attributes = [...document.querySelectorAll("[placeholder], [aria-label], [title], img[alt]")].filter(shown)
    .flatMap((node) => ["placeholder", "aria-label", "title", "alt"].map((name) => node.getAttribute(name) || ""));
  const options = [...document.querySelectorAll("option")].map((option) => option.textContent);
  return [document.title, document.body.innerText, ...attributes, ...options].join("\\n");
}"""
VIETNAMESE = re.compile(r"\w*[àáâãèéêìíòóôõùúýăđĩũơưạ-ỹ]\w*", re.IGNORECASE)
ENGLISH = re.compile(r"\b(the|queue|species|approved|pending|reject(ed)?|search|sign|status|district|week|reports?|rising|"
                     r"undo(ne)?|confirm|relabel|filter|show|download|password|username|photos?|outbreaks?|identified|"
                     r"uncertain|recognised|not_recognised|blurry|duplicate|officer|keys|more|model|saved?|natural|"
                     r"enemy|group|predicted|decision|since|until|next|previous|location|map|error|server)\b",
                     re.IGNORECASE)  # fmt: skip
NOTE = "Lá vàng từ bờ ruộng vào"


def other_language(text: str, lang: str) -> list[str]:
    """Words of the other language in ``text``; proper names (districts, the farmer's own note) are allowed."""
    for name in [*DISTRICTS, NOTE, "Tiếng Việt"]:  # the way back to Vietnamese is named in Vietnamese
        text = text.replace(name, " ")
    found = VIETNAMESE.findall(text) if lang == "en" else [m.group(0) for m in ENGLISH.finditer(text)]
    return sorted(set(found))


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_each_screen_speaks_one_language(live_server, browser, lang):
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    sent = send(url, 100, note=NOTE)
    approver(url)(send(url, 101), "brown_planthopper")  # an outbreak row
    page = browser.new_context(viewport=LAPTOP).new_page()
    asked = []
    page.on("request", lambda request: "/v1/" in request.url and "/photos/" not in request.url
            and asked.append(request.headers.get("accept-language")))  # fmt: skip
    page.goto(f"{url}/officer" + ("?lang=en" if lang == "en" else ""))
    screens = {"sign-in": page.evaluate(VISIBLE_TEXT)}
    page.fill("#username", "lan")
    page.fill("#password", "wrong")
    page.click("#login button")
    expect(page.locator("#login-error")).to_be_visible()
    screens["wrong password"] = page.evaluate(VISIBLE_TEXT)
    page.fill("#password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#photos img")
    expect(page.locator("#outbreaks tbody tr")).to_have_count(1)
    screens["queue and outbreaks"] = page.evaluate(VISIBLE_TEXT)
    assert NOTE in screens["queue and outbreaks"]  # the farmer's words, as written
    page.wait_for_timeout(450)
    page.keyboard.press("r")
    page.keyboard.type("nhen")
    expect(page.locator("#will-save .name")).to_be_visible()
    screens["relabel search"] = page.evaluate(VISIBLE_TEXT)
    page.screenshot(path=str(ARTIFACTS / f"officer-relabel-{lang}.png"))
    page.keyboard.press("Escape")
    page.keyboard.press("x")
    expect(page.locator("#reject")).to_be_visible()
    screens["reject prompt"] = page.evaluate(VISIBLE_TEXT)
    page.keyboard.press("Escape")
    with app.state.sessions() as session, session.begin():
        session.get(Submission, sent).decision = "uncertain"  # confirming a guess is refused: an error to read
    page.click("#filters button")
    page.wait_for_timeout(450)
    page.keyboard.press("c")
    expect(page.locator("#status")).not_to_be_empty()
    screens["refused"] = page.evaluate(VISIBLE_TEXT)
    assert ("chọn đúng loài" if lang == "vi" else "choose the species") in screens["refused"]
    for screen, text in screens.items():
        assert not other_language(text, lang), (screen, other_language(text, lang), text)
    assert set(asked) == {lang}, asked  # the server answers in the page's language too


def test_language_choice_is_remembered_and_the_address_wins(live_server, browser):
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    send(url, 110)
    page = sign_in(browser, url)
    expect(page.locator("h1")).to_have_text("Duyệt ảnh")
    page.click("#lang")
    expect(page.locator("h1")).to_have_text("Photo review")
    expect(page.locator("#decision")).to_contain_text("Model:")  # what the server sent, drawn again in English
    page.reload()
    expect(page.locator("h1")).to_have_text("Photo review")  # remembered
    page.goto(f"{url}/officer?lang=vi")
    expect(page.locator("h1")).to_have_text("Duyệt ảnh")  # the address wins
    assert page.locator("html").get_attribute("lang") == "vi"


def boxes(page, selector: str) -> list[dict]:
    return page.evaluate(f"""() => [...document.querySelectorAll("{selector}")].map((node) => {{
      const box = node.getBoundingClientRect();
      return {{ text: node.textContent, left: box.left, right: box.right, top: box.top, bottom: box.bottom }};
    }})""")


def overlap(a: dict, b: dict) -> bool:
    return (
        min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5
    )


def assert_labels_clear(page) -> None:
    texts, bars = boxes(page, "#chart svg text"), boxes(page, "#chart svg rect")
    assert texts and bars
    for i, text in enumerate(texts):
        assert not [bar for bar in bars if overlap(text, bar)], text
        assert not [other for other in texts[i + 1 :] if overlap(text, other)], text


def test_outbreak_chart_draws_weeks_and_series_with_labels_clear_of_bars(live_server, browser):
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    reports = {"2026-03-02": ["brown_planthopper"],
               "2026-10-05": ["brown_planthopper"] * 3 + ["golden_apple_snail"], "2026-10-19": ["brown_planthopper"],
               "2026-11-02": ["brown_planthopper", "whitebacked_planthopper", "golden_apple_snail"] * 2}  # fmt: skip
    seed, approve = 200, approver(url)
    for day, labels in reports.items():
        for label in labels:
            seed += 1
            approve(send(url, seed, date=day), label)
    send(url, 300)  # one left to review
    page = sign_in(browser, url)
    page.locator("#chart").scroll_into_view_if_needed()
    for name in ["Rầy nâu", "Ốc bươu vàng", "Rầy lưng trắng"]:  # one series per species, named in the legend
        expect(page.locator("#chart svg text", has_text=name)).to_have_count(1)
    expect(page.locator("#chart svg rect.bar")).to_have_count(7)  # a bar per week and species with reports
    expect(page.locator("#chart svg text", has_text="T10")).to_have_count(1)  # weeks along the x axis, from the first
    week_labels = page.locator("#chart svg text", has_text=re.compile(r"^T\d+$")).count()
    assert 2 <= week_labels < 36  # W10 to W45, the weeks without reports too: too many to label every one
    assert_labels_clear(page)
    page.screenshot(path=str(ARTIFACTS / "officer-outbreak-chart.png"), full_page=True)
    page.select_option("#o-series", "district")  # one series per district instead
    expect(page.locator("#chart svg text", has_text="Phú Tân")).to_have_count(1)
    expect(page.locator("#chart svg rect.bar")).to_have_count(4)
    assert_labels_clear(page)
    page.fill("#o-group", "Các loài rầy")  # a group as officers name it: the server resolves it
    page.click("#o-filters button")
    expect(page.locator("#outbreaks tbody tr", has_text="Ốc bươu vàng")).to_have_count(0)
    expect(page.locator("#outbreaks tbody tr", has_text="Rầy nâu")).not_to_have_count(0)
