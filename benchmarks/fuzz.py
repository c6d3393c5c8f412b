"""Benchmark: `pestid serve` attacked as an outside tester would, and loaded and killed as a bad day would.

Three phases against `pestid serve --workers 2` on 127.0.0.1, each on a fresh data folder:

1. **fuzz**: at least 10,000 generated bad requests of every kind issue 10 found (broken multipart, strip
   images, bombs, huge canvases, corrupt and truncated photos, wrong types, long and non-UTF-8 fields, bad keys,
   too many photos or parts, bad tokens, out-of-range limits, path tricks, bad HTTP, byte-flipped bodies).
   Counts 5xx, hangs (no answer in 30 s), each worker's peak memory (VmHWM), and rows or files stored for a
   refusal. The baseline is the same server's answer time for a good photo, measured first in the same run.
2. **load**: 50 concurrent uploads for 60 s on SQLite and on PostgreSQL (a throw-away server unless
   --postgres-url is given). Counts 5xx, p50/p95, p95 over the concurrency-1 p95 of the same run, and checks
   that every 201 is in the database with its photo files.
3. **kill**: kill -9 of the whole server while 8 clients upload, then a restart, several times. Counts
   acknowledged (201) submissions missing after the restart and files left that no row refers to.

    .venv/bin/python benchmarks/fuzz.py [--model M.onnx] [--requests 10000] [--seconds 60] [--cycles 6]

Without --model, an EfficientNet-Lite0 model with ImageNet weights and a 6-class head is exported (speed and
robustness do not depend on what the head learned).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import os
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from pestid.serving.ratelimit import LOAD_TEST_ENV

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("serving_benchmark", REPO / "benchmarks" / "serving.py")
assert _spec is not None and _spec.loader is not None
serving_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving_benchmark)
HANG_S = 30.0


# ---------------------------------------------------------------- the server


@contextmanager
def server(model: Path, data: Path, *, workers: int = 2, database_url: str | None = None, fresh: bool = True,
           limits: bool = False, checkout: Path = REPO):  # fmt: skip
    """`pestid serve` in its own process group; yields (base URL, process). ``limits``: keep the per-client
    upload limits as shipped (load tests lift them); ``checkout``: serve another checkout's code (a before)."""
    port, ops = serving_benchmark._free_port(), serving_benchmark._free_port()
    env = {
        **os.environ,
        "PESTID_DATA_DIR": str(data),
        "PESTID_LOG_JSON": "false",
        "PESTID_OPS_PORT": str(ops),
        **({} if limits else LOAD_TEST_ENV),
    }
    if database_url:
        env["PESTID_DATABASE_URL"] = database_url
    data.mkdir(parents=True, exist_ok=True)
    log = (data.parent / f"{data.name}-server.log").open("ab")
    process = subprocess.Popen([str(REPO / ".venv/bin/python"), "-m", "pestid.cli", "serve", "--model", str(model),
                                "--workers", str(workers), "--port", str(port)], env=env, cwd=checkout, stdout=log,
                               stderr=log, start_new_session=True)  # fmt: skip
    try:
        serving_benchmark.wait_ready(f"http://127.0.0.1:{port}/readyz", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        log.close()


def workers_of(process: subprocess.Popen[bytes]) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(process.pid).children(recursive=True)] or [process.pid]


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stored(data: Path, database_url: str | None = None) -> tuple[set[str], int, int]:
    """(submission ids, photo rows, photo files on disk) the service holds."""
    query_ids, query_photos = "select id from submissions", "select path from photos"
    if database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url)
        with engine.connect() as connection:
            ids = {row[0] for row in connection.execute(text(query_ids))}
            paths = [row[0] for row in connection.execute(text(query_photos))]
        engine.dispose()
    else:
        with sqlite3.connect(data / "pestid.db") as db:
            ids = {row[0] for row in db.execute(query_ids)}
            paths = [row[0] for row in db.execute(query_photos)]
    files = {p.relative_to(data / "photos").as_posix() for p in (data / "photos").rglob("*") if p.is_file()}
    missing = [p for p in paths if p not in files]
    assert not missing, f"{len(missing)} photo rows without their file"
    return ids, len(paths), len(files)


