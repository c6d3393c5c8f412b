"""``pestid export``: a run's best checkpoint to one ONNX file that carries its contract.

The file has a dynamic batch axis, passes ``onnx.checker``, and holds the
labels, preprocessing, temperature, rejection threshold, dataset version, code
revision and metrics as JSON metadata. A parity check on real images compares
PyTorch and onnxruntime probabilities and fails the export above 1e-4. A model
card (Markdown) is written beside it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from PIL import Image

from pestid.catalogue import load_catalogue
from pestid.contract import METADATA_KEY, ModelContract
from pestid.errors import PestidError
from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.predictor import Predictor, softmax
from pestid.preprocess import preprocess, tta_views
from pestid.sample import make_original
from pestid.training.config import resolve_config
from pestid.training.models import create_model

PARITY_TOLERANCE = 1e-4


class ExportError(PestidError):
    code = "export"


@dataclass
class ExportResult:
    onnx_path: Path
    card_path: Path
    contract: ModelContract
    parity_max_abs_diff: float


def _load_run(run_dir: Path) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    for name in ("config.yaml", "run.json", "checkpoints/best.pt"):
        if not (run_dir / name).is_file():
            raise ExportError(
                f"Thư mục {run_dir} không phải lần huấn luyện hoàn chỉnh (thiếu {name}).",
                f"{run_dir} is not a finished training run ({name} is missing): run 'pestid train' first.",
            )
    config = resolve_config(run_dir / "config.yaml")
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    calibration_path = run_dir / "calibration.json"
    calibration = json.loads(calibration_path.read_text(encoding="utf-8")) if calibration_path.is_file() else {}
    return config, info, calibration


def _parity_images(config: Any, count: int = 16) -> list[Image.Image]:
    """Real images from the run's manifest (val, then test); generated ones only if none can be read."""
    images: list[Image.Image] = []
    try:
        manifest = read_manifest(config.data.manifest)
        for row in [*manifest.split("val"), *manifest.split("test")][:count]:
            images.append(read_image(manifest.image_path(row)))
    except PestidError:
        pass
    if not images:
        import random

        images = [make_original("brown_planthopper", random.Random(k)) for k in range(4)]
    return images


def calibration_fields(calibration: dict[str, Any]) -> dict[str, Any]:
    """A model contract's fields from a run's calibration (``metrics.calibrate``)."""
    return {"temperature": calibration.get("temperature", 1.0), "threshold": calibration.get("threshold", 0.0),
            "class_thresholds": calibration.get("class_thresholds", {}),
            "group_thresholds": calibration.get("group_thresholds", {}),
            "novelty_threshold": calibration.get("novelty_threshold"),
            "target_precision": calibration.get("target_precision"),
            "expected_precision": calibration.get("accuracy_at_threshold")}  # fmt: skip


def export_run(
    run_dir: str | Path, out: str | Path, *, metrics: dict[str, Any] | None = None,
    run: tuple[Any, dict[str, Any], dict[str, Any]] | None = None, card: bool = True,
) -> ExportResult:  # fmt: skip
    """The run's best checkpoint as ONNX with its contract, checked against PyTorch.

    ``run`` is (config, run info, calibration) when the caller holds them (``train`` does);
    otherwise they are read from ``run_dir``. ``card=False`` leaves the model card to the
    caller, who writes it once the evaluation's figures are in the contract.
    """
    run_dir, out = Path(run_dir), Path(out)
    config, info, calibration = run if run is not None else _load_run(run_dir)
    model = create_model(config.model.model_copy(update={"pretrained": False}), len(info["labels"]))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True))
    model.eval()
    contract = ModelContract(
        model_name=config.mlflow.registered_model, architecture=config.model.name, labels=info["labels"],
        preprocess=info["preprocess"], tta=config.eval.tta, **calibration_fields(calibration),
        dataset_version=info["dataset_version"], code_revision=info["code_revision"],
        metrics=metrics or {}, created=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    size = contract.preprocess.size
    graph, outputs = with_novelty(model, run_dir, contract)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.zeros(1, 3, size, size),), str(out), input_names=["input"],
                          output_names=outputs, dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                          opset_version=17, dynamo=False)  # fmt: skip
    write_contract(out, contract)
    diff = parity(graph, out, _parity_images(config))
    if diff > PARITY_TOLERANCE:
        out.unlink()
        raise ExportError(
            f"Kết quả ONNX lệch PyTorch {diff:.2e} (> {PARITY_TOLERANCE}); đã hủy xuất.",
            f"ONNX probabilities differ from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE}); export refused.",
        )
    card_path = write_model_card(out, contract, diff) if card else out.with_suffix(".md")
    return ExportResult(out, card_path, contract, diff)


