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
    refusals: list[str] = field(default_factory=list)  # the reasons that refused, also among ``reasons``

    def summary(self) -> str:
        verdict = (
            "ĐẠT / PASSED: the challenger becomes champion"
            if self.passed
            else "KHÔNG ĐẠT / REFUSED: the champion stays"
        )
        first = [f"  refused by: {r}" for r in self.refusals]  # what to act on, before every check
        return "\n".join([verdict, *first, *(f"  - {r}" for r in self.reasons)])


Check = tuple[bool, str]


def _decision(checks: list[Check], challenger: float, champion: float) -> GateDecision:
    return GateDecision(all(ok for ok, _ in checks), [r for _, r in checks], {"macro_f1": challenger},
                        {"macro_f1": champion}, [r for ok, r in checks if not ok])  # fmt: skip


def macro_f1_check(challenger: float, champion: float, tolerance: float,
                   interval: tuple[float, float] | None = None) -> Check:  # fmt: skip
    """``interval``: the 95 % interval of challenger minus champion; without one, the point difference decides."""
    drop = champion - challenger
    low = interval[0] if interval is not None else -drop
    ok = low >= -tolerance
    noise = f", 95 % interval of the difference [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else ""
    if ok:
        verdict = "ok"
    elif drop > tolerance or drop != drop:  # NaN: nothing was measured
        verdict = "too large"
    else:  # the point loss is allowed, its interval's low end is not
        verdict = (f"not shown to be within it: the interval reaches {low:+.4f} (more test originals narrow it; "
                   "gate.macro_f1_tolerance loosens it)")  # fmt: skip
    return (ok, f"macro-F1 per original {challenger:.4f} vs champion {champion:.4f} (difference {-drop:+.4f}{noise}; "
                f"allowed loss {tolerance:.4f}): {verdict}")  # fmt: skip


def _shared_rows(challenger: GateFigures, champion: GateFigures) -> tuple[Rows, Rows] | None:
    """Both reports' test rows, where they were made on the same rows (the same groups and labels, in order)."""
    a, b = challenger.rows, champion.rows
    if a is None or b is None or a.group != b.group or a.label != b.label:
        return None
    return a, b


def _rows_differ(challenger: GateFigures, champion: GateFigures) -> list[Check]:
    """A reason when both reports have test rows but not the same ones: no interval then, point figures decide."""
    if challenger.rows is None or champion.rows is None or _shared_rows(challenger, champion) is not None:
        return []
    return [(True, "the two evaluations were not made on the same test rows (a photo unreadable in one? the "
                   "classes in another order?): no intervals, every check reads its point figure")]  # fmt: skip


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


def _class_measure(measure: str, mine: np.ndarray, answered: np.ndarray, w: np.ndarray) -> float:
    """One class's recall or F1 under row weights ``w``; NaN where the resample drew none of its originals."""
    if float(w[mine].sum()) == 0:
        return float("nan")
    right = float(w[mine & answered].sum())
    if measure == "recall":
        return right / float(w[mine].sum())
    return 2 * right / (float(w[mine].sum()) + float(w[answered].sum()))


