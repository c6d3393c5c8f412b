"""``pestid export --int8``: a static INT8 copy of an exported model, for the farmer's phone.

The copy is what the farmer page carries offline (onnxruntime-web), so it is judged
like any model, per original on the test split, against the FP32 model it came from.
It is refused (and not written) when per-original macro-F1 drops by more than
``tolerance`` (1 point by default).

How it is made: onnxruntime's static quantization in QDQ form, calibrated (min/max)
on photos of distinct training originals, per-channel INT8 weights and UINT8
activations. Weights use 7 bits (``reduce_range``): x86's u8×s8 instruction
(VPMADDUBSW) saturates with full-range weights, which here cost 2.6 points of
macro-F1 per original; with 7 bits the drop was 0.8 (merged test split, 726
originals). The same 7-bit weights also keep the server's and the browser's
integer kernels in agreement. The classifier (the last Gemm, one small matrix)
stays FP32.

The copy's numbers depend a little on the CPU that runs it: onnxruntime picks its integer
kernels by instruction set (AVX2, VNNI, AMX on x86; one fixed WebAssembly SIMD path in the
browser), and they round requantized activations differently. So the contract records the
kind of CPU its figures were measured on (``int8_measured_on``) and how far any probability
may move between two correct runtimes (``kernel_envelope``, ``int8_cross_runtime_tolerance``):
an answer whose confidence lies within that of its threshold may differ between machines.

For a linear probe the head is all that learnt, so the copy's head learns again
(``refit_head``) on the features its own INT8 backbone gives, with the probe's
recipe, and is calibrated again the same way: the quantization error, spread
thinly across the network, is then something the head has seen.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pestid.contract import ModelContract, int8_path
from pestid.errors import DatasetError
from pestid.hashing import sha256_bytes
from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.predictor import Predictor, integer_kernels
from pestid.preprocess import PreprocessSpec, preprocess
from pestid.training.config import ExportConfig, TrainConfig
from pestid.training.export import ExportError, calibration_fields, write_contract
from pestid.training.metrics import calibrate
from pestid.training.report import EvaluationReport

DEFAULTS = ExportConfig()  # the tolerance (1 point) and the calibration originals (128), as a config sets them
METHOD = "static int8 QDQ, per-channel 7-bit weights, uint8 activations, min/max on training originals, FP32 head"
REFITTED = "; head refitted on the INT8 backbone's features"


class Int8Refused(ExportError):
    """The INT8 copy lost more than its budget and was not written: the FP32 model still stands (and is served);
    only the farmer's offline copy is not refreshed."""

    code = "int8_refused"


@dataclass
class Int8Result:
    path: Path
    size_bytes: int
    fp32_size_bytes: int
    calibration_photos: int
    fp32: dict[str, Any]
    int8: dict[str, Any]
    envelope: float = 0.0  # kernel_envelope on the calibration photos: how far a probability may move across runtimes

    @property
    def drop(self) -> float:
        return float(self.fp32["macro_f1_per_original"] - self.int8["macro_f1_per_original"])

    def summary(self) -> dict[str, float]:
        """The figures that judge the copy: per original, with FP32's beside them, and the sizes."""
        keys = ("macro_f1_per_original", "top1_per_original", "precision_delivered", "in_scope_coverage")
        return {**{k: float(self.int8[k]) for k in keys if k in self.int8},
                **{f"fp32_{k}": float(self.fp32[k]) for k in keys if k in self.fp32},
                "macro_f1_drop": self.drop, "cross_runtime_tolerance": self.envelope, "size_mb": self.size_bytes / 1e6, "fp32_size_mb": self.fp32_size_bytes / 1e6}  # fmt: skip


def calibration_inputs(manifest_path: str | Path, spec: PreprocessSpec, count: int, seed: int = 0) -> list[np.ndarray]:
    """One photo from each of ``count`` training originals (val, then any split, where train has too few)."""
    manifest = read_manifest(manifest_path)
    firsts: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        for row in manifest.split(split):
            firsts.setdefault(row.group or row.path, row)
        if len(firsts) >= count:
            break
    if not firsts:
        raise DatasetError(
            f"{manifest_path} không có ảnh để hiệu chỉnh.", f"{manifest_path} has no photos to calibrate on."
        )
    rows = sorted(firsts.values(), key=lambda r: r.path)
    chosen = random.Random(seed).sample(rows, min(count, len(rows)))
    return [preprocess(read_image(manifest.image_path(r)), spec)[None] for r in chosen]


