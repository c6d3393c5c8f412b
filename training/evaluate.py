"""``pestid evaluate``: an exported model on any manifest split.

The headline figures are per original photo: each group (an original and its
augmented copies) counts once, and 95 % intervals come from a bootstrap over
groups. They are macro-F1, top-1 and per-class precision/recall/F1, then the
same per source, the precision the model promised against the precision its
"identified" answers delivered (overall and per class), coverage of in-scope
photos, how often an out-of-scope photo or a disease photo was "identified" as
something else, and calibration. Per-file figures (top-1, top-5, macro-F1,
per class), the majority vote per group and the out-of-distribution AUROC on
generated non-rice photos stay in the report. Writes JSON, Markdown and PNG plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pestid.catalogue import DISEASE_CATEGORIES, load_catalogue
from pestid.errors import DatasetError, ImageDecodeError
from pestid.imaging import read_image
from pestid.manifest import Row, read_manifest
from pestid.predictor import Assessment, Predictor
from pestid.sample import unrelated_images
from pestid.training import plots
from pestid.training.metrics import (
    Thresholds,
    answer_levels,
    auroc,
    bootstrap_interval,
    confusion,
    group_accuracy,
    group_weights,
    identified,
    level_figures,
    macro_f1,
    per_class,
    precision_promise,
    reliability,
    selective,
    summary,
)
from pestid.training.report import EvaluationReport

BATCH = 32


def predict_rows(predictor: Predictor, paths: list[Path]) -> tuple[Assessment, list[int]]:
    """Calibrated probabilities (and novelty, for a model with it) for readable images; indices of the unreadable
    ones."""
    probs: list[np.ndarray] = []
    novelty: list[np.ndarray] = []
    bad: list[int] = []
    for start in tqdm(range(0, len(paths), BATCH), desc="đánh giá / evaluating", leave=False):
        images = []
        for k, path in enumerate(paths[start : start + BATCH], start):
            try:
                images.append(read_image(path))
            except ImageDecodeError:
                bad.append(k)
        if images:
            assessment = predictor.assess(images)
            probs.append(assessment.probabilities)
            if assessment.novelty is not None:
                novelty.append(assessment.novelty)
    return Assessment(np.concatenate(probs) if probs else np.zeros((0, len(predictor.labels))),
                      np.concatenate(novelty) if novelty else None), bad  # fmt: skip


def evaluate_model(
    model_path: str | Path, manifest_path: str | Path, *, split: str = "test", out_dir: str | Path | None = None,
    ood_images: int = 50, known_only: bool = False,
) -> tuple[EvaluationReport, list[Path]]:  # fmt: skip
    """``known_only``: leave out the rows whose label the model does not know (a class added since it was trained,
    when a champion is judged beside a challenger that knows more), instead of refusing them."""
    predictor = Predictor(model_path)
    manifest = read_manifest(manifest_path)
    rows = manifest.split(split)
    if known_only:
        rows = [r for r in rows if r.label in predictor.labels]
    if not rows:
        raise DatasetError(f"Tập '{split}' của {manifest_path} trống.", f"Split '{split}' of {manifest_path} is empty.")
    unknown = sorted({r.label for r in rows} - set(predictor.labels))
    if unknown:
        raise DatasetError(
            f"Mô hình không biết nhãn: {', '.join(unknown)}.",
            f"The model does not know the labels: {', '.join(unknown)}.",
        )
    assessment, bad = predict_rows(predictor, [manifest.image_path(r) for r in rows])
    probs = assessment.probabilities
    unreadable = set(bad)
    rows = [r for k, r in enumerate(rows) if k not in unreadable]
    labels = np.array([predictor.labels.index(r.label) for r in rows])
    found: dict[str, Any] = {"model": str(model_path), "manifest": str(manifest_path), "split": split,
                              "dataset_version": manifest.version, "unreadable_images": len(bad)}  # fmt: skip
    found.update(summary(probs, labels, predictor.labels))
    found.update(per_original(probs, labels, rows, predictor, assessment.novelty))
    found["group_top1"] = group_accuracy(probs, labels, [r.group for r in rows])
    unrelated = predictor.assess(unrelated_images(ood_images, size=predictor.contract.preprocess.size))
    ood = unrelated.probabilities.max(axis=1)
    found["ood_auroc"] = auroc(probs.max(axis=1), ood)
    contract = predictor.contract  # rejected: no answer at any level, by the rule the service answers with
    levels, _ = answer_levels(unrelated.probabilities, unrelated.probabilities.argmax(axis=1), predictor.labels,
                              threshold=contract.threshold, class_thresholds=contract.class_thresholds,
                              group_thresholds=contract.group_thresholds, novelty=unrelated.novelty,
                              novelty_threshold=contract.novelty_threshold)  # fmt: skip
    found["ood_rejected"] = float((levels == 0).mean())
    found["reliability"] = reliability(probs, labels)
    # What a paired comparison of two models on this split needs (training.gate.paired_difference).
    found["rows"] = {"group": [r.group or r.path for r in rows], "label": labels.tolist(),
                      "predicted": probs.argmax(axis=1).tolist()}  # fmt: skip
    found["mistakes"] = worst_mistakes(probs, labels, [str(manifest.image_path(r)) for r in rows], predictor.labels)
    report = EvaluationReport.model_validate(found)
    files = write_reports(report, predictor.labels, Path(out_dir) if out_dir else None)
    return report, files


def _group_figures(probs: np.ndarray, labels: np.ndarray, groups: list[str], num_classes: int) -> dict[str, Any]:
    """Macro-F1 and top-1 with each original counted once, each with its 95 % bootstrap interval over groups."""
    predicted = probs.argmax(axis=1)
    if len(labels) == 0:
        return {"groups": 0}

    def f1(w: np.ndarray) -> float:
        return macro_f1(labels, predicted, num_classes, w)

    def top1(w: np.ndarray) -> float:
        return float((w * (predicted == labels)).sum() / w.sum())

    weights = group_weights(groups)
    return {"groups": len(set(groups)), "macro_f1": f1(weights), "macro_f1_ci": bootstrap_interval(f1, groups),
            "top1": top1(weights), "top1_ci": bootstrap_interval(top1, groups)}  # fmt: skip


def per_original(probs: np.ndarray, labels: np.ndarray, rows: list[Row], predictor: Predictor,
                 novelty: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """The figures that judge the model: each original counted once (see the module docstring). With ``novelty``,
    a photo above the contract's novelty threshold is never "identified" (``pestid.decision``)."""
    catalogue = load_catalogue()
    limit = predictor.contract.novelty_threshold
    known = None if novelty is None or limit is None else novelty <= limit
    names, groups = predictor.labels, [r.group or r.path for r in rows]
    weights, thresholds = group_weights(groups), predictor.contract.thresholds()
    identifiable = np.array(catalogue.in_scope(names))
    stats = per_class(confusion(labels, probs.argmax(axis=1), len(names), weights))
    out: dict[str, Any] = {"per_original": _group_figures(probs, labels, groups, len(names))}
    out["per_original"]["per_class"] = {
        name: {k: float(stats[k][i]) for k in ("precision", "recall", "f1", "support")} for i, name in enumerate(names)
    }
    by_source: dict[str, list[int]] = {}
    for k, row in enumerate(rows):
        by_source.setdefault(row.source or "?", []).append(k)
    out["per_source"] = {source: _group_figures(probs[idx], labels[idx], [groups[k] for k in idx], len(names))
                         for source, idx in sorted(by_source.items())}  # fmt: skip
    out["threshold"] = predictor.contract.threshold
    out["class_thresholds"] = dict(zip(names, thresholds.tolist(), strict=True))
    out.update(selective(probs, labels, thresholds, weights=weights, identifiable=identifiable, known=known))
    promise = precision_promise(probs, labels, thresholds, predictor.contract.target_precision, names,
                                weights=weights, identifiable=identifiable, known=known)  # fmt: skip

    def delivered(w: np.ndarray) -> float:
        return float(precision_promise(probs, labels, thresholds, None, names, weights=w,
                                       identifiable=identifiable, known=known)["delivered"])  # fmt: skip

    promise["delivered_ci"] = bootstrap_interval(delivered, groups)
    promise["expected"] = predictor.contract.expected_precision
    out["precision_promise"] = promise
    out.update(_answer_rates(probs, labels, weights, thresholds, identifiable, names, known))
    contract = predictor.contract
    levels, right = answer_levels(probs, labels, names, threshold=contract.threshold,
                                  class_thresholds=contract.class_thresholds,
                                  group_thresholds=contract.group_thresholds, novelty=novelty,
                                  novelty_threshold=limit)  # fmt: skip
    out.update(level_figures(levels, right, weights, identifiable[labels]))
    if known is not None:
        in_scope = identifiable[labels]
        out["unfamiliar_share"] = float(weights[in_scope & ~known].sum() / weights[in_scope].sum())
    return out


