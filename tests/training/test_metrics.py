import numpy as np
import pytest

from pestid.predictor import softmax
from pestid.training.metrics import (
    auroc,
    choose_class_thresholds,
    choose_threshold,
    ece,
    fit_temperature,
    group_accuracy,
    macro_f1,
    nll,
    selective,
    top_k,
)


def test_macro_f1_weighs_classes_equally():
    labels = np.array([0] * 8 + [1] * 2)
    predicted = np.array([0] * 8 + [0, 1])
    # class 0: P=8/9 R=1 F1=16/17; class 1: P=1 R=.5 F1=2/3
    assert macro_f1(labels, predicted, 2) == pytest.approx((16 / 17 + 2 / 3) / 2)


def test_top_k():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert top_k(probs, np.array([1, 0]), 1) == 0.0
    assert top_k(probs, np.array([1, 0]), 2) == 0.5


def test_perfectly_calibrated_predictions_have_near_zero_ece():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    correct = rng.random(20000) < confidence
    probs = np.stack([confidence, 1 - confidence], axis=1)
    labels = np.where(correct, 0, 1)
    assert ece(probs, labels) < 0.02
    assert ece(np.stack([np.ones(100), np.zeros(100)], 1), np.array([0] * 50 + [1] * 50)) == pytest.approx(0.5)


def test_temperature_fixes_overconfident_logits():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 3000)
    logits = rng.normal(0, 1, (3000, 4))
    logits[np.arange(3000), labels] += 1.0
    overconfident = logits * 4
    t = fit_temperature(overconfident, labels)
    assert 3.0 < t < 5.5
    assert nll(overconfident, labels, t) < nll(overconfident, labels, 1.0)


def test_threshold_reaches_target_precision_on_validation():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), labels] += rng.uniform(0, 3, 2000)
    probs = softmax(logits)
    t = choose_threshold(probs, labels, 0.9)
    result = selective(probs, labels, t)
    assert result["accuracy_at_threshold"] >= 0.9
    assert 0 < result["coverage"] < 1


def test_auroc_known_values():
    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auroc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5


def test_group_accuracy_is_one_vote_per_group():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    # group a: both rows say 0 (right); group b: mean says 1, majority label is 0 (tie -> smallest) -> wrong
    assert group_accuracy(probs, labels, ["a", "a", "b", "b"]) == 0.5


def _ranked(confidences, correct, predicted=None):
    """Two-class probabilities whose top class has the given confidence; labels right or wrong as told."""
    confidences = np.asarray(confidences, dtype=float)
    predicted = np.zeros(len(confidences), dtype=int) if predicted is None else np.asarray(predicted)
    probs = np.zeros((len(confidences), 2))
    probs[np.arange(len(confidences)), predicted] = confidences
    probs[np.arange(len(confidences)), 1 - predicted] = 1 - confidences
    labels = np.where(np.asarray(correct), predicted, 1 - predicted)
    return probs, labels


def test_threshold_counts_each_original_once():
    # 20 originals answered right at confidences 0.99, 0.98, ..., 0.80, and one original answered wrong
    # in 8 augmented copies, all at 0.955. Per file the 8 copies weigh 8: precision 0.95 holds only above
    # them (at 0.96). Per original they weigh 1: at 0.80, 20 of 21 originals are right (0.952).
    right, _ = _ranked(np.linspace(0.99, 0.80, 20), [1] * 20)
    wrong, _ = _ranked([0.955] * 8, [0] * 8)
    probs = np.concatenate([right, wrong])
    labels = np.array([0] * 20 + [1] * 8)
    groups = [f"o{k}" for k in range(20)] + ["copies"] * 8
    from pestid.training.metrics import group_weights

    weights = group_weights(groups)
    assert weights[-1] == pytest.approx(1 / 8)
    assert choose_threshold(probs, labels, 0.95, weights=weights) == pytest.approx(0.80)
    assert choose_threshold(probs, labels, 0.95) == pytest.approx(0.96)


def test_out_of_scope_top_answers_are_never_identified_and_do_not_count():
    # Row 0: the out-of-scope class (index 1) at 0.99, right. It is "not recognised", so it neither helps
    # precision nor is it covered: the threshold is set by the in-scope rows alone.
    probs, labels = _ranked([0.99, 0.9, 0.8, 0.7], [1, 1, 0, 1], predicted=[1, 0, 0, 0])
    identifiable = np.array([True, False])
    t = choose_threshold(probs, labels, 0.99, identifiable=identifiable)
    assert t == pytest.approx(0.9)
    result = selective(probs, labels, t, identifiable=identifiable)
    assert result["coverage"] == pytest.approx(0.25) and result["accuracy_at_threshold"] == 1.0