# ---------------------------------------------------------------- the bad requests


def _jpeg(seed: int, side: int = 160) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _png(width: int, height: int, mode: str = "L") -> bytes:
    """A PNG of any canvas in a few hundred bytes (rows of zeros compress away): strips, bombs, huge canvases."""
    depth, colour = {"L": (8, 0), "RGB": (8, 2), "RGBA": (8, 6), "1": (1, 0)}[mode]
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "1": 1}[mode]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row_bytes = (width * channels * depth + 7) // 8
    compressor = zlib.compressobj(9)
    rows = min(height, 64)  # the rest is missing: a truncated bomb must be refused from its header anyway
    body = b"".join(compressor.compress(b"\x00" * (row_bytes + 1)) for _ in range(rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _part(boundary: bytes, headers: bytes, body: bytes, newline: bytes = b"\r\n") -> bytes:
    return b"--" + boundary + newline + headers + newline + newline + body + newline


def _multipart(photos: list[tuple[bytes, str]], fields: dict[str, bytes] | None = None, boundary: bytes = b"fz"):
    parts = [_part(boundary, f'Content-Disposition: form-data; name="{name}"'.encode(), value)
             for name, value in (fields or {}).items()]  # fmt: skip
    for k, (data, kind) in enumerate(photos):
        head = f'Content-Disposition: form-data; name="photos"; filename="p{k}.jpg"\r\nContent-Type: {kind}'
        parts.append(_part(boundary, head.encode(), data))
    return b"".join(parts) + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


def bad_requests(count: int, rng: random.Random) -> list[tuple[str, dict]]:
    """(kind, httpx request arguments) for ``count`` bad requests, cycling through every kind."""
    photo = _jpeg(1)
    good_body, good_type = _multipart([(photo, "image/jpeg")])
    b = b"fz"
    kinds: dict[str, object] = {
        "garbage body": lambda: (b"garbage \x00\xff" * rng.randint(1, 200), "multipart/form-data; boundary=XX"),
        "wrong boundary": lambda: (good_body, "multipart/form-data; boundary=other"),
        "LF-only": lambda: (good_body.replace(b"\r\n", b"\n"), good_type),
        "header without colon": lambda: (_part(b, b"Content-Disposition form-data", photo) + b"--fz--\r\n", good_type),
        "long boundary": lambda: (_multipart([(photo, "image/jpeg")], boundary=b"b" * 300)[0],
                                  "multipart/form-data; boundary=" + "b" * 300),
        "long part header": lambda: (_part(b, b"X-Pad: " + b"p" * 5000, photo) + b"--fz--\r\n", good_type),
        "long filename": lambda: (good_body.replace(b'filename="p0.jpg"', b'filename="' + b"f" * 5000 + b'"'),
                                  good_type),
        "no closing boundary": lambda: (good_body[: -rng.randint(5, 60)], good_type),
        "empty body": lambda: (b"", good_type),
        "not multipart": lambda: (photo, "image/jpeg"),
        "strip image": lambda: _multipart([(_png(1, rng.choice([8000, 30000, 100000])), "image/png")]),
        "bomb": lambda: _multipart([(_png(30000, 30000, "1"), "image/png")]),
        "huge RGBA canvas": lambda: _multipart([(_png(8000, 8000, "RGBA"), "image/png")]),
        "five huge canvases": lambda: _multipart([(_png(8000, 8000, "RGB"), "image/png")] * 5),
        "canvas over the limit": lambda: _multipart([(_png(9000, 9000, "RGB"), "image/png")]),
        "truncated photo": lambda: _multipart([(photo[: rng.randint(10, len(photo) - 10)], "image/jpeg")]),
        "corrupt photo": lambda: _multipart([(photo[:200] + os.urandom(400) + photo[600:], "image/jpeg")]),
        "not an image": lambda: _multipart([(os.urandom(rng.randint(1, 5000)), "image/jpeg")]),
        "wrong content type": lambda: _multipart([(photo, "text/html")]),
        "long content type": lambda: _multipart([(photo, "image/" + "x" * 300)]),
        "too many photos": lambda: _multipart([(photo, "image/jpeg")] * 6),
        "too many parts": lambda: _multipart([(photo, "image/jpeg")],
                                             {f"f{k}": b"x" for k in range(rng.randint(30, 3000))}),
        "long field": lambda: _multipart([(photo, "image/jpeg")], {rng.choice(["commune", "district"]): b"x" * 129}),
        "huge field": lambda: _multipart([(photo, "image/jpeg")], {"note": b"n" * 5000}),
        "non-UTF-8 field": lambda: _multipart([(photo, "image/jpeg")], {"idempotency_key": os.urandom(8) + b"\xff"}),
        "bad number": lambda: _multipart([(photo, "image/jpeg")],
                                         {"latitude": rng.choice([b"nan", b"1e999", b"abc", b"-91"]), "longitude": b"105"}),
        "bad date": lambda: _multipart([(photo, "image/jpeg")], {"date": rng.choice([b"2026-13-40", b"yesterday"])}),
        "unknown field": lambda: _multipart([(photo, "image/jpeg")], {"colour": b"red"}),
        "no photos": lambda: _multipart([], {"commune": b"x"}),
        "NUL in a field": lambda: _multipart([(photo, "image/jpeg")],
                                             {rng.choice(["district", "commune", "note"]): "Phú Tân\x00".encode()}),
        "unlisted district": lambda: _multipart([(photo, "image/jpeg")], {"district": "Phu\u200b Tan x".encode()}),
        "padded photo": lambda: _multipart([(photo + bytes(rng.randint(1, 2_000_000)), "image/jpeg")]),
    }  # fmt: skip
    other: dict[str, object] = {
        "bad token": lambda: {"method": "GET", "url": "/v1/review/queue",
                              "headers": {"Authorization": "Bearer " + rng.choice(["x", "a" * 500, "' or 1=1 --"])}},
        "limit out of range": lambda: {"method": "GET", "url": f"/v1/review/queue?limit={rng.choice([-1, 0, 10**9])}",
                                       "headers": {"Authorization": "Bearer nope"}},
        "path tricks": lambda: {"method": "GET", "url": rng.choice(["/static/../serving/settings.py",
                                "/static/%2e%2e/%2e%2e/etc/passwd", "/v1/submissions/../../x/photos/0",
                                "/v1/submissions/x/photos/-1"])},
        "bad login": lambda: {"method": "POST", "url": "/v1/auth/login",
                              "content": rng.choice([b"{", b"[]", b'{"username": 1}', os.urandom(64)]),
                              "headers": {"Content-Type": "application/json"}},
        "wrong method": lambda: {"method": rng.choice(["PUT", "DELETE", "PATCH"]), "url": "/v1/identify"},
        "reused key": lambda: {"method": "POST", "url": "/v1/identify", "reused": True},
        "non-ASCII receipt": lambda: {"method": "GET", "url": f"/v1/submissions/{uuid.uuid4().hex}",
                                      "headers": {"Receipt": "biên nhận".encode()}},
        "NUL in JSON": lambda: {"method": "POST", "url": "/v1/auth/login",
                                "json": {"username": "lan\x00", "password": "x\x00"}},
        "NUL in path or query": lambda: {"method": "GET", "url": rng.choice(["/v1/species?q=%00", "/v1/submissions/a%00b",
                                         "/v1/review/queue?district=Ph%C3%BA%00", "/v1/species/rice%00blast"])},
        "huge path integer": lambda: {"method": rng.choice(["GET", "POST"]), "url": rng.choice([
            "/v1/review/undo/99999999999999999999999", "/v1/review/undo/2147483648",
            "/v1/submissions/x/photos/9223372036854775808", "/v1/submissions/x/photos/2147483648/large"]),
            "headers": {"Authorization": "Bearer nope"}},
        "large JSON body": lambda: {"method": "POST", "url": "/v1/auth/login", "content": b'{"username": "'
                                    + b"a" * rng.choice([70_000, 2_000_000]) + b'"}',
                                    "headers": {"Content-Type": "application/json"}},
    }  # fmt: skip
    names = [*kinds, *other, "byte-flipped body"]
    out = []
    for k in range(count):
        name = names[k % len(names)]
        if name in kinds:
            body, kind = kinds[name]()  # type: ignore[operator]
            out.append((name, {"method": "POST", "url": "/v1/identify", "content": body,
                               "headers": {"Content-Type": kind}}))  # fmt: skip
        elif name in other:
            out.append((name, other[name]()))  # type: ignore[operator]
        else:  # mutational: a valid request with a few bytes changed; it may still be valid (201) or not
            mutated = bytearray(good_body)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            out.append((name, {"method": "POST", "url": "/v1/identify", "content": bytes(mutated),
                               "headers": {"Content-Type": good_type}}))  # fmt: skip
    return out


async def send_all(url: str, requests: list[tuple[str, dict]], concurrency: int, reused_body: tuple[bytes, str]):
    """Send every request; returns per-kind status counts, hangs and the ids of any 201."""
    statuses: dict[str, Counter[int]] = {}
    created: list[str] = []
    hangs = 0
    queue = iter(requests)
    done = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal hangs, done
        for name, args in queue:
            args = dict(args)
            if args.pop("reused", False):  # the key of a stored submission, with a different photo
                body, kind = _multipart([(_jpeg(random.randrange(10**6)), "image/jpeg")])
                args.update(content=body, headers={"Content-Type": kind, "Idempotency-Key": "fuzz-reused"})
            try:
                response = await http.request(timeout=HANG_S, **args)
                code = response.status_code
                if code == 201:
                    created.append(response.json()["submission_id"])
            except httpx.TimeoutException:
                hangs += 1
                code = -1
            except httpx.TransportError:
                code = 0  # the server closed the connection (a refused HTTP head, say): no answer, no hang
            statuses.setdefault(name, Counter())[code] += 1
            done += 1
            if done % 1000 == 0:
                print(f"  {done}/{len(requests)} sent", flush=True)

    async with httpx.AsyncClient(base_url=url) as http:
        first = await http.post("/v1/identify", content=reused_body[0],
                                headers={"Content-Type": reused_body[1], "Idempotency-Key": "fuzz-reused"})  # fmt: skip
        assert first.status_code == 201, first.text
        created.append(first.json()["submission_id"])
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return statuses, hangs, created


def raw_http_abuse(url: str, rng: random.Random, count: int) -> Counter[str]:
    """Broken HTTP below the app: garbage request lines, huge headers, slow heads. Each must get 4xx or a close."""
    host, port = url.removeprefix("http://").split(":")
    outcomes: Counter[str] = Counter()
    payloads = [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 70000 + b"\r\n\r\n",
                b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]  # fmt: skip
    for k in range(count):
        with socket.create_connection((host, int(port)), timeout=HANG_S) as sock:
            sock.sendall(payloads[k % len(payloads)] if rng.random() > 0.02 else b"GET / HTTP/1.1\r\n")  # slow head
            try:
                answer = sock.recv(64)
            except TimeoutError:
                outcomes["hang"] += 1
                continue
            except ConnectionResetError:
                answer = b""
            status = answer[9:12].decode("latin-1", "replace") if answer.startswith(b"HTTP/") else "closed"
            outcomes["5xx" if status.startswith("5") else status] += 1
    return outcomes


def good_latency(url: str, n: int = 20) -> float:
    """p50 ms of a good photo at concurrency 1: the run's own baseline."""
    times = []
    with httpx.Client(base_url=url) as http:
        for k in range(n):
            start = time.perf_counter()
            assert (
                http.post("/v1/identify", files={"photos": ("a.jpg", _jpeg(10_000 + k), "image/jpeg")}).status_code
                == 201
            )
            times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50))


