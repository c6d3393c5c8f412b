"""Benchmark: a 12 MP phone JPEG and HEIC through `pestid serve` end to end, reduced decoding against full.

One worker, concurrency 1, the same photo again and again (each with its own submission): p50 and p95 of
POST /v1/identify. The baseline, in the same run, is the same server with `PESTID_REDUCED_DECODE=false`.
The photo is a real ricepest6 photo enlarged to 4000×3000 (where ../shared is present), else one pestid draws,
saved as a JPEG (quality 90) and as a HEIC (x265, quality 80, the "ultrafast" preset: its encoder is slow here).
A JPEG is decoded at a reduced DCT scale; a HEIC, which has none, is decoded in full and then block-averaged.

    .venv/bin/python benchmarks/phone_photo.py [--model M.onnx] [--requests 40] [--formats JPEG HEIF]
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


MEDIA = {"JPEG": ("p.jpg", "image/jpeg"), "HEIF": ("p.heic", "image/heic")}


def phone_photo(fmt: str) -> bytes:
    import pestid.imaging  # noqa: F401 - registers the HEIC writer

    small = Image.open(io.BytesIO(fuzz.serving_benchmark.photos(1)[0])).convert("RGB")
    buffer = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {"quality": 80, "enc_params": {"preset": "ultrafast"}}
    small.resize((4000, 3000), Image.Resampling.BICUBIC).save(buffer, fmt, **options)
    return buffer.getvalue()


def measure(model: Path, data: Path, photo: bytes, fmt: str, requests: int, reduced: bool) -> list[float]:
    os.environ["PESTID_REDUCED_DECODE"] = "true" if reduced else "false"
    times = []
    with fuzz.server(model, data, workers=1) as (url, _), httpx.Client(base_url=url, timeout=60) as http:
        for k in range(requests + 3):
            start = time.perf_counter()
            name, media = MEDIA[fmt]
            answer = http.post("/v1/identify", files=[("photos", (name, photo, media))],
                               headers={"Idempotency-Key": f"{fmt}-{reduced}-{k}"}, data={"note": str(k)})  # fmt: skip
            assert answer.status_code == 201, answer.text
            if k >= 3:  # the first few warm up
                times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--formats", nargs="+", choices=sorted(MEDIA), default=["JPEG", "HEIF"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pestid-phone-"))
    model = args.model or fuzz.serving_benchmark.exported_model(work)
    rows = []
    for fmt in args.formats:
        photo = phone_photo(fmt)
        full = measure(model, work / f"{fmt}-full", photo, fmt, args.requests, reduced=False)
        reduced = measure(model, work / f"{fmt}-reduced", photo, fmt, args.requests, reduced=True)
        how = "DCT scaling" if fmt == "JPEG" else "full decode, then block average"
        rows += [(f"{len(photo) / 1024:.0f} KB {fmt}", "full (baseline)", full, full),
                 (f"{len(photo) / 1024:.0f} KB {fmt}", f"reduced ({how})", reduced, full)]  # fmt: skip
    print(f"4000×3000 phone photos, 1 worker, concurrency 1, {args.requests} requests each")
    print("| photo | decoding | p50 ms | p95 ms | p50 vs full |")
    print("| --- | --- | --- | --- | --- |")
    for photo_name, name, times, full in rows:
        p50, p95 = statistics.median(times), sorted(times)[int(0.95 * (len(times) - 1))]
        print(f"| {photo_name} | {name} | {p50:.1f} | {p95:.1f} | {statistics.median(full) / p50:.2f}× faster |")
    sys.exit(0)


if __name__ == "__main__":
    main()
