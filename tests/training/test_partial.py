"""Partial fine-tuning: the trunk stays as it was, the last stages learn, and what is calibrated is what is served."""

import numpy as np
import pytest
import torch

from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.preprocess import preprocess
from pestid.training.callbacks import CallbackList
from pestid.training.config import ConfigError
from pestid.training.loop import seed_everything
from pestid.training.models import create_model, preprocess_spec

from .conftest import tiny_config

FROZEN = ("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")  # test_efficientnet has five blocks


@pytest.fixture(scope="module")
def partial_run(sample_split, tmp_path_factory):
    from pestid.training.partial import train_partial

    out = tmp_path_factory.mktemp("partial") / "run"
    config = tiny_config(sample_split, out, "method=partial_finetune", "model.frozen_blocks=2", "epochs=6",
                         "data.batch_size=8", "optim.lr=0.01", "optim.backbone_lr_scale=0.3", "eval.calibration=val", "eval.tta=[hflip]",
                         f"data.feature_cache={out.parent / 'features'}")  # fmt: skip
    manifest = read_manifest(sample_split)
    seed_everything(config.seed)
    model = create_model(config.model, len(manifest.labels))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    state, logits, rows = train_partial(model, manifest, config, out, CallbackList([]))
    return config, manifest, model, initial, state, logits, rows


def _accuracy(model, manifest, rows, config):
    spec = preprocess_spec(config.model)
    photos = np.stack([preprocess(read_image(manifest.image_path(r)), spec) for r in rows])
    labels = np.array([manifest.labels.index(r.label) for r in rows])
    with torch.no_grad():
        return float((model.eval()(torch.from_numpy(photos)).numpy().argmax(1) == labels).mean())


def test_only_the_blocks_after_the_trunk_and_the_head_learn(partial_run):
    config, manifest, model, initial, state, _, _ = partial_run
    saved = torch.load(config.out + "/checkpoints/best.pt", weights_only=True)
    assert saved.keys() == initial.keys()
    for name, before in initial.items():
        if name.startswith(FROZEN):  # weights and batch-norm statistics alike
            assert torch.equal(saved[name], before), name
    learnt = {name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("blocks.") else "")
              for name, before in initial.items() if not torch.equal(saved[name], before)}  # fmt: skip
    assert learnt == {"blocks.2", "blocks.3", "blocks.4", "conv_head", "bn2", "classifier"}
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())  # the model holds its best epoch
    assert 1 <= state.best_epoch <= 6 and len(state.history) == 6
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"]
    before = create_model(config.model, len(manifest.labels))
    before.load_state_dict(initial)
    train = manifest.split("train")
    learnt, chance = _accuracy(model, manifest, train, config), 1 / len(manifest.labels)
    assert learnt > max(2 * chance, _accuracy(before, manifest, train, config) + 0.2)  # it learnt its photos


def test_the_logits_it_is_calibrated_on_are_the_whole_models_on_the_photos(partial_run):
    """The val logits come from cached float16 trunk maps and the learnt top; the model served runs the photos
    through the whole network. Both must agree, or the calibration describes another model."""
    config, manifest, model, _, _, logits, rows = partial_run
    assert [r.path for r in rows] == [r.path for r in manifest.split("val")]
    spec = preprocess_spec(config.model)
    photos = np.stack([preprocess(read_image(manifest.image_path(r)), spec) for r in rows])
    model.eval()
    with torch.no_grad():
        plain = model(torch.from_numpy(photos)).numpy()
        mirrored = model(torch.from_numpy(np.ascontiguousarray(photos[..., ::-1]))).numpy()
    whole = (plain + mirrored) / 2  # the test-time views: plain and mirrored
    assert logits.shape == whole.shape
    np.testing.assert_allclose(logits, whole, atol=0.02 * np.abs(whole).max())
    from pestid.training.partial import rows_logits

    np.testing.assert_allclose(
        rows_logits(model, manifest, rows, config), logits, rtol=1e-4, atol=1e-4
    )  # other kernels
    assert (logits.argmax(1) == whole.argmax(1)).mean() >= 0.97


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["model.frozen_blocks=5"], "frozen_blocks must be from 1 to 4"),  # nothing left to learn
        (["model.frozen_blocks=0"], "frozen_blocks must be from 1 to 4"),
        (["model.name=resnet18"], "needs a timm EfficientNet"),
        (["model.name=mobilenetv3_small_050"], "needs a timm EfficientNet"),  # blocks, but no bn2 after conv_head
        (["epochs=0"], "epochs must be at least 1"),
        (["eval.calibration=out_of_fold", "eval.calibration_folds=500"], "at least 500 originals"),
    ],
)
def test_what_cannot_be_trained_is_refused_before_any_work(sample_split, tmp_path, overrides, says):
    from pestid.training.partial import train_partial

    config = tiny_config(sample_split, tmp_path / "run", "method=partial_finetune", "model.frozen_blocks=2",
                         *overrides, f"data.feature_cache={tmp_path / 'features'}")  # fmt: skip
    manifest = read_manifest(sample_split)
    with pytest.raises(ConfigError, match=says) as refused:
        train_partial(create_model(config.model, len(manifest.labels)), manifest, config, tmp_path, CallbackList([]))
    assert refused.value.message_vi and refused.value.message_en  # bilingual
    assert not (tmp_path / "features").exists()  # refused before any photo was read


