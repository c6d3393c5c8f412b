"""``pestid evaluate``: an exported model on any manifest split.

Top-1, top-5, macro-F1, per-class precision/recall/F1, group-level accuracy
(one vote per group), calibration (ECE and a reliability diagram), coverage
and accuracy at the model's rejection threshold, and the out-of-distribution
AUROC of its confidence against generated non-rice photos. Writes JSON and
Markdown reports and PNG plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pestid.errors import DatasetError, ImageDecodeError
from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.predictor import Predictor
from pestid.sample import unrelated_images
from training import plots
from training.metrics import auroc, group_accuracy, reliability, selective, summary

BATCH = 32


def predict_rows(predictor: Predictor, paths: list[Path]) -> tuple[np.ndarray, list[int]]:
    """Calibrated probabilities for readable images; indices of the unreadable ones."""
    probs, bad = [], []
    for start in tqdm(range(0, len(paths), BATCH), desc="đánh giá / evaluating", leave=False):
        images = []
        for k, path in enumerate(paths[start : start + BATCH], start):
            try:
                images.append(read_image(path))
            except ImageDecodeError:
                bad.append(k)
        if images:
            probs.append(predictor.probabilities(images))
    return (np.concatenate(probs) if probs else np.zeros((0, len(predictor.labels)))), bad


def evaluate_model(
    model_path: str | Path, manifest_path: str | Path, *, split: str = "test", out_dir: str | Path | None = None,
    ood_images: int = 50,
) -> tuple[dict[str, Any], list[Path]]:  # fmt: skip
    predictor = Predictor(model_path)
    manifest = read_manifest(manifest_path)
    rows = manifest.split(split)
    if not rows:
        raise DatasetError(f"Tập '{split}' của {manifest_path} trống.", f"Split '{split}' of {manifest_path} is empty.")
    unknown = sorted({r.label for r in rows} - set(predictor.labels))
    if unknown:
        raise DatasetError(
            f"Mô hình không biết nhãn: {', '.join(unknown)}.",
            f"The model does not know the labels: {', '.join(unknown)}.",
        )
    probs, bad = predict_rows(predictor, [manifest.image_path(r) for r in rows])
    unreadable = set(bad)
    rows = [r for k, r in enumerate(rows) if k not in unreadable]
    labels = np.array([predictor.labels.index(r.label) for r in rows])
    report: dict[str, Any] = {"model": str(model_path), "manifest": str(manifest_path), "split": split,
                              "dataset_version": manifest.version, "unreadable_images": len(bad)}  # fmt: skip
    report.update(summary(probs, labels, predictor.labels))
    report.update(selective(probs, labels, predictor.contract.threshold))
    report["group_top1"] = group_accuracy(probs, labels, [r.group for r in rows])
    ood = predictor.probabilities(unrelated_images(ood_images, size=predictor.contract.preprocess.size)).max(axis=1)
    report["ood_auroc"] = auroc(probs.max(axis=1), ood)
    report["ood_rejected"] = float((ood < predictor.contract.threshold).mean())
    report["reliability"] = reliability(probs, labels)
    report["mistakes"] = worst_mistakes(probs, labels, [str(manifest.image_path(r)) for r in rows], predictor.labels)
    files = write_reports(report, predictor.labels, Path(out_dir) if out_dir else None)
    return report, files


def worst_mistakes(
    probs: np.ndarray, labels: np.ndarray, paths: list[str], names: list[str], k: int = 24
) -> list[dict[str, Any]]:
    """The most confident wrong answers: where a person should look first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:k]
    return [{"path": paths[i], "label": names[labels[i]], "predicted": names[predicted[i]],
             "confidence": float(probs[i, predicted[i]])} for i in wrong]  # fmt: skip


def write_reports(report: dict[str, Any], names: list[str], out_dir: Path | None) -> list[Path]:
    if out_dir is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path = out_dir / "report.md"
    md_path.write_text(markdown(report), encoding="utf-8")
    return [json_path, md_path,
            plots.confusion_matrix_png(report["confusion"], names, out_dir / "confusion_matrix.png"),
            plots.reliability_png(report["reliability"], report["ece"], out_dir / "reliability.png"),
            plots.per_class_png(report["per_class"], out_dir / "per_class_f1.png")]  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Đánh giá / evaluation: split `{report['split']}` ({report['images']} images)",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in ("macro_f1", "top1", "top5", "group_top1", "ece", "threshold", "coverage", "accuracy_at_threshold",
                "ood_auroc", "ood_rejected"):  # fmt: skip
        lines.append(f"| {key} | {report[key]:.4f} |")
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for name, m in report["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {int(m['support'])} |")
    return "\n".join(lines) + "\n"
