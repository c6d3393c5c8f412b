"""Tiny ONNX models built with onnx.helper, so serving is tested without torch.

``linear_model`` pools the image to its mean colour and applies a linear layer:
different photos get different, reproducible answers, and the answer to a
known colour can be worked out by hand. It carries pestid's model contract like
an exported model does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from pestid.contract import METADATA_KEY, ModelContract
from pestid.preprocess import PreprocessSpec
from pestid.sample import SAMPLE_CLASSES


def linear_model(
    path: Path, labels: Sequence[str] = SAMPLE_CLASSES, *, weight: np.ndarray | None = None,
    bias: Sequence[float] | None = None, size: int = 32, **contract: object,
) -> Path:  # fmt: skip
    """logits = mean colour (3,) @ ``weight`` (3, C) + ``bias`` (C,); a seeded random weight by default."""
    classes = len(labels)
    w = np.random.default_rng(0).normal(0, 4, (3, classes)) if weight is None else np.asarray(weight, dtype=float)
    b = np.zeros(classes) if bias is None else np.asarray(bias, dtype=float)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
        ],
        "pestid-linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [
            helper.make_tensor("weight", TensorProto.FLOAT, [3, classes], w.ravel().tolist()),
            helper.make_tensor("bias", TensorProto.FLOAT, [classes], b.tolist()),
        ],
    )
    # IR 10: what onnxruntime-web (the farmer page's offline runtime) reads, as exported models are
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    settings: dict[str, object] = {"model_name": "pestid", "architecture": "linear-colour", "labels": list(labels),
                                   "preprocess": PreprocessSpec(size=size, crop_pct=1.0), "threshold": 0.6,
                                   "dataset_version": "ds-test", **contract}  # fmt: skip
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, ModelContract(**settings).to_json()  # type: ignore[arg-type]
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
