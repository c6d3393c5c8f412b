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


class ManifestDataset(Dataset[tuple[torch.Tensor, int]]):
    def __init__(self, manifest: Manifest, rows: Sequence[Row], transform: Callable[[Image.Image], np.ndarray]):
        self.manifest = manifest
        self.rows = list(rows)
        self.transform = transform
        self.index = {label: i for i, label in enumerate(manifest.labels)}
        self.targets = [self.index[r.label] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.manifest.image_path(self.rows[i]))
        return torch.from_numpy(self.transform(image)), self.targets[i]


def class_weights(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1; absent classes get 0."""
    counts = Counter(targets)
    weights = torch.tensor([1.0 / counts[c] if counts[c] else 0.0 for c in range(num_classes)])
    return weights * (num_classes / weights.sum()) if weights.sum() > 0 else weights


def balanced_sampler(targets: Sequence[int], num_classes: int, seed: int) -> WeightedRandomSampler:
    per_class = class_weights(targets, num_classes)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler([float(per_class[t]) for t in targets], len(targets), generator=generator)