def test_out_of_fold_calibration_scores_train_and_val_with_tops_that_never_saw_them(sample_split, tmp_path):
    from pestid.training.partial import train_partial

    config = tiny_config(sample_split, tmp_path / "run", "method=partial_finetune", "model.frozen_blocks=3", "epochs=2",
                         "optim.lr=0.01", "eval.calibration=out_of_fold", "eval.calibration_folds=2",
                         "data.balance=sources", f"data.feature_cache={tmp_path / 'features'}")  # fmt: skip
    manifest = read_manifest(sample_split)
    seed_everything(config.seed)
    model = create_model(config.model, len(manifest.labels))
    _, logits, rows = train_partial(model, manifest, config, tmp_path, CallbackList([]))
    assert [r.path for r in rows] == [r.path for r in [*manifest.split("train"), *manifest.split("val")]]
    assert logits.shape == (len(rows), len(manifest.labels)) and np.isfinite(logits).all()
    spec = preprocess_spec(config.model)
    photos = np.stack([preprocess(read_image(manifest.image_path(r)), spec) for r in rows])
    with torch.no_grad():
        shipped = model.eval()(torch.from_numpy(photos)).numpy()
    assert not np.allclose(logits, shipped, atol=0.05)  # another model scored them: the fold that left them out


def test_a_damaged_or_foreign_cache_file_is_computed_again(partial_run):
    from pestid.training.features import trunk_cache

    config, manifest, model, *_ = partial_run
    cache, rows = trunk_cache(config, manifest, model), manifest.split("val")
    good = cache.get(rows, "plain")
    path = cache._path(rows, "plain")
    assert path.is_file() and good.dtype == np.float16 and len(good) == len(rows)
    for damage in (lambda: np.save(path, good[:-1]), lambda: np.save(path, good.astype(np.float32)),
                   lambda: path.write_bytes(path.read_bytes()[:200])):  # fmt: skip
        damage()
        again = cache.get(rows, "plain")
        np.testing.assert_array_equal(again, good)
        np.testing.assert_array_equal(np.load(path), good)  # and the cache holds a whole copy again
    assert not list(path.parent.glob(".*.tmp*"))  # no temporary file left behind


def test_the_linear_probe_also_calibrates_out_of_fold_with_the_folds_asked(sample_split, tmp_path):
    import json

    from pestid.training.train import train

    config = tiny_config(sample_split, tmp_path / "probe", "method=linear_probe", "epochs=3",
                         "eval.calibration=out_of_fold", "eval.calibration_folds=3",
                         f"data.feature_cache={tmp_path / 'features'}")  # fmt: skip
    train(config, export=False)
    calibration = json.loads((tmp_path / "probe" / "calibration.json").read_text())
    manifest = read_manifest(sample_split)
    assert calibration["calibrated_on"] == "out_of_fold"
    assert calibration["calibration_groups"] == len({r.group for s in ("train", "val") for r in manifest.split(s)})


def test_sources_balance_weighs_each_source_of_a_class_the_same():
    from pestid.training.data import sample_weights

    # brown planthopper (0): one source's three originals (one of them in two copies) and another's single one;
    # leaf folder (1): one original
    targets, groups = [0, 0, 0, 0, 0, 1], ["a", "a", "b", "c", "d", "e"]
    sources = ["ip102", "ip102", "ip102", "ip102", "field", "ip102"]
    w = sample_weights(targets, groups, 2, "sources", sources)
    assert w.mean() == pytest.approx(1.0)
    assert w[:4].sum() == pytest.approx(w[4]) == pytest.approx(w[5] / 2)  # each source half its class, classes equal
    assert w[0] + w[1] == pytest.approx(w[2]) == pytest.approx(w[3])  # each original once within its source
    by_groups = sample_weights(targets, groups, 2, "groups")
    assert by_groups[4] == pytest.approx(by_groups[2])  # without it, the lone field photo weighs one original of four
    with pytest.raises(ValueError, match="source"):
        sample_weights(targets, groups, 2, "sources")


def test_sources_balance_is_refused_for_methods_that_do_not_pass_sources():
    from pestid.training.config import resolve_config

    with pytest.raises(ConfigError, match="partial_finetune"):
        resolve_config(None, ["method=linear_probe", "data.balance=sources"])