def test_per_class_thresholds_hold_the_promise_for_each_class_where_one_threshold_averages_it():
    # Class 0 is easy: 30 answers at 0.60..0.89, all right. Class 1 is hard: 30 answers at the same
    # confidences, the 10 least confident (0.60..0.69) wrong. One threshold for 95 % overall stops at 0.68,
    # where the easy class's right answers still average out class 1's 2 wrong of 22 (91 %), and class 0
    # loses its answers below 0.68 for nothing. Per class: class 0 keeps 0.60, class 1 stops at 0.69
    # (20 right of 21, 95.2 %): each class keeps the promise.
    confidence = np.round(np.linspace(0.60, 0.89, 30), 2)
    easy, easy_labels = _ranked(confidence, [1] * 30, predicted=[0] * 30)
    hard, hard_labels = _ranked(confidence, [0] * 10 + [1] * 20, predicted=[1] * 30)
    probs, labels = np.concatenate([easy, hard]), np.concatenate([easy_labels, hard_labels])
    easy_rows, hard_rows = np.arange(30), np.arange(30, 60)
    overall = choose_threshold(probs, labels, 0.95)
    assert overall == pytest.approx(0.68)
    assert selective(probs[hard_rows], labels[hard_rows], overall)["accuracy_at_threshold"] < 0.95
    per_class = choose_class_thresholds(probs, labels, 0.95, min_answers=10)
    assert per_class.tolist() == pytest.approx([0.60, 0.69])
    assert selective(probs[easy_rows], labels[easy_rows], per_class) == {"coverage": 1.0, "accuracy_at_threshold": 1.0}
    assert selective(probs[hard_rows], labels[hard_rows], per_class)["accuracy_at_threshold"] == pytest.approx(20 / 21)
    # Never "identified" below the floor, however often such answers were right.
    assert choose_class_thresholds(probs, labels, 0.95, min_answers=10, floor=0.65).tolist() == pytest.approx(
        [0.65, 0.69]
    )
    # Too few answers to judge a class alone: it keeps the overall threshold.
    assert np.allclose(choose_class_thresholds(probs, labels, 0.95, min_answers=31), overall)


def test_bootstrap_interval_over_groups_contains_the_estimate_and_narrows_with_more_groups():
    from pestid.training.metrics import bootstrap_interval

    rng = np.random.default_rng(0)

    def interval(n_groups):
        correct = rng.random(n_groups) < 0.8
        rows = np.repeat(correct, 5)  # five copies of each original
        groups = np.repeat(np.arange(n_groups).astype(str), 5).tolist()

        def accuracy(w):
            return float((w * rows).sum() / w.sum())

        return correct.mean(), bootstrap_interval(accuracy, groups, resamples=400)

    small_mean, (lo_s, hi_s) = interval(40)
    big_mean, (lo_b, hi_b) = interval(1000)
    assert lo_s <= small_mean <= hi_s and lo_b <= big_mean <= hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 3  # about sqrt(25) = 5 times narrower
    assert lo_b < 0.8 < hi_b


def test_group_thresholds_hold_the_promise_on_what_species_answers_leave():
    from pestid.training.metrics import answer_levels, choose_group_thresholds, level_figures

    names = ["brown_planthopper", "whitebacked_planthopper", "rice_leaffolder", "not_rice"]
    rng = np.random.default_rng(0)
    probs, labels = [], []
    for k in range(200):  # hoppers the model cannot tell apart: 0.45/0.45, the group sure at 0.9
        hopper = k % 2
        p = np.array([0.45, 0.45, 0.05, 0.05]) + rng.uniform(0, 0.02, 4)
        probs.append(p / p.sum())
        labels.append(hopper)
    for _ in range(60):  # leaf folder answers at 0.8 that are as often a hopper: the caterpillars must not answer
        probs.append(np.array([0.1, 0.05, 0.8, 0.05]))
        labels.append(int(rng.integers(0, 2)) if rng.random() < 0.5 else 2)
    probs, labels = np.array(probs), np.array(labels)
    species_answered = probs.max(axis=1) >= 0.95  # no species answer at all here
    groups = choose_group_thresholds(probs, labels, names, 0.95, species_answered=species_answered)
    assert 0.5 <= groups["planthoppers"] <= probs[:200, :2].sum(axis=1).min()  # every hopper row answered as hoppers
    assert groups["caterpillars"] > 1.0  # 50 % right: never answered at that level
    levels, right = answer_levels(probs, labels, names, threshold=0.95, class_thresholds={}, group_thresholds=groups)
    figures = level_figures(levels, right, np.ones(len(labels)), np.ones(len(labels), dtype=bool))
    assert figures["group_precision"] == 1.0 and figures["useful_coverage"] == pytest.approx(200 / 260)
    assert np.isnan(figures["species_precision"])  # no species answer was given


