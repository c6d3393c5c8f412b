import numpy as np
import pytest

from pestid.training.config import GateConfig
from pestid.training.gate import GateFigures, judge, judge_grown, macro_f1_check
from pestid.training.report import Rows


def _report(macro_f1, recalls, support=10):
    return GateFigures(macro_f1, {k: (v, support) for k, v in recalls.items()})


def test_first_model_becomes_champion():
    assert judge(_report(0.5, {"a": 0.5}), None, GateConfig()).passed


def test_better_challenger_passes_with_a_reason_per_check():
    decision = judge(_report(0.9, {"a": 0.9, "b": 0.9}), _report(0.8, {"a": 0.8, "b": 0.85}), GateConfig())
    assert decision.passed and len(decision.reasons) == 3


def test_macro_f1_drop_beyond_tolerance_refuses():
    decision = judge(_report(0.78, {"a": 0.9}), _report(0.80, {"a": 0.9}), GateConfig(macro_f1_tolerance=0.01))
    assert not decision.passed and "too large" in decision.reasons[0]


def test_one_class_recall_drop_refuses_even_if_macro_f1_rises():
    decision = judge(_report(0.95, {"a": 0.99, "brown_planthopper": 0.7}),
                      _report(0.90, {"a": 0.8, "brown_planthopper": 0.9}), GateConfig(recall_tolerance=0.05))  # fmt: skip
    assert not decision.passed
    assert any("brown_planthopper" in r and "too large" in r for r in decision.reasons)


def test_per_class_tolerance_and_small_classes():
    config = GateConfig(recall_tolerance=0.01, class_recall_tolerance={"a": 0.3}, min_support=5)
    decision = judge(GateFigures(0.9, {"a": (0.7, 10), "b": (0.1, 2)}), GateFigures(0.9, {"a": (0.9, 10), "b": (0.9, 2)}),
                     config)  # fmt: skip
    assert decision.passed and any("not gated" in r for r in decision.reasons)


def _paired(predicted, labels, groups):
    from pestid.training.metrics import macro_f1

    f1 = macro_f1(np.array(labels), np.array(predicted), 2)
    return GateFigures(f1, {}, Rows(group=groups, label=labels, predicted=predicted))