def kernel_envelope(int8: Path, inputs: list[np.ndarray]) -> float:
    """How far any probability of an INT8 copy may move between two correct runtimes of it (this CPU's integer
    kernels, another CPU's, the phone's WebAssembly ones): twice the largest gap, over prepared ``inputs``,
    between this CPU's integer kernels and the copy's arithmetic definition (the QDQ graph computed in float,
    ``Predictor(reference=True)``). Every runtime rounds requantized activations its own way, inside that
    definition's envelope, and two of them can sit on opposite sides of it. An estimate, in absolute probability:
    a photo unlike ``inputs`` can go past it."""
    fast, exact = Predictor(int8), Predictor(int8, reference=True)
    gaps = [float(np.abs(fast.probabilities_of(x) - exact.probabilities_of(x)).max()) for x in inputs]
    return 2.0 * max(gaps, default=0.0)


def head_node(model: Any) -> Any:
    """The classifier of an exported ONNX model: the Gemm that writes its logits."""
    for node in model.graph.node:
        if node.op_type == "Gemm" and model.graph.output[0].name in node.output:
            return node
    raise ExportError(
        "Không tìm thấy lớp phân loại (Gemm) của mô hình.", "The model's classifier (a Gemm) was not found."
    )


def first_blocks(model: Any, blocks: int) -> list[str]:
    """Every node of an exported EfficientNet's stem and first ``blocks`` blocks (by the exporter's node names,
    ``/conv_stem/...`` and ``/blocks/blocks.N/...``): their convolutions and their residual additions alike, so
    nothing inside them is rounded to 8 bits. None for ``blocks`` 0; a model without that many blocks is refused."""
    if blocks <= 0:
        return []
    early = tuple(f"{outer}{part}" for outer in ("", "/model")  # a model with a novelty output wraps the network
                  for part in ("/conv_stem/", "/bn1/", *(f"/blocks/blocks.{k}/" for k in range(blocks))))  # fmt: skip
    last = (f"/blocks/blocks.{blocks - 1}/", f"/model/blocks/blocks.{blocks - 1}/")
    if not any(n.name.startswith(last) for n in model.graph.node):
        raise ExportError(
            f"export.int8_fp32_blocks={blocks}: mô hình không có khối /blocks/blocks.{blocks - 1}/ (chỉ EfficientNet).",
            f"export.int8_fp32_blocks={blocks}: the model has no /blocks/blocks.{blocks - 1}/ block (EfficientNets only).",
        )
    return [n.name for n in model.graph.node if n.name.startswith(early)]


def novelty_nodes(model: Any) -> list[str]:
    """Every node of the open-set score (``training.novelty.NoveltyHead``, exported as ``/head/...``): a squared
    distance in the thousands, whose differences decide "not one I know", is not rounded to 8 bits."""
    return [n.name for n in model.graph.node if n.name.startswith("/head/")]


