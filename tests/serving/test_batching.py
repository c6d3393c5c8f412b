"""Micro-batching and the INT8 copy: what answers a request, and with whom it shares a model run."""

from __future__ import annotations

import asyncio
import platform
import threading
import time

import numpy as np
import pytest

from pestid.contract import int8_path
from pestid.predictor import Assessment, Predictor
from pestid.sample import SAMPLE_CLASSES
from pestid.serving.batching import MicroBatcher
from pestid.serving.model import load_model
from tests.onnx_models import linear_model


class Recorder:
    """Stands in for a Predictor: answers each input with its own first value, and records every run."""

    def __init__(self, fail: bool = False) -> None:
        self.runs: list[int] = []
        self.fail = fail
        self.started = threading.Event()

    def assess_of(self, batch: np.ndarray) -> Assessment:
        self.started.set()
        time.sleep(0.05)  # a model run: requests arriving meanwhile must join the next batch
        self.runs.append(len(batch))
        if self.fail:
            raise RuntimeError("model failed")
        return Assessment(batch[:, :1] * 10, batch[:, 0] * 100)


def inputs(*values: float) -> np.ndarray:
    return np.array([[v, 0.0] for v in values])


def test_concurrent_requests_share_runs_and_each_gets_its_own_rows():
    model, batcher = Recorder(), MicroBatcher(max_wait_s=0.002, max_batch=32)

    async def main() -> list[Assessment]:
        return await asyncio.gather(*(batcher.assess(model, inputs(k, k + 0.5)) for k in range(12)))  # type: ignore[arg-type]

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    for k, answer in enumerate(answers):
        np.testing.assert_allclose(answer.probabilities[:, 0], [10 * k, 10 * k + 5])
        np.testing.assert_allclose(answer.novelty, [100 * k, 100 * k + 50])  # each output sliced to its own rows
    assert sum(model.runs) == 24 and len(model.runs) < 12  # 24 photos, fewer runs than requests
    assert max(model.runs) <= 32


def test_max_batch_bounds_a_run():
    model, batcher = Recorder(), MicroBatcher(max_wait_s=0.002, max_batch=4)

    async def main() -> None:
        await asyncio.gather(*(batcher.assess(model, inputs(k, k)) for k in range(10)))  # type: ignore[arg-type]

    try:
        asyncio.run(main())
    finally:
        batcher.close()
    assert sum(model.runs) == 20 and max(model.runs) <= 4


def test_a_failed_run_fails_every_request_in_it_and_the_next_run_works():
    broken, batcher = Recorder(fail=True), MicroBatcher(max_wait_s=0.002, max_batch=32)

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.assess(broken, inputs(k)) for k in range(3)),  # type: ignore[arg-type]
                                    return_exceptions=True)  # fmt: skip

    try:
        outcomes = asyncio.run(main())
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        healthy = Recorder()
        answer = asyncio.run(batcher.assess(healthy, inputs(2.0)))  # type: ignore[arg-type]
        np.testing.assert_allclose(answer.probabilities[:, 0], [20.0])
    finally:
        batcher.close()


def test_two_models_are_never_mixed_in_one_run():
    old, new, batcher = Recorder(), Recorder(), MicroBatcher(max_wait_s=0.002, max_batch=32)

    async def main() -> list[Assessment]:
        calls = [batcher.assess(old if k % 2 else new, inputs(k)) for k in range(8)]  # type: ignore[arg-type]
        return await asyncio.gather(*calls)

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert sum(old.runs) == 4 and sum(new.runs) == 4
    assert [float(a.probabilities[0, 0]) for a in answers] == [10.0 * k for k in range(8)]


def test_a_request_alone_runs_at_once_and_one_expected_is_waited_for_only_briefly():
    model, batcher = Recorder(), MicroBatcher(max_wait_s=30.0, max_batch=32)
    try:
        started = time.monotonic()
        asyncio.run(batcher.assess(model, inputs(1.0)))  # type: ignore[arg-type]
        assert time.monotonic() - started < 10  # nothing else was decoding: no 30 s wait
        with batcher.expecting():  # another request is decoding: the run waits for it ...
            threading.Timer(0.2, lambda: batcher.waiting.put((model, inputs(3.0), _done()))).start()  # type: ignore[arg-type]
            asyncio.run(batcher.assess(model, inputs(2.0)))  # type: ignore[arg-type]
        assert model.runs[-1] == 2  # ... and it joined the same run
    finally:
        batcher.close()


def _done():
    from concurrent.futures import Future

    return Future()


