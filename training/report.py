"""The evaluation report, typed: what ``pestid evaluate`` measures, in one definition.

``evaluate_model`` fills it; the JSON and Markdown reports, the CLI's headline, the
MLflow run, the model contract's figures and the promotion gate read it. Per-original
figures (each original counted once) judge a model; per-file figures are kept for
comparison, named as such.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

Interval = tuple[float, float]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassFigures(_Part):
    precision: float
    recall: float
    f1: float
    support: float  # originals (per original) or files (per file)


class GroupFigures(_Part):
    """Macro-F1 and top-1 with each original counted once, with 95 % bootstrap intervals over originals."""

    groups: int
    macro_f1: float | None = None
    macro_f1_ci: Interval | None = None
    top1: float | None = None
    top1_ci: Interval | None = None
    per_class: dict[str, ClassFigures] = {}


class ClassAnswers(_Part):
    delivered: float
    answers: float  # originals answered "identified" as this class


class PrecisionPromise(_Part):
    promised: float | None  # the target every class's "identified" answers are held to
    expected: float | None = None  # overall, on the originals the thresholds were chosen on
    delivered: float
    delivered_ci: Interval | None = None
    per_class: dict[str, ClassAnswers] = {}


class Rows(_Part):
    """Per test row, what a paired comparison of two models on the same split needs."""

    group: list[str]
    label: list[int]
    predicted: list[int]


class Mistake(_Part):
    path: str
    label: str
    predicted: str
    confidence: float


class EvaluationReport(_Part):
    model: str
    manifest: str
    split: str
    dataset_version: str
    unreadable_images: int
    # Per file (augmented copies counted each time: flattering).
    images: int
    top1: float
    top5: float
    macro_f1: float
    ece: float
    group_top1: float
    per_class: dict[str, ClassFigures]
    confusion: list[list[int]]
    reliability: list[dict[str, float]]
    # Per original: what judges the model.
    per_original: GroupFigures
    per_source: dict[str, GroupFigures]
    # "Identified" answers: thresholds, coverage, the precision promise, what must never be identified.
    threshold: float
    class_thresholds: dict[str, float]
    coverage: float
    accuracy_at_threshold: float
    precision_promise: PrecisionPromise
    in_scope_coverage: float | None
    # Answers at the level the evidence supports (pestid.decision): species or group, per original.
    useful_coverage: float | None = None
    group_coverage: float | None = None
    species_precision: float | None = None
    group_precision: float | None = None
    # In-scope photos the open-set score turned away as "not one I know" (a model with a novelty output).
    unfamiliar_share: float | None = None
    out_of_scope_identified: float | None
    disease_identified_as_other: float | None
    ood_auroc: float
    ood_rejected: float
    rows: Rows
    mistakes: list[Mistake]

    def figures(self) -> dict[str, Any]:
        """The headline figures: what the model contract and the MLflow run record (per-class F1 per original
        under ``f1_per_class``, every other value a number or the split's name)."""
        original = self.per_original
        return {"split": self.split, "images": self.images, "originals": original.groups,
                "macro_f1_per_original": original.macro_f1, "top1_per_original": original.top1,
                "macro_f1": self.macro_f1, "top1": self.top1, "top5": self.top5, "ece": self.ece,
                "coverage": self.coverage, "in_scope_coverage": self.in_scope_coverage,
                "useful_coverage": self.useful_coverage, "group_coverage": self.group_coverage,
                "species_precision": self.species_precision, "group_precision": self.group_precision,
                "unfamiliar_share": self.unfamiliar_share, "precision_delivered": self.precision_promise.delivered,
                "out_of_scope_identified": self.out_of_scope_identified,
                "disease_identified_as_other": self.disease_identified_as_other, "ood_auroc": self.ood_auroc,
                "f1_per_class": {name: c.f1 for name, c in original.per_class.items()}}  # fmt: skip
