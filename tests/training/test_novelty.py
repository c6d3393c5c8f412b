"""The open-set score: "not one of the organisms I know", from fit to the exported model's second output."""

import numpy as np
import onnx
import pytest
from PIL import Image

from pestid.catalogue import load_catalogue
from pestid.decision import decide_by
from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.predictor import Predictor
from pestid.training.novelty import KNearest, Mahalanobis, threshold_at

from .conftest import tiny_config


def _clusters(rng: np.random.Generator, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Three classes in 8 dimensions, stretched along one axis (a shared covariance that is not the identity)."""
    centres = np.array([[0.0] * 8, [6.0] + [0.0] * 7, [0.0, 6.0] + [0.0] * 6])
    labels = np.repeat(np.arange(3), n)
    noise = rng.normal(size=(3 * n, 8)) * np.array([3.0, 0.5, 0.5, 1, 1, 1, 1, 1])
    return centres[labels] + noise, labels


def test_mahalanobis_is_the_whitened_distance_to_the_nearest_class_mean():
    rng = np.random.default_rng(0)
    x, y = _clusters(rng)
    score = Mahalanobis.fit(x, y, classes=4)  # class 3 has no photos: it is never the nearest
    means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    covariance = np.cov((x - means[y]).T, bias=True)
    inverse = np.linalg.inv(covariance)
    queries = rng.normal(size=(20, 8)) * 4
    exact = np.min([np.einsum("nd,de,ne->n", queries - m, inverse, queries - m) for m in means], axis=0)
    # Ledoit-Wolf shrinks the covariance a little towards a multiple of the identity: close to the exact form.
    np.testing.assert_allclose(score.score(queries), exact, rtol=0.15)
    # Along the stretched axis a step of 3 is one standard deviation; across it, six: the second is stranger.
    along, across = np.array([[3.0] + [0.0] * 7]), np.array([[0.0, 0.0, 3.0] + [0.0] * 5])
    assert score.score(across)[0] > 4 * score.score(along)[0]


def test_a_photo_unlike_every_class_scores_above_the_threshold_that_keeps_known_ones():
    rng = np.random.default_rng(1)
    x, y = _clusters(rng)
    held, _ = _clusters(rng, 100)
    far = rng.normal(size=(100, 8)) + np.array([0, 0, 12.0, 0, 0, 0, 0, 0])
    for scorer in (Mahalanobis.fit(x, y, 3), KNearest.fit(x, k=5)):
        tau = threshold_at(scorer.score(held), keep=0.95)
        kept = (scorer.score(held) <= tau).mean()
        assert 0.94 <= kept <= 0.96
        assert (scorer.score(far) > tau).mean() > 0.9


def test_threshold_at_counts_each_original_once():
    scores = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 9.0])
    # four copies of one original at 1, then two originals: each original weighs a third
    weights = np.array([0.25, 0.25, 0.25, 0.25, 1.0, 1.0])
    assert threshold_at(scores, 0.5, weights) == 5.0
    assert threshold_at(scores, 0.5) == 1.0  # counted per file, the copies would carry it


@pytest.fixture(scope="module")
def open_set_run(sample_split, tmp_path_factory):
    from pestid.training.train import train

    out = tmp_path_factory.mktemp("open-set") / "run"
    config = tiny_config(sample_split, out, "method=partial_finetune", "model.frozen_blocks=2", "epochs=4",
                         "data.batch_size=8", "optim.lr=0.01", "eval.tta=[hflip]", "eval.novelty_keep=0.9",
                         "export.int8=true", "export.int8_fp32_blocks=0", "export.int8_tolerance=1.0",
                         f"data.feature_cache={out.parent / 'features'}")  # fmt: skip
    return config, train(config)


def test_the_exported_model_says_how_unfamiliar_a_photo_is(open_set_run, sample_split):
    _, result = open_set_run
    graph = onnx.load(str(result.onnx_path))
    assert [o.name for o in graph.graph.output] == ["logits", "novelty"]
    predictor = Predictor(result.onnx_path)
    tau = predictor.contract.novelty_threshold
    assert tau is not None and tau == pytest.approx(result.calibration["novelty_threshold"])
    manifest = read_manifest(sample_split)
    val = manifest.split("val")
    known = predictor.assess([read_image(manifest.image_path(r)) for r in val])
    # The threshold keeps 90 % of val's photos as the cached trunk maps scored them; the whole network in
    # onnxruntime scores them within float16's reach of that.
    assert 0.8 <= (known.novelty <= tau).mean() <= 1.0
    assert known.probabilities.shape == (len(val), len(manifest.labels))
    # Photos like none of the sample's classes (drawn shapes on fields): noise.
    rng = np.random.default_rng(0)
    strangers = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(4)]
    strange = predictor.assess(strangers)
    assert (strange.novelty > tau).all()
    catalogue = load_catalogue()
    for probs, novelty in zip(strange.probabilities, strange.novelty, strict=True):
        outcome = decide_by(predictor.contract, probs, catalogue=catalogue, novelty=float(novelty))
        assert outcome.decision == "not_recognised" and outcome.answer is None
        assert outcome.unfamiliar or not catalogue.get(outcome.ranked[0].id).in_scope


def test_the_int8_copy_keeps_the_score_in_fp32(open_set_run, sample_split):
    _, result = open_set_run
    assert result.int8 is not None and result.int8.path.is_file()
    graph = onnx.load(str(result.int8.path))
    assert [o.name for o in graph.graph.output] == ["logits", "novelty"]
    head = [n for n in graph.graph.node if n.name.startswith("/head/")]
    assert head and not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in head)
    fp32, int8 = Predictor(result.onnx_path), Predictor(result.int8.path)
    assert int8.contract.novelty_threshold == fp32.contract.novelty_threshold
    manifest = read_manifest(sample_split)
    images = [read_image(manifest.image_path(r)) for r in manifest.split("test")[:16]]
    a, b = fp32.assess(images).novelty, int8.assess(images).novelty
    assert np.corrcoef(a, b)[0, 1] > 0.9  # the same score, up to the copy's rounding of the features


def test_a_run_without_the_score_exports_logits_alone(trained_tiny_model):
    graph = onnx.load(str(trained_tiny_model))
    assert [o.name for o in graph.graph.output] == ["logits"]
    predictor = Predictor(trained_tiny_model)
    assert predictor.contract.novelty_threshold is None
    assessment = predictor.assess([Image.new("RGB", (64, 64), (90, 140, 60))])
    assert assessment.novelty is None


def test_the_evaluations_unrelated_photos_are_rejected_by_the_rule_the_service_answers_with(open_set_run, sample_split):
    """``ood_rejected`` had read the species thresholds alone: a group answer counted as rejected and the novelty
    score was ignored. It is now the share of unrelated photos ``decide`` gives no answer at any level."""
    from pestid.sample import unrelated_images
    from pestid.training.evaluate import evaluate_model

    _, result = open_set_run
    predictor = Predictor(result.onnx_path)
    report, _ = evaluate_model(result.onnx_path, sample_split, ood_images=12)
    photos = predictor.assess(unrelated_images(12, size=predictor.contract.preprocess.size))
    catalogue = load_catalogue()
    outcomes = [decide_by(predictor.contract, p, catalogue=catalogue, novelty=float(n))
                for p, n in zip(photos.probabilities, photos.novelty, strict=True)]  # fmt: skip
    assert report.ood_rejected == pytest.approx(np.mean([o.answer is None for o in outcomes]))
