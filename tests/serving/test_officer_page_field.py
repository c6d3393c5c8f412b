"""Issue 24 on the officer's page in real headless Chromium: a blind check (audit item) done by keyboard, the model's
answer shown only after the verdict, the delivered-precision table with its alert, and the drift table; each
language whole."""

import itertools
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.db import Review, Submission
from tests.onnx_models import linear_model
from tests.serving.conftest import ARTIFACTS, jpeg, make_settings, running
from tests.serving.test_officer_page_trust import LAPTOP, PASSWORD, VISIBLE_TEXT, other_language

pytestmark = [pytest.mark.browser, pytest.mark.server]
IDS = itertools.count()


def _stored(app, n: int, **row) -> None:
    """``n`` decided submissions from Phú Tân, out of the queue: the figures' material, not work to do."""
    with app.state.sessions() as session, session.begin():
        for k in range(n):
            session.add(Submission(id=f"f{next(IDS)}", created_at=datetime.now(UTC) - timedelta(minutes=k),
                                   district="Phú Tân", lang="vi", response={}, **row))  # fmt: skip


def test_audit_sample_done_blind_on_the_officer_page_with_precision_and_drift_tables(tmp_path, browser):
    from playwright.sync_api import expect

    model = linear_model(tmp_path / "model.onnx", target_precision=0.95,
                         metrics={"useful_coverage": 0.8, "originals": 400})  # fmt: skip
    app = create_app(make_settings(model, tmp_path / "data", audit_share=1.0, field_refresh_s=0))
    with running(app) as url:
        with app.state.sessions() as session, session.begin():
            add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
        for seed in (400, 401):  # snails, identified: every one drawn (share 1)
            sent = httpx.post(f"{url}/v1/identify", files=[("photos", ("p.jpg", jpeg(seed), "image/jpeg"))],
                              data={"district": "Phú Tân"})  # fmt: skip
            assert sent.json()["species"]["id"] == "golden_apple_snail"
        version = app.state.model.version
        # earlier blind checks found the planthopper answers wrong 7 times in 10 (the officers saw rice blast)
        _stored(app, 10, decision="identified", predicted_label="brown_planthopper", answer="brown_planthopper",
                confidence=0.97, model_version=version, audit_rate=0.05, status="approved",
                final_label="rice_blast")  # fmt: skip
        with app.state.sessions() as session, session.begin():
            for sub in session.query(Submission).filter(Submission.answer == "brown_planthopper").limit(3):
                sub.final_label = "brown_planthopper"
            checker = add_user(session, "minh", PASSWORD, "officer", "Phú Tân")
            for sub in session.query(Submission).filter(Submission.answer == "brown_planthopper"):
                session.add(
                    Review(submission_id=sub.id, user_id=checker.id, verdict="label", label=sub.final_label, blind=True)
                )  # what the estimate counts: the answer given before the reveal
        # this week Phú Tân's farmers got "not sure" far more often than the test split's 20 %
        _stored(app, 30, decision="uncertain", predicted_label="rice_blast", confidence=0.5, model_version=version,
                status="rejected")  # fmt: skip

        page = browser.new_context(viewport=LAPTOP).new_page()
        page.goto(f"{url}/officer")
        page.fill("#username", "lan")
        page.fill("#password", PASSWORD)
        page.click("#login button")
        page.wait_for_selector("#photos img")
        expect(page.locator("#queue li").first).to_contain_text("kiểm tra mù")
        expect(page.locator("#decision")).to_contain_text("Kiểm tra mù")
        assert page.locator("#guesses li").count() == 0
        for shown in (page.locator("#queue").inner_text(), page.locator("#detail").inner_text()):
            assert "Ốc bươu" not in shown and "%" not in shown  # neither the model's answer nor its confidence
        page.wait_for_timeout(450)
        page.keyboard.press("c")  # nothing to confirm: the officer has not seen an answer
        expect(page.locator("#status")).to_contain_text("không có gì để xác nhận")
        page.keyboard.press("r")
        page.keyboard.type("oc buou")
        expect(page.locator("#will-save .name")).to_have_text("Ốc bươu vàng")
        page.keyboard.press("Enter")
        expect(page.locator("#reveal")).to_contain_text(
            "Ảnh vừa kiểm tra: mô hình đã trả lời nông dân: Ốc bươu vàng"
        )  # revealed after
        expect(page.locator("#reveal")).to_contain_text("Khớp với nhận định của bạn")
        expect(page.locator("#queue li")).to_have_count(1)
        page.wait_for_timeout(450)
        page.keyboard.press("j")  # moving on hides it: it was about the photo just checked, not the next one
        expect(page.locator("#reveal")).to_be_hidden()

        classes = page.locator("#precision tbody tr[data-by=class]")
        expect(classes).to_have_count(2)
        expect(page.locator("#precision tr.alert", has_text="Rầy nâu")).to_contain_text("dưới mức cam kết")
        expect(page.locator("#p-alert")).to_contain_text("Rầy nâu")
        hoppers = page.locator("#precision tr[data-by=class]", has_text="Rầy nâu").inner_text()
        hoppers = hoppers.replace("\xa0", " ")  # the number and its % are held together
        assert "30 %" in hoppers and "10,8 % – 60,3 %" in hoppers and "95 %" in hoppers  # Wilson(3, 10), a comma in vi
        expect(page.locator("#precision tr[data-by=class]", has_text="Ốc bươu vàng")).to_contain_text("100\xa0%")
        expect(page.locator("#drift tr.flagged", has_text="Phú Tân")).to_contain_text("nhiều ảnh mô hình chưa chắc")
        page.locator("#drift").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "officer-field-truth-vi.png"), full_page=True)
        assert not other_language(page.evaluate(VISIBLE_TEXT), "vi")

        page.click("#lang")
        expect(page.locator("#precision tr.alert[data-by=class]")).to_contain_text("below the promise")
        expect(page.locator("#precision tr[data-by=class]", has_text="brown planthopper")).to_contain_text(
            "10.8\xa0% – 60.3\xa0%"
        )  # a point in English
        expect(page.locator("#drift tr.flagged")).to_contain_text("many photos the model is not sure of")
        expect(page.locator("#decision")).to_contain_text("Blind check")
        assert not other_language(page.evaluate(VISIBLE_TEXT), "en")
        page.screenshot(path=str(ARTIFACTS / "officer-field-truth-en.png"), full_page=True)
