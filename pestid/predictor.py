"""The ONNX predictor: needs nothing but the model file (and the catalogue for names)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from pestid.contract import METADATA_KEY, ModelContract
from pestid.errors import PestidError
from pestid.preprocess import preprocess, tta_views


class ModelError(PestidError):
    code = "model"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Predictor:
    """Loads an ONNX model and its contract; turns decoded images into calibrated probabilities."""

    def __init__(self, path: str | Path, *, threads: int | None = None, reference: bool = False) -> None:
        """``reference``: run the graph as written, no fused kernels. For an INT8 (QDQ) copy that is its
        arithmetic definition, computed in float: slow, and the yardstick that ``kernel_envelope`` measures the
        integer kernels against."""
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"Không tìm thấy mô hình {path}.", f"Model file {path} not found.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("PESTID_ORT_THREADS", "0"))
        options.inter_op_num_threads = 1
        if reference:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds
            raise ModelError(
                f"Tệp {path} không phải mô hình ONNX hợp lệ.", f"{path} is not a valid ONNX model: {exc}"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(
                f"Mô hình {path} thiếu hợp đồng pestid.",
                f"{path} carries no pestid contract: export it with 'pestid export'.",
            )
        self.contract = ModelContract.from_json(meta[METADATA_KEY])
        self.path = path
        self.input_name = self.session.get_inputs()[0].name

    @property
    def labels(self) -> list[str]:
        return self.contract.labels

    def prepare(self, image: Image.Image) -> np.ndarray:
        """The model's (3, size, size) input for one decoded image: the full image can be dropped after this."""
        return preprocess(image, self.contract.preprocess)

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Logits averaged over the contract's test-time views (just the image when it declares none)."""
        return self.logits_of(np.stack([self.prepare(image) for image in images]))

    def logits_of(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a (N, 3, size, size) batch of prepared inputs: every view in one run, then averaged."""
        return self.outputs_of(batch)[0]

    def outputs_of(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits and, where the model has that output, novelty (``contract.novelty_threshold``) for a batch of
        prepared inputs: every view in one run, each output averaged over the views."""
        views = tta_views(batch, self.contract.tta)
        stacked = views[0] if len(views) == 1 else np.concatenate(views)
        outputs = self.session.run(None, {self.input_name: stacked})
        logits = np.asarray(outputs[0]).reshape(len(views), len(batch), -1).mean(axis=0)
        if len(outputs) < 2 or self.contract.novelty_threshold is None:
            return logits, None
        return logits, np.asarray(outputs[1], dtype=np.float64).reshape(len(views), len(batch)).mean(axis=0)

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Calibrated (temperature-scaled) class probabilities, one row per image."""
        return softmax(self.logits(images), self.contract.temperature)

    def probabilities_of(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities for a batch of prepared inputs."""
        return softmax(self.logits_of(batch), self.contract.temperature)

    def assess(self, images: Sequence[Image.Image]) -> Assessment:
        """Calibrated probabilities and novelty, one row per image."""
        return self.assess_of(np.stack([self.prepare(image) for image in images]))

    def assess_of(self, batch: np.ndarray) -> Assessment:
        """Calibrated probabilities and novelty for a batch of prepared inputs, from one run of the model."""
        logits, novelty = self.outputs_of(batch)
        return Assessment(softmax(logits, self.contract.temperature), novelty)


@dataclass(frozen=True)
class Assessment:
    """What the model makes of photos: calibrated class probabilities (N, classes) and novelty (N,), or None for a
    model without a novelty output."""

    probabilities: np.ndarray
    novelty: np.ndarray | None = None

    def __getitem__(self, rows: slice) -> Assessment:
        return Assessment(self.probabilities[rows], None if self.novelty is None else self.novelty[rows])


@lru_cache(maxsize=1)
def integer_kernels() -> str:
    """The integer instructions onnxruntime's INT8 kernels pick on this CPU, as an INT8 figure's "measured on":
    the same INT8 model gives slightly different numbers on x86 with AVX2 alone, with VNNI and with AMX. Read
    once (``/readyz`` reports it)."""
    import platform

    machine = platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return machine
    lines = [line for line in text.splitlines() if line.startswith(("flags", "Features"))]
    flags = set(lines[0].split(":", 1)[1].split()) if lines else set()
    for flag, name in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"),
                       ("avx2", "AVX2"), ("i8mm", "I8MM"), ("asimddp", "dot product"), ("sse4_1", "SSE4.1")):  # fmt: skip
        if flag in flags:
            return f"{machine} {name}"
    return machine
