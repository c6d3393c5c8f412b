"""Benchmark: the season's busiest day replayed through nginx and 2 replicas, against one replica alone (issue 26).

Farmers' uploads arrive as a Poisson process whose rate follows a day: next to nothing at night, a morning peak in
the field, a lull at noon, a smaller afternoon peak, and a harvest burst (one hour at 1.5× the morning's peak).
The day is compressed into --minutes of wall time and scaled to this machine: the burst's rate is --peak times the
uploads per second one replica answered in a short closed-loop probe, measured first in the same run. The same
arrivals (one seed) are replayed twice, on PostgreSQL and SeaweedFS (a throw-away server of each, as the tests
start them), each arm on its own database and bucket prefix:

1. **baseline**: one replica, no nginx: `pestid serve --workers 2` (--baseline-workers), onnxruntime's threads
   the cores divided among its workers, as deploy/README.md runs a replica;
2. **nginx + 2 replicas**: deploy/run-local.sh with 2 replicas of one worker each (tests/stack.py), the cores split
   between them (`PESTID_ORT_THREADS` = cores / 2), as a site gives each replica its own host's cores.

Each upload is what the farmer page sends (a 1,280 px JPEG, its own bytes) with its own Idempotency-Key, and is
sent again with the same key after a transport error, a 5xx or a 429 (1, 2, 4, 8 s), as the page does. Reported
for each arm, and as a ratio to the baseline: p50 and p95 from arrival to acknowledgement (all day, and in the
burst's hour), 5xx, 429s, uploads never acknowledged, **lost** (acknowledged, no row), **stored twice** (rows per
idempotency key, and per request hash), rows whose photo is not in the bucket and objects no row refers to, the
servers' CPU-ms per answered upload, and PostgreSQL's and the bucket's bytes per stored submission.

    .venv/bin/python benchmarks/season.py [--model M.onnx] [--minutes 2.5] [--peak 0.8] [--seed 0]
                                          [--baseline-workers 2]

On one machine the two arms share its cores: 2 replicas here cannot answer more than one does; what the second arm
shows is what nginx and a second replica cost and whether anything is lost or doubled on the way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("stand_in_benchmark", REPO / "benchmarks" / "stand_in.py")
assert _spec is not None and _spec.loader is not None
kit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kit)

RETRY_S = (1, 2, 4, 8)  # the farmer page waits 5, 10, 20 … s; a compressed day waits less
BURST = (9.0, 10.0)  # the harvest burst's hour
NATIONAL_PEAK_DAY = 100_000  # submissions on the season's busiest day (docs/capacity.md)


def day_shape(hour: float) -> float:
    """Relative upload rate at ``hour`` (0–24) of the peak day: the morning's peak is 1, the burst 1.5."""
    morning = math.exp(-0.5 * ((hour - 8.5) / 1.5) ** 2)
    afternoon = 0.7 * math.exp(-0.5 * ((hour - 16.0) / 1.5) ** 2)
    rate = 0.02 + morning + afternoon
    return max(rate, 1.5) if BURST[0] <= hour < BURST[1] else rate


def peak_to_mean(steps: int = 24 * 60) -> float:
    """The day's highest rate over its mean."""
    rates = [day_shape(24 * k / steps) for k in range(steps)]
    return max(rates) / statistics.fmean(rates)


def arrivals(seconds: float, peak_rate: float, seed: int) -> list[float]:
    """Poisson arrival times over a day compressed into ``seconds``, at ``peak_rate`` per second at the day's
    highest (thinning a homogeneous process)."""
    rng, top = random.Random(seed), max(day_shape(24 * k / 1440) for k in range(1440))
    out, t = [], 0.0
    while True:
        t += rng.expovariate(peak_rate)
        if t >= seconds:
            return out
        if rng.random() < day_shape(24 * t / seconds) / top:
            out.append(t)


def farmer_photos(count: int) -> list[bytes]:
    """``count`` different photos as the farmer page sends them (1,280 px JPEGs)."""
    from pestid.sample import SAMPLE_CLASSES

    return [kit.farmer_jpeg(kit.phone_original(k, SAMPLE_CLASSES[k % len(SAMPLE_CLASSES)], (2016, 1512)))
            for k in range(count)]  # fmt: skip


@dataclass
class Upload:
    key: str
    at: float  # seconds into the day
    district: str
    statuses: list[int] = field(default_factory=list)  # each attempt's answer; 0: no answer
    acknowledged_after: float | None = None  # seconds from arrival to its 2xx


