import numpy as np

from pestid.catalogue import load_catalogue
from pestid.decision import decide, fuse

LABELS = ["yellow_stem_borer", "striped_stem_borer", "pink_stem_borer", "wolf_spider", "brown_planthopper"]


def _decide(probs, threshold=0.8):
    return decide(np.array(probs), LABELS, threshold=threshold, catalogue=load_catalogue(), uncertain_floor=0.4)


def test_confident_answer_is_identified():
    outcome = _decide([0.9, 0.05, 0.02, 0.02, 0.01])
    assert outcome.decision == "identified" and outcome.ranked[0].id == "yellow_stem_borer"
    assert not outcome.needs_review and outcome.messages["vi"] == "Đây là sâu đục thân bướm hai chấm."


def test_middling_answer_is_uncertain_with_alternatives_and_flagged():
    outcome = _decide([0.5, 0.3, 0.1, 0.05, 0.05])
    assert outcome.decision == "uncertain" and outcome.needs_review
    assert [r.id for r in outcome.ranked] == ["yellow_stem_borer", "striped_stem_borer", "pink_stem_borer"]


def test_unsure_species_but_sure_group_names_the_group():
    outcome = _decide([0.3, 0.3, 0.3, 0.05, 0.05])
    assert outcome.decision == "not_recognised"
    assert outcome.nearest_group is not None and outcome.nearest_group.id == "stem_borers"
    assert "sâu đục thân" in outcome.messages["vi"]


def test_spread_out_answer_is_not_recognised_without_a_group():
    outcome = _decide([0.2, 0.1, 0.1, 0.3, 0.3])
    assert outcome.decision == "not_recognised" and outcome.nearest_group is None


def test_natural_enemy_says_do_not_spray():
    assert _decide([0.01, 0.01, 0.01, 0.95, 0.02]).do_not_spray


def test_fusion_averages_photos():
    fused = fuse(np.array([[0.9, 0.1], [0.5, 0.5]]))
    assert np.allclose(fused, [0.7, 0.3])


def test_a_class_threshold_replaces_the_overall_one_for_that_class_only():
    probs = np.array([0.7, 0.1, 0.1, 0.05, 0.05])
    catalogue = load_catalogue()
    strict = decide(probs, LABELS, threshold=0.6, class_thresholds={"yellow_stem_borer": 0.9}, catalogue=catalogue)
    assert strict.decision == "uncertain"
    lenient = decide(probs, LABELS, threshold=0.8, class_thresholds={"yellow_stem_borer": 0.65}, catalogue=catalogue)
    assert lenient.decision == "identified"
    other = decide(probs, LABELS, threshold=0.8, class_thresholds={"brown_planthopper": 0.1}, catalogue=catalogue)
    assert other.decision == "uncertain"
