"""The linear probe: the ImageNet backbone stays frozen and only the head learns.

Features come from ``pestid.training.features`` (onnxruntime, cached). The head is the
model's own classifier, so the run is exported, calibrated and served exactly as
a fine-tuned one. Levers: weights that make each original (and each class) count
once, label smoothing, dropout and mixup on the features, augmented views of the
training images, and the test-time mirrored view. The best epoch is chosen on
validation macro-F1 weighted by group.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pestid.manifest import Manifest, Row
from pestid.training.callbacks import Callback
from pestid.training.config import TrainConfig
from pestid.training.data import sample_weights, targets_of
from pestid.training.features import FeatureCache
from pestid.training.loop import FitState, seed_everything
from pestid.training.metrics import group_weights, macro_f1


def views_of(config: TrainConfig) -> tuple[list[str], list[str]]:
    """The views each training photo is seen through, and those whose logits are averaged at test time."""
    train = ["plain", *(f"aug{k}" for k in range(config.data.augment_views))]
    evaluation = ["plain", *(["hflip"] if "hflip" in config.eval.tta else [])]
    if "hflip" in config.eval.tta:
        train.append("hflip")
    return train, evaluation


def _logits(head: nn.Module, views: list[np.ndarray]) -> np.ndarray:
    head.eval()
    with torch.no_grad():
        return np.mean([head(torch.from_numpy(v)).numpy() for v in views], axis=0)


def _soft_targets(targets: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    one_hot = torch.nn.functional.one_hot(targets, classes).float()
    return one_hot * (1 - smoothing) + smoothing / classes


def _epoch(
    head: nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig, classes: int, generator: torch.Generator,
) -> float:  # fmt: skip
    head.train()
    order = torch.randperm(len(x), generator=generator)
    batch, total, dropout = max(config.data.batch_size, 256), 0.0, config.model.drop_rate
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        features, target, weight = x[idx], _soft_targets(y[idx], classes, config.optim.label_smoothing), w[idx]
        if config.optim.mixup > 0:
            lam = float(np.random.beta(config.optim.mixup, config.optim.mixup))
            perm = torch.randperm(len(idx), generator=generator)
            features = lam * features + (1 - lam) * features[perm]
            target, weight = lam * target + (1 - lam) * target[perm], lam * weight + (1 - lam) * weight[perm]
        features = nn.functional.dropout(features, dropout, training=True)
        loss_rows = -(target * nn.functional.log_softmax(head(features), dim=1)).sum(dim=1)
        loss = (loss_rows * weight).sum() / weight.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
    return total / max(len(order), 1)


def _optimiser(
    head: nn.Module, config: TrainConfig, rows: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    steps = max(1, config.epochs * math.ceil(rows / max(config.data.batch_size, 256)))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    cosine = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    return optimizer, cosine


def fit_linear(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, classes: int, config: TrainConfig, stop: int | None = None
) -> nn.Linear:
    """A fresh linear head trained on features with ``config``'s schedule, stopped after ``stop`` epochs
    (all of them by default); no validation: out-of-fold use."""
    torch.manual_seed(config.seed)
    head = nn.Linear(x.shape[1], classes)
    optimizer, scheduler = _optimiser(head, config, len(x))
    generator = torch.Generator().manual_seed(config.seed)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(weights).float()
    for _ in range(config.epochs if stop is None else stop):
        _epoch(head, xt, yt, wt, optimizer, scheduler, config, classes, generator)
    return head.eval()


def train_then_val(
    cache: FeatureCache, train_rows: list[Row], val_rows: list[Row], train: dict[str, np.ndarray],
    val: dict[str, np.ndarray], views: list[str],
) -> tuple[dict[str, np.ndarray], list[Row]]:  # fmt: skip
    """Out-of-fold calibration's rows: each of ``views``' arrays, train's then val's (val's missing views taken from
    ``cache``), and the rows in that order."""
    for v in views:
        val.setdefault(v, cache.get(val_rows, v, desc=f"val {v}"))
    return {v: np.concatenate([train[v], val[v]]) for v in views}, [*train_rows, *val_rows]


def out_of_fold_logits(
    views: list[np.ndarray], train_views: list[np.ndarray], labels: np.ndarray, groups: list[str], classes: int,
    config: TrainConfig, folds: int = 5, stop: int | None = None,
) -> np.ndarray:  # fmt: skip
    """Logits of every row from a head that never saw its group (group k-fold), averaged over the test-time
    ``views``; ``train_views`` are the feature arrays each fold's head learns from, for ``stop`` epochs."""
    from sklearn.model_selection import GroupKFold

    logits = np.zeros((len(labels), classes), dtype=np.float32)
    for train, held in GroupKFold(n_splits=folds).split(views[0], labels, groups):
        x = np.concatenate([v[train] for v in train_views])
        y = np.tile(labels[train], len(train_views))
        w = np.tile(sample_weights(labels[train].tolist(), [groups[i] for i in train], classes, config.data.balance),
                    len(train_views))  # fmt: skip
        logits[held] = _logits(fit_linear(x, y, w, classes, config, stop), [v[held] for v in views])
    return logits


