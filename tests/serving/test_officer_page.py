"""The officer's review page in real headless Chromium: sign in, review by keyboard, undo, outbreaks."""

import httpx
import pytest

from pestid.serving.accounts import add_user
from tests.serving.conftest import ARTIFACTS, jpeg, until

pytestmark = [pytest.mark.browser, pytest.mark.server]


def settle(page) -> None:
    """An officer looks before pressing: the page ignores action keys in the first 400 ms of an item."""
    page.wait_for_timeout(450)


PASSWORD = "mật khẩu dài"


def queue_photos(live_server, count: int, first_seed: int, **fields: str) -> str:
    """The Phú Tân officer "lan" and ``count`` submissions from Phú Tân waiting for review; returns the URL."""
    url, app = live_server
    with app.state.sessions() as session, session.begin():
        add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
    for k in range(count):
        sent = httpx.post(f"{url}/v1/identify", files=[("photos", ("p.jpg", jpeg(first_seed + k), "image/jpeg"))],
                          data={"district": "Phú Tân", **fields})  # fmt: skip
        assert sent.status_code == 201
    return url


def test_officer_reviews_the_queue_by_keyboard(live_server, browser):
    from playwright.sync_api import expect  # here: the serve-only environment runs this file without playwright

    url = queue_photos(live_server, 3, 40, date="2026-11-18")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(url + "/officer")
    page.fill("#username", "lan")
    page.fill("#password", "sai mật khẩu")
    page.click("#login button")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "Sai tên đăng nhập" in page.locator("#login-error").inner_text()
    page.fill("#password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#queue li")
    assert page.locator("#queue li").count() == 3
    page.wait_for_selector("#photos img")
    assert page.locator("#map svg circle.here").count() == 1  # Phú Tân marked on the district map
    assert "Phú Tân" in page.locator("#map svg").get_attribute("aria-label")

    settle(page)
    page.keyboard.press("c")  # confirm the first
    expect(page.locator("#queue li")).to_have_count(2)  # no eval: the page's CSP forbids it
    assert "đã duyệt" in page.locator("#status").inner_text()  # approved, in the page's language
    settle(page)
    page.keyboard.press("r")  # relabel the next: search by Vietnamese name, Enter takes the first match
    page.keyboard.type("ốc bươu")
    page.wait_for_selector("#species-results li")
    page.keyboard.press("Enter")
    expect(page.locator("#queue li")).to_have_count(1)  # no eval: the page's CSP forbids it
    page.wait_for_selector("#outbreaks tbody tr")
    assert "Ốc bươu vàng" in page.locator("#outbreaks").inner_text()  # names, not ids
    settle(page)
    page.keyboard.press("x")  # reject the last as blurry
    page.keyboard.press("1")
    expect(page.locator("#queue li")).to_have_count(0)  # no eval: the page's CSP forbids it
    page.keyboard.press("u")  # undo the rejection: it comes back
    expect(page.locator("#queue li")).to_have_count(1)  # no eval: the page's CSP forbids it
    assert "Đã hoàn tác" in page.locator("#status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "officer-review.png"), full_page=True)


def test_a_burst_of_presses_acts_once_and_the_page_is_usable_by_keyboard(live_server, browser):
    from playwright.sync_api import expect

    url = queue_photos(live_server, 60, 60)  # more than a page of 50
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(url + "/officer")
    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#photos img")
    settle(page)
    for _ in range(8):  # 8 presses 50 ms apart, as the tester did: one photo is confirmed, not three
        page.keyboard.press("c")
        page.wait_for_timeout(50)
    page.wait_for_timeout(1000)
    expect(page.locator("#queue-total")).to_contain_text("50 / 59")  # one confirmed, not three
    page.click("#more")  # the next page is appended
    expect(page.locator("#queue li")).to_have_count(59)
    assert page.locator("#more").is_hidden()
    for control in page.locator("#app input, #app select").all():  # every control has a name
        assert control.get_attribute("aria-label") or control.get_attribute("id") == "species-search", control
    page.locator("#queue li").first.focus()  # rows are reachable by keyboard
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#queue li.active")).to_have_count(1)
    assert page.locator("#queue li").nth(1).get_attribute("class") == "active"
    until(page, "() => Number.isFinite(shownAt)")  # its photos replaced the first item's (a click before would be lost)
    page.locator("#photos img").first.click(position={"x": 60, "y": 60})  # zoom where the officer points
    assert "zoomed" in page.locator("#photos img").first.get_attribute("class")
    page.screenshot(path=str(ARTIFACTS / "officer-zoomed.png"))
    token = httpx.post(f"{url}/v1/auth/login", json={"username": "lan", "password": PASSWORD}).json()["token"]
    for item in httpx.get(f"{url}/v1/review/queue", headers={"Authorization": f"Bearer {token}"}).json()[:5]:
        httpx.post(f"{url}/v1/review/{item['id']}", json={"action": "relabel", "label": "brown_planthopper"},
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    page.click("#o-filters button")  # 5 reports this week and none before: a rise
    expect(page.locator("#outbreaks tr.rising")).to_have_count(1)
    assert "Rầy nâu" in page.locator("#outbreaks tr.rising").inner_text()
    page.locator("#outbreaks").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "officer-outbreak-rising.png"), full_page=True)
    page.click("#signout")
    page.wait_for_selector("#login:not([hidden])")
    token_left = page.evaluate("sessionStorage.getItem('pestid.token')")
    assert token_left is None


@pytest.mark.parametrize("width", [360, 600])
def test_on_a_narrow_screen_the_photo_stacks_above_the_decision_and_keeps_its_width(live_server, browser, width):
    """At 360 px the photo was 0 px wide: the narrow-screen rule came before the rule it meant to override."""
    url = queue_photos(live_server, 1, 60)
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(url + "/officer")
    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.click("#login button")
    page.wait_for_selector("#photos img")
    shown = page.locator("#photos img").bounding_box()
    assert shown is not None and shown["width"] >= width - 80 and shown["height"] >= 200
