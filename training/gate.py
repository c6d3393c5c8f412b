"""The promotion gate: pure threshold functions over two evaluation reports.

Both reports come from the same test split and are judged per original photo
(``per_original``: each group counted once). The macro-F1 check knows what
noise is: a paired bootstrap over the test groups gives a 95 % interval for
the challenger's macro-F1 minus the champion's, and the challenger passes when
even the low end of that interval loses no more than the tolerance (it is not
worse beyond the tolerance, given the noise of a finite test set). No class's
recall may drop by more than its tolerance where the drop is more than noise: a
paired bootstrap of that class's recall change must lie below zero (a drop of one
or two originals of a 20-original class refused every challenger of the learning
curve, benchmarks/learning_curve.py); classes with fewer than ``min_support`` test
originals are reported, not gated. Every check gives a reason.

A challenger whose label set grew (officers taught it a class, ``pestid.splits.extend_frozen``) is judged in two
parts (``judge_grown``): on the old test split (the test originals of the champion's classes, where both models
answer in one index space and a new class's answer is simply wrong) it must pass every check above and lose no
class's F1 beyond ``class_f1_tolerance``; and each new class must reach ``new_class_f1`` on its own test originals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pestid.training.config import GateConfig
from pestid.training.metrics import bootstrap_interval, confusion, group_weights, macro_f1, per_class
from pestid.training.report import EvaluationReport, Rows


@dataclass(frozen=True)
class GateFigures:
    """What the gate compares, per original: macro-F1, each class's recall and support, the test rows, and each
    class's F1."""

    macro_f1: float
    per_class: dict[str, tuple[float, float]]  # name -> (recall, support)
    rows: Rows | None = None
    f1: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, report: EvaluationReport, *, classes: Sequence[str] | None = None) -> GateFigures:
        """The report's figures; with ``classes``, only its test rows of those classes, recomputed with labels and
        answers in ``classes``' order (an answer outside them, a class the other model lacks, is wrong)."""
        original = report.per_original
        if classes is None:
            return cls(original.macro_f1 or 0.0, {n: (c.recall, c.support) for n, c in original.per_class.items()},
                       report.rows, {n: c.f1 for n, c in original.per_class.items()})  # fmt: skip
        names, index, rows = list(original.per_class), {n: i for i, n in enumerate(classes)}, report.rows
        keep = [k for k, y in enumerate(rows.label) if names[y] in index]
        labels = np.array([index[names[rows.label[k]]] for k in keep], dtype=np.int64)
        predicted = np.array([index.get(names[rows.predicted[k]], len(classes)) for k in keep], dtype=np.int64)
        groups = [rows.group[k] for k in keep]
        weights = group_weights(groups)
        stats = per_class(confusion(labels, predicted, len(classes) + 1, weights))
        return cls(macro_f1(labels, predicted, len(classes) + 1, weights),
                   {n: (float(stats["recall"][i]), float(stats["support"][i])) for i, n in enumerate(classes)},
                   Rows(group=groups, label=labels.tolist(), predicted=predicted.tolist()),
                   {n: float(stats["f1"][i]) for i, n in enumerate(classes)})  # fmt: skip


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verdict = (
            "ĐẠT / PASSED: the challenger becomes champion"
            if self.passed
            else "KHÔNG ĐẠT / REFUSED: the champion stays"
        )
        return "\n".join([verdict, *(f"  - {r}" for r in self.reasons)])


def macro_f1_check(
    challenger: float, champion: float, tolerance: float, interval: tuple[float, float] | None = None
) -> tuple[bool, str]:
    """``interval``: the 95 % interval of challenger minus champion; without one, the point difference decides."""
    drop = champion - challenger
    low = interval[0] if interval is not None else -drop
    ok = low >= -tolerance
    noise = f", 95 % interval of the difference [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
    return (
        ok,
        f"macro-F1 per original {challenger:.4f} vs champion {champion:.4f} (difference {-drop:+.4f}{noise}; "
        f"allowed loss {tolerance:.4f}): {'ok' if ok else 'too large'}",
    )


def _shared_rows(challenger: GateFigures, champion: GateFigures) -> tuple[Rows, Rows] | None:
    """Both reports' test rows, where they were made on the same rows (the same groups and labels, in order)."""
    a, b = challenger.rows, champion.rows
    if a is None or b is None or a.group != b.group or a.label != b.label:
        return None
    return a, b


def paired_difference(challenger: GateFigures, champion: GateFigures, *, resamples: int = 1000,
                      seed: int = 0) -> tuple[float, float] | None:  # fmt: skip
    """95 % interval of macro-F1 (challenger − champion) over resamples of the shared test groups, or None
    when the reports were not made on the same rows."""
    if (shared := _shared_rows(challenger, champion)) is None:
        return None
    a, b = shared
    labels, groups = np.array(a.label), a.group
    classes = int(max(labels.max(), max(a.predicted), max(b.predicted))) + 1
    ours, theirs = np.array(a.predicted), np.array(b.predicted)

    def difference(w: np.ndarray) -> float:
        return macro_f1(labels, ours, classes, w) - macro_f1(labels, theirs, classes, w)

    return bootstrap_interval(difference, groups, resamples=resamples, seed=seed)


