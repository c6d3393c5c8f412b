"""Benchmark: the server's CPU-milliseconds per answered photo, against the model's own inference floor (issue 26).

Three photos go through `pestid serve` on the embedded default (SQLite, a photo folder, one process group): what
the farmer page sends (a 12 MP photo resized to 1,280 px, JPEG quality 82, as serving/static/app.js does) and a
12 MP phone original (4032×3024) as a JPEG and as a HEIC (benchmarks/stand_in.py draws them). The server runs
with `--workers 2` on this machine's 2 cores (one onnxruntime thread each, as deploy/README.md runs a replica);
the farmer's photo also goes to `--workers 1` (one worker, onnxruntime on both cores). Each photo is sent
--requests times one after another, then four at a time, every upload with its own key (the JPEGs with their own
bytes too). The cost is the CPU time of the server's whole process tree (user + system, from /proc), less its idle
rate, divided by the photos answered. On the farmer photo's server, two requests that do no photo work are costed
the same way: a resend of an upload already stored (its body read, parsed and hashed, the key found, the stored
answer sent back) and `GET /healthz`.

Beside it, in the same run:
- **the floor**: the model that answered (/readyz says which) and the other precision, both test-time views, run by
  onnxruntime alone on one prepared input, with one thread and with two;
- **the stages**: one upload taken apart in this process with the server's own functions (multipart, sha256, the
  reduced decode, preprocessing, the perceptual hash, the model, the decision, the row and the photo write with its
  fsync; and the two previews an officer's first look makes later), so a gap says what it is spent on;
- **bytes per submission on SQLite**: the database's tables and indexes (dbstat) before and after the uploads.

    .venv/bin/python benchmarks/cost_per_answer.py [--model M.onnx] [--requests 30] [--concurrency 1 4]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kit = _load("stand_in")
fuzz = _load("fuzz")
MEDIA = {"JPEG": ("p.jpg", "image/jpeg"), "HEIF": ("p.heic", "image/heic")}
DISTRICT = "Phú Tân"


def photos(scale: int = 1) -> dict[str, tuple[bytes, str]]:
    """{name: (bytes, format)}: the farmer page's JPEG and the 12 MP original as JPEG and HEIC (``scale``: each side
    that many times smaller, for a quick check of this script)."""
    original = kit.phone_original(size=(kit.PHONE[0] // scale, kit.PHONE[1] // scale))
    width, height = kit.fitted(original.size)
    megapixels = original.width * original.height / 1e6
    sent = {f"farmer page, {width}×{height} JPEG": (kit.farmer_jpeg(original), "JPEG"),
            f"{megapixels:.0f} MP JPEG": (kit.encode(original, "JPEG", quality=90), "JPEG"),
            f"{megapixels:.0f} MP HEIC": (kit.phone_heic(original), "HEIF")}  # fmt: skip
    return {f"{name} ({len(data) / 1e6:.2f} MB)": (data, fmt) for name, (data, fmt) in sent.items()}


def send(http: httpx.Client, photo: bytes, fmt: str, key: str, expect: int = 201) -> float:
    name, media = MEDIA[fmt]
    start = time.perf_counter()
    answer = http.post("/v1/identify", files=[("photos", (name, kit.unique(photo, key), media))],
                       data={"district": DISTRICT}, headers={"Idempotency-Key": key})  # fmt: skip
    assert answer.status_code == expect, answer.text
    return (time.perf_counter() - start) * 1000


def db_bytes(database: Path) -> tuple[int, dict[str, int]]:
    """(submissions stored, bytes per table with its indexes) of a live SQLite database."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        owner = dict(db.execute("select name, tbl_name from sqlite_master"))
        sizes: dict[str, int] = defaultdict(int)
        for name, size in db.execute("select name, sum(pgsize) from dbstat group by name"):
            sizes[owner.get(name, name)] += size
        rows = db.execute("select count(*) from submissions").fetchone()[0]
    return rows, dict(sizes)


