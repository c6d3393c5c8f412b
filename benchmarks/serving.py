"""Benchmark: /v1/identify under load on 127.0.0.1, against a PyTorch-eager baseline.

Starts `pestid serve` (onnxruntime, N workers) and, as the baseline measured in
the same run, a minimal FastAPI endpoint that runs the same model in PyTorch
eager. Sends real photos (../shared/datasets/ricepest6 where present, else
photos pestid draws) at concurrency 1, 8 and 32, and prints p50/p95/p99
latency and requests/s for both, with ratios.

    .venv/bin/python benchmarks/serving.py [--run RUN_DIR] [--workers 2] [--seconds 20]

Without --run, a run folder is made from EfficientNet-Lite0 with its ImageNet
weights and a 6-class head (speed does not depend on the head's training).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from pestid.serving.ratelimit import LOAD_TEST_ENV

REPO = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_run(folder: Path, image_size: int) -> Path:
    """A run folder (config, run.json, best.pt) for EfficientNet-Lite0 with a 6-class head."""
    import torch

    from pestid.training.config import resolve_config, save_config
    from pestid.training.models import create_model, preprocess_spec

    config = resolve_config(None, [f"model.image_size={image_size}", f"out={folder}"])
    folder.joinpath("checkpoints").mkdir(parents=True, exist_ok=True)
    labels = ["brown_planthopper", "green_leafhopper", "rice_leaffolder", "stem_borers", "weevils", "whorl_maggot"]
    torch.save(create_model(config.model, len(labels)).state_dict(), folder / "checkpoints" / "best.pt")
    save_config(config, folder / "config.yaml")
    info = {"labels": labels, "dataset_version": "benchmark", "code_revision": "benchmark",
            "preprocess": preprocess_spec(config.model).model_dump(mode="json")}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(info))
    return folder


def exported_model(work: Path, run_dir: Path | None = None, image_size: int = 224) -> Path:
    """``run_dir`` (by default the EfficientNet-Lite0 run ``make_run`` makes) exported to ONNX under ``work``."""
    from pestid.training.export import export_run

    return export_run(run_dir or make_run(work / "run", image_size), work / "model.onnx").onnx_path


def photos(count: int = 40) -> list[bytes]:
    shared = REPO.parent / "shared" / "datasets" / "ricepest6" / "images"
    if shared.is_dir():
        files = sorted(shared.rglob("*.jpg"))
        return [p.read_bytes() for p in random.Random(0).sample(files, min(count, len(files)))]
    import io

    from pestid.sample import SAMPLE_CLASSES, make_original

    out = []
    for k in range(count):
        buffer = io.BytesIO()
        make_original(SAMPLE_CLASSES[k % len(SAMPLE_CLASSES)], random.Random(k), 320).save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see its log beside the model")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout} s")


async def load(
    url: str, field: str, images: list[bytes], concurrency: int, seconds: float, limit: int
) -> dict[str, float]:
    """Closed-loop load: `concurrency` clients, each sending one photo after another, bounded in count and time."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = iter(range(limit))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for k in counter:
            if time.perf_counter() > deadline:
                return
            start = time.perf_counter()
            try:
                response = await http.post(url, files={field: ("p.jpg", images[k % len(images)], "image/jpeg")})
            except httpx.TransportError:  # a dropped connection counts as an error, not a latency
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            errors += response.status_code >= 400

    start = time.perf_counter()
    # TCP_NODELAY, as curl and browsers set it: otherwise Nagle + delayed ACK add ~40 ms to every POST
    transport = httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                         limits=httpx.Limits(max_connections=concurrency))  # fmt: skip
    async with httpx.AsyncClient(timeout=60, transport=transport) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"requests": len(ms), "errors": errors, "rps": len(ms) / wall, "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99))}  # fmt: skip


def measure(url: str, field: str, images: list[bytes], seconds: float) -> dict[int, dict[str, float]]:
    asyncio.run(load(url, field, images, 4, 3, 40))  # warm-up
    return {c: asyncio.run(load(url, field, images, c, seconds, 100 * c + 200)) for c in LEVELS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--model", type=Path, help="serve this exported model (its run is --run) instead of exporting")
    parser.add_argument("--skip", nargs="*", default=[], help="servers to leave out, by name")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pestid-serving-bench-"))
    run_dir = args.run or make_run(work / "run", args.image_size)
    model = args.model or exported_model(work, run_dir)
    images = photos()
    env = {**os.environ, "PESTID_DATA_DIR": str(work / "data"), "PESTID_LOG_JSON": "false", **LOAD_TEST_ENV}
    results = {}
    serve = [str(REPO / ".venv/bin/pestid"), "serve", "--model", str(model), "--workers", str(args.workers)]
    for name, cmd, field, path, extra in (
        ("pestid (onnxruntime)", serve, "photos", "/v1/identify", {}),
        ("pestid, no micro-batching", serve, "photos", "/v1/identify", {"PESTID_MAX_BATCH": "1"}),
        ("pestid, the FP32 model answering", serve, "photos", "/v1/identify", {"PESTID_SERVE_INT8": "false"}),
        ("pestid, its INT8 copy answering", serve, "photos", "/v1/identify", {"PESTID_INT8_TOLERANCE": "1"}),
        ("baseline (PyTorch eager)", [sys.executable, str(REPO / "benchmarks/torch_baseline_server.py"),
                                      str(run_dir)], "photo", "/predict", {}),
    ):  # fmt: skip
        if name in args.skip:
            continue
        port = _free_port()
        log = (work / f"{name.split()[0]}-{port}.log").open("wb")  # a pipe nobody reads would fill and stall it
        process = subprocess.Popen([*cmd, "--port", str(port)], env={**env, **extra}, cwd=REPO, stdout=log,
                                   stderr=log)  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", process)
            if path == "/v1/identify":  # which model answers: the INT8 copy only where its gate passed
                precision = httpx.get(f"http://127.0.0.1:{port}/readyz").json().get("precision", "?")
                name = f"{name} [{precision}]" if name == "pestid (onnxruntime)" else name
            results[name] = measure(f"http://127.0.0.1:{port}{path}", field, images, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
    ours, base = next(iter(results.values())), results["baseline (PyTorch eager)"]  # the first and the last
    from pestid.predictor import Predictor

    size = Predictor(model).contract.preprocess.size
    print(f"model {run_dir} at {size}px; pestid with {args.workers} workers; {len(images)} photos")
    print("| concurrency | server | p50 ms | p95 ms | p99 ms | req/s | errors | throughput vs baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in LEVELS:
        for name, r in results.items():
            row = r[c]
            print(f"| {c} | {name} | {row['p50']:.1f} | {row['p95']:.1f} | {row['p99']:.1f} | {row['rps']:.1f} | "
                  f"{row['errors']} | {row['rps'] / base[c]['rps']:.2f}× |")  # fmt: skip
    print(f"p50 latency at concurrency 1, pestid / baseline: {ours[1]['p50'] / base[1]['p50']:.2f}")


if __name__ == "__main__":
    main()
