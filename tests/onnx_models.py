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
    bias: Sequence[float] | None = None, size: int = 32, novelty_centre: Sequence[float] | None = None,
    **contract: object,
) -> Path:  # fmt: skip
    """logits = mean colour (3,) @ ``weight`` (3, C) + ``bias`` (C,); a seeded random weight by default. With
    ``novelty_centre``, a second output as exported models with an open-set score have: novelty = the squared
    distance of the mean colour (normalised) from that centre (pass ``novelty_threshold=`` for the contract)."""
    classes = len(labels)
    w = np.random.default_rng(0).normal(0, 4, (3, classes)) if weight is None else np.asarray(weight, dtype=float)
    b = np.zeros(classes) if bias is None else np.asarray(bias, dtype=float)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])]
    initializers = [
        helper.make_tensor("weight", TensorProto.FLOAT, [3, classes], w.ravel().tolist()),
        helper.make_tensor("bias", TensorProto.FLOAT, [classes], b.tolist()),
    ]
    if novelty_centre is not None:
        nodes += [
            helper.make_node("Sub", ["flat", "centre"], ["offset"]),
            helper.make_node("Mul", ["offset", "offset"], ["squared"]),
            helper.make_node("ReduceSum", ["squared", "axes"], ["novelty"], keepdims=0),
        ]
        outputs.append(helper.make_tensor_value_info("novelty", TensorProto.FLOAT, ["batch"]))
        initializers += [helper.make_tensor("centre", TensorProto.FLOAT, [3], list(novelty_centre)),
                         helper.make_tensor("axes", TensorProto.INT64, [1], [1])]  # fmt: skip
    graph = helper.make_graph(
        nodes, "pestid-linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        outputs, initializers,
    )  # fmt: skip
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
