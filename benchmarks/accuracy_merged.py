"""Accuracy on the merged dataset: an ablation of the training levers and leave-one-source-out.

The linear probe's levers (training/configs/probe.yaml, the former default), then the partial fine-tune of
training/configs/default.yaml on the same split (its last blocks learnt on cached trunk maps; ~8 minutes more).

Needs ../shared/datasets and a merged manifest (scripts/merge_shared.sh writes data/manifests/merged.csv).
Every figure is per original (each group counted once) with its 95 % bootstrap interval over groups, and
each lever is printed as a ratio against the baseline measured in the same run. Levers are chosen on val;
test is reported, not tuned on. Backbone features come from the feature cache that `pestid train` uses.

    .venv/bin/python benchmarks/accuracy_merged.py [--manifest data/manifests/merged.csv]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

from pestid.manifest import Manifest, Row, read_manifest
from pestid.training.config import TrainConfig, resolve_config
from pestid.training.data import sample_weights
from pestid.training.features import FeatureCache
from pestid.training.metrics import bootstrap_interval, group_weights, macro_f1
from pestid.training.partial import shared_sources
from pestid.training.probe import _logits, fit_linear, views_of

BASELINE = ["data.balance=none", "optim.label_smoothing=0.0", "optim.mixup=0.0", "eval.tta=[]", "data.augment_views=0"]
LEVERS: list[tuple[str, list[str]]] = [
    ("baseline: plain features, no balancing, no smoothing", BASELINE),
    ("+ group- and class-balanced weights", [*BASELINE, "data.balance=groups"]),
    ("+ label smoothing 0.1", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1"]),
    ("+ flip view (train) and flip TTA", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1", "eval.tta=[hflip]"]),
    ("+ mixup 0.2 on features", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1", "eval.tta=[hflip]",
                                 "optim.mixup=0.2"]),
    ("+ one field-augmented view", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1", "eval.tta=[hflip]",
                                    "data.augment_views=1"]),
    ("+ 80 epochs, lr 0.01", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1", "eval.tta=[hflip]",
                              "epochs=80", "optim.lr=0.01"]),
    # Bigger backbones at their native sizes, on the flip-TTA row's recipe (compare with that row).
    ("flip-TTA row with Lite1 at 240 px", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1",
                                           "eval.tta=[hflip]", "model.name=efficientnet_lite1", "model.image_size=240"]),
    ("flip-TTA row with Lite2 at 260 px", [*BASELINE, "data.balance=groups", "optim.label_smoothing=0.1",
                                           "eval.tta=[hflip]", "model.name=efficientnet_lite2", "model.image_size=260"]),
]  # fmt: skip


def per_original(
    logits: np.ndarray, labels: np.ndarray, groups: Sequence[str], classes: int
) -> tuple[float, tuple[float, float]]:
    predicted = logits.argmax(axis=1)
    weights = group_weights(list(groups))
    return macro_f1(labels, predicted, classes, weights), bootstrap_interval(
        lambda w: macro_f1(labels, predicted, classes, w), list(groups), resamples=500
    )


def run_lever(config: TrainConfig, manifest: Manifest, cache: FeatureCache) -> dict[str, object]:
    index = {label: i for i, label in enumerate(manifest.labels)}
    split = {s: manifest.split(s) for s in ("train", "val", "test")}
    y = {s: np.array([index[r.label] for r in rows]) for s, rows in split.items()}
    train_views, eval_views = views_of(config)
    x = np.concatenate([cache.get(split["train"], v) for v in train_views])
    w = sample_weights(y["train"].tolist(), [r.group for r in split["train"]], len(index), config.data.balance)
    start = time.perf_counter()
    head = fit_linear(x, np.tile(y["train"], len(train_views)), np.tile(w, len(train_views)), len(index), config)
    seconds = time.perf_counter() - start
    out: dict[str, object] = {"seconds": seconds}
    for s in ("val", "test"):
        logits = _logits(head, [cache.get(split[s], v) for v in eval_views])
        out[s] = per_original(logits, y[s], [r.group for r in split[s]], len(index))
    return out


def run_partial(config: TrainConfig, manifest: Manifest) -> dict[str, object]:
    """The partial fine-tune's best epoch (chosen on val), scored on val and test per original."""
    import tempfile
    from pathlib import Path

    from pestid.training.callbacks import CallbackList
    from pestid.training.loop import seed_everything
    from pestid.training.models import create_model
    from pestid.training.partial import rows_logits, train_partial

    config = config.model_copy(update={"eval": config.eval.model_copy(update={"calibration": "val"})})
    seed_everything(config.seed)
    model = create_model(config.model, len(manifest.labels))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        _, val_logits, _ = train_partial(model, manifest, config, Path(tmp), CallbackList([]))
    out: dict[str, object] = {"seconds": time.perf_counter() - start}
    test_logits = rows_logits(model, manifest, manifest.split("test"), config)
    index = {label: i for i, label in enumerate(manifest.labels)}
    for s, logits in (("val", val_logits), ("test", test_logits)):
        rows = manifest.split(s)
        out[s] = per_original(logits, np.array([index[r.label] for r in rows]), [r.group for r in rows], len(index))
    return out