def write_int8(
    fp32_path: Path, out: Path, inputs: list[np.ndarray], contract: ModelContract, fp32_blocks: int = 0
) -> ModelContract:
    """The INT8 copy of ``fp32_path`` at ``out``, calibrated on prepared ``inputs``, with the FP32 model's
    ``contract`` carried over and marked as quantized (returned). The head, and the stem and first ``fp32_blocks``
    blocks (``first_blocks``), stay FP32."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        keep = [head_node(graph).name, *first_blocks(graph, fp32_blocks), *novelty_nodes(graph)]
        quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep)  # fmt: skip
    method = METHOD + (f"; stem and blocks[:{fp32_blocks}] FP32" if fp32_blocks > 0 else "")
    contract = contract.model_copy(update={"quantization": method})
    write_contract(out, contract)
    return contract


def refit_head(int8: Path, config: TrainConfig) -> dict[str, Any]:
    """Learn the INT8 copy's FP32 head again, with the linear probe's recipe (``config``), on the features of the
    copy's own INT8 backbone, and write it into the copy; return its calibration, fitted as the FP32 model's was."""
    import onnx
    from onnx import numpy_helper

    from pestid.training.callbacks import CallbackList
    from pestid.training.data import targets_of
    from pestid.training.features import FeatureCache
    from pestid.training.probe import fit_head

    model = onnx.load(str(int8))
    head = head_node(model)
    weights = {t.name: t for t in model.graph.initializer}
    weight, bias = (weights[name] for name in head.input[1:3])
    classes, features = numpy_helper.to_array(weight).shape  # the exporter's Gemm keeps torch's (out, in), transB=1
    backbone = onnx.ModelProto()
    backbone.CopyFrom(model)
    backbone.graph.node.remove(next(n for n in backbone.graph.node if n.name == head.name))
    del backbone.graph.output[:]
    backbone.graph.output.append(onnx.helper.make_tensor_value_info(head.input[0], onnx.TensorProto.FLOAT,
                                                                    ["batch", features]))  # fmt: skip
    manifest = read_manifest(config.data.manifest)
    linear = torch.nn.Linear(features, classes)
    with tempfile.TemporaryDirectory() as tmp:  # the copy's features are its own: not kept beside the FP32 ones
        onnx.save(backbone, str(Path(tmp) / "int8-backbone.onnx"))
        scratch = config.model_copy(update={"data": config.data.model_copy(update={"feature_cache": tmp})})
        cache = FeatureCache(scratch, manifest, backbone=Path(tmp) / "int8-backbone.onnx", key="int8")
        _, logits, rows = fit_head(linear, cache, manifest, scratch, CallbackList())
    weight.CopyFrom(numpy_helper.from_array(linear.weight.detach().numpy().astype(np.float32), weight.name))
    bias.CopyFrom(numpy_helper.from_array(linear.bias.detach().numpy().astype(np.float32), bias.name))
    onnx.save(model, str(int8))
    labels = np.array(targets_of(manifest, rows))
    return calibrate(logits, labels, [r.group for r in rows], list(manifest.labels), config.eval.target_precision,
                     per_class=config.eval.per_class_threshold)  # fmt: skip


def refit_recipe(config: TrainConfig) -> TrainConfig | None:
    """The recipe ``quantize_int8`` refits a copy's head with: a linear probe's own, unless turned off."""
    return config if config.method == "linear_probe" and config.export.int8_refit else None


def quantize_int8(
    fp32_path: str | Path, manifest_path: str | Path, *, out: str | Path | None = None, split: str = "test",
    fp32_report: EvaluationReport | None = None, tolerance: float = DEFAULTS.int8_tolerance,
    photos: int = DEFAULTS.calibration_photos, refit: TrainConfig | None = None,
    fp32_blocks: int = DEFAULTS.int8_fp32_blocks,
) -> Int8Result:  # fmt: skip
    """Quantize, evaluate both per original on ``split``, and keep the copy only if it passes. With ``refit`` (a
    linear probe's config), the copy's head is learnt again on its own features (``refit_head``)."""
    from pestid.training.evaluate import evaluate_model

    fp32_path = Path(fp32_path)
    out = Path(out) if out else int8_path(fp32_path)
    contract = Predictor(fp32_path).contract
    inputs = calibration_inputs(manifest_path, contract.preprocess, photos)
    contract = write_int8(fp32_path, out, inputs, contract, fp32_blocks)
    try:
        if refit is not None:
            calibration = refit_head(out, refit)
            contract = contract.model_copy(update={**calibration_fields(calibration),
                                                   "quantization": contract.quantization + REFITTED})  # fmt: skip
            write_contract(out, contract)
        int8_report, _ = evaluate_model(out, manifest_path, split=split)
        fp32_report = fp32_report or evaluate_model(fp32_path, manifest_path, split=split)[0]
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    result = Int8Result(out, out.stat().st_size, fp32_path.stat().st_size, len(inputs), fp32_report.figures(),
                        int8_report.figures(), kernel_envelope(out, inputs))  # fmt: skip
    if result.drop > tolerance:
        out.unlink()
        raise Int8Refused(
            f"Bản INT8 mất {result.drop * 100:.1f} điểm macro-F1 theo ảnh gốc so với FP32 "
            f"(> {tolerance * 100:.1f}); không ghi {out.name}.",
            f"The INT8 copy loses {result.drop * 100:.1f} points of per-original macro-F1 against FP32 "
            f"(> {tolerance * 100:.1f}); {out.name} was not written.",
        )
    figures = {**result.int8, "fp32_macro_f1_per_original": result.fp32["macro_f1_per_original"],
               "fp32_top1_per_original": result.fp32["top1_per_original"], "int8_measured_on": integer_kernels(),
               "int8_cross_runtime_tolerance": result.envelope,
               "fp32_sha256": sha256_bytes(fp32_path.read_bytes())}  # the model it is a copy of  # fmt: skip
    write_contract(out, contract.model_copy(update={"metrics": figures}))
    return result
