"""Leave one class out: how often a photo of an organism the model was never taught is answered as another.

For each class named (default: a few that farmers meet, across kinds), the default partial fine-tune
(training/configs/default.yaml) is trained again without that class's photos, calibrated on val as it ships, and
then shown every photo of the class it never saw. Without an open-set score, such a photo is answered by the
softmax alone; with one (``training.novelty``: the Mahalanobis distance to the nearest known class, or the
distance to the k-th nearest training photo, on the pooled features), a photo farther than the ``--keep`` quantile
of val's known photos is "not recognised". Printed per left-out class, each original counted once, with 95 %
bootstrap intervals over originals:

- the share of its photos answered "identified" as another species (issue 22 asks for at most 5 %), and at a
  group's level (right when the group holds the left-out class);
- what the score costs on the known test photos: useful answers and their precision, each as a ratio against the
  same model without the score, measured in the same run.

Needs ../shared/datasets and data/manifests/merged.csv (scripts/merge_shared.sh). The trunk maps are the ones
`pestid train` caches; each class then costs one training of the last blocks (about 5 minutes on 2 cores).

    .venv/bin/python benchmarks/open_set.py [--classes brown_planthopper blast ...] [--keep 0.95]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import numpy as np
import torch

from pestid.catalogue import Catalogue, load_catalogue
from pestid.decision import decide
from pestid.manifest import read_manifest
from pestid.training.config import resolve_config
from pestid.training.features import trunk_cache
from pestid.training.metrics import auroc as auc
from pestid.training.metrics import bootstrap_interval, calibrate, group_weights, softmax
from pestid.training.models import create_model
from pestid.training.novelty import KNearest, Mahalanobis, threshold_at
from pestid.training.partial import Top, fit_top, top_logits
from pestid.training.probe import views_of

DEFAULT_CLASSES = ["brown_planthopper", "rice_leaffolder", "whorl_maggot", "rice_blast", "lady_beetle"]


def answers(
    probs: np.ndarray, names: Sequence[str], cal: dict[str, object], catalogue: Catalogue
) -> list[tuple[int, str]]:
    """Each row's answer as a farmer gets it: (0 none, 1 species, 2 group; the organism named)."""
    out = []
    for row in probs:
        o = decide(row, names, threshold=cal["threshold"], class_thresholds=cal.get("class_thresholds", {}),  # type: ignore[arg-type]
                   group_thresholds=cal.get("group_thresholds", {}), catalogue=catalogue)  # type: ignore[arg-type]  # fmt: skip
        out.append((0, "") if o.answer is None else (1 if o.level == "species" else 2, o.answer.id))
    return out