def judged(logits: np.ndarray, labels: np.ndarray, groups: list[str], names: list[str], cal: dict[str, object],
           promised: float, known: np.ndarray | None = None) -> dict[str, object]:  # fmt: skip
    """A held-out source's originals answered as a farmer gets them (``decide``'s rule with ``cal``'s temperature
    and thresholds): macro-F1, promised against delivered precision with its interval, and each level's figures.
    ``known``: which photos an open-set score lets be answered at all (the others are "not recognised")."""
    from pestid.catalogue import load_catalogue
    from pestid.training.metrics import answer_levels, level_figures, softmax

    in_scope = np.array(load_catalogue().in_scope(names))
    f1, ci = per_original(logits, labels, groups, len(names))
    levels, right = answer_levels(softmax(logits, cal["temperature"]), labels, names, threshold=cal["threshold"],  # type: ignore[arg-type]
                                  class_thresholds=cal.get("class_thresholds", {}),  # type: ignore[arg-type]
                                  group_thresholds=cal["group_thresholds"])  # type: ignore[arg-type]  # fmt: skip
    if known is not None:
        levels = np.where(known, levels, 0)
    weights = group_weights(groups)
    answered = levels > 0

    def precision(v: np.ndarray) -> float:
        return (
            float((v * (answered & right)).sum() / (v * answered).sum()) if (v * answered).sum() > 0 else float("nan")
        )

    return {"originals": len(set(groups)), "macro_f1": f1, "ci": ci, "promised": promised,
            "delivered": precision(weights), "delivered_ci": bootstrap_interval(precision, groups, resamples=500),
            **level_figures(levels, right, weights, in_scope[labels])}  # fmt: skip


def leave_one_source_out(manifest: Manifest, cache: FeatureCache, config: TrainConfig) -> list[dict[str, object]]:
    """For each source that shares classes with another: train on the others, score its shared-class originals.

    The answers are judged as a farmer gets them: temperature and thresholds are calibrated out of fold on the
    training sources alone (promised: ``eval.target_precision``), then the held-out source's photos are answered
    by ``pestid.decision.decide``'s rule; delivered precision is measured on them, per level."""
    from pestid.training.metrics import calibrate
    from pestid.training.probe import out_of_fold_logits

    rows: list[Row] = [r for s in ("train", "val", "test") for r in manifest.split(s)]
    x = np.concatenate([cache.get(manifest.split(s), "plain") for s in ("train", "val", "test")])
    index = {label: i for i, label in enumerate(manifest.labels)}
    names = list(manifest.labels)
    y = np.array([index[r.label] for r in rows])
    results = []
    for held, shared in shared_sources(rows).items():
        mine = np.array([r.source == held for r in rows])
        train = ~mine
        groups = [r.group for r in rows]
        train_groups = [groups[i] for i in np.flatnonzero(train)]
        w = sample_weights(y[train].tolist(), train_groups, len(index), config.data.balance)
        head = fit_linear(x[train], y[train], w, len(index), config)
        oof = out_of_fold_logits([x[train]], [x[train]], y[train], train_groups, len(index), config)
        cal = calibrate(oof, y[train], train_groups, names, config.eval.target_precision)
        test = mine & np.isin(y, [index[c] for c in shared])
        test_groups = [groups[i] for i in np.flatnonzero(test)]
        logits = _logits(head, [x[test]])
        inside = {r.label for r in rows if r.source == held}
        results.append({"held_out": held, "shared_classes": sorted(shared), "classes_in_source": len(inside),
                        **judged(logits, y[test], test_groups, names, cal, config.eval.target_precision)})  # fmt: skip
    return results