def fuzz(model: Path, work: Path, count: int, database_url: str | None = None) -> bool:
    name = "PostgreSQL" if database_url else "SQLite"
    print(f"\n## fuzz: {count} bad requests + raw HTTP abuse, pestid serve --workers 2 ({name})")
    rng = random.Random(0)
    requests = bad_requests(count, rng)
    data = work / f"fuzz-{name.lower()}"
    with server(model, data, database_url=database_url) as (url, process):
        baseline = good_latency(url)
        before, _, _ = stored(data, database_url)
        start = time.perf_counter()
        statuses, hangs, created = asyncio.run(send_all(url, requests, 16, _multipart([(_jpeg(7), "image/jpeg")])))
        raw = raw_http_abuse(url, rng, 350)
        wall = time.perf_counter() - start
        with httpx.Client(base_url=url) as http:  # still serving
            after = http.post("/v1/identify", files={"photos": ("a.jpg", _jpeg(99), "image/jpeg")})
            after_ok = after.status_code
            created.append(after.json().get("submission_id"))
        peaks = {pid: peak_mb(pid) for pid in workers_of(process)}
    ids, photo_rows, files = stored(data, database_url)
    new = ids - before
    total = sum(sum(c.values()) for c in statuses.values())
    five = {name: sum(n for code, n in c.items() if code >= 500) for name, c in statuses.items()}
    print("| kind | requests | answers |")
    print("| --- | --- | --- |")
    for name, counter in statuses.items():
        answers = ", ".join(f"{code if code > 0 else ('closed' if code == 0 else 'hang')}×{n}"
                            for code, n in sorted(counter.items()))  # fmt: skip
        print(f"| {name} | {sum(counter.values())} | {answers} |")
    print(f"| raw HTTP abuse | {sum(raw.values())} | {dict(raw)} |")
    stray = new - set(created) - {None}
    ok = (sum(five.values()) == 0 and hangs == 0 and raw["hang"] == 0 and raw["5xx"] == 0 and not stray
          and max(peaks.values()) < 500 and after_ok == 201)  # fmt: skip
    print(
        f"\nrequests {total + sum(raw.values())} in {wall:.0f} s; 5xx {sum(five.values()) + raw['5xx']}; "
        f"hangs {hangs + raw['hang']}; worker peak MB {', '.join(f'{v:.0f}' for v in peaks.values())}"
    )
    print(
        f"stored: {len(new)} submissions, all of them answered 201 ({len(created)} 201s, mostly byte flips that "
        f"stayed valid); rows or files for a refusal: {len(stray)}; photo rows {photo_rows} = files {files}"
    )
    print(f"good photo p50 {baseline:.1f} ms before the fuzz; served a good photo after it: {after_ok}")
    return ok