def with_novelty(model: torch.nn.Module, run_dir: Path, contract: ModelContract) -> tuple[torch.nn.Module, list[str]]:
    """What to export: the model, and with the run's open-set score (``novelty.npz`` and a threshold in the
    contract) the model with its second output, ``novelty``."""
    path = run_dir / "novelty.npz"
    if contract.novelty_threshold is None or not path.is_file():
        contract.novelty_threshold = None
        return model, ["logits"]
    from pestid.training.novelty import Mahalanobis, WithNovelty

    score, _ = Mahalanobis.load(path)
    return WithNovelty(model, score.module()).eval(), ["logits", "novelty"]


def write_contract(path: Path, contract: ModelContract) -> None:
    """Store the contract as JSON metadata and check the model."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, contract.to_json()
    model.doc_string = (
        f"pestid {contract.model_name}: {len(contract.labels)} classes, dataset {contract.dataset_version}"
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def parity(model: torch.nn.Module, onnx_path: Path, images: list[Image.Image]) -> float:
    """Max absolute difference of calibrated probabilities, PyTorch vs onnxruntime, same inputs; for a model with
    a novelty output, also its largest difference relative to the score (at least 1)."""
    predictor = Predictor(onnx_path)
    batch = np.stack([preprocess(image, predictor.contract.preprocess) for image in images])
    with torch.no_grad():
        views = tta_views(batch, predictor.contract.tta)
        outputs = [model(torch.from_numpy(v)) for v in views]
    pairs = [o if isinstance(o, tuple) else (o,) for o in outputs]
    torch_logits = np.mean([p[0].numpy() for p in pairs], axis=0)
    assessment = predictor.assess_of(batch)
    diff = float(np.abs(softmax(torch_logits, predictor.contract.temperature) - assessment.probabilities).max())
    if len(pairs[0]) > 1 and assessment.novelty is not None:
        novelty = np.mean([p[1].numpy() for p in pairs], axis=0)
        diff = max(diff, float((np.abs(novelty - assessment.novelty) / np.maximum(np.abs(novelty), 1.0)).max()))
    return diff


def _thresholds(contract: ModelContract) -> str:
    if not contract.class_thresholds:
        return f"confidence {contract.threshold:.3f}"
    per = ", ".join(f"{label} {t:.3f}" if t <= 1 else f"{label} never named: answered as its group"
                    for label, t in contract.class_thresholds.items())  # fmt: skip
    groups = ", ".join(f"{g} {t:.3f}" for g, t in contract.group_thresholds.items() if t <= 1)
    said = f"each class's own confidence ({per}; {contract.threshold:.3f} for any other)"
    return said + (f", else a group's summed probability ({groups})" if groups else "")


def write_model_card(onnx_path: Path, contract: ModelContract, parity_diff: float) -> Path:
    catalogue = load_catalogue()
    rows = "\n".join(
        f"| `{label}` | {catalogue.get(label).name_vi} | {catalogue.get(label).name_en} | "
        f"{contract.metrics.get('f1_per_class', {}).get(label, float('nan')):.3f} |"
        for label in contract.labels
    )
    headline = {k: v for k, v in contract.metrics.items() if not isinstance(v, dict)}
    card = f"""# Model card: {contract.model_name} ({contract.architecture})

- File: `{onnx_path.name}`; input `input` (N, 3, {contract.preprocess.size}, {contract.preprocess.size}) float32, output `logits`.
- Dataset version: `{contract.dataset_version}`; code revision: `{contract.code_revision}`; created {contract.created}.
- Preprocessing: shorter side to {contract.preprocess.size}/{contract.preprocess.crop_pct}, centre crop, mean {contract.preprocess.mean}, std {contract.preprocess.std}.
- Test-time views averaged: {", ".join(contract.tta) or "none"}.
- Calibration: temperature {contract.temperature:.3f}; "identified" at or above {_thresholds(contract)}, chosen on unseen originals for precision {contract.target_precision}.
- Parity, PyTorch vs onnxruntime: max |Δp| = {parity_diff:.2e}.

## Metrics

```json
{json.dumps(headline, indent=2)}
```

## Classes

| id | Tiếng Việt | English | F1 per original |
| --- | --- | --- | --- |
{rows}

## Intended use and limits

Helps farmers and plant-protection officers name rice pests and diseases from
photos. Low-confidence photos are answered "not recognised" and go to an
officer. Judge the model on photos unlike its training photos: field photos
from new places lower accuracy. It knows only the classes above.
"""
    path = onnx_path.with_suffix(".md")
    path.write_text(card, encoding="utf-8")
    return path
