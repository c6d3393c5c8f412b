"""Torch datasets over manifest rows; images go through the one decoder."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, WeightedRandomSampler

from pestid.imaging import read_image
from pestid.manifest import Manifest, Row
from pestid.training.image_cache import ImageCache


def targets_of(manifest: Manifest, rows: Sequence[Row]) -> list[int]:
    """Each row's class index in the manifest's frozen label order."""
    index = {label: i for i, label in enumerate(manifest.labels)}
    return [index[r.label] for r in rows]


class ManifestDataset(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, manifest: Manifest, rows: Sequence[Row], transform: Callable[[Image.Image], np.ndarray]):
        self.manifest = manifest
        self.rows = list(rows)
        self.transform = transform
        self.targets = targets_of(manifest, self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.manifest.image_path(self.rows[i]))
        return torch.from_numpy(self.transform(image)), self.targets[i]


class CachedImages(Dataset[tuple[torch.Tensor, int]]):
    """Rows of an ``ImageCache``: uint8 HWC pixels through ``transform`` (uint8 in, uint8 out), normalised later
    on the device (``training.loop.model_input``). No file is opened or decoded after the cache is built."""

    def __init__(self, cache: ImageCache, targets: Sequence[int],
                 transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:  # fmt: skip
        self.cache = cache
        self.targets = list(targets)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = self.cache[i]
        if self.transform is not None:
            pixels = self.transform(pixels)
        # a view into the read-only mapping is copied; an augmented array is already the worker's own
        return torch.from_numpy(
            np.ascontiguousarray(pixels) if pixels.flags.writeable else np.array(pixels)
        ), self.targets[i]


def class_weights(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1; absent classes get 0."""
    counts = Counter(targets)
    weights = torch.tensor([1.0 / counts[c] if counts[c] else 0.0 for c in range(num_classes)])
    return weights * (num_classes / weights.sum()) if weights.sum() > 0 else weights


def sample_weights(
    targets: Sequence[int], groups: Sequence[str], num_classes: int, balance: str, sources: Sequence[str] | None = None
) -> np.ndarray:  # fmt: skip
    """Per-image weights, mean 1. ``groups``: each original counts once and each class weighs the same;
    ``sources``: the same, and within a class each source weighs the same (``sources`` given per image), so one
    source's many photos of a class do not drown another's few; ``sampler``/``loss_weights``: each class weighs
    the same by image count; otherwise all equal."""
    if balance in ("groups", "sources"):
        if balance == "sources" and (sources is None or len(sources) != len(targets)):
            raise ValueError("balance='sources' needs each image's source")
        sizes = Counter(groups)
        per_image = np.array([1.0 / sizes[g] for g in groups])
        within = sources if balance == "sources" and sources is not None else [""] * len(targets)
        cells = list(zip(targets, within, strict=True))
        per_cell: Counter[tuple[int, str]] = Counter()
        for cell, w in zip(cells, per_image, strict=True):
            per_cell[cell] += w
        shares = Counter(t for t, _ in per_cell)  # how many sources hold each class
        weights = np.array([w / per_cell[c] / shares[c[0]] for c, w in zip(cells, per_image, strict=True)])
    elif balance in ("sampler", "loss_weights"):
        weights = class_weights(targets, num_classes).numpy()[np.asarray(targets)].astype(np.float64)
    else:
        weights = np.ones(len(targets))
    return weights * (len(weights) / weights.sum()) if len(weights) else weights


def balanced_sampler(
    targets: Sequence[int], num_classes: int, seed: int, groups: Sequence[str] | None = None
) -> WeightedRandomSampler:
    """Draws classes equally; with ``groups``, also each original once rather than each augmented copy."""
    weights = sample_weights(targets, groups or [str(i) for i in range(len(targets))], num_classes,
                             "groups" if groups is not None else "sampler")  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights.tolist(), len(targets), generator=generator)
