"""Benchmark: the farmer page on weak data and offline, in headless Chromium at 360×740, with the real model.

Three figures, each against a baseline measured in the same run:
- **400 kbps / 400 ms upload**: a 12 MP phone JPEG (a real ricepest6 photo enlarged to 4000×3000, with a
  sensor's noise) picked on the page, which resizes it before sending; the baseline is the original file
  sent by the same page's code path as the old page did (the file itself).
- **Offline identification**: the INT8 model in the browser (onnxruntime-web, one thread), per photo, after
  one online visit and with the network cut; the baseline is the server's answer on a good connection.
- **What a phone keeps**: the bytes the service worker caches for offline use, and the INT8 model against FP32.

    .venv/bin/python benchmarks/farmer_offline.py --model runs/default/model.onnx [--photos 20]
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SLOW = {"offline": False, "latency": 400, "downloadThroughput": 50_000, "uploadThroughput": 50_000}


def phone_photo(source: Path, out: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(source).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC))
    noisy = np.clip(base.astype(np.int16) + rng.normal(0, 6, base.shape).astype(np.int16), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(out, "JPEG", quality=90)
    return out


def upload_seconds(page, path: Path, *, resize: bool) -> float:
    """From the tap to the answer on screen; ``resize=False`` sends the file itself (the old page)."""
    if resize:
        page.set_input_files("#gallery", str(path))
        page.wait_for_selector("#previews img", timeout=60_000)
        start = time.monotonic()
        page.click("#send")
        page.wait_for_selector("#result:not([hidden])", timeout=300_000)
        return time.monotonic() - start
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate("(b64) => { window.original = new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))]); }", data)
    start = time.monotonic()
    status = page.evaluate("""async () => { const f = new FormData(); f.append("photos", window.original, "IMG.jpg");
        const r = await fetch("/v1/identify", {method: "POST", body: f}); return r.status; }""")  # fmt: skip
    assert status == 201, status
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "runs/default/model.onnx")
    parser.add_argument("--photos", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from pestid.imaging import decode_image
    from pestid.predictor import Predictor
    from pestid.serving.app import create_app
    from pestid.serving.settings import Settings
    from tests.conftest import SHARED
    from tests.serving.conftest import CHROMIUM, FLAGS, running

    int8 = args.model.with_suffix(".int8.onnx")
    assert int8.is_file(), f"{int8} is missing: pestid export RUN --out {args.model} --int8"
    sources = sorted((SHARED / "ricepest6").rglob("*.jpg"))
    sources = random.Random(0).sample(sources, args.photos)
    tmp = Path(tempfile.mkdtemp(prefix="pestid-farmer-"))
    settings = Settings(model=str(args.model), data_dir=tmp / "data", log_json=False, ops_port=0)
    with running(create_app(settings)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)

        # 1. 400 kbps: resized on the phone against the original file, three photos each
        slow = []
        for k, source in enumerate(sources[:3]):
            big = phone_photo(source, tmp / f"IMG_{k:04d}.jpg", k)
            row = {"original_mb": big.stat().st_size / 1e6}
            for resize in (False, True):
                page = browser.new_page(viewport={"width": 360, "height": 740})
                page.goto(url + "/")
                cdp = page.context.new_cdp_session(page)
                cdp.send("Network.enable")
                cdp.send("Network.emulateNetworkConditions", SLOW)
                row["resized" if resize else "original"] = upload_seconds(page, big, resize=resize)
                page.close()
            slow.append(row)

        # 2. offline: one online visit, then the network cut
        context = browser.new_context(viewport={"width": 360, "height": 740})
        page = context.new_page()
        good = []
        page.goto(url + "/")
        page.wait_for_selector("#offline-ready:not([hidden])", timeout=120_000)
        for source in sources:
            page.set_input_files("#gallery", str(source))
            page.wait_for_selector("#previews img")
            start = time.monotonic()
            page.click("#send")
            page.wait_for_selector("#result:not([hidden])")
            good.append(time.monotonic() - start)
        cached = page.evaluate("""async () => { let total = 0; const c = await caches.open("pestid-offline-v1");
            for (const r of await c.keys()) total += (await (await c.match(r)).arrayBuffer()).byteLength;
            return total; }""")  # fmt: skip
        context.set_offline(True)
        page.reload()
        page.wait_for_selector("#offline-ready:not([hidden])", timeout=120_000)  # the model loaded from the cache
        for source in sources:
            page.set_input_files("#gallery", str(source))
            page.wait_for_selector("#previews img")
            page.click("#send")
            page.wait_for_selector("#source:not([hidden])")
        local_ms = page.evaluate("""() => new Promise(r => { const q = indexedDB.open("pestid"); q.onsuccess = () => {
            const g = q.result.transaction("observations").objectStore("observations").getAll();
            g.onsuccess = () => r(g.result.filter(o => o.local).map(o => o.local.ms)); }; })""")  # fmt: skip
        # 3. the same INT8 model in the browser and in Python, photo by photo
        manifest = page.evaluate("fetch('/v1/offline/manifest').then(r => r.json())")
        python = Predictor(int8)
        gaps, same = [], 0
        for source in sources:
            data = source.read_bytes()
            js = page.evaluate("""async ([b64, m]) => Offline.probabilities(m,
                new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], {type: "image/jpeg"}))""",
                               [base64.b64encode(data).decode(), manifest])  # fmt: skip
            ours = python.probabilities([decode_image(data)])[0]
            same += int(np.argmax(js) == np.argmax(ours))
            gaps.append(float(np.abs(np.asarray(js) - ours).max()))
        context.set_offline(False)
        time.sleep(5)
        browser.close()

    metrics = Predictor(int8).contract.metrics
    print(f"model: {args.model}  INT8 copy: {int8.stat().st_size / 1e6:.2f} MB (FP32 {args.model.stat().st_size / 1e6:.2f} MB, "
          f"{args.model.stat().st_size / int8.stat().st_size:.1f}× smaller)")  # fmt: skip
    if metrics:
        print(f"  per-original macro-F1 INT8 {metrics['macro_f1_per_original']:.3f} vs FP32 "
              f"{metrics['fp32_macro_f1_per_original']:.3f}; top-1 {metrics['top1_per_original']:.3f} vs "
              f"{metrics['fp32_top1_per_original']:.3f} (merged test split, at export)")  # fmt: skip
    print("\n| 12 MP photo | original file sent (baseline) | resized on the phone | ratio |\n|---|---|---|---|")
    for row in slow:
        print(
            f"| {row['original_mb']:.1f} MB | {row['original']:.1f} s | {row['resized']:.1f} s | "
            f"{row['original'] / row['resized']:.1f}× faster |"
        )
    p50_good, p50_local = statistics.median(good) * 1000, statistics.median(local_ms)
    print(f"\noffline identification in Chromium (INT8, one wasm thread), {len(local_ms)} photos: p50 {p50_local:.0f} ms, "
          f"max {max(local_ms):.0f} ms; the server's answer on a good connection (baseline) p50 {p50_good:.0f} ms "
          f"(ratio {p50_local / p50_good:.2f})")  # fmt: skip
    print(f"bytes cached for offline use: {cached / 1e6:.2f} MB")
    print(
        f"browser against Python, the same INT8 model on {len(sources)} photos: same top-1 {same}/{len(sources)}, "
        f"max |Δp| {max(gaps):.1e}"
    )


if __name__ == "__main__":
    main()
