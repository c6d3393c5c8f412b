"""Benchmark: one abusive client against `pestid serve --workers 2` as shipped (its default per-client limits),
and what a farmer at another address gets meanwhile. Every figure is set against a baseline of the same run.

1. **padded flood**: 4 connections from 127.0.0.1 send an 11 KB JPEG padded with zeros to 15 MB for --seconds.
   Reported: answers (201, 429), stored bytes per acknowledged photo against the photo's own size, stored MB/s
   and the time that rate takes to fill 2 GB. Meanwhile farmers at 127.0.0.2 (four phones) send a photo every 2 s.
2. **300 MB JSON body**: chunked to /v1/auth/login. Reported: the answer, and each worker's peak memory
   (VmHWM) after it against before it.
3. **HEIC abuse**: 4 connections from 127.0.0.1 each send five 62 MP HEICs per request for --seconds. Reported:
   the farmer's (127.0.0.2) p50 upload time during it against the same farmer's p50 alone, measured first.

    .venv/bin/python benchmarks/abuse.py --model runs/default/model.onnx [--seconds 20] [--before /tmp/old]

``--before CHECKOUT`` runs the same against another checkout of the code (e.g. `git worktree add /tmp/old REV`),
so before and after come from one run on one machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("fuzz_benchmark", REPO / "benchmarks" / "fuzz.py")
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

PADDED_TO = 15 * 1024 * 1024
TWO_GB = 2 * 1024**3


def _client(url: str, address: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120, transport=httpx.HTTPTransport(local_address=address))


def _tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((96, 96), 40).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _farmer_photo(seed: int) -> bytes:
    return fuzz._jpeg(seed, side=1280)


def _heic_62mp() -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.new("RGB", (9600, 6464), (90, 140, 70)).save(buffer, format="HEIF", quality=10)
    return buffer.getvalue()


def _stored_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "photos").rglob("*") if p.is_file())


def _farmer(url: str, stop: threading.Event, times: list[float], statuses: Counter[int], pause: float,
            sent_bytes: list[int] | None = None) -> None:  # fmt: skip
    with _client(url, "127.0.0.2") as http:
        k = 0
        while not stop.is_set():
            photo = _farmer_photo(k)
            start = time.perf_counter()
            answer = http.post(
                "/v1/identify",
                files={"photos": ("f.jpg", photo, "image/jpeg")},
                headers={"Device-Key": f"farmer-phone-{k % 4}"},
            )  # a few farmers at one address
            statuses[answer.status_code] += 1
            if answer.status_code == 201:
                times.append((time.perf_counter() - start) * 1000)
                if sent_bytes is not None:
                    sent_bytes.append(len(photo))
            k += 1
            stop.wait(pause)


def _abuser(url: str, stop: threading.Event, make: callable, statuses: Counter[int]) -> None:  # type: ignore[valid-type]
    with _client(url, "127.0.0.1") as http:
        while not stop.is_set():
            try:
                statuses[http.post("/v1/identify", files=make()).status_code] += 1
            except httpx.TransportError:
                statuses[0] += 1


def _run_for(threads: list[threading.Thread], stop: threading.Event, seconds: float) -> float:
    """Start the clients, let them run for ``seconds``, stop and join them; returns the wall time."""
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def padded_flood(model: Path, work: Path, seconds: float, checkout: Path, label: str) -> None:
    photo = _tiny_jpeg()
    body = photo + bytes(PADDED_TO - len(photo))
    data = work / f"flood-{label}"
    stop, abuse, farmer, times = threading.Event(), Counter(), Counter(), []
    with fuzz.server(model, data, limits=True, checkout=checkout) as (url, _):
        threads = [threading.Thread(target=_abuser, args=(url, stop, lambda: {"photos": ("p.jpg", body, "image/jpeg")},
                                                          abuse)) for _ in range(4)]  # fmt: skip
        farmer_bytes: list[int] = []
        threads.append(threading.Thread(target=_farmer, args=(url, stop, times, farmer, 2.0, farmer_bytes)))
        wall = _run_for(threads, stop, seconds)
    stored = _stored_bytes(data) - sum(farmer_bytes)  # the abuser's, the farmers' photos being stored whole
    rate = stored / wall
    fill = TWO_GB / rate if rate else float("inf")
    per_photo = stored / max(abuse[201], 1)
    print(f"| {label} | {dict(abuse)} | {dict(farmer)} | {per_photo:,.0f} ({per_photo / len(photo):,.1f}× the "
          f"photo's {len(photo):,} B) | {rate / 1e6:.2f} | {fill:,.0f} s |")  # fmt: skip


def big_json(model: Path, work: Path, checkout: Path, label: str) -> None:
    with fuzz.server(model, work / f"json-{label}", limits=True, checkout=checkout) as (url, process):
        before = {pid: fuzz.peak_mb(pid) for pid in fuzz.workers_of(process)}

        def chunks():
            yield b'{"username": "'
            for _ in range(300):
                yield b"a" * (1024 * 1024)
            yield b'", "password": "x"}'

        start = time.perf_counter()
        try:
            answer = httpx.post(f"{url}/v1/auth/login", content=chunks(), timeout=120,
                                headers={"Content-Type": "application/json"}).status_code  # fmt: skip
        except httpx.TransportError:
            answer = 0
        took = time.perf_counter() - start
        after = {pid: fuzz.peak_mb(pid) for pid in fuzz.workers_of(process)}
    growth = max(after[p] - before.get(p, after[p]) for p in after)
    print(f"| {label} | {answer or 'closed'} after {took:.1f} s | "
          f"{', '.join(f'{v:.0f}' for v in before.values())} | {', '.join(f'{v:.0f}' for v in after.values())} | "
          f"+{growth:.0f} MB |")  # fmt: skip


def heic_abuse(model: Path, work: Path, seconds: float, checkout: Path, label: str, heic: bytes) -> None:
    with fuzz.server(model, work / f"heic-{label}", limits=True, checkout=checkout) as (url, _):
        stop, alone_status, alone = threading.Event(), Counter(), []
        baseline = threading.Thread(target=_farmer, args=(url, stop, alone, alone_status, 0.2))
        baseline.start()
        time.sleep(seconds / 2)
        stop.set()
        baseline.join()
        stop, abuse, farmer, during = threading.Event(), Counter(), Counter(), []
        make = lambda: [("photos", (f"h{k}.heic", heic, "image/heic")) for k in range(5)]  # noqa: E731
        threads = [threading.Thread(target=_abuser, args=(url, stop, make, abuse)) for _ in range(4)]
        threads.append(threading.Thread(target=_farmer, args=(url, stop, during, farmer, 0.2)))
        _run_for(threads, stop, seconds)
    p50_alone, p50_during = statistics.median(alone), statistics.median(during) if during else float("inf")
    print(f"| {label} | {p50_alone:.0f} ms ({len(alone)}) | {p50_during:.0f} ms ({len(during)} done, "
          f"{dict(farmer)}) | {p50_during / p50_alone:.1f}× | {dict(abuse)} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--before", type=Path, help="another checkout of the code, run first as the 'before'")
    parser.add_argument("--only", choices=["flood", "json", "heic"], action="append")
    args = parser.parse_args()
    model, work = args.model.resolve(), Path(tempfile.mkdtemp(prefix="pestid-abuse-"))
    runs = ([("before", args.before.resolve())] if args.before else []) + [("after", REPO)]
    phases = args.only or ["flood", "json", "heic"]
    if "flood" in phases:
        print(f"\n## padded flood: 4 connections × 15 MB of zeros after an 11 KB JPEG, {args.seconds:.0f} s; "
              "farmers at 127.0.0.2 every 2 s")  # fmt: skip
        print("| code | abuser answers | farmer answers | stored bytes per acknowledged photo | stored MB/s | "
              "time to fill 2 GB |\n| --- | --- | --- | --- | --- | --- |")  # fmt: skip
        for label, checkout in runs:
            padded_flood(model, work, args.seconds, checkout, label)
    if "json" in phases:
        print("\n## a 300 MB chunked JSON body to /v1/auth/login")
        print("| code | answer | worker peak MB before | after | growth |\n| --- | --- | --- | --- | --- |")
        for label, checkout in runs:
            big_json(model, work, checkout, label)
    if "heic" in phases:
        heic = _heic_62mp()
        print(f"\n## HEIC abuse: 4 connections × five 62 MP HEICs ({len(heic):,} B each) per request, "
              f"{args.seconds:.0f} s; the farmer at 127.0.0.2 alone first (baseline), then during it")  # fmt: skip
        print(
            "| code | farmer p50 alone | farmer p50 during | ratio | abuser answers |\n| --- | --- | --- | --- | --- |"
        )
        for label, checkout in runs:
            heic_abuse(model, work, args.seconds, checkout, label, heic)


if __name__ == "__main__":
    main()