def recall_check(name: str, challenger: float, champion: float, tolerance: float,
                 interval: tuple[float, float] | None = None) -> tuple[bool, str]:  # fmt: skip
    """``interval``: the 95 % interval of the class's recall, challenger minus champion, over the same test groups.
    A drop beyond the tolerance refuses when the interval says it is a drop at all (its high end below 0); a drop
    that one or two originals of a small class make is within the test set's noise and is reported as such. Without
    an interval the point difference decides."""
    drop = champion - challenger
    noise = interval is not None and interval[1] >= 0
    ok = drop <= tolerance or noise
    within = f", 95 % interval of the change [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval is not None else ""
    verdict = "ok" if drop <= tolerance else "within the test set's noise" if noise else "too large"
    return (
        ok,
        f"recall of {name} {challenger:.3f} vs {champion:.3f} (drop {drop:+.3f}{within}, allowed {tolerance:.3f}): {verdict}",
    )


def paired_recall(challenger: GateFigures, champion: GateFigures, index: int, *, resamples: int = 1000,
                  seed: int = 0) -> tuple[float, float] | None:  # fmt: skip
    """95 % interval of one class's recall (challenger − champion) over resamples of the shared test groups, or
    None when the reports were not made on the same rows."""
    if (shared := _shared_rows(challenger, champion)) is None:
        return None
    a, b = shared
    mine = np.array(a.label) == index
    ours, theirs = mine & (np.array(a.predicted) == index), mine & (np.array(b.predicted) == index)

    def change(w: np.ndarray) -> float:
        total = float(w[mine].sum())
        return float(w[ours].sum() - w[theirs].sum()) / total if total > 0 else 0.0

    return bootstrap_interval(change, a.group, resamples=resamples, seed=seed)


def judge(challenger: GateFigures, champion: GateFigures | None, config: GateConfig) -> GateDecision:
    """Compare the challenger's per-original figures with the champion's on the same test split."""
    if champion is None:
        return GateDecision(True, ["no champion yet: the first model becomes champion"],
                            {"macro_f1": challenger.macro_f1})  # fmt: skip
    interval = paired_difference(challenger, champion)
    checks = [macro_f1_check(challenger.macro_f1, champion.macro_f1, config.macro_f1_tolerance, interval)]
    for index, (name, (recall, support)) in enumerate(champion.per_class.items()):  # index: the class in the rows
        if support < config.min_support:
            checks.append(
                (True, f"recall of {name}: {int(support)} test images, below {config.min_support}; not gated")
            )
            continue
        ours = challenger.per_class.get(name, (0.0, 0.0))[0]
        tolerance = config.class_recall_tolerance.get(name, config.recall_tolerance)
        # the bootstrap only where the point drop is past the tolerance: elsewhere it would change nothing
        noise = paired_recall(challenger, champion, index) if recall - ours > tolerance else None
        checks.append(recall_check(name, ours, recall, tolerance, noise))
    return GateDecision(all(ok for ok, _ in checks), [reason for _, reason in checks],
                        {"macro_f1": challenger.macro_f1}, {"macro_f1": champion.macro_f1})  # fmt: skip


def f1_check(name: str, challenger: float, champion: float, tolerance: float) -> tuple[bool, str]:
    drop = champion - challenger
    ok = drop <= tolerance
    return (ok, f"F1 of {name} {challenger:.3f} vs {champion:.3f} on the old test split (drop {drop:+.3f}, allowed "
                f"{tolerance:.3f}): {'ok' if ok else 'too large'}")  # fmt: skip


def new_class_check(name: str, f1: float, support: float, config: GateConfig) -> tuple[bool, str]:
    """A class the champion lacks: judged on its own test originals, against its floor."""
    if support < config.min_support:
        return (False, f"new class {name}: {support:g} test originals, below {config.min_support:g}: too few to "
                       "judge it (approve more of its photos)")  # fmt: skip
    ok = f1 >= config.new_class_f1
    return (ok, f"new class {name}: F1 per original {f1:.3f} on its {support:g} test originals (floor "
                f"{config.new_class_f1:.2f}): {'ok' if ok else 'too low'}")  # fmt: skip


def judge_grown(
    challenger: GateFigures, champion: GateFigures, new: Mapping[str, tuple[float, float]], config: GateConfig
) -> GateDecision:
    """A challenger that knows more classes than the champion. ``challenger`` and ``champion``: both on the old test
    split (``GateFigures.of(report, classes=champion's labels)``); ``new``: each new class's (F1 per original,
    test originals) on the challenger's whole test split. Every check of ``judge`` holds on the old split, no
    shared class loses more F1 than ``class_f1_tolerance``, and each new class reaches its floor."""
    decision = judge(challenger, champion, config)
    checks = []
    for name, (_, support) in champion.per_class.items():
        if support < config.min_support:
            checks.append((True, f"F1 of {name}: {int(support)} test originals, below {config.min_support}; not gated"))
            continue
        checks.append(
            f1_check(name, challenger.f1.get(name, 0.0), champion.f1.get(name, 0.0), config.class_f1_tolerance)
        )
    checks += [new_class_check(name, f1, support, config) for name, (f1, support) in sorted(new.items())]
    decision.reasons.extend(reason for _, reason in checks)
    decision.passed = decision.passed and all(ok for ok, _ in checks)
    return decision