def test_gate_knows_noise_an_equal_model_passes_a_clearly_worse_one_does_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400).tolist()
    groups = [str(i // 2) for i in range(400)]
    champion = [y if rng.random() < 0.85 else 1 - y for y in labels]
    noisy_equal = [y if rng.random() < 0.85 else 1 - y for y in labels]  # same skill, other mistakes
    worse = [y if rng.random() < 0.6 else 1 - y for y in labels]
    config = GateConfig(macro_f1_tolerance=0.05)
    equal = judge(_paired(noisy_equal, labels, groups), _paired(champion, labels, groups), config)
    assert equal.passed and "95 % interval of the difference" in equal.reasons[0]
    refused = judge(_paired(worse, labels, groups), _paired(champion, labels, groups), config)
    assert not refused.passed and "too large" in refused.reasons[0]


def _grown_report(labels, predicted, names=("a", "b", "rice_bug")):
    """An evaluation report holding only what the gate reads: the classes' names (in order) and the test rows."""
    from pestid.training.report import ClassFigures, EvaluationReport, GroupFigures

    per_class = {n: ClassFigures(precision=0, recall=0, f1=0, support=0) for n in names}
    rows = Rows(group=[str(k) for k in range(len(labels))], label=labels, predicted=predicted)
    return EvaluationReport.model_construct(
        per_original=GroupFigures(groups=len(labels), per_class=per_class), rows=rows
    )


def test_new_class_answers_on_old_photos_are_wrong_and_its_own_photos_leave_the_old_split():
    # a, a, b, b from the old test split; two rice bugs, the new class's own test originals
    report = _grown_report([0, 0, 1, 1, 2, 2], [0, 2, 1, 1, 2, 0])
    old = GateFigures.of(report, classes=["a", "b"])
    assert old.rows.label == [0, 0, 1, 1] and old.rows.predicted == [0, 2, 1, 1]  # 2: an answer the champion lacks
    assert old.per_class["a"] == (0.5, 2.0) and old.per_class["b"] == (1.0, 2.0)
    assert old.f1["a"] == pytest.approx(2 / 3) and old.macro_f1 == pytest.approx((2 / 3 + 1) / 2)


def test_new_class_gate_holds_old_classes_and_the_new_class_to_its_floor():
    champion = GateFigures(0.9, {"a": (0.9, 10), "b": (0.9, 10)}, f1={"a": 0.9, "b": 0.9})
    same = GateFigures(0.9, {"a": (0.9, 10), "b": (0.9, 10)}, f1={"a": 0.9, "b": 0.88})
    config = GateConfig(new_class_f1=0.5, min_support=5)
    passed = judge_grown(same, champion, {"rice_bug": (0.8, 6)}, config)
    assert passed.passed and any(r.startswith("new class rice_bug: F1 per original 0.800") for r in passed.reasons)
    low = judge_grown(same, champion, {"rice_bug": (0.4, 6)}, config)
    assert not low.passed and any("rice_bug" in r and "too low" in r for r in low.reasons)
    unjudged = judge_grown(same, champion, {"rice_bug": (1.0, 3)}, config)
    assert not unjudged.passed and any("too few to judge" in r for r in unjudged.reasons)
    worse_b = GateFigures(0.9, {"a": (0.9, 10), "b": (0.9, 10)}, f1={"a": 0.9, "b": 0.7})  # b's precision fell
    regressed = judge_grown(worse_b, champion, {"rice_bug": (0.8, 6)}, config)
    assert not regressed.passed and any(r.startswith("F1 of b") and "too large" in r for r in regressed.reasons)


def _with_recalls(predicted, labels, groups, names=("a", "b")):
    """Figures as an evaluation gives them: macro-F1, each class's recall and support, and the test rows."""
    from pestid.training.metrics import macro_f1

    y, p = np.array(labels), np.array(predicted)
    recalls = {n: (float((p[y == k] == k).mean()), float((y == k).sum())) for k, n in enumerate(names)}
    return GateFigures(macro_f1(y, p, len(names)), recalls, Rows(group=groups, label=labels, predicted=predicted))


def test_a_class_recall_drop_of_one_or_two_originals_is_noise_a_real_one_refuses():
    """The learning curve's challengers were all refused on drops of one or two originals of a 10–25-original class,
    though each passed the macro-F1 check: a drop beyond the tolerance now refuses only beyond the test's noise."""
    labels = [0] * 20 + [1] * 200
    groups = [str(i) for i in range(len(labels))]
    champion = _with_recalls(list(labels), labels, groups)
    config = GateConfig(recall_tolerance=0.05, macro_f1_tolerance=0.2, min_support=5)  # the recall check alone
    two_missed = list(labels)
    two_missed[0] = two_missed[1] = 1  # recall of a: 1.0 → 0.9
    noise = judge(_with_recalls(two_missed, labels, groups), champion, config)
    assert noise.passed, noise.reasons
    assert any("recall of a" in r and "within the test set's noise" in r for r in noise.reasons)
    half_missed = [1 if i < 10 else y for i, y in enumerate(labels)]  # recall of a: 1.0 → 0.5
    refused = judge(_with_recalls(half_missed, labels, groups), champion, config)
    assert not refused.passed and any("recall of a" in r and "too large" in r for r in refused.reasons)


def _lose(labels, index, originals):
    """The champion's answers (all right) with ``originals`` of class ``index`` answered as the other class."""
    predicted, lost = list(labels), 0
    for k, y in enumerate(labels):
        if y == index and lost < originals:
            predicted[k], lost = 1 - index, lost + 1
    return predicted


def test_a_key_pest_named_in_class_recall_tolerance_is_held_to_its_point_figure_noise_or_not():
    """A reviewer's case: brown planthopper 1.0 → 0.7 on 10 originals passed as "noise" though its own tolerance
    was 0 (now past gate.class_drop_limit too). Named there, a pest that matters most gets no benefit of the
    doubt: 1.0 → 0.8, within the limit and the noise, refuses."""
    labels = [0] * 10 + [1] * 200
    groups = [str(i) for i in range(len(labels))]
    champion = _with_recalls(list(labels), labels, groups, names=("brown_planthopper", "b"))
    challenger = _with_recalls(_lose(labels, 0, 2), labels, groups, names=("brown_planthopper", "b"))
    loose = GateConfig(recall_tolerance=0.05, macro_f1_tolerance=0.5)
    assert judge(challenger, champion, loose).passed  # 2 of 10: the bootstrap cannot tell it from bad luck …
    strict = GateConfig(
        recall_tolerance=0.05, macro_f1_tolerance=0.5, class_recall_tolerance={"brown_planthopper": 0.0}
    )
    refused = judge(challenger, champion, strict)
    assert not refused.passed  # … but a key pest's own limit holds
    assert any("brown_planthopper" in r and "gate.class_recall_tolerance" in r for r in refused.refusals)
    assert refused.summary().splitlines()[1].startswith("  refused by: recall of brown_planthopper")


def test_no_class_may_lose_more_than_the_drop_limit_however_few_its_originals():
    """Half of a 6-original class lost passed as noise while the easy classes carried macro-F1."""
    labels = [0] * 6 + [1] * 200
    groups = [str(i) for i in range(len(labels))]
    champion = _with_recalls(list(labels), labels, groups)
    challenger = _with_recalls(_lose(labels, 0, 3), labels, groups)
    config = GateConfig(macro_f1_tolerance=1.0, min_support=5)  # the class checks alone
    refused = judge(challenger, champion, config)
    assert not refused.passed and any("gate.class_drop_limit" in r for r in refused.refusals)
    assert judge(challenger, champion, config.model_copy(update={"class_drop_limit": 0.6})).passed  # noise, then


def test_a_class_the_judged_split_lacks_refuses_and_a_small_one_shows_its_figures():
    config = GateConfig(min_support=5)
    champion = GateFigures(0.9, {"a": (0.9, 10), "b": (1.0, 4), "c": (0.0, 0)})
    challenger = GateFigures(0.9, {"a": (0.9, 10), "b": (0.0, 4)})
    decision = judge(challenger, champion, config)
    assert not decision.passed
    assert [r for r in decision.refusals] == [
        "recall of c: no test originals in the judged split, so it cannot be judged (judge on the champion's frozen "
        "test split: pestid retrain --base)"
    ]
    assert "recall of b 0.000 vs 1.000 on 4 test originals, below 5: not gated" in " ".join(decision.reasons)


def test_the_macro_f1_check_says_when_the_interval_not_the_loss_refuses():
    ok, reason = macro_f1_check(0.80, 0.81, 0.02, (-0.03, 0.01))
    assert not ok and "not shown to be within it" in reason and "too large" not in reason
    ok, reason = macro_f1_check(0.70, 0.81, 0.02, (-0.15, -0.05))
    assert not ok and reason.endswith("too large")


def test_a_grown_label_sets_f1_check_reads_noise_as_recall_does():
    """Two originals of 17 cost F1 0.06: recall called it noise and F1 refused, two verdicts on the same photos."""
    labels = [0] * 17 + [1] * 200
    groups = [str(i) for i in range(len(labels))]

    def figures(predicted):
        base = _with_recalls(predicted, labels, groups)
        y, p = np.array(labels), np.array(predicted)
        f1 = {n: float(2 * ((y == k) & (p == k)).sum() / ((y == k).sum() + (p == k).sum())) for k, n in enumerate("ab")}
        return GateFigures(base.macro_f1, base.per_class, base.rows, f1)

    config = GateConfig(min_support=5, macro_f1_tolerance=0.2)
    decision = judge_grown(figures(_lose(labels, 0, 2)), figures(list(labels)), {"rice_bug": (0.8, 6)}, config)
    assert decision.passed, decision.refusals
    f1_line = next(r for r in decision.reasons if r.startswith("F1 of a"))
    assert "within the test set's noise" in f1_line and "95 % interval" in f1_line
    worse = judge_grown(figures(_lose(labels, 0, 8)), figures(list(labels)), {"rice_bug": (0.8, 6)}, config)
    assert not worse.passed and any(r.startswith("F1 of a") for r in worse.refusals)


def test_the_order_of_the_labels_does_not_change_the_decision():
    """A reviewer's case: the same answers refused in one label order passed in the other, because the paired
    interval needs one index space and the point figure decided instead. Both are judged in the champion's order."""
    from pestid.training.promote import compare
    from pestid.training.report import ClassFigures, EvaluationReport, GroupFigures

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300).tolist()
    champion_answers = [y if rng.random() < 0.9 else (y + 1) % 3 for y in labels]
    challenger_answers = [y if rng.random() < 0.87 else (y + 1) % 3 for y in labels]

    def report(names, answers):
        index = {n: i for i, n in enumerate(names)}
        order = ["a", "b", "c"]
        per_class = {n: ClassFigures(precision=0, recall=0, f1=0, support=0) for n in names}
        rows = Rows(group=[str(k) for k in range(len(labels))], label=[index[order[y]] for y in labels],
                    predicted=[index[order[p]] for p in answers])  # fmt: skip
        return EvaluationReport.model_construct(per_original=GroupFigures(groups=len(labels), per_class=per_class),
                                                rows=rows)  # fmt: skip

    config = GateConfig(macro_f1_tolerance=0.02)
    same = compare(report("abc", challenger_answers), report("abc", champion_answers), config)
    swapped = compare(report("cba", challenger_answers), report("abc", champion_answers), config)
    assert same.passed == swapped.passed and same.reasons == swapped.reasons
    assert "95 % interval of the difference" in swapped.reasons[0]