def _sure(
    rows: list[tuple[int, int]], classes: int, noise: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits sure of each row's answer (predicted, true): 8 on the answer, up to ``noise`` elsewhere."""
    rng = np.random.default_rng(seed)
    logits = rng.uniform(0, noise, (len(rows), classes)) if noise else np.zeros((len(rows), classes))
    for i, (answered, _) in enumerate(rows):
        logits[i, answered] = 8.0 + rng.uniform(0, 0.5)
    return logits.astype(np.float32), np.array([truth for _, truth in rows])


def test_a_species_whose_answers_fail_on_a_new_source_is_answered_as_its_group():
    from pestid.training.metrics import answer_levels, calibrate, travel

    names = ["brown_planthopper", "whitebacked_planthopper", "rice_leaffolder", "stem_borers", "not_rice"]
    bph, wbph, folder, borers = range(4)
    # val: every class answered surely and rightly (its own sources: the promise holds)
    val_logits, val_labels = _sure([(c, c) for c in range(5) for _ in range(30)], 5, noise=2.0)
    val_groups = [f"v{i}" for i in range(len(val_labels))]
    # a source the model never saw: "brown planthopper" is half the time a whitebacked one (the group holds),
    # "stem borer" is always a leaf folder (so are the caterpillars), the leaf folder's own answers hold
    held = [(bph, bph)] * 6 + [(bph, wbph)] * 6 + [(borers, folder)] * 8 + [(folder, folder)] * 10
    held_logits, held_labels = _sure(held, 5, seed=1)
    evidence = [{"source": np.array("elsewhere"), "val_logits": val_logits, "val_labels": val_labels,
                 "val_groups": np.array(val_groups), "held_logits": held_logits, "held_labels": held_labels,
                 "held_groups": np.array([f"h{i}" for i in range(len(held))])}]  # fmt: skip
    found = travel(evidence, names, 0.95)
    assert found["brown_planthopper"] == pytest.approx({"answers": 12, "species_precision": 0.5, "group": "planthoppers",
                                                        "group_precision": 1.0, "level": "group"})  # fmt: skip
    assert found["stem_borers"]["level"] == "group" and found["stem_borers"]["group"] == "caterpillars"
    assert (
        found["rice_leaffolder"]["level"] == "species" and "whitebacked_planthopper" not in found
    )  # never named there
    # a class named on fewer originals is not judged, whatever its figures
    assert travel(evidence, names, 0.95, min_answers=13)["brown_planthopper"]["level"] == "species"
    assert travel(evidence[:1] * 0, names, 0.95) == {}  # no evidence, no verdict

    as_val = calibrate(val_logits, val_labels, val_groups, names, 0.95)
    cal = calibrate(val_logits, val_labels, val_groups, names, 0.95, held_out=evidence)
    assert as_val["class_thresholds"]["brown_planthopper"] <= 1.0  # without the evidence: named as a species
    assert cal["class_thresholds"]["brown_planthopper"] > 1.0 and cal["class_thresholds"]["stem_borers"] > 1.0
    assert cal["class_thresholds"]["rice_leaffolder"] == as_val["class_thresholds"]["rice_leaffolder"]
    assert cal["group_thresholds"]["stem_borers"] > 1.0  # a demoted label that is a group is not named as one
    # each demoted species' group answers at least where the species itself was named
    assert cal["group_thresholds"]["planthoppers"] <= as_val["class_thresholds"]["brown_planthopper"]
    assert cal["group_thresholds"]["caterpillars"] <= as_val["class_thresholds"]["stem_borers"]
    from pestid.predictor import softmax

    levels, right = answer_levels(softmax(val_logits, cal["temperature"]), val_labels, names,
                                  threshold=cal["threshold"], class_thresholds=cal["class_thresholds"],
                                  group_thresholds=cal["group_thresholds"])  # fmt: skip
    # on val, the demoted species' photos are now answered, rightly, as a hopper and a caterpillar
    assert (levels[val_labels == bph] == 2).all() and (levels[val_labels == borers] == 2).all()
    assert (levels[val_labels == folder] == 1).all() and right[val_labels != 4].all()
    assert cal["useful_coverage"] == pytest.approx(1.0) and cal["group_coverage"] == pytest.approx(0.5)


def test_the_model_card_says_a_species_answered_as_its_group(tmp_path):
    from pestid.contract import ModelContract
    from pestid.preprocess import PreprocessSpec
    from pestid.training.export import write_model_card

    contract = ModelContract(model_name="pestid", architecture="efficientnet_lite0", preprocess=PreprocessSpec(),
                             labels=["brown_planthopper", "rice_leaffolder", "not_rice"], threshold=0.8,
                             class_thresholds={"brown_planthopper": 1.01, "rice_leaffolder": 0.9},
                             group_thresholds={"planthoppers": 0.871, "caterpillars": 1.01}, target_precision=0.95)  # fmt: skip
    card = write_model_card(tmp_path / "model.onnx", contract, 0.0).read_text(encoding="utf-8")
    assert "brown_planthopper never named: answered as its group" in card and "rice_leaffolder 0.900" in card
    assert "planthoppers 0.871" in card and "caterpillars" not in card.split("Parity")[0]  # a group never answered
