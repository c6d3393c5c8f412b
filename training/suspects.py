"""``pestid data suspects``: photos whose label the out-of-fold predictions contradict.

Every photo is predicted by a linear probe that never saw its group (group
k-fold over the manifest's originals, on cached backbone features), and
cleanlab's confident learning ranks the labels those predictions contradict.
The list is a CSV an officer can load into the review queue.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pestid.errors import DatasetError
from pestid.manifest import read_manifest
from pestid.predictor import softmax
from pestid.training.config import TrainConfig
from pestid.training.features import FeatureCache
from pestid.training.probe import out_of_fold_logits

COLUMNS = ("path", "label", "suggested", "label_probability", "suggested_probability", "group", "source", "split",
           "source_label")  # fmt: skip


@dataclass(frozen=True)
class Suspect:
    path: str
    label: str
    suggested: str
    label_probability: float
    suggested_probability: float
    group: str
    source: str
    split: str
    source_label: str


def find_suspects(config: TrainConfig, manifest_path: str | Path, *, folds: int = 5) -> list[Suspect]:
    from cleanlab.filter import find_label_issues

    manifest = read_manifest(manifest_path)
    rows = [r for split in ("train", "val", "test") for r in manifest.split(split)]
    if len({r.group for r in rows}) < folds:
        raise DatasetError(
            f"{manifest_path} cần ít nhất {folds} nhóm đã chia tập.",
            f"{manifest_path} needs at least {folds} split groups: run 'pestid data split' first.",
        )
    cache = FeatureCache(config, manifest)
    features = np.concatenate(
        [cache.get(manifest.split(s), "plain", desc=f"{s} plain") for s in ("train", "val", "test")]
    )
    index = {label: i for i, label in enumerate(manifest.labels)}
    labels = np.array([index[r.label] for r in rows])
    logits = out_of_fold_logits([features], [features], labels, [r.group for r in rows], len(index), config, folds)
    probs = softmax(logits)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    out = []
    for i in ranked:
        row, best = rows[i], int(probs[i].argmax())
        out.append(Suspect(str(manifest.image_path(row)), row.label, manifest.labels[best], float(probs[i, labels[i]]),
                           float(probs[i, best]), row.group, row.source, row.split, row.source_label))  # fmt: skip
    return out


def write_suspects(suspects: list[Suspect], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for s in suspects:
            writer.writerow([getattr(s, c) if not isinstance(getattr(s, c), float) else f"{getattr(s, c):.4f}"
                             for c in COLUMNS])  # fmt: skip
    return path
