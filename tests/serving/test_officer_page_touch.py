"""The officer's review page on a phone, in real headless Chromium: 360×740, touch only, not one key pressed. The
buttons do what the keys do (one path, officer.js ``command``): confirm, reject with a reason, relabel by tapping a
result and Save, undo; a blind check's confirm confirms nothing. The server holds each verdict exactly once."""

import pytest
from sqlalchemy import select

from pestid.serving.db import AuditEntry, Review, Submission
from tests.serving.conftest import ARTIFACTS, until
from tests.serving.test_officer_page_trust import PASSWORD, officer, send

pytestmark = [pytest.mark.browser, pytest.mark.server]

PHONE = {"width": 360, "height": 740}
# Counts every key the page receives; the page's CSP forbids eval, not a script the browser adds before it loads.
COUNT_KEYS = (
    "document.addEventListener('keydown', () => { window.keysPressed = (window.keysPressed || 0) + 1; }, true);"
)


def settled(page) -> None:
    """The item's photos are on screen, no verdict is on its way, and the officer has looked for 400 ms."""
    until(page, "() => Number.isFinite(shownAt) && !busy")
    page.wait_for_timeout(450)


def button(page, key: str):
    return page.locator(f'button[data-key="{key}"]')


def go_to(page, submission_id: str) -> None:
    """Tap next or previous until ``submission_id`` is the item shown."""
    from playwright.sync_api import expect

    ids = [row.get_attribute("data-id") for row in page.locator("#queue li").all()]
    steps = ids.index(submission_id) - ids.index(page.locator("#queue li.active").get_attribute("data-id"))
    for _ in range(abs(steps)):
        button(page, "j" if steps > 0 else "k").tap()
    expect(page.locator("#queue li.active")).to_have_attribute("data-id", submission_id)
    settled(page)