# ---------------------------------------------------------------- load


async def uploads(url: str, concurrency: int, seconds: float, photos: list[bytes]) -> dict:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    acknowledged: set[str] = set()
    deadline = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient, k: int) -> None:
        while time.perf_counter() < deadline:
            key = uuid.uuid4().hex
            files = [("photos", (f"{n}.jpg", photos[(k + n) % len(photos)], "image/jpeg"))
                     for n in range(1 + k % 2)]  # fmt: skip
            for _ in range(2 if k % 5 == 0 else 1):  # every fifth client retries, as a phone on weak data does
                start = time.perf_counter()
                try:
                    response = await http.post("/v1/identify", files=files, headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    statuses[0] += 1
                    continue
                latencies.append(time.perf_counter() - start)
                statuses[response.status_code] += 1
                if response.status_code in (200, 201):
                    acknowledged.add(response.json()["submission_id"])

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)) as http:
        await asyncio.gather(*(client(http, k) for k in range(concurrency)))
    ms = np.array(latencies) * 1000
    return {"statuses": statuses, "acknowledged": acknowledged, "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "requests": len(ms), "rps": len(ms) / seconds}  # fmt: skip


def load(model: Path, work: Path, seconds: float, concurrency: int, database: str, url_override: str | None) -> bool:
    photos = serving_benchmark.photos(40)
    data = work / f"load-{database}"
    database_url = url_override
    with server(model, data, database_url=database_url) as (url, _):
        single = asyncio.run(uploads(url, 1, min(15.0, seconds), photos))
        loaded = asyncio.run(uploads(url, concurrency, seconds, photos))
    ids, photo_rows, files = stored(data, database_url)
    acknowledged = single["acknowledged"] | loaded["acknowledged"]
    lost = acknowledged - ids
    five = sum(n for code, n in loaded["statuses"].items() if code >= 500 or code == 0)
    print(f"| {database} | {concurrency} | {seconds:.0f} s | {loaded['requests']} | {loaded['rps']:.1f} | "
          f"{loaded['p50']:.0f} | {loaded['p95']:.0f} | {loaded['p95'] / single['p95']:.1f}× | {five} | "
          f"{len(acknowledged)} | {len(lost)} | {photo_rows} = {files} |")  # fmt: skip
    return five == 0 and not lost and photo_rows == files


# ---------------------------------------------------------------- kill -9


def kill_cycles(model: Path, work: Path, cycles: int) -> bool:
    print(f"\n## kill -9: {cycles} cycles of 8 clients uploading, the server killed mid-flight, then restarted")
    photos = serving_benchmark.photos(20)
    data = work / "kill"
    acknowledged: set[str] = set()
    rng = random.Random(1)
    print("| cycle | acknowledged so far | missing after restart | files no row refers to | staged files left |")
    print("| --- | --- | --- | --- | --- |")
    ok = True
    for cycle in range(1, cycles + 1):
        with server(model, data) as (url, process):
            if cycle > 1:  # the restart removed what the previous kill left
                ids, photo_rows, files = stored(data)
                missing = acknowledged - ids
                staged = sum(1 for p in (data / "photos" / "tmp").iterdir())
                orphans = files - photo_rows
                print(f"| {cycle - 1} | {len(acknowledged)} | {len(missing)} | {orphans} | {staged} |")
                ok &= not missing and orphans == 0 and staged == 0

            async def until_killed() -> None:
                async def client(http: httpx.AsyncClient, k: int) -> None:
                    while True:
                        try:
                            response = await http.post(
                                "/v1/identify",
                                files=[
                                    ("photos", ("a.jpg", photos[(k + len(acknowledged)) % len(photos)], "image/jpeg"))
                                ],
                            )
                        except httpx.TransportError:
                            return
                        if response.status_code == 201:
                            acknowledged.add(response.json()["submission_id"])

                async def killer() -> None:
                    await asyncio.sleep(rng.uniform(2, 5))
                    os.killpg(process.pid, signal.SIGKILL)

                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    await asyncio.gather(killer(), *(client(http, k) for k in range(8)))

            asyncio.run(until_killed())
            process.wait(timeout=30)
    with server(model, data):
        ids, photo_rows, files = stored(data)
    staged = sum(1 for _ in (data / "photos" / "tmp").iterdir())
    missing = acknowledged - ids
    print(f"| {cycles} | {len(acknowledged)} | {len(missing)} | {files - photo_rows} | {staged} |")
    return ok and not missing and files == photo_rows and staged == 0


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--postgres-url", help="a SQLAlchemy URL; default: a throw-away local server")
    parser.add_argument("--only", choices=["fuzz", "load", "kill"], action="append")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pestid-fuzz-"))
    model = args.model or serving_benchmark.exported_model(work)
    phases = args.only or ["fuzz", "load", "kill"]
    verdicts = {}
    if "fuzz" in phases:
        from tests.conftest import throwaway_postgres

        verdicts["fuzz sqlite"] = fuzz(model, work, args.requests)
        if args.postgres_url:
            verdicts["fuzz postgresql"] = fuzz(model, work, args.requests, args.postgres_url)
        else:
            with throwaway_postgres() as url:
                verdicts["fuzz postgresql"] = fuzz(model, work, args.requests, url)
    if "load" in phases:
        print(
            f"\n## load: {args.concurrency} concurrent uploads (1–2 photos, every fifth retried with its key), "
            "pestid serve --workers 2"
        )
        print(
            "| database | clients | time | requests | req/s | p50 ms | p95 ms | p95 vs 1 client | 5xx or dropped | "
            "acknowledged | missing | photo rows = files |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        verdicts["load sqlite"] = load(model, work, args.seconds, args.concurrency, "sqlite", None)
        from tests.conftest import throwaway_postgres

        if args.postgres_url:
            verdicts["load postgresql"] = load(model, work, args.seconds, args.concurrency, "postgresql",
                                               args.postgres_url)  # fmt: skip
        else:
            with throwaway_postgres() as url:
                verdicts["load postgresql"] = load(model, work, args.seconds, args.concurrency, "postgresql", url)
    if "kill" in phases:
        verdicts["kill"] = kill_cycles(model, work, args.cycles)
    print("\n" + json.dumps({name: "pass" if ok else "FAIL" for name, ok in verdicts.items()}))
    sys.exit(0 if all(verdicts.values()) else 1)


if __name__ == "__main__":
    main()
