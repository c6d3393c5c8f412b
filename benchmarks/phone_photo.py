"""Benchmark: a 12 MP phone JPEG through `pestid serve` end to end, reduced decoding against full decoding.

One worker, concurrency 1, the same photo again and again (each with its own submission): p50 and p95 of
POST /v1/identify. The baseline, in the same run, is the same server with `PESTID_REDUCED_DECODE=false`.
The photo is a real ricepest6 photo enlarged to 4000×3000 (where ../shared is present), else one pestid draws.

    .venv/bin/python benchmarks/phone_photo.py [--model M.onnx] [--requests 40]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_benchmark", REPO / "benchmarks" / "fuzz.py")
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)


def phone_jpeg() -> bytes:
    small = Image.open(io.BytesIO(fuzz.serving_benchmark.photos(1)[0])).convert("RGB")
    buffer = io.BytesIO()
    small.resize((4000, 3000), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def measure(model: Path, data: Path, photo: bytes, requests: int, reduced: bool) -> list[float]:
    os.environ["PESTID_REDUCED_DECODE"] = "true" if reduced else "false"
    times = []
    with fuzz.server(model, data, workers=1) as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        for k in range(requests + 3):
            start = time.perf_counter()
            answer = http.post("/v1/identify", files=[("photos", ("p.jpg", photo, "image/jpeg"))],
                               headers={"Idempotency-Key": f"{reduced}-{k}"}, data={"note": str(k)})  # fmt: skip
            assert answer.status_code == 201, answer.text
            if k >= 3:  # the first few warm up
                times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pestid-phone-"))
    model = args.model or fuzz.serving_benchmark.exported_model(work)
    photo = phone_jpeg()
    full = measure(model, work / "full", photo, args.requests, reduced=False)
    reduced = measure(model, work / "reduced", photo, args.requests, reduced=True)
    print(f"a {len(photo) / 1024:.0f} KB 4000×3000 JPEG, 1 worker, concurrency 1, {args.requests} requests each")
    print("| decoding | p50 ms | p95 ms | p50 vs full |")
    print("| --- | --- | --- | --- |")
    for name, times in (("full (baseline)", full), ("reduced (DCT scaling)", reduced)):
        p50, p95 = statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {statistics.median(full) / p50:.2f}× faster |")
    sys.exit(0)


if __name__ == "__main__":
    main()