def assert_touch_targets(page, selector: str) -> None:
    boxes = [node.bounding_box() for node in page.locator(selector).all()]
    assert boxes, selector
    for box in boxes:
        assert box and box["height"] >= 44 and box["width"] >= 44, (selector, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (selector, box)


def test_officer_reviews_by_touch_on_a_phone_without_a_key(live_server, browser):
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    confirmed, rejected, relabelled = send(url, 120, 121), send(url, 122), send(url, 123)
    blind = send(url, 124)
    with app.state.sessions() as session, session.begin():  # a blind check: audited, its answer hidden until decided
        sub = session.get(Submission, blind)
        sub.audit_rate, sub.answer = 0.05, sub.predicted_label
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    context.add_init_script(COUNT_KEYS)
    page = context.new_page()
    page.goto(f"{url}/officer")
    page.fill("#username", "lan")  # what a soft keyboard types: text, no shortcut keys
    page.fill("#password", PASSWORD)
    page.locator("#login button").tap()
    expect(page.locator("#queue li")).to_have_count(4)
    settled(page)
    assert_touch_targets(page, ".keys button")
    for key in ("c", "r", "x", "u", "j", "k"):
        expect(button(page, key).locator("kbd")).to_have_text(key)  # the keyboard hint stays on the button

    rows = page.locator("#queue li")
    button(page, "j").tap()  # next, then previous
    expect(rows.nth(1)).to_have_class("active")
    button(page, "k").tap()
    expect(rows.nth(0)).to_have_class("active")

    go_to(page, blind)
    expect(page.locator("#decision")).to_contain_text("Kiểm tra mù")
    button(page, "c").tap()  # nothing to confirm: the officer has not seen the model's answer
    expect(page.locator("#status")).to_contain_text("không có gì để xác nhận")
    page.wait_for_timeout(300)
    expect(rows).to_have_count(4)

    go_to(page, confirmed)
    button(page, "ArrowRight").tap()  # its other photo
    expect(page.locator("#strip button").nth(1)).to_have_class("active")
    button(page, "c").tap()
    expect(rows).to_have_count(3)
    expect(page.locator("#status")).to_contain_text("đã duyệt")

    go_to(page, rejected)
    button(page, "x").tap()
    expect(page.locator("#reject")).to_contain_text("chạm vào lý do")
    assert_touch_targets(page, "#reject button")
    expect(page.locator("#reject button")).to_have_count(5)  # four reasons and cancel
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#reject").screenshot(path=str(ARTIFACTS / "officer-touch-reject-360.png"))
    page.locator('#reject button[data-key="Escape"]').tap()  # cancel: nothing is rejected
    expect(page.locator("#reject")).to_be_hidden()
    button(page, "x").tap()
    page.locator('#reject button[data-key="2"]').tap()  # not rice
    expect(rows).to_have_count(2)

    go_to(page, relabelled)
    button(page, "r").tap()
    page.fill("#species-search", "ray")  # typed on the soft keyboard
    results = page.locator("#species-results li")
    expect(results.nth(1)).to_be_visible()
    second, second_name = results.nth(1).get_attribute("data-id"), results.nth(1).locator(".name").inner_text()
    results.nth(1).tap()  # a tap picks, it does not save
    expect(page.locator("#will-save .name")).to_have_text(second_name)
    expect(rows).to_have_count(2)
    save = page.locator("#will-save button.save")
    expect(save).to_have_text("Lưu")
    assert_touch_targets(page, "#will-save button.save")
    assert_touch_targets(page, "#species-results li")
    page.screenshot(path=str(ARTIFACTS / "officer-touch-360.png"), full_page=True)
    save.tap()
    expect(rows).to_have_count(1)
    expect(page.locator("#status")).to_contain_text(second_name)
    settled(page)

    button(page, "u").tap()  # undo the relabel: it comes back
    expect(rows).to_have_count(2)
    expect(page.locator("#status")).to_contain_text("Đã hoàn tác")

    assert page.evaluate("window.keysPressed || 0") == 0
    with app.state.sessions() as session:
        reviews = {sid: session.scalars(select(Review).where(Review.submission_id == sid)).all()
                   for sid in (confirmed, rejected, relabelled, blind)}  # fmt: skip
        actions = sorted(session.scalars(select(AuditEntry.action).where(AuditEntry.submission_id.is_not(None))))
        subs = {sid: session.get(Submission, sid) for sid in reviews}
        assert [(r.verdict, r.label, r.undone_at is None) for r in reviews[confirmed]] == [
            ("label", subs[confirmed].predicted_label, True)
        ]
        assert [(r.verdict, r.reason, r.undone_at is None) for r in reviews[rejected]] == [("reject", "not_rice", True)]
        assert [(r.verdict, r.label, r.undone_at is None) for r in reviews[relabelled]] == [("label", second, False)]
        assert reviews[blind] == []
        assert actions == ["confirm", "reject", "relabel", "undo"]
        assert [subs[sid].status for sid in (confirmed, rejected, relabelled, blind)] == [
            "approved", "rejected", "pending_review", "pending_review"
        ]  # fmt: skip


def test_a_held_enter_on_a_button_acts_once_and_undo_waits_for_a_verdict_on_its_way(live_server, browser):
    """An attacker's cases: holding Enter on the focused Confirm button confirmed one item after another (a click
    carries no ``repeat``); Undo tapped while a confirm was still sending took back the verdict before it."""
    from playwright.sync_api import expect

    url, app = live_server
    officer(app)
    ids = [send(url, 130 + k) for k in range(4)]
    page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
    page.goto(f"{url}/officer")
    page.fill("#username", "lan")
    page.fill("#password", PASSWORD)
    page.click("#login button")
    expect(page.locator("#queue li")).to_have_count(4)
    settled(page)
    button(page, "c").focus()
    page.keyboard.down("Enter")  # one press: one confirm
    for _ in range(6):  # the key held: the browser repeats it, each past the 400 ms settle time
        page.wait_for_timeout(450)
        page.keyboard.down("Enter")
    page.keyboard.up("Enter")
    expect(page.locator("#queue li")).to_have_count(3)
    page.wait_for_timeout(500)
    expect(page.locator("#queue li")).to_have_count(3)
    settled(page)

    release = []
    page.route(
        "**/v1/review/*", lambda route: release.append(route) if route.request.method == "POST" else route.continue_()
    )
    button(page, "c").click()  # a confirm on its way …
    until(page, "() => busy")
    button(page, "u").click()  # … and undo tapped before its answer
    page.wait_for_timeout(300)
    for route in release:
        route.continue_()
    expect(page.locator("#queue li")).to_have_count(2)
    with app.state.sessions() as session:
        statuses = {sid: session.get(Submission, sid).status for sid in ids}
        undone = session.scalars(select(AuditEntry).where(AuditEntry.action == "undo")).all()
    assert sorted(statuses.values()) == ["approved", "approved", "pending_review", "pending_review"], statuses
    assert undone == []  # the first verdict stands
