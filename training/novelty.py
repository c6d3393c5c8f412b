""" "Not one of the organisms I know": how far a photo's features lie from every class the model was taught.

A softmax always sums to one over the classes it has, so a photo of an organism the model was never taught (a
rice bug, when no class is the rice bug) can still be answered with full confidence as its nearest look-alike.
The features before the classifier carry more: a photo unlike every training photo lies far from all of them.

``Mahalanobis``: the class means of the training photos' pooled features and one covariance shared by all classes
(Ledoit-Wolf shrinkage), as in Lee et al., "A simple unified framework for detecting out-of-distribution samples"
(2018). A photo's score is its squared distance to the nearest class mean in the whitened space. ``KNearest``:
the cosine distance to the k-th nearest training photo (Sun et al., 2022). The threshold above which a photo is
"not one I know" is a quantile of the scores of known photos the model never trained on (val), so it costs a
chosen share of known photos and needs no photo of the unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Mahalanobis:
    whiten: np.ndarray  # (D, D): the shared covariance's inverse square root
    means: np.ndarray  # (C, D): each class's mean, whitened

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, classes: int) -> Mahalanobis:
        from sklearn.covariance import LedoitWolf

        x = np.asarray(features, dtype=np.float64)
        present = [c for c in range(classes) if (labels == c).any()]
        means = np.zeros((classes, x.shape[1]))
        for c in present:
            means[c] = x[labels == c].mean(axis=0)
        centred = x - means[labels]
        covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
        values, vectors = np.linalg.eigh(covariance)
        whiten = (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
        whitened = means @ whiten.T
        whitened[[c for c in range(classes) if c not in present]] = np.inf  # a class without photos is never near
        return cls(whiten.astype(np.float32), whitened.astype(np.float32))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Squared whitened distance to the nearest class mean; higher is less like anything known."""
        with torch.no_grad():
            return self.module()(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()

    def module(self) -> NoveltyHead:
        """The score as a PyTorch module: what the exported model computes from its pooled features."""
        return NoveltyHead(self.whiten, self.means[np.isfinite(self.means).all(axis=1)])

    def save(self, path: Path, **extra: np.ndarray) -> None:
        np.savez(path, whiten=self.whiten, means=self.means, **extra)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> tuple[Mahalanobis, dict[str, np.ndarray]]:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(arrays.pop("whiten"), arrays.pop("means")), arrays


class NoveltyHead(nn.Module):
    """Pooled features (N, D) in, each photo's squared whitened distance to the nearest class mean (N,) out."""

    whiten: torch.Tensor
    means: torch.Tensor
    norms: torch.Tensor

    def __init__(self, whiten: np.ndarray, means: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("whiten", torch.from_numpy(np.ascontiguousarray(whiten.T, dtype=np.float32)))
        self.register_buffer("means", torch.from_numpy(np.ascontiguousarray(means.T, dtype=np.float32)))
        self.register_buffer("norms", torch.from_numpy((means.astype(np.float32) ** 2).sum(axis=1)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = features @ self.whiten
        d2 = (z * z).sum(dim=1, keepdim=True) - 2 * z @ self.means + self.norms
        return d2.min(dim=1).values.clamp_min(0.0)


class WithNovelty(nn.Module):
    """A timm classifier that also says how unlike its classes a photo is: (logits, novelty), for export."""

    def __init__(self, model: nn.Module, head: NoveltyHead) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        features = m.forward_head(m.forward_features(x), pre_logits=True)  # type: ignore[operator]
        return m.get_classifier()(features), self.head(features)  # type: ignore[operator]


@dataclass(frozen=True)
class KNearest:
    bank: np.ndarray  # (N, D) training features, unit length
    k: int = 10

    @classmethod
    def fit(cls, features: np.ndarray, k: int = 10) -> KNearest:
        return cls(_unit(features), k)

    def score(self, features: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Cosine distance to the k-th nearest training photo; higher is less like anything known."""
        q, out = _unit(features), []
        for s in range(0, len(q), batch):
            similarity = q[s : s + batch] @ self.bank.T
            out.append(1.0 - np.partition(similarity, -self.k, axis=1)[:, -self.k])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def threshold_at(scores: np.ndarray, keep: float, weights: np.ndarray | None = None) -> float:
    """The score below which ``keep`` of known photos lie (weighted, each original once): above it, a photo is
    "not one I know". ``keep`` = 0.95 turns away 5 % of known photos."""
    order = np.argsort(scores, kind="stable")
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    cumulative = np.cumsum(w[order]) / w.sum()
    return float(scores[order][min(int(np.searchsorted(cumulative, keep)), len(scores) - 1)])