def cpu_per_call(pids: list[int], idle_rate: float, calls: int, call: Callable[[int], object],
                 concurrency: int = 1) -> tuple[float, float, list[Any]]:  # fmt: skip
    """(CPU ms per call of the server's tree, calls per second, what the calls returned)."""
    cpu, start = kit.tree_cpu_s(pids), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        returned = list(pool.map(call, range(calls)))
    wall = time.perf_counter() - start
    return (kit.tree_cpu_s(pids) - cpu - idle_rate * wall) * 1000 / calls, calls / wall, returned


def server_cost(model: Path, work: Path, photo: bytes, fmt: str, *, workers: int, requests: int, levels: list[int],
                plumbing: bool = False) -> dict[str, Any]:  # fmt: skip
    """CPU ms per answered photo at each concurrency level, p50 at each, the precision that answered, and the
    database's growth per submission; with ``plumbing``, the CPU of a resend of a stored upload and of a health
    check."""
    data = work / f"server-{fmt}-{len(photo)}-{workers}"
    out: dict[str, Any] = {"levels": {}}
    with fuzz.server(model, data, workers=workers) as (url, process), httpx.Client(base_url=url, timeout=120) as http:
        out["precision"] = http.get("/readyz").json().get("precision", "?")
        for k in range(3 * workers):  # warm-up: first-request costs are not per-photo costs
            send(http, photo, fmt, f"warm-{k}")
        pids, idle_cpu, idle_start = [process.pid], kit.tree_cpu_s([process.pid]), time.perf_counter()
        time.sleep(3)
        idle_rate = (kit.tree_cpu_s(pids) - idle_cpu) / (time.perf_counter() - idle_start)
        out["idle_ms_per_s"] = idle_rate * 1000
        rows_before, bytes_before = db_bytes(data / "pestid.db")
        for level in levels:
            cpu_ms, per_s, latencies = cpu_per_call(
                pids, idle_rate, requests, lambda k, c=level: send(http, photo, fmt, f"c{c}-{k}"), level)  # fmt: skip
            out["levels"][level] = {"cpu_ms": cpu_ms, "p50": statistics.median(latencies), "per_s": per_s}
        rows_after, bytes_after = db_bytes(data / "pestid.db")
        if plumbing:
            out["resend_ms"] = cpu_per_call(pids, idle_rate, requests, lambda k: send(http, photo, fmt, "c1-0", 200))[0]
            out["healthz_ms"] = cpu_per_call(pids, idle_rate, 10 * requests, lambda k: http.get("/healthz"))[0]
    added = rows_after - rows_before
    out["db_per_submission"] = {t: (bytes_after.get(t, 0) - bytes_before.get(t, 0)) / added for t in bytes_after}
    kept = [
        p for p in (data / "photos").rglob("*.*") if p.is_file() and p.relative_to(data / "photos").parts[0] != "tmp"
    ]
    out["photo_file_bytes"] = statistics.median(p.stat().st_size for p in kept)
    return out