def leave_one_source_out_partial(
    manifest: Manifest, config: TrainConfig, keep: float = 0.95, only: str | None = None
) -> list[dict[str, object]]:
    """The same for the partial fine-tune (``config``, calibrated on the training sources' val), one training per
    held-out source (about 8 minutes each on 2 cores); each also with the open-set score as it ships
    (``eval.novelty_keep`` = ``keep``: fitted on the training sources, its threshold from their val), and with
    ``eval.species_level: held_out_sources`` decided honestly: which species are answered as their group is
    learnt from the *other* held-out sources' answers only (``training.metrics.travel``). Those answers come from a
    model trained without the other source, so with the judged source's train photos and its val: the figures
    flatter the rule, which a third source sharing the classes would judge cleanly. (Trained without one source,
    the rest share no class here, so the shipped rule would find no evidence of its own.)"""
    import tempfile
    from pathlib import Path

    from pestid.training.callbacks import CallbackList
    from pestid.training.features import trunk_cache
    from pestid.training.loop import seed_everything
    from pestid.training.metrics import calibrate
    from pestid.training.models import create_model
    from pestid.training.novelty import Mahalanobis
    from pestid.training.partial import Top, novelty_of, rows_logits, train_partial

    config = config.model_copy(update={"eval": config.eval.model_copy(update={"calibration": "val",
                                                                              "novelty_keep": keep,
                                                                              "species_level": "val"})})  # fmt: skip
    rows: list[Row] = [r for s in ("train", "val", "test") for r in manifest.split(s)]
    names, results, evidence = list(manifest.labels), [], {}
    for held, shared in shared_sources(rows).items():
        if only is not None and held != only:
            continue
        others = manifest.with_rows(r for r in rows if r.source != held)
        seed_everything(config.seed)
        model = create_model(config.model, len(names))
        with tempfile.TemporaryDirectory() as tmp:
            _, val_logits, val_rows = train_partial(model, others, config, Path(tmp), CallbackList([]))
            score, found = Mahalanobis.load(Path(tmp) / "novelty.npz")
        cal = calibrate(val_logits, np.array([names.index(r.label) for r in val_rows]), [r.group for r in val_rows],
                        names, config.eval.target_precision)  # fmt: skip
        test = [r for r in rows if r.source == held and r.label in shared]
        logits = rows_logits(model, manifest, test, config)
        labels, groups = np.array([names.index(r.label) for r in test]), [r.group for r in test]
        evidence[held] = {"source": np.array(held), "val_logits": val_logits,
                          "val_labels": np.array([names.index(r.label) for r in val_rows]),
                          "val_groups": np.array([r.group for r in val_rows]), "held_logits": logits,
                          "held_labels": labels, "held_groups": np.array(groups), "shared": shared}  # fmt: skip
        results.append({"held_out": held, "shared_classes": sorted(shared),
                        **judged(logits, labels, groups, names, cal, config.eval.target_precision)})  # fmt: skip
        cache, (_, eval_views) = trunk_cache(config, manifest, model), views_of(config)
        novelty = novelty_of(score, Top(model, config.model.frozen_blocks), [cache.get(test, v) for v in eval_views],
                             torch.device("cpu"))  # fmt: skip
        known = novelty <= float(found["threshold"])
        results.append({"held_out": f"{held}, with the open-set score (keeps {keep:.0%} of val)",
                        "shared_classes": sorted(shared),
                        **judged(logits, labels, groups, names, cal, config.eval.target_precision, known)})  # fmt: skip
    for held, mine in evidence.items():
        others = [e for source, e in evidence.items() if source != held]
        if not others:
            continue
        cal = calibrate(mine["val_logits"], mine["val_labels"], list(mine["val_groups"]), names,
                        config.eval.target_precision, held_out=others)  # fmt: skip
        demoted = sorted(n for n, t in cal["species_travel"].items() if t["level"] == "group")
        results.append({"held_out": f"{held}, species level from the other sources (as groups: "
                                    f"{', '.join(demoted) or 'none'})", "shared_classes": sorted(mine["shared"]),
                        **judged(mine["held_logits"], mine["held_labels"], list(mine["held_groups"]), names, cal,
                                 config.eval.target_precision)})  # fmt: skip
    return results


