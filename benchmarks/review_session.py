"""Benchmark: an officer reviews 100 queued photos by keyboard in headless Chromium (1366×768).

`pestid serve` gets 100 photos from one district; the officer signs in on /officer and works through the
queue. Each item: look (the page ignores action keys for 400 ms), then `c` when the model was sure; when it
was not, `c` first (the mistake the page must refuse: confirming a guess), then `r`, a few letters of a
species name and Enter. Every tenth item gets a burst of extra `c` presses 50 ms apart (they must not act on
the next photo). Prints per-item time (from the photo on screen to the next one), the mistakes the page
prevented, and checks the audit log holds exactly one action per photo. The baseline, measured in the same
run, is the same verdicts sent straight to the API.

    .venv/bin/python benchmarks/review_session.py [--model M.onnx] [--photos 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("fuzz_benchmark", REPO / "benchmarks" / "fuzz.py")
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)
PASSWORD = "correct horse battery"


def queue_photos(url: str, count: int) -> None:
    images = fuzz.serving_benchmark.photos(count)
    with httpx.Client(base_url=url, timeout=60) as http:
        for k in range(count):
            sent = http.post("/v1/identify", files=[("photos", ("p.jpg", images[k % len(images)], "image/jpeg"))],
                             data={"district": "Phú Tân", "commune": "Tân Hòa"})  # fmt: skip
            assert sent.status_code == 201, sent.text


def add_officer(data: Path, name: str) -> None:
    from pestid.serving.accounts import add_user
    from pestid.serving.db import open_database

    sessions = open_database(f"sqlite:///{data / 'pestid.db'}")
    with sessions() as session, session.begin():
        add_user(session, name, PASSWORD, "officer", "Phú Tân")


def review_by_keyboard(url: str, count: int) -> dict[str, object]:
    from playwright.sync_api import expect, sync_playwright

    times, prevented, bursts = [], 0, 0
    with sync_playwright() as playwright:
        from tests.serving.conftest import CHROMIUM, FLAGS  # the browser and flags the page tests use

        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(f"{url}/officer")
        page.fill("#username", "lan")
        page.fill("#password", PASSWORD)
        page.click("#login button")
        page.wait_for_selector("#photos img")
        for k in range(count):
            remaining = int(page.locator("#queue-total").inner_text().split("/")[1].split()[0])
            start = time.perf_counter()
            page.wait_for_selector("#photos img")
            page.wait_for_timeout(450)  # the officer looks at the photo
            sure = "identified" in page.locator("#prediction").inner_text()
            if not sure:
                page.keyboard.press("c")  # the mistake: confirming the model's guess
                try:
                    expect(page.locator("#status")).to_contain_text("chọn đúng loài", timeout=5000)
                    prevented += 1
                except AssertionError:
                    pass
                page.keyboard.press("r")
                page.keyboard.type("ray nau")
                page.wait_for_selector("#species-results li")
                page.keyboard.press("Enter")
            else:
                page.keyboard.press("c")
            if k % 10 == 0:  # impatient extra presses: must not act on the next photo
                for _ in range(3):
                    page.wait_for_timeout(50)
                    page.keyboard.press("c")
                bursts += 3
            expect(page.locator("#queue-total")).to_contain_text(f"/ {remaining - 1} ", timeout=15_000)
            times.append(time.perf_counter() - start)
        page.screenshot(path=str(REPO / "test-artifacts" / "officer-review-session.png"), full_page=True)
        browser.close()
    return {"times": times, "prevented": prevented, "bursts": bursts}


def review_by_api(url: str, count: int) -> list[float]:
    with httpx.Client(base_url=url, timeout=60) as http:
        token = http.post("/v1/auth/login", json={"username": "api", "password": PASSWORD}).json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        times = []
        for _ in range(count):
            start = time.perf_counter()
            item = http.get("/v1/review/queue", params={"limit": 1}).json()[0]
            http.get(item["previews"][0]["large"])
            http.post(f"/v1/review/{item['id']}", json={"action": "relabel", "label": item["predicted_label"]})
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pestid-review-"))
    model = args.model or fuzz.serving_benchmark.exported_model(work)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    results = {}
    for mode in ("api", "page"):
        data = work / mode
        with fuzz.server(model, data) as (url, _):
            add_officer(data, "lan" if mode == "page" else "api")
            queue_photos(url, args.photos)
            if mode == "api":
                results["api"] = review_by_api(url, args.photos)
            else:
                results["page"] = review_by_keyboard(url, args.photos)
        with sqlite3.connect(data / "pestid.db") as db:
            actions = db.execute("select count(*) from audit_log where action != 'undo'").fetchone()[0]
            reviewed = db.execute("select count(*) from submissions where status != 'pending_review'").fetchone()[0]
        results[f"{mode} audit"] = (actions, reviewed)
    page, api = results["page"], results["api"]
    times = page["times"]  # type: ignore[index]
    p50, p95 = statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]
    api_p50 = statistics.median(api)  # type: ignore[arg-type]
    print("| review | photos | per item p50 | per item p95 | total | vs API p50 | audit actions | reviewed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| keyboard, /officer in Chromium | {len(times)} | {p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms | "
        f"{sum(times):.0f} s | {p50 / api_p50:.1f}× | {results['page audit'][0]} | {results['page audit'][1]} |"
    )
    print(f"| the same verdicts straight to the API (baseline) | {len(api)} | {api_p50 * 1000:.0f} ms | "
          f"{sorted(api)[int(0.95 * (len(api) - 1))] * 1000:.0f} ms | {sum(api):.0f} s | 1.0× | "
          f"{results['api audit'][0]} | {results['api audit'][1]} |")  # fmt: skip
    print(
        f"\nmistakes the page prevented: {page['prevented']} confirmations of a guess refused (species chosen "
        f"instead); {page['bursts']} extra key presses in bursts, acting on no other photo "
        f"(audit actions = photos: {results['page audit'][0] == len(times)})"
    )
    print("each item includes 450 ms of looking, which the page requires before it takes an action key")
    sys.exit(0 if results["page audit"][0] == len(times) == results["page audit"][1] else 1)


if __name__ == "__main__":
    main()