def test_held_out_sources_answer_each_source_with_a_top_that_never_saw_it(sample_split, tmp_path):
    from pestid.manifest import write_manifest
    from pestid.training.partial import load_held_out, train_partial

    manifest = read_manifest(sample_split)
    # two sources sharing every class: the originals alternate between a "field" set and an "ip102" set
    originals = sorted({r.group for r in manifest.rows})
    source = {g: ("field", "ip102")[i % 2] for i, g in enumerate(originals)}
    two = manifest.with_rows(r.replace(source=source[r.group]) for r in manifest.rows)
    path = tmp_path / "two.csv"
    write_manifest(two, path)
    config = tiny_config(path, tmp_path / "run", "method=partial_finetune", "model.frozen_blocks=3", "epochs=2",
                         "optim.lr=0.01", "eval.calibration=val", "eval.species_level=held_out_sources",
                         f"data.feature_cache={tmp_path / 'features'}")  # fmt: skip
    two = read_manifest(path)
    seed_everything(config.seed)
    train_partial(create_model(config.model, len(two.labels)), two, config, tmp_path / "run", CallbackList([]))
    found = load_held_out(tmp_path / "run" / "held_out.npz", two.labels)
    assert [str(h["source"]) for h in found] == ["field", "ip102"]
    for h in found:
        held = str(h["source"])
        mine = [r for s in ("train", "val") for r in two.split(s) if r.source == held]
        others_val = [r for r in two.split("val") if r.source != held]
        assert sorted(h["held_groups"].tolist()) == sorted(r.group for r in mine)  # its train and val, never test
        assert not {r.group for r in two.split("test")} & set(h["held_groups"].tolist())
        assert sorted(h["val_groups"].tolist()) == sorted(r.group for r in others_val)  # the others' val only
        assert h["held_logits"].shape == (len(mine), len(two.labels)) and np.isfinite(h["held_logits"]).all()
    # one source alone shares nothing: no evidence is written, and nothing is kept from an earlier run
    alone = tiny_config(sample_split, tmp_path / "run", "method=partial_finetune", "model.frozen_blocks=3",
                        "eval.species_level=held_out_sources", f"data.feature_cache={tmp_path / 'features-1'}")  # fmt: skip
    train_partial(create_model(alone.model, len(manifest.labels)), manifest, alone, tmp_path / "run", CallbackList([]))
    assert load_held_out(tmp_path / "run" / "held_out.npz", manifest.labels) == []
    with pytest.raises(ValueError, match="other labels"):  # evidence is only read against the labels it names
        load_held_out(tmp_path / "run" / "held_out.npz", [*manifest.labels, "rice_bug"])


def test_a_source_that_cannot_be_left_out_is_skipped_without_a_gap(sample_split, tmp_path):
    from pestid.manifest import write_manifest
    from pestid.training.partial import load_held_out, train_partial

    manifest = read_manifest(sample_split)
    # "field" holds every val photo: without it nothing is left to calibrate on, so only "ip102" is judged
    train_groups = sorted({r.group for r in manifest.split("train")})
    source = {g: "ip102" for g in train_groups[::2]}
    two = manifest.with_rows(r.replace(source=source.get(r.group, "field")) for r in manifest.rows)
    write_manifest(two, tmp_path / "two.csv")
    two = read_manifest(tmp_path / "two.csv")
    config = tiny_config(tmp_path / "two.csv", tmp_path / "run", "method=partial_finetune", "model.frozen_blocks=3",
                         "eval.species_level=held_out_sources", f"data.feature_cache={tmp_path / 'features'}")  # fmt: skip
    train_partial(create_model(config.model, len(two.labels)), two, config, tmp_path / "run", CallbackList([]))
    found = load_held_out(tmp_path / "run" / "held_out.npz", two.labels)
    assert [str(h["source"]) for h in found] == ["ip102"] and "val_logits" in found[0]


def test_another_method_trained_into_the_same_folder_ignores_older_evidence(sample_split, tmp_path):
    import json

    from pestid.training.train import train

    manifest = read_manifest(sample_split)
    labels, run = list(manifest.labels), tmp_path / "run"
    run.mkdir()
    sure = np.eye(len(labels), dtype=np.float32)[[0] * 12] * 8  # a class named 12 times elsewhere, always wrongly
    np.savez(run / "held_out.npz", labels=np.array(labels), **{"0_source": np.array("elsewhere"),
             "0_val_logits": sure, "0_val_labels": np.zeros(12, int), "0_val_groups": np.arange(12).astype(str),
             "0_held_logits": sure, "0_held_labels": np.ones(12, int),
             "0_held_groups": np.arange(12).astype(str)})  # fmt: skip
    config = tiny_config(sample_split, run, "method=linear_probe", f"data.feature_cache={tmp_path / 'features'}")
    train(config, export=False)
    assert "species_travel" not in json.loads((run / "calibration.json").read_text())