@pytest.fixture
def model_with_copy(tmp_path):
    """A model and an 'INT8 copy' beside it whose contract records how much per-original macro-F1 it lost."""

    def make(drop: float | None, *, labels: list[str] | None = None):
        model = linear_model(tmp_path / "model.onnx")
        metrics = {} if drop is None else {"fp32_macro_f1_per_original": 0.8, "macro_f1_per_original": 0.8 - drop}
        copy_labels = labels or Predictor(model).labels
        linear_model(int8_path(model), copy_labels, weight=np.ones((3, len(copy_labels))), quantization="int8 test",
                     metrics=metrics)  # fmt: skip
        return model

    return make


@pytest.mark.parametrize(("drop", "served"), [(0.004, "int8"), (0.0, "int8"), (0.006, "fp32"), (None, "fp32")])
def test_the_int8_copy_answers_only_when_its_contract_passed_the_gate(model_with_copy, drop, served):
    model = model_with_copy(drop)
    loaded = load_model(str(model), tracking_uri="sqlite:///unused.db", threads=1, int8_tolerance=0.005)
    assert loaded.precision == served
    assert loaded.predictor.path.name == ("model.int8.onnx" if served == "int8" else "model.onnx")
    assert loaded.path == model  # the version and the offline copy are still the model's
    without = load_model(str(model), tracking_uri="sqlite:///unused.db", threads=1)
    assert without.precision == "fp32" and without.version == loaded.version


def test_a_copy_with_other_labels_never_answers(model_with_copy):
    model = model_with_copy(0.0, labels=list(reversed(SAMPLE_CLASSES)))
    assert (
        load_model(str(model), tracking_uri="sqlite:///unused.db", threads=1, int8_tolerance=0.005).precision == "fp32"
    )


def test_the_service_answers_concurrent_photos_from_the_copy_that_passed(model_with_copy, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from pestid.serving.app import create_app
    from tests.conftest import jpeg_bytes, photo
    from tests.serving.conftest import make_settings

    model = model_with_copy(0.002)
    copy = Predictor(int8_path(model))
    settings = make_settings(model, tmp_path / "data", public_operations=True, batch_wait_ms=5.0)
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz").json()
        assert ready["precision"] == "int8" and ready["int8_kernels"].startswith(platform.machine())  # says its CPU
        photos = [jpeg_bytes(photo(seed=k)) for k in range(6)]
        with ThreadPoolExecutor(6) as pool:
            answers = list(
                pool.map(
                    lambda data: client.post("/v1/identify", files=[("photos", ("p.jpg", data, "image/jpeg"))]), photos
                )
            )
        metrics = client.get("/metrics").text
    from pestid.imaging import decode_image

    for data, answer in zip(photos, answers, strict=True):
        assert answer.status_code == 201, answer.text
        expected = copy.probabilities([decode_image(data)])[0]
        body = answer.json()
        top = body["species"] or body["alternatives"][0]
        assert abs(top["probability"] - float(expected.max())) < 1e-6  # the copy's answer, photo by photo
    assert "pestid_inference_batch_photos_count" in metrics


def test_a_request_whose_client_left_does_not_stop_the_inference_thread():
    model, batcher = Recorder(), MicroBatcher(max_wait_s=0.002, max_batch=32)

    async def leave_early() -> None:
        task = asyncio.ensure_future(batcher.assess(model, inputs(1.0)))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        task.cancel()  # the client went away while the photo waited for its run
        await asyncio.sleep(0.2)

    try:
        blocker = asyncio.run(_run_with_blocker(batcher, model, leave_early))
        assert blocker is not None
        answer = asyncio.run(asyncio.wait_for(batcher.assess(model, inputs(4.0)), 10))  # type: ignore[arg-type]
        np.testing.assert_allclose(answer.probabilities[:, 0], [40.0])  # the thread still serves
    finally:
        batcher.close()


async def _run_with_blocker(batcher, model, leave_early):
    """Keep the inference thread busy with one request while another is cancelled in the queue."""
    busy = asyncio.ensure_future(batcher.assess(model, inputs(9.0)))
    await asyncio.get_running_loop().run_in_executor(None, model.started.wait)
    await leave_early()
    return await busy


def test_a_copy_left_beside_a_model_exported_again_never_answers(model_with_copy):
    import hashlib

    model = model_with_copy(0.0)
    copy = int8_path(model)
    for recorded, served in ((hashlib.sha256(model.read_bytes()).hexdigest(), "int8"), ("0" * 64, "fp32")):
        predictor = Predictor(copy)
        metrics = {**predictor.contract.metrics, "fp32_sha256": recorded}
        labels = predictor.labels
        linear_model(copy, labels, weight=np.ones((3, len(labels))), quantization="int8 test", metrics=metrics)
        loaded = load_model(str(model), tracking_uri="sqlite:///unused.db", threads=1, int8_tolerance=0.005)
        assert loaded.precision == served  # the copy of this very file answers; a stale one (other digest) never
    from pestid.serving.model import load_offline

    assert load_offline(None, loaded) is None  # nor is it offered to the phones
    assert load_offline(str(copy), loaded) is None  # not even named by an operator: it is another model's copy
