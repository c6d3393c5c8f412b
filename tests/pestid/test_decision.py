import numpy as np
import pytest

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
    outcome = _decide([0.5, 0.05, 0.05, 0.1, 0.3])  # no species and no group reaches 0.8
    assert outcome.decision == "uncertain" and outcome.needs_review and outcome.level is None
    assert outcome.answer is None
    assert [r.id for r in outcome.ranked] == ["yellow_stem_borer", "brown_planthopper", "wolf_spider"]


def test_unsure_species_but_sure_group_is_identified_at_the_groups_level():
    outcome = _decide([0.3, 0.3, 0.3, 0.05, 0.05])
    assert outcome.decision == "identified" and outcome.level == "group" and not outcome.needs_review
    # the stem borers, not the caterpillars that hold the same three labels here: the deeper group is smaller
    assert outcome.answer == outcome.nearest_group and outcome.answer.id == "stem_borers"
    assert outcome.answer.probability == np.float64(0.3) + 0.3 + 0.3
    assert outcome.messages["vi"] == "Thuộc nhóm sâu đục thân; chưa chắc là loài nào."


MIXED = ["yellow_stem_borer", "striped_stem_borer", "rice_leaffolder", "brown_planthopper",
         "whitebacked_planthopper", "wolf_spider", "not_rice"]  # fmt: skip


def _mixed(probs, **kwargs):
    return decide(
        np.array(probs), MIXED, catalogue=load_catalogue(), uncertain_floor=0.4, **{"threshold": 0.9, **kwargs}
    )


def test_the_answer_is_at_the_smallest_level_the_evidence_supports():
    species = _mixed([0.93, 0.02, 0.01, 0.01, 0.01, 0.01, 0.01])
    assert (species.decision, species.level, species.answer.id) == ("identified", "species", "yellow_stem_borer")
    borers = _mixed([0.6, 0.35, 0.01, 0.01, 0.01, 0.01, 0.01])  # stem borers 0.95: sure, and smaller than sâu
    assert (borers.level, borers.answer.id) == ("group", "stem_borers")
    caterpillars = _mixed([0.5, 0.3, 0.15, 0.02, 0.01, 0.01, 0.01])  # stem borers 0.80; with the leaf folder 0.95
    assert (caterpillars.level, caterpillars.answer.id) == ("group", "caterpillars")
    assert caterpillars.answer.probability == pytest.approx(0.95)
    hoppers = _mixed([0.02, 0.01, 0.02, 0.5, 0.43, 0.01, 0.01])
    assert (hoppers.level, hoppers.answer.id) == ("group", "planthoppers") and not hoppers.do_not_spray
    assert hoppers.messages["en"] == "One of the planthoppers and leafhoppers; which species is not certain."


def test_each_group_is_held_to_its_own_threshold():
    probs = [0.02, 0.01, 0.02, 0.5, 0.43, 0.01, 0.01]  # the hoppers' 0.93
    strict = _mixed(probs, group_thresholds={"planthoppers": 0.95})
    assert strict.decision == "uncertain" and strict.answer is None  # top species 0.5: its candidates, no advice
    lenient = _mixed(probs, threshold=0.99, group_thresholds={"planthoppers": 0.9})
    assert (lenient.level, lenient.answer.id) == ("group", "planthoppers")


def test_out_of_scope_on_top_is_never_answered_at_a_groups_level():
    outcome = _mixed([0.3, 0.3, 0.0, 0.0, 0.0, 0.0, 0.4], threshold=0.5)  # stem borers 0.6, but not_rice is first
    assert outcome.decision == "not_recognised" and outcome.answer is None


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
    groups = {"stem_borers": 1.0, "caterpillars": 1.0}  # here only the species' own threshold is tried
    strict = decide(probs, LABELS, threshold=0.6, class_thresholds={"yellow_stem_borer": 0.9}, catalogue=catalogue,
                    group_thresholds=groups)  # fmt: skip
    assert strict.decision == "uncertain"
    lenient = decide(probs, LABELS, threshold=0.8, class_thresholds={"yellow_stem_borer": 0.65}, catalogue=catalogue)
    assert lenient.decision == "identified"
    other = decide(probs, LABELS, threshold=0.8, class_thresholds={"brown_planthopper": 0.1}, catalogue=catalogue,
                   group_thresholds=groups)  # fmt: skip
    assert other.decision == "uncertain"


def test_pestid_predict_names_the_answer_at_its_level_and_a_guess_only_as_a_candidate(tmp_path):
    from typer.testing import CliRunner

    from pestid.cli import app
    from tests.conftest import jpeg_bytes, photo
    from tests.onnx_models import linear_model

    image = tmp_path / "p.jpg"
    image.write_bytes(jpeg_bytes(photo(seed=1)))
    labels = ["brown_planthopper", "whitebacked_planthopper", "rice_leaffolder", "not_rice"]
    runner = CliRunner()
    for logits, expected in (([3.0, 3.0, 0.0, 0.0], "Các loài rầy / planthoppers and leafhoppers"),
                             ([1.0, 0.0, 0.9, 0.0], "chưa chắc / not sure")):  # fmt: skip
        model = linear_model(tmp_path / f"{logits[0]}.onnx", labels, weight=np.zeros((3, 4)), bias=logits)
        shown = runner.invoke(app, ["predict", "--model", str(model), str(image)], terminal_width=200)
        assert shown.exit_code == 0, shown.output
        assert expected in shown.output
    assert "level: group" in runner.invoke(app, ["predict", "--model", str(tmp_path / "3.0.onnx"), str(image)]).output