def train_probe(
    model: nn.Module, manifest: Manifest, config: TrainConfig, run_dir: Path, callbacks: Callback
) -> tuple[FitState, np.ndarray, list[Row]]:
    """Fit the model's head on cached backbone features; save ``checkpoints/best.pt``; return the state and the
    logits of the rows to calibrate on (val, or out-of-fold over train and val), with those rows."""
    head: nn.Module = model.get_classifier()  # type: ignore[operator]
    state, logits, rows = fit_head(head, FeatureCache(config, manifest), manifest, config, callbacks)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), run_dir / "checkpoints" / "best.pt")
    return state, logits, rows


def fit_head(
    head: nn.Module, cache: FeatureCache, manifest: Manifest, config: TrainConfig, callbacks: Callback
) -> tuple[FitState, np.ndarray, list[Row]]:
    """Train ``head`` on ``cache``'s features with ``config``'s recipe, keeping its best epoch on val; return the
    state and the logits of the rows to calibrate on, with those rows."""
    seed_everything(config.seed)
    train_rows, val_rows = manifest.split("train"), manifest.split("val")
    train_views, eval_views = views_of(config)
    y_train, y_val = np.array(targets_of(manifest, train_rows)), np.array(targets_of(manifest, val_rows))
    train_features = {v: cache.get(train_rows, v, desc=f"train {v}") for v in train_views}
    val_features = {v: cache.get(val_rows, v, desc=f"val {v}") for v in eval_views}  # the train views but "aug"
    x = np.concatenate(list(train_features.values()))
    val = list(val_features.values())
    weights = sample_weights(y_train.tolist(), [r.group for r in train_rows], len(manifest.labels), config.data.balance)
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.tile(y_train, len(train_views)))
    wt = torch.from_numpy(np.tile(weights, len(train_views))).float()
    optimizer, scheduler = _optimiser(head, config, len(xt))
    generator = torch.Generator().manual_seed(config.seed)
    val_weights = group_weights([r.group for r in val_rows])
    state, best, best_logits = FitState(), None, np.zeros((len(val_rows), len(manifest.labels)), dtype=np.float32)
    start = time.perf_counter()
    for epoch in tqdm(range(config.epochs), desc="linear probe", leave=False):
        loss = _epoch(head, xt, yt, wt, optimizer, scheduler, config, len(manifest.labels), generator)
        logits = _logits(head, val)
        f1 = macro_f1(y_val, logits.argmax(axis=1), len(manifest.labels), val_weights)
        state.history.append({"epoch": epoch + 1, "train_loss": loss, "val_macro_f1": f1})
        state.epoch = epoch + 1
        if f1 > state.best_macro_f1:
            state.best_macro_f1, state.best_epoch, best_logits = f1, epoch + 1, logits
            best = {k: v.clone() for k, v in head.state_dict().items()}
        callbacks.on_epoch_end(epoch=epoch + 1, metrics={"train_loss": loss, "val_macro_f1": f1})
    if best is not None:
        head.load_state_dict(best)
    print(f"linear probe: {state.epoch} epochs on {len(xt)} feature rows in {time.perf_counter() - start:.1f} s; "
          f"best val macro-F1 (per original) {state.best_macro_f1:.4f} at epoch {state.best_epoch}")  # fmt: skip
    if config.eval.calibration != "out_of_fold":
        return state, best_logits, val_rows
    # Thousands of unseen originals instead of val's hundreds: train and val, each scored by a head that never saw it.
    # Each fold's head follows the shipped head's recipe (views, schedule, chosen epoch), so their confidence matches.
    both, rows = train_then_val(cache, train_rows, val_rows, train_features, val_features, train_views)
    labels = np.concatenate([y_train, y_val])
    logits = out_of_fold_logits([both[v] for v in eval_views], [both[v] for v in train_views], labels,
                                [r.group for r in rows], len(manifest.labels), config,
                                folds=config.eval.calibration_folds, stop=max(state.best_epoch, 1))  # fmt: skip
    return state, logits, rows