def paired_class_change(challenger: GateFigures, champion: GateFigures, index: int, *, measure: str = "recall",
                        resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:  # fmt: skip
    """95 % interval of one class's recall or F1 (challenger − champion) over resamples of the shared test groups
    (a resample without the class is left out), or None when the reports were not made on the same rows."""
    if (shared := _shared_rows(challenger, champion)) is None:
        return None
    a, b = shared
    mine = np.array(a.label) == index
    ours, theirs = np.array(a.predicted) == index, np.array(b.predicted) == index

    def change(w: np.ndarray) -> float:
        return _class_measure(measure, mine, ours, w) - _class_measure(measure, mine, theirs, w)

    return bootstrap_interval(change, a.group, resamples=resamples, seed=seed)


def class_check(what: str, challenger: float, champion: float, tolerance: float, *, limit: float,
                interval: tuple[float, float] | None = None, strict: bool = False) -> Check:  # fmt: skip
    """One class's recall or F1 (``what``: "recall of X"), challenger against champion. A drop past ``tolerance``
    refuses when the class is ``strict`` (a pest that matters most), when it is past ``limit`` (however few the
    originals), when no interval could be computed, or when the interval says it is a drop at all (its high end
    below 0); otherwise one or two originals of a small class made it, within the test set's noise."""
    drop = champion - challenger
    interval_text = f", 95 % interval [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval is not None else ""
    head = f"{what} {challenger:.3f} vs {champion:.3f} (change {-drop:+.3f}{interval_text}, allowed {-tolerance:+.3f})"
    if drop <= tolerance:
        return True, f"{head}: ok"
    if drop != drop:  # NaN
        return False, f"{head}: not measured"
    if strict:
        return False, f"{head}: too large (its own limit in gate.class_recall_tolerance holds, noise or not)"
    if drop > limit:
        return False, f"{head}: too large (past gate.class_drop_limit {limit:.3f}, noise or not)"
    if interval is None:
        return False, f"{head}: too large"
    if interval[1] < 0:
        return False, f"{head}: too large (beyond the test set's noise)"
    return True, f"{head}: within the test set's noise (more of its test originals would tell)"


def _small(what: str, challenger: float, champion: float, support: float, config: GateConfig) -> Check:
    """A class with few test originals is reported, not gated; one with none refuses: a class the champion knows
    that the judged split lacks (a manifest split afresh, without the base's frozen test split) is not judged at
    all, and a challenger could lose it unseen."""
    if support <= 0:
        return (False, f"{what}: no test originals in the judged split, so it cannot be judged (judge on the "
                       "champion's frozen test split: pestid retrain --base)")  # fmt: skip
    return (True, f"{what} {challenger:.3f} vs {champion:.3f} on {support:g} test originals, below "
                  f"{config.min_support:g}: not gated (too few to judge)")  # fmt: skip


def judge(challenger: GateFigures, champion: GateFigures | None, config: GateConfig) -> GateDecision:
    """Compare the challenger's per-original figures with the champion's on the same test split."""
    if champion is None:
        return GateDecision(True, ["no champion yet: the first model becomes champion"],
                            {"macro_f1": challenger.macro_f1})  # fmt: skip
    interval = paired_difference(challenger, champion)
    checks = [*_rows_differ(challenger, champion),
              macro_f1_check(challenger.macro_f1, champion.macro_f1, config.macro_f1_tolerance, interval)]  # fmt: skip
    for index, (name, (recall, support)) in enumerate(champion.per_class.items()):  # index: the class in the rows
        ours = challenger.per_class.get(name, (0.0, 0.0))[0]
        if support < config.min_support:
            checks.append(_small(f"recall of {name}", ours, recall, support, config))
            continue
        tolerance = config.class_recall_tolerance.get(name, config.recall_tolerance)
        # the bootstrap only where the point drop is past the tolerance: elsewhere it would change nothing
        noise = paired_class_change(challenger, champion, index) if recall - ours > tolerance else None
        checks.append(class_check(f"recall of {name}", ours, recall, tolerance, limit=config.class_drop_limit,
                                  interval=noise, strict=name in config.class_recall_tolerance))  # fmt: skip
    return _decision(checks, challenger.macro_f1, champion.macro_f1)


def new_class_check(name: str, f1: float, support: float, config: GateConfig) -> Check:
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
    shared class loses more F1 than ``class_f1_tolerance`` beyond the test set's noise (as recall is judged), and
    each new class reaches its floor."""
    decision = judge(challenger, champion, config)
    checks = []
    for index, (name, (_, support)) in enumerate(champion.per_class.items()):
        ours, theirs = challenger.f1.get(name, 0.0), champion.f1.get(name, 0.0)
        what = f"F1 of {name} on the old test split"
        if support < config.min_support:
            checks.append(_small(what, ours, theirs, support, config))
            continue
        tolerance = config.class_f1_tolerance
        noise = paired_class_change(challenger, champion, index, measure="f1") if theirs - ours > tolerance else None
        checks.append(class_check(what, ours, theirs, tolerance, limit=config.class_drop_limit, interval=noise,
                                  strict=name in config.class_recall_tolerance))  # fmt: skip
    checks += [new_class_check(name, f1, support, config) for name, (f1, support) in sorted(new.items())]
    decision.reasons.extend(reason for _, reason in checks)
    decision.refusals.extend(reason for ok, reason in checks if not ok)
    decision.passed = decision.passed and all(ok for ok, _ in checks)
    return decision