def print_loso(results: list[dict[str, object]]) -> None:
    print("| held-out source | shared classes | originals | macro-F1 per original [95 % CI] | precision promised / "
          "delivered [95 % CI] | useful answers (group level) | species / group precision |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        lo, hi = r["ci"]  # type: ignore[misc]
        dlo, dhi = r["delivered_ci"]  # type: ignore[misc]
        print(f"| {r['held_out']} | {', '.join(r['shared_classes'])} | {r['originals']} | {r['macro_f1']:.4f} "  # type: ignore[arg-type]
              f"[{lo:.4f}, {hi:.4f}] | {r['promised']:.2f} / {r['delivered']:.3f} [{dlo:.3f}, {dhi:.3f}] | "
              f"{r['useful_coverage']:.1%} ({r['group_coverage']:.1%}) | {r['species_precision']:.3f} / "
              f"{r['group_precision']:.3f} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="data/manifests/merged.csv")
    parser.add_argument("--config", default="training/configs/probe.yaml")
    parser.add_argument("--partial-config", default="training/configs/default.yaml")
    parser.add_argument("--loso", action="store_true", help="Run leave-one-source-out even with --only.")
    parser.add_argument("--only", nargs="*", default=None, help="Run only levers whose name has one of these words "
                        "(the baseline always runs), and skip leave-one-source-out.")  # fmt: skip
    args = parser.parse_args()
    manifest = read_manifest(args.manifest)
    print(f"{args.manifest}: {len(manifest.rows)} images, {len({r.group for r in manifest.rows})} originals, "
          f"{len(manifest.labels)} classes")  # fmt: skip
    rows = []
    levers = [
        (n, o) for k, (n, o) in enumerate(LEVERS) if k == 0 or args.only is None or any(w in n for w in args.only)
    ]
    for name, overrides in levers:
        config = resolve_config(args.config, [*overrides, f"data.manifest={args.manifest}"])
        result = run_lever(config, manifest, FeatureCache(config, manifest))
        rows.append((name, result))
        print(
            f"  {name}: val {result['val'][0]:.4f}  test {result['test'][0]:.4f}  ({result['seconds']:.1f} s)",
            flush=True,
        )
    if args.only is None or "partial" in args.only:
        config = resolve_config(args.partial_config, [f"data.manifest={args.manifest}"])
        name = f"partial fine-tune, blocks[{config.model.frozen_blocks}:] + head ({args.partial_config})"
        result = run_partial(config, manifest)
        rows.append((name, result))
        print(f"  {name}: val {result['val'][0]:.4f}  test {result['test'][0]:.4f}  ({result['seconds']:.1f} s)",
              flush=True)  # fmt: skip
    base_val, base_test = rows[0][1]["val"][0], rows[0][1]["test"][0]  # type: ignore[index]
    print(
        "\n| lever (cumulative) | val macro-F1 per original | test macro-F1 per original [95 % CI] | test vs baseline |"
    )
    print("| --- | --- | --- | --- |")
    for name, r in rows:
        (vf, _), (tf, (lo, hi)) = r["val"], r["test"]  # type: ignore[misc]
        print(f"| {name} | {vf:.4f} ({vf / base_val:.3f}×) | {tf:.4f} [{lo:.4f}, {hi:.4f}] | {tf / base_test:.3f}× |")
    if args.only is not None and not args.loso:
        return
    config = resolve_config(args.config, [f"data.manifest={args.manifest}", "eval.tta=[]"])
    print("\nLeave one source out (train on the other sources, score the held-out source's shared classes):")
    print_loso(leave_one_source_out(manifest, FeatureCache(config, manifest), config))
    if args.only is None or any("partial" in w for w in args.only):  # e.g. --only partial-loso --loso
        print(f"\nLeave one source out, the partial fine-tune ({args.partial_config}):")
        partial = resolve_config(args.partial_config, [f"data.manifest={args.manifest}"])
        print_loso(leave_one_source_out_partial(manifest, partial))


if __name__ == "__main__":
    main()
