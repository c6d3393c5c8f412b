"""The farmer's page in real headless Chromium (Debian's package) driven by Playwright."""

from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.serving.conftest import ARTIFACTS, jpeg

pytestmark = [pytest.mark.browser, pytest.mark.server]


def _real_photo(tmp_path: Path) -> Path:
    """A real field photo where ../shared is present; otherwise one pestid draws."""
    shared = SHARED / "ricepest6" / "images" / "brown-planthopper"
    if shared.is_dir():
        return sorted(shared.iterdir())[0]
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg(2, "brown_planthopper"))
    return path


def test_farmer_uploads_a_photo_and_reads_the_answer_in_vietnamese_then_english(live_server, browser, tmp_path):
    live_server, _ = live_server
    page = browser.new_page(viewport={"width": 360, "height": 740}, device_scale_factor=2)
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(live_server + "/")
    assert page.locator("h1").inner_text() == "Nhận diện sâu bệnh lúa"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # fits a 360 px phone
    page.set_input_files("#photos", str(_real_photo(tmp_path)))
    page.click("#send")
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    decision = page.locator("#decision").inner_text()
    assert any(word in decision for word in ("Đã nhận diện", "Chưa chắc chắn", "Không nhận ra"))
    assert page.locator("#model").inner_text().startswith("Mô hình: pestid@")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "farmer-page-vi.png"), full_page=True)
    page.click("#lang")
    assert page.locator("h1").inner_text() == "Rice pest identification"
    assert page.locator("#result").is_hidden()  # the answer came in Vietnamese: the English page does not show it
    page.click("#send")
    page.wait_for_selector("#result:not([hidden])")
    assert any(word in page.locator("#decision").inner_text() for word in ("Identified", "Not sure", "Not recognised"))
    assert page.locator("#name").inner_text().isascii()  # an English answer, not the Vietnamese one
    page.screenshot(path=str(ARTIFACTS / "farmer-page-en.png"), full_page=True)
    assert all(url.startswith((live_server, "blob:", "data:")) for url in requests), requests  # no external CDN


def test_farmer_sees_a_clear_error_for_a_file_that_is_not_a_photo(live_server, browser, tmp_path):
    live_server, _ = live_server
    page = browser.new_page(viewport={"width": 360, "height": 740})
    page.goto(live_server + "/")
    notes = tmp_path / "notes.jpg"
    notes.write_bytes(b"these are not pixels")
    page.set_input_files("#photos", str(notes))
    page.click("#send")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "không phải là ảnh" in page.locator("#error").inner_text()
