"""Plots a person would rather look at than read: confusion matrix, reliability
diagram, per-class F1 and the training curves. Each writes a PNG and returns its path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix_png(matrix: Sequence[Sequence[int]], names: Sequence[str], path: Path) -> Path:
    m = np.asarray(matrix, dtype=float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 2 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), count in np.ndenumerate(m):
        if count:
            ax.text(j, i, str(int(count)), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("dự đoán / predicted")
    ax.set_ylabel("thực tế / true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def reliability_png(bins: Sequence[dict[str, float]], ece: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
    ax.bar(centres, [b["accuracy"] for b in bins], width=1 / 15, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="C1", label="bins")
    ax.set_xlabel("độ tin cậy / confidence")
    ax.set_ylabel("độ chính xác / accuracy")
    ax.set_title(f"ECE = {ece:.3f}")
    ax.legend()
    return _save(fig, path)


def per_class_png(per_class: dict[str, dict[str, float]], path: Path) -> Path:
    names = list(per_class)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.5))
    ax.barh(names, [per_class[n]["f1"] for n in names], color="C2")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("F1")
    return _save(fig, path)


def history_png(history: Sequence[dict[str, float]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(epochs, [h["val_macro_f1"] for h in history], "o-", label="val macro-F1")
    ax.set_xlabel("epoch")
    ax.legend()
    return _save(fig, path)
