"""Dataset statistics: counts per class and split, image sizes, imbalance."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pestid.manifest import SPLITS, Row

IMBALANCE_WARN_RATIO = 10.0


@dataclass
class DatasetStats:
    images: int
    classes: int
    groups: int
    per_class: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # label -> split -> counts
    sizes: dict[str, dict[str, float]] = field(default_factory=dict)
    imbalance_ratio: float = 1.0
    warnings: list[str] = field(default_factory=list)


def compute_stats(rows: Sequence[Row], *, warn_ratio: float = IMBALANCE_WARN_RATIO) -> DatasetStats:
    images: dict[str, Counter[str]] = defaultdict(Counter)
    groups: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        split = row.split or "unsplit"
        images[row.label][split] += 1
        images[row.label]["all"] += 1
        groups[row.label][split].add(row.group or row.sha256)
        groups[row.label]["all"].add(row.group or row.sha256)
    stats = DatasetStats(images=len(rows), classes=len(images), groups=len({r.group or r.sha256 for r in rows}))
    for label in sorted(images):
        stats.per_class[label] = {
            split: {"images": images[label][split], "groups": len(groups[label][split])}
            for split in ("all", *SPLITS, "unsplit")
            if images[label][split]
        }
    for dim in ("width", "height"):
        values = [getattr(r, dim) for r in rows] or [0]
        stats.sizes[dim] = {"min": min(values), "median": statistics.median(values), "max": max(values)}
    counts = [c["all"] for c in images.values()]
    if counts:
        stats.imbalance_ratio = round(max(counts) / max(min(counts), 1), 2)
        if stats.imbalance_ratio >= warn_ratio:
            rare = min(images, key=lambda label: images[label]["all"])
            stats.warnings.append(
                f"Imbalanced: the largest class has {stats.imbalance_ratio}× the images of the smallest ({rare}); "
                "use a balanced sampler or class weights."
            )
    for label, per_split in stats.per_class.items():
        missing = [s for s in SPLITS if s not in per_split]
        if "unsplit" not in per_split and missing:
            stats.warnings.append(f"Class {label} has no images in {', '.join(missing)}.")
    return stats


def plot_stats(stats: DatasetStats, path: str | Path) -> Path:
    """A horizontal stacked bar chart of images per class and split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(stats.per_class)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.5))
    left = [0] * len(labels)
    for split in (*SPLITS, "unsplit"):
        values = [stats.per_class[label].get(split, {}).get("images", 0) for label in labels]
        if any(values):
            ax.barh(labels, values, left=left, label=split)
            left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("Số ảnh / images")
    ax.set_title(f"{stats.images} ảnh / images, {stats.groups} nhóm / groups")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
