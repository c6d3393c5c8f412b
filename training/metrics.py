"""Classification metrics, calibration and rejection, on numpy arrays.

Pure functions: ``probs`` is (N, C), ``labels`` is (N,) of class indices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from pestid.predictor import softmax


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    stats = per_class(confusion(labels, predicted, num_classes))
    present = stats["support"] > 0
    return float(stats["f1"][present].mean()) if present.any() else 0.0


def top_k(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    best = np.argsort(-probs, axis=1)[:, :k]
    return float((best == labels[:, None]).any(axis=1).mean())


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            out.append({"lo": lo, "hi": hi, "count": int(inside.sum()), "confidence": float(confidence[inside].mean()),
                        "accuracy": float(correct[inside].mean())})  # fmt: skip
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: confidence-accuracy gap weighted by bin size."""
    n = len(labels)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability(probs, labels, bins)))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    probs = softmax(logits, temperature)
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation NLL (golden-section search over log T)."""
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(logits, labels, float(np.exp(a))) < nll(logits, labels, float(np.exp(b))):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


def choose_threshold(probs: np.ndarray, labels: np.ndarray, target_precision: float) -> float:
    """The lowest confidence threshold whose accepted predictions reach the target precision.

    If no threshold reaches it, the one with the best precision is returned.
    """
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    order = np.argsort(-confidence)
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    reaching = np.flatnonzero(precision >= target_precision)
    if len(reaching) == 0:
        return float(confidence[order][int(np.argmax(precision))]) if len(order) else 1.0
    return float(confidence[order][reaching[-1]])


def selective(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    accepted = probs.max(axis=1) >= threshold
    correct = probs.argmax(axis=1) == labels
    return {
        "threshold": threshold,
        "coverage": float(accepted.mean()) if len(labels) else 0.0,
        "accuracy_at_threshold": float(correct[accepted].mean()) if accepted.any() else 0.0,
    }


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann–Whitney)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tie = scores == value
        ranks[tie] = ranks[tie].mean()
    rank_sum = ranks[: len(positive)].sum()
    return float((rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative)))


def group_accuracy(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> float:
    """One vote per group: mean probabilities of its images against its majority label."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g or f"row-{i}"].append(i)
    hits = []
    for idx in members.values():
        truth = np.bincount(labels[idx]).argmax()
        hits.append(probs[idx].mean(axis=0).argmax() == truth)
    return float(np.mean(hits)) if hits else 0.0


def summary(probs: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, object]:
    predicted = probs.argmax(axis=1)
    matrix = confusion(labels, predicted, len(names))
    stats = per_class(matrix)
    return {
        "images": len(labels),
        "top1": float((predicted == labels).mean()) if len(labels) else 0.0,
        "top5": top_k(probs, labels, 5),
        "macro_f1": macro_f1(labels, predicted, len(names)),
        "ece": ece(probs, labels),
        "per_class": {
            name: {k: float(stats[k][i]) for k in ("precision", "recall", "f1", "support")}
            for i, name in enumerate(names)
        },
        "confusion": matrix.tolist(),
    }