def share(mask: np.ndarray, groups: list[str], of: np.ndarray | None = None) -> tuple[float, float, float]:
    """The weighted share of ``of`` rows (all by default) where ``mask`` holds, per original, with its interval."""
    of = np.ones(len(mask), dtype=bool) if of is None else of

    def stat(w: np.ndarray) -> float:
        total = w[of].sum()
        return float(w[mask & of].sum() / total) if total > 0 else float("nan")

    lo, hi = bootstrap_interval(stat, groups, resamples=300)
    return stat(group_weights(groups)), lo, hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="data/manifests/merged.csv")
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--classes", nargs="*", default=DEFAULT_CLASSES, help="classes to leave out, or 'all'")
    parser.add_argument("--keep", type=float, default=0.95, help="share of val's known photos the score keeps")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--save", default=None, help="keep each left-out class's features and calibration here (.npz)")
    args = parser.parse_args()
    overrides = [f"data.manifest={args.manifest}", *([f"epochs={args.epochs}"] if args.epochs else [])]
    config = resolve_config(args.config, overrides)
    manifest, catalogue, device = read_manifest(args.manifest), load_catalogue(), torch.device("cpu")
    labels = list(manifest.labels)
    classes = [c for c in labels if catalogue.get(c).in_scope] if args.classes == ["all"] else args.classes
    cache = trunk_cache(config, manifest, create_model(config.model, len(labels)))
    train_views, eval_views = views_of(config)
    rows = {s: manifest.split(s) for s in ("train", "val", "test")}
    maps = {s: {v: cache.get(rows[s], v, desc=f"trunk: {s} {v}") for v in (train_views if s == "train" else eval_views)}
            for s in rows}  # fmt: skip
    table = []
    for left in classes:
        start = time.perf_counter()
        names = [c for c in labels if c != left]
        known = {s: np.array([r.label != left for r in rows[s]]) for s in rows}
        y = {s: np.array([names.index(r.label) for r in rows[s] if r.label != left]) for s in rows}
        g = {s: [r.group for r in rows[s] if r.label != left] for s in rows}
        model = create_model(config.model, len(names))
        _, val_logits = fit_top(model, [maps["train"][v][known["train"]] for v in train_views], y["train"], g["train"],
                                config, device, val=([maps["val"][v][known["val"]] for v in eval_views], y["val"],
                                                     group_weights(g["val"])), desc=f"without {left}")  # fmt: skip
        cal = calibrate(val_logits, y["val"], g["val"], names, config.eval.target_precision)
        top = Top(model, config.model.frozen_blocks)

        def features(split: str, mask: np.ndarray, views: Sequence[str] = eval_views) -> np.ndarray:
            return top_logits(top, [maps[split][v][mask] for v in views], device, pre_logits=True)  # noqa: B023

        classifier = model.get_classifier()  # type: ignore[operator]

        def probs_of(feats: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return softmax(classifier(torch.from_numpy(feats)).numpy(), cal["temperature"])  # noqa: B023

        train_feats = features("train", known["train"], ["plain"])
        scorers: dict[str, Mahalanobis | KNearest] = {
            "mahalanobis": Mahalanobis.fit(train_feats, y["train"], len(names)),
            "knn": KNearest.fit(train_feats),
        }
        val_feats, test_feats = features("val", known["val"]), features("test", known["test"])
        unknown = np.concatenate([features(s, ~known[s]) for s in rows])
        # The score as the exported model gives it (``partial.novelty_of``): on each view's features, then
        # averaged over the views (the probabilities above use the views' pooled features, as top_logits does).
        per_view = {
            "val": [features("val", known["val"], [v]) for v in eval_views],
            "test": [features("test", known["test"], [v]) for v in eval_views],
            "unknown": [np.concatenate([features(s, ~known[s], [v]) for s in rows]) for v in eval_views],
        }

        def scored(gate: Mahalanobis | KNearest, part: str) -> np.ndarray:
            return np.mean([gate.score(f) for f in per_view[part]], axis=0)  # noqa: B023

        unknown_groups = [r.group for s in rows for r in rows[s] if r.label == left]
        within = {gr.id for gr in catalogue.groups_of(left)}
        in_scope = np.array(catalogue.in_scope(names))
        val_scope = in_scope[y["val"]]
        result: dict[str, object] = {"class": left, "originals": len(set(unknown_groups))}
        if args.save:
            from pathlib import Path

            Path(args.save).mkdir(parents=True, exist_ok=True)
            np.savez(Path(args.save) / f"{left}.npz", train=train_feats, y_train=y["train"], val=val_feats,
                     y_val=y["val"], g_val=np.array(g["val"]), test=test_feats, y_test=y["test"],
                     g_test=np.array(g["test"]), unknown=unknown, g_unknown=np.array(unknown_groups),
                     names=np.array(names), weight=classifier.weight.detach().numpy(),
                     bias=classifier.bias.detach().numpy(), cal=np.array(json.dumps(cal)))  # fmt: skip
        u_answers = answers(probs_of(unknown), names, cal, catalogue)
        t_answers = answers(probs_of(test_feats), names, cal, catalogue)
        u_level = np.array([a[0] for a in u_answers])
        u_right_group = np.array([a[0] == 2 and a[1] in within for a in u_answers])
        t_level = np.array([a[0] for a in t_answers])
        truth = [names[i] for i in y["test"]]
        t_right = np.array([(lv == 1 and a == t) or (lv == 2 and a in {gr.id for gr in catalogue.groups_of(t)})
                            for (lv, a), t in zip(t_answers, truth, strict=True)])  # fmt: skip
        t_scope = in_scope[y["test"]]
        for name, gate in [("softmax only", None), *scorers.items()]:
            if gate is None:
                u_ok, t_ok = np.ones(len(unknown), dtype=bool), np.ones(len(test_feats), dtype=bool)
                auroc = float("nan")
            else:
                tau = threshold_at(scored(gate, "val")[val_scope], args.keep,
                                   group_weights([gr for gr, s in zip(g["val"], val_scope, strict=True) if s]))  # fmt: skip
                u_scores, t_scores = scored(gate, "unknown"), scored(gate, "test")
                u_ok, t_ok = u_scores <= tau, t_scores <= tau
                auroc = auc(u_scores, t_scores[t_scope])
            answered_t = (t_level > 0) & t_ok
            result[name] = {
                "species_as_other": share((u_level == 1) & u_ok, unknown_groups),
                "group": share((u_level == 2) & u_ok, unknown_groups),
                "group_right": share(u_right_group & u_ok, unknown_groups, (u_level == 2) & u_ok),
                "auroc": auroc,
                "useful": share(answered_t, g["test"], t_scope),
                "precision": share(answered_t & t_right, g["test"], answered_t),
            }
        result["seconds"] = time.perf_counter() - start
        table.append(result)
        print(f"without {left}: {result['originals']} originals, {result['seconds']:.0f} s", flush=True)
        for name in ("softmax only", *scorers):
            r = result[name]  # type: ignore[index]
            print(f"  {name:>12}: as another species {r['species_as_other'][0]:.1%}, group {r['group'][0]:.1%} "  # type: ignore[index]
                  f"(right {r['group_right'][0]:.1%}), AUROC {r['auroc']:.3f}; known test: useful {r['useful'][0]:.1%}, "  # type: ignore[index]
                  f"precision {r['precision'][0]:.1%}", flush=True)  # type: ignore[index]  # fmt: skip
    print("\n| left-out class | originals | score | answered as another species [95 % CI] | at a group's level (right) "
          "| AUROC unknown vs known | known test: useful answers (vs softmax only) | precision |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table:
        base = r["softmax only"]["useful"][0]  # type: ignore[index]
        for name in ("softmax only", *scorers):
            f = r[name]  # type: ignore[index]
            s, lo, hi = f["species_as_other"]  # type: ignore[index]
            print(f"| {r['class']} | {r['originals']} | {name} | {s:.1%} [{lo:.1%}, {hi:.1%}] | {f['group'][0]:.1%} "  # type: ignore[index]
                  f"({f['group_right'][0]:.0%}) | {f['auroc']:.3f} | {f['useful'][0]:.1%} ({f['useful'][0] / base:.3f}×) "  # type: ignore[index]
                  f"| {f['precision'][0]:.1%} [{f['precision'][1]:.1%}, {f['precision'][2]:.1%}] |")  # type: ignore[index]  # fmt: skip


if __name__ == "__main__":
    main()