def floor(path: Path, x, threads: int, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(CPU ms, wall ms) of one photo's model run, both test-time views, onnxruntime alone on a prepared input."""
    from pestid.predictor import Predictor

    predictor = Predictor(path, threads=threads)
    for _ in range(5):
        predictor.outputs_of(x[None])
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        predictor.outputs_of(x[None])
    return (time.process_time() - cpu) * 1000 / repeats, (time.perf_counter() - wall) * 1000 / repeats


def _fake_request(body: bytes, content_type: str):  # type: ignore[no-untyped-def]
    """The ASGI request a replica's route reads: the body in 64 KB messages."""
    from starlette.requests import Request

    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    messages = iter({"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks))

    async def receive() -> dict[str, Any]:
        return next(messages)

    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    return Request({"type": "http", "method": "POST", "path": "/v1/identify", "headers": headers,
                    "query_string": b""}, receive)  # fmt: skip


class Stages:
    """One upload's stages, timed (CPU and wall) in this process with the server's own functions, on SQLite and a
    photo folder under ``work``."""

    def __init__(self, model: Path, precision: str, work: Path, workers: int) -> None:
        from pestid.contract import int8_path
        from pestid.hashing import sha256_bytes
        from pestid.predictor import Predictor
        from pestid.serving.db import open_database
        from pestid.serving.model import LoadedModel
        from pestid.serving.photos import PhotoStore
        from pestid.serving.settings import Settings

        self.settings = Settings(workers=workers)
        answering = int8_path(model) if precision == "int8" else model
        predictor = Predictor(answering, threads=self.settings.threads_per_worker)
        self.model = LoadedModel(predictor, predictor.contract.model_name, "benchmark", str(model), model,
                                 sha256_bytes(model.read_bytes()), precision)  # fmt: skip
        self.sessions = open_database(f"sqlite:///{work / 'stages.db'}")
        self.store = PhotoStore(work / "photos")
        self.times: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.loop = asyncio.new_event_loop()
        self.preview_bytes: list[int] = []  # both previews of each photo, as kept

    def timed(self, name: str, work: Callable[[], Any]) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        out = work()
        self.times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
        return out

    def upload(self, photo: bytes, fmt: str, key: str) -> None:
        from pestid.catalogue import load_catalogue
        from pestid.decision import decide_by, fuse
        from pestid.imaging import decode_image
        from pestid.preprocess import draft_side
        from pestid.serving.routes.identify import build_response, digests
        from pestid.serving.submissions import AcceptedPhoto, Observation, request_hash, store_submission
        from pestid.serving.uploads import read_multipart

        s, predictor = self.settings, self.model.predictor
        name, media = MEDIA[fmt]
        request = httpx.Request("POST", "http://pestid/v1/identify", data={"district": DISTRICT},
                                files=[("photos", (name, kit.unique(photo, key), media))])  # fmt: skip
        body = request.read()
        files, _ = self.timed("multipart parse", lambda: self.loop.run_until_complete(read_multipart(
            _fake_request(body, request.headers["content-type"]), max_files=s.max_photos,
            max_file_bytes=s.max_upload_bytes, max_field_bytes=s.max_field_bytes)))  # fmt: skip
        data = bytes(files[0].data)
        hashes = self.timed("sha256", lambda: digests(files))
        image = self.timed("decode (reduced)", lambda: decode_image(
            data, max_pixels=s.max_pixels, min_side=draft_side(predictor.contract.preprocess),
            max_pixels_full=s.max_pixels_full_decode))  # fmt: skip
        x = self.timed("preprocess (crop, resize, normalise)", lambda: predictor.prepare(image))
        accepted = self.timed("phash, size, end of image", lambda: AcceptedPhoto.of(data, hashes[0], image))
        assessment = self.timed("model, both views", lambda: predictor.assess_of(x[None]))
        outcome = self.timed("decision and answer", lambda: decide_by(
            predictor.contract, fuse(assessment.probabilities), catalogue=load_catalogue(),
            uncertain_floor=s.uncertain_floor))  # fmt: skip
        answer = self.timed("decision and answer", lambda: build_response(outcome, self.model, "vi", 1))
        observation = Observation(district=DISTRICT, idempotency_key=key)
        stored, _ = self.timed("row, duplicate scan, photo write + fsync", lambda: store_submission(
            self.sessions, self.store, photos=[accepted], observation=observation, response=answer,
            decision=outcome.decision, label=outcome.ranked[0].id, confidence=outcome.ranked[0].probability,
            model_version="benchmark", lang="vi", fingerprint=request_hash(hashes, observation)))  # fmt: skip
        self.previews(stored["submission_id"])

    def previews(self, submission_id: str) -> None:
        from sqlalchemy import select

        from pestid.serving.db import Photo
        from pestid.serving.routes.review import PREVIEW_SIZES

        with self.sessions() as session:
            path = session.scalars(select(Photo.path).where(Photo.submission_id == submission_id)).one()
        made = self.timed("later: previews at an officer's first look",
                          lambda: [self.store.preview(path, side) for side in PREVIEW_SIZES.values()])  # fmt: skip
        self.preview_bytes.append(sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in made))

    def summary(self, warm: int) -> dict[str, tuple[float, float]]:
        """Per stage, median (CPU ms, wall ms) per upload, the first ``warm`` uploads left out (a stage timed twice
        per upload is summed)."""
        out = {}
        for name, samples in self.times.items():
            per_upload = len(samples) // (len(self.times["sha256"]))
            sums = [tuple(map(sum, zip(*samples[i : i + per_upload], strict=True)))
                    for i in range(0, len(samples), per_upload)][warm:]  # fmt: skip
            out[name] = (statistics.median(c for c, _ in sums) * 1000, statistics.median(w for _, w in sums) * 1000)
        return out


def floors(model: Path, photo: bytes, repeats: int) -> dict[tuple[str, int], tuple[float, float]]:
    """{(precision, threads): (CPU ms, wall ms)} for the model and its INT8 copy, with one thread and all cores."""
    from pestid.contract import int8_path
    from pestid.imaging import decode_image
    from pestid.predictor import Predictor

    x = Predictor(model, threads=1).prepare(decode_image(photo))
    paths = {"int8": int8_path(model), "fp32": model}
    return {(precision, n): floor(path, x, n, repeats) for precision, path in paths.items() if path.is_file()
            for n in sorted({1, os.cpu_count() or 1})}  # fmt: skip


def _row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def print_costs(costs: dict[tuple[str, int], dict[str, Any]], bottom: float) -> None:
    _row("photo", "server", "at once", "answered/s", "p50 ms", "server CPU ms per answered photo", "vs the floor")
    _row(*["---"] * 7)
    for (name, workers), cost in costs.items():
        threads = max(1, (os.cpu_count() or 1) // workers)
        for level, r in cost["levels"].items():
            _row(name, f"--workers {workers}, {threads} thread{'s' * (threads > 1)} each", level, f"{r['per_s']:.1f}",
                 f"{r['p50']:.0f}", f"{r['cpu_ms']:.0f}", f"{r['cpu_ms'] / bottom:.1f}×")  # fmt: skip
    for (_, workers), cost in costs.items():
        if "resend_ms" in cost:
            print(f"\n--workers {workers}, CPU ms per request without photo work: a resend of a stored upload "
                  f"{cost['resend_ms']:.1f}, GET /healthz {cost['healthz_ms']:.1f}")  # fmt: skip


def print_stages(costs: dict[tuple[str, int], dict[str, Any]], stages: dict[str, dict[str, tuple[float, float]]],
                 workers: int) -> None:  # fmt: skip
    names, later = list(stages), "later: previews at an officer's first look"
    print(f"\nOne upload's stages in this process (onnxruntime threads as --workers {workers}), CPU ms (wall ms), "
          "median:\n")  # fmt: skip
    _row("stage", *names)
    _row(*["---"] * (len(names) + 1))
    for stage in [s for s in stages[names[0]] if s != later]:
        _row(stage, *(f"{stages[n][stage][0]:.1f} ({stages[n][stage][1]:.1f})" for n in names))
    sums = {n: sum(c for s, (c, _) in stages[n].items() if s != later) for n in names}
    served = {n: costs[(n, workers)]["levels"][min(costs[(n, workers)]["levels"])]["cpu_ms"] for n in names}
    _row("**sum of the stages**", *(f"**{sums[n]:.1f}**" for n in names))
    _row(f"the server, measured (--workers {workers}, 1 at once)", *(f"{served[n]:.1f}" for n in names))
    _row("the rest: HTTP, FastAPI, threads, logging, metrics", *(f"{served[n] - sums[n]:.1f}" for n in names))
    _row(later, *(f"{stages[n][later][0]:.1f} ({stages[n][later][1]:.1f})" for n in names))


def print_tables(described: str, requests: int, costs: dict[tuple[str, int], dict[str, Any]],
                 floor_of: dict[tuple[str, int], tuple[float, float]], stages: dict[str, dict[str, tuple[float, float]]],
                 workers: int) -> None:  # fmt: skip
    from pestid.predictor import integer_kernels

    precision = next(iter(costs.values()))["precision"]
    bottom = floor_of[(precision, 1)][0]
    print(f"\nmodel: {described}; `pestid serve` on SQLite and a photo folder; {requests} photos per row; "
          f"{os.cpu_count()} cores, integer kernels {integer_kernels()}; the floor: {precision}, one thread\n")  # fmt: skip
    print_costs(costs, bottom)
    print(f"\nThe floor: onnxruntime alone on a prepared input, both test-time views ({precision} answered):\n")
    _row("model", "threads", "CPU ms per photo", "wall ms per photo")
    _row(*["---"] * 4)
    for (name, n), (cpu, wall) in floor_of.items():
        _row(f"{name}{' (the floor)' if (name, n) == (precision, 1) else ''}", n, f"{cpu:.1f}", f"{wall:.1f}")
    print_stages(costs, stages, workers)
    print("\nBytes per submission on SQLite (tables with their indexes, before and after), the photo, its previews:\n")
    _row("photo", "submissions", "photos", "other tables", "photo file", "its two previews")
    _row(*["---"] * 6)
    for name in stages:
        cost = costs[(name, workers)]
        per = cost["db_per_submission"]
        other = sum(v for k, v in per.items() if k not in ("submissions", "photos"))
        _row(name, f"{per.get('submissions', 0):,.0f}", f"{per.get('photos', 0):,.0f}", f"{other:,.0f}",
             f"{cost['photo_file_bytes']:,.0f}", f"{cost['preview_bytes']:,.0f}")  # fmt: skip
    idle = ", ".join(f"{c['idle_ms_per_s']:.1f}" for c in costs.values())
    print(f"\nThe servers' idle CPU, left out above: {idle} ms per second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an exported model.onnx (default: runs/default, else a stand-in)")
    parser.add_argument("--requests", type=int, default=30, help="photos sent per photo and concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--stage-uploads", type=int, default=15, help="uploads taken apart per photo")
    parser.add_argument("--floor-runs", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="photos 4× smaller per side: checks the script only")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data folders (about 1 GB)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pestid-cost-"))
    try:
        measure(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> None:
    model, env, described = kit.choose_model(args.model)
    os.environ.update(env)  # what the servers need (the stand-in's INT8 copy allowed to answer)
    print(f"model: {described}; drawing the photos", flush=True)
    sent = photos(4 if args.quick else 1)
    farmer, workers = next(iter(sent)), 2
    costs = {}
    for name, (photo, fmt), n in [*((name, item, workers) for name, item in sent.items()), (farmer, sent[farmer], 1)]:
        print(f"serving with --workers {n}: {name}", flush=True)
        costs[(name, n)] = server_cost(model, work, photo, fmt, workers=n, requests=args.requests,
                                       levels=args.concurrency, plumbing=name == farmer)  # fmt: skip
    precision = next(iter(costs.values()))["precision"]
    floor_of = floors(model, sent[farmer][0], args.floor_runs)
    stages = {}
    for k, (name, (photo, fmt)) in enumerate(sent.items()):
        print(f"stages: {name}", flush=True)
        (work / f"stages-{k}").mkdir()
        taken = Stages(model, precision, work / f"stages-{k}", workers)
        for n in range(args.stage_uploads + 2):
            taken.upload(photo, fmt, f"stage-{n}")
        stages[name] = taken.summary(warm=2)
        costs[(name, workers)]["preview_bytes"] = statistics.median(taken.preview_bytes)
    print_tables(described, args.requests, costs, floor_of, stages, workers)


if __name__ == "__main__":
    main()