async def send(http: httpx.AsyncClient, upload: Upload, photo: bytes, start: float) -> None:
    """One farmer's upload at its time, sent again with its key as the page does until acknowledged or refused."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start + upload.at - loop.time()))
    body = kit.unique(photo, upload.key)
    for wait in (*RETRY_S, None):
        try:
            answer = await http.post("/v1/identify", files=[("photos", ("p.jpg", body, "image/jpeg"))],
                                     data={"district": upload.district}, headers={"Idempotency-Key": upload.key})  # fmt: skip
            status = answer.status_code
        except httpx.TransportError:
            status = 0
        upload.statuses.append(status)
        if 200 <= status < 300:
            upload.acknowledged_after = loop.time() - start - upload.at
            return
        if wait is None or not (status == 0 or status == 429 or status >= 500):
            return
        await asyncio.sleep(wait)


async def replay(url: str, uploads: list[Upload], photos: list[bytes]) -> None:
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        start = asyncio.get_running_loop().time()
        await asyncio.gather(*(send(http, u, photos[k % len(photos)], start) for k, u in enumerate(uploads)))


def probe(url: str, photos: list[bytes], seconds: float, concurrency: int = 4) -> float:
    """Uploads per second answered with ``concurrency`` always in flight (a closed loop)."""
    done, stop = [0], time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient, k: int) -> None:
        while time.perf_counter() < stop:
            key = f"probe-{k}-{done[0]}-{uuid.uuid4().hex[:6]}"
            answer = await http.post("/v1/identify", headers={"Idempotency-Key": key},
                                     files=[("photos", ("p.jpg", kit.unique(photos[k], key), "image/jpeg"))])  # fmt: skip
            done[0] += answer.status_code == 201

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            await asyncio.gather(*(client(http, k) for k in range(concurrency)))

    began = time.perf_counter()
    asyncio.run(run())
    return done[0] / (time.perf_counter() - began)


@contextlib.contextmanager
def one_replica(model: Path, env: dict[str, str], run: Path, workers: int) -> Iterator[tuple[str, list[int]]]:
    """`pestid serve --workers N` alone on a free port; yields (its URL, [its pid])."""
    from tests.conftest import free_port

    port = free_port()
    run.mkdir(parents=True, exist_ok=True)
    full = {**os.environ, **env, "PESTID_DATA_DIR": str(run / "data"), "PESTID_OPS_PORT": "0"}
    with (run / "replica.log").open("wb") as log:
        process = subprocess.Popen([str(REPO / ".venv" / "bin" / "pestid"), "serve", "--model", str(model), "--port",
                                    str(port), "--workers", str(workers)], env=full, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not start: {(run / 'replica.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url, [process.pid]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@dataclass
class Store:
    """An arm's database and bucket prefix, as an operator looks into them."""

    database_url: str
    bucket: Any  # tests.conftest.Bucket

    def table_bytes(self) -> dict[str, int]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("select relname, pg_total_relation_size(oid) from pg_class "
                                           "where relkind = 'r' and relnamespace = 'public'::regnamespace"))  # fmt: skip
            sizes = {name: int(size) for name, size in rows}
            for table in ("submissions", "photos"):  # the rows' own bytes, whatever the pages' fill
                mean = connection.execute(text(f"select avg(pg_column_size({table}.*)) from {table}")).scalar()
                sizes[f"{table} (mean row)"] = int(mean or 0)
        engine.dispose()
        return sizes

    def rows(self) -> tuple[Counter[str], Counter[str], list[tuple[str, str]]]:
        """(rows per idempotency key, rows per request hash, every photo row as (submission id, path))."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url)
        with engine.connect() as connection:
            keys = Counter(k for (k,) in connection.execute(text("select idempotency_key from submissions")))
            hashes = Counter(h for (h,) in connection.execute(text("select request_hash from submissions")))
            photos = [(s, p) for s, p in connection.execute(text("select submission_id, path from photos"))]
        engine.dispose()
        return keys, hashes, photos

    def objects(self) -> dict[str, int]:
        """{path relative to the photo folder: bytes} of every original in the prefix."""
        server, base = self.bucket.server, f"{self.bucket.prefix}/photos/"
        pages = server.client().get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=base)
        return {o["Key"].removeprefix(base): int(o["Size"]) for page in pages for o in page.get("Contents", [])}


def run_day(url: str, pids: list[int], proxy: list[int], store: Store, schedule: list[float], seconds: float,
            photos: list[bytes], seed: int) -> dict[str, Any]:  # fmt: skip
    """Replay ``schedule`` against ``url`` and count what came back and what was stored."""
    from pestid.serving.districts import districts

    names, rng = [str(d["name"]) for d in districts()], random.Random(seed)
    uploads = [Upload(f"season-{k}", at, rng.choice(names)) for k, at in enumerate(schedule)]
    sizes, objects_before, rows_before = store.table_bytes(), store.objects(), sum(store.rows()[0].values())
    cpu, proxy_cpu, began = kit.tree_cpu_s(pids), kit.tree_cpu_s(proxy), time.perf_counter()
    asyncio.run(replay(url, uploads, photos))
    wall = time.perf_counter() - began
    cpu, proxy_cpu = kit.tree_cpu_s(pids) - cpu, kit.tree_cpu_s(proxy) - proxy_cpu
    keys, hashes, photo_rows = store.rows()
    objects, after = store.objects(), store.table_bytes()
    acknowledged = {u.key for u in uploads if u.acknowledged_after is not None}
    stored = {k for k in keys if k and k.startswith("season-")}
    statuses = Counter(s for u in uploads for s in u.statuses)
    new_rows = sum(keys.values()) - rows_before
    paths = {p for _, p in photo_rows}
    in_burst = [u for u in uploads if BURST[0] <= 24 * u.at / seconds < BURST[1]]
    return {
        "sent": len(uploads), "acknowledged": len(acknowledged), "wall": wall,
        "latencies": [u.acknowledged_after * 1000 for u in uploads if u.acknowledged_after is not None],
        "burst": [u.acknowledged_after * 1000 for u in in_burst if u.acknowledged_after is not None],
        "5xx": sum(n for s, n in statuses.items() if s >= 500), "429": statuses[429], "no answer": statuses[0],
        "resent": sum(len(u.statuses) - 1 for u in uploads),
        "never acknowledged": len(uploads) - len(acknowledged), "lost": len(acknowledged - stored),
        "stored, not acknowledged": len(stored - acknowledged),
        "stored twice (key)": sum(n - 1 for n in keys.values() if n > 1),
        "stored twice (request)": sum(n - 1 for h, n in hashes.items() if h and n > 1),
        "rows without their photo": len(paths - set(objects)), "photos without a row": len(set(objects) - paths),
        "cpu_ms": cpu * 1000 / max(1, len(acknowledged)), "proxy_cpu_ms": proxy_cpu * 1000 / max(1, len(acknowledged)),
        "db_bytes": {t: (after.get(t, 0) - sizes.get(t, 0)) / max(1, new_rows) for t in after if "(" not in t},
        "row_bytes": {t: v for t, v in after.items() if "(" in t},
        "bucket_bytes": sum(v for k, v in objects.items() if k not in objects_before) / max(1, new_rows),
    }  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def ratio(ours: float, base: float) -> str:
    if base == 0:
        return "same (0)" if ours == 0 else "— (baseline 0)"
    return f"{ours / base:.2f}×"


def report(base: dict[str, Any], stack: dict[str, Any]) -> None:
    rows: list[tuple[str, float, float, str]] = []
    for name, key, q in (("p50 ms, arrival → acknowledged", "latencies", 0.5), ("p95 ms", "latencies", 0.95),
                         ("p50 ms in the burst's hour", "burst", 0.5), ("p95 ms in the burst's hour", "burst", 0.95)):  # fmt: skip
        rows.append((name, percentile(base[key], q), percentile(stack[key], q), ".0f"))
    for key in ("sent", "acknowledged", "5xx", "429", "no answer", "resent", "never acknowledged", "lost",
                "stored, not acknowledged", "stored twice (key)", "stored twice (request)", "rows without their photo",
                "photos without a row"):  # fmt: skip
        rows.append((key, base[key], stack[key], ",.0f"))
    rows.append(("server CPU ms per acknowledged upload (replicas)", base["cpu_ms"], stack["cpu_ms"], ".1f"))
    rows.append(("… and nginx", base["proxy_cpu_ms"], stack["proxy_cpu_ms"], ".1f"))
    for table in ("submissions", "photos"):
        rows.append((f"PostgreSQL bytes per submission: {table}", base["db_bytes"].get(table, 0),
                     stack["db_bytes"].get(table, 0), ",.0f"))  # fmt: skip
    rows.append(("PostgreSQL bytes per submission: all tables", sum(base["db_bytes"].values()),
                 sum(stack["db_bytes"].values()), ",.0f"))  # fmt: skip
    for table in ("submissions", "photos"):
        name = f"{table} (mean row)"
        rows.append((f"PostgreSQL mean row, {table} (pg_column_size)", base["row_bytes"][name],
                     stack["row_bytes"][name], ",.0f"))  # fmt: skip
    rows.append(("bucket bytes per submission", base["bucket_bytes"], stack["bucket_bytes"], ",.0f"))
    print("\n| | one replica, no nginx (baseline) | nginx + 2 replicas | vs baseline |\n| --- | --- | --- | --- |")
    for name, a, b, fmt in rows:
        print(f"| {name} | {a:{fmt}} | {b:{fmt}} | {ratio(b, a)} |")


def describe_day(schedule: list[float], seconds: float, capacity: float, peak: float) -> None:
    hours = Counter(int(24 * t / seconds) for t in schedule)
    national = NATIONAL_PEAK_DAY / 86400 * peak_to_mean()
    print(f"\nthe day: {len(schedule)} uploads in {seconds / 60:.1f} min; one replica answered {capacity:.2f}/s in the "
          f"probe, so the burst arrives at {peak * capacity:.2f}/s and the day's mean is "
          f"{len(schedule) / seconds:.2f}/s (peak / mean {peak_to_mean():.2f})")  # fmt: skip
    print("uploads per simulated hour: " + " ".join(f"{h}h:{hours[h]}" for h in range(24)))
    print(f"the national peak day ({NATIONAL_PEAK_DAY:,} uploads) at this shape: mean "
          f"{NATIONAL_PEAK_DAY / 86400:.2f}/s, burst {national:.2f}/s, {national / (peak * capacity):.1f}× this run's")  # fmt: skip


def main() -> None:

    from pestid.serving.ratelimit import LOAD_TEST_ENV
    from tests.conftest import Bucket, new_database, throwaway_postgres, throwaway_seaweedfs
    from tests.stack import local_stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an exported model.onnx (default: runs/default, else a stand-in)")
    parser.add_argument("--minutes", type=float, default=2.5, help="wall time of the simulated day, per arm")
    parser.add_argument("--peak", type=float, default=0.8, help="the burst's rate over one replica's probed rate")
    parser.add_argument("--probe-seconds", type=float, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-workers", type=int, default=2, help="the lone replica's --workers")
    args = parser.parse_args()
    model, model_env, described = kit.choose_model(args.model)
    photos, seconds = farmer_photos(6), args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="pestid-season-"))
    print(f"model: {described}; work in {work}", flush=True)
    with throwaway_postgres() as postgres, throwaway_seaweedfs() as s3:

        def arm(name: str, extra: dict[str, str]) -> tuple[Store, dict[str, str]]:
            store = Store(new_database(postgres), Bucket(s3, f"{name}-{uuid.uuid4().hex[:8]}"))
            return store, {**store.bucket.env, **LOAD_TEST_ENV, **model_env, **extra, "PESTID_LOG_JSON": "false",
                           "PESTID_DATABASE_URL": store.database_url}  # fmt: skip

        store, env = arm("baseline", {})
        with one_replica(model, env, work / "baseline", args.baseline_workers) as (url, pids):
            print(f"baseline, --workers {args.baseline_workers}: {httpx.get(f'{url}/readyz').json()}", flush=True)
            capacity = probe(url, photos, args.probe_seconds)
            schedule = arrivals(seconds, args.peak * capacity, args.seed)
            describe_day(schedule, seconds, capacity, args.peak)
            base = run_day(url, pids, [], store, schedule, seconds, photos, args.seed)
        store, env = arm("stack", {"PESTID_ORT_THREADS": str(max(1, (os.cpu_count() or 2) // 2))})
        with local_stack(str(model), work / "stack", env=env, replicas=2, upload_rate="1000r/s") as stack:
            print(f"nginx + 2 replicas: {httpx.get(f'{stack.url}/readyz').json()}", flush=True)
            stack_capacity = probe(stack.url, photos, args.probe_seconds)  # and warms both replicas up
            nginx = int((stack.run / "nginx" / "nginx.pid").read_text())
            ours = run_day(stack.url, [r.pid for r in stack.replicas], [nginx], store, schedule, seconds, photos,
                           args.seed)  # fmt: skip
            answered_by = Counter(line.split(' upstream="', 1)[1].split('"', 1)[0] for line in stack.access_log()
                                  if '"POST /v1/identify' in line)  # fmt: skip
    print(f"\nthe probe, 4 uploads always in flight: {capacity:.2f}/s answered by one replica, {stack_capacity:.2f}/s "
          f"through nginx and 2 replicas ({stack_capacity / capacity:.2f}×)")  # fmt: skip
    report(base, ours)
    print(f"\nnginx sent the probe's and the day's uploads to: {dict(answered_by.most_common())}")


if __name__ == "__main__":
    main()