def _answer_rates(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, threshold: Thresholds,
                  identifiable: np.ndarray, names: list[str], known: np.ndarray | None = None) -> dict[str, float | None]:  # fmt: skip
    """Per original: in-scope coverage, out-of-scope photos "identified", disease photos "identified" as a non-disease."""
    catalogue = load_catalogue()
    predicted = probs.argmax(axis=1)
    answered = identified(probs, threshold, identifiable, known)
    disease = np.array([catalogue.get(n).category in DISEASE_CATEGORIES for n in names])
    in_scope = identifiable[labels]

    def rate(mask: np.ndarray, hit: np.ndarray) -> float | None:
        return float(weights[mask & hit].sum() / weights[mask].sum()) if mask.any() else None

    return {"in_scope_coverage": rate(in_scope, answered),
            "out_of_scope_identified": rate(~in_scope, answered),
            "disease_identified_as_other": rate(disease[labels], answered & ~disease[predicted])}  # fmt: skip


def worst_mistakes(
    probs: np.ndarray, labels: np.ndarray, paths: list[str], names: list[str], k: int = 24
) -> list[dict[str, Any]]:
    """The most confident wrong answers: where a person should look first."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:k]
    return [{"path": paths[i], "label": names[labels[i]], "predicted": names[predicted[i]],
             "confidence": float(probs[i, predicted[i]])} for i in wrong]  # fmt: skip


def write_reports(report: EvaluationReport, names: list[str], out_dir: Path | None) -> list[Path]:
    if out_dir is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    md_path = out_dir / "report.md"
    md_path.write_text(markdown(report), encoding="utf-8")
    return [json_path, md_path,
            plots.confusion_matrix_png(report.confusion, names, out_dir / "confusion_matrix.png"),
            plots.reliability_png(report.reliability, report.ece, out_dir / "reliability.png"),
            plots.per_class_png({k: v.model_dump() for k, v in report.per_class.items()}, out_dir / "per_class_f1.png")]  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown(report: EvaluationReport) -> str:
    original, promise = report.per_original, report.precision_promise
    lines = [
        f"# Đánh giá / evaluation: split `{report.split}` ({report.images} images, {original.groups} originals)",
        "",
        "Per original photo (each group counted once; 95 % bootstrap interval over groups):",
        "",
        "| metric | value | 95 % interval |",
        "| --- | --- | --- |",
        f"| macro-F1 | {_fmt(original.macro_f1)} | {_fmt(original.macro_f1_ci)} |",
        f"| top-1 | {_fmt(original.top1)} | {_fmt(original.top1_ci)} |",
        f"| precision promised (each class) / expected (overall) / delivered | {_fmt(promise.promised)} / "
        f"{_fmt(promise.expected)} / {_fmt(promise.delivered)} | {_fmt(promise.delivered_ci)} |",
    ]
    for key in (
        "threshold",
        "coverage",
        "in_scope_coverage",
        "useful_coverage",
        "group_coverage",
        "species_precision",
        "group_precision",
        "unfamiliar_share",
        "out_of_scope_identified",
        "disease_identified_as_other",
    ):
        lines.append(f"| {key} | {_fmt(getattr(report, key))} | |")
    lines += [
        "",
        "| source | originals | macro-F1 | interval | top-1 | interval |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for source, m in report.per_source.items():
        lines.append(f"| {source} | {m.groups} | {_fmt(m.macro_f1)} | {_fmt(m.macro_f1_ci)} | {_fmt(m.top1)} | "
                     f"{_fmt(m.top1_ci)} |")  # fmt: skip
    lines += [
        "",
        "Per file (augmented copies counted each time: flattering):",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in ("macro_f1", "top1", "top5", "group_top1", "ece", "ood_auroc", "ood_rejected"):
        lines.append(f"| {key} | {getattr(report, key):.4f} |")
    lines += ["", "| class | precision | recall | F1 | originals | threshold | delivered precision when identified "
              "| answers identified |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, c in original.per_class.items():
        answers = promise.per_class.get(name)
        lines.append(f"| {name} | {c.precision:.3f} | {c.recall:.3f} | {c.f1:.3f} | {c.support:.1f} | "
                     f"{_fmt(report.class_thresholds.get(name))} | {_fmt(answers.delivered if answers else None)} | "
                     f"{_fmt(answers.answers if answers else None)} |")  # fmt: skip
    return "\n".join(lines) + "\n"
