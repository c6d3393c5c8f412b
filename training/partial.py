"""Partial fine-tuning: the ImageNet trunk stays frozen, the network's last stages learn.

The stem and ``blocks[:frozen_blocks]`` of the EfficientNet run once per photo and
view in onnxruntime (``pestid.training.features``, cached as float16 maps). The
rest of the network (the last blocks, ``conv_head``, its batch norm and a new
classifier) learns from those maps in PyTorch: a few minutes per epoch on two
cores, where fine-tuning the whole network from pixels takes hours.

The recipe: each training photo seen plain or mirrored at random (or through one
of its augmented views), drawn with weights that make each original count once and each class
weigh the same; AdamW with the classifier at ``optim.lr`` and the blocks at
``optim.backbone_lr_scale`` of it, one-cycle; label smoothing; the mirrored view
at test time. The best epoch is chosen on validation macro-F1 weighted by group,
and its logits on val calibrate the model (out-of-fold calibration would train
the blocks once per fold). The weights learnt are the model's own modules, so the
run is exported, quantized and served exactly as any other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pestid.manifest import Manifest, Row
from pestid.training.callbacks import Callback
from pestid.training.config import ConfigError, TrainConfig
from pestid.training.data import sample_weights, targets_of
from pestid.training.features import trunk_cache
from pestid.training.loop import FitState, seed_everything
from pestid.training.metrics import group_weights, macro_f1
from pestid.training.novelty import Mahalanobis, threshold_at
from pestid.training.probe import train_then_val, views_of

EVAL_BATCH = 256


class Top(nn.Module):
    """What learns: ``model``'s blocks from ``frozen`` on, its head convolution, pooling and classifier. It shares
    ``model``'s modules, so training it trains the model."""

    def __init__(self, model: nn.Module, frozen: int) -> None:
        super().__init__()
        self.model = model
        self.blocks = model.blocks[frozen:]  # type: ignore[index]

    def forward(self, maps: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits, or with ``pre_logits`` the pooled features the classifier reads (``training.novelty``'s)."""
        m = self.model
        return m.forward_head(m.bn2(m.conv_head(self.blocks(maps))), pre_logits=pre_logits)  # type: ignore[operator]

    def parameter_groups(self, lr: float, blocks_scale: float) -> list[dict[str, Any]]:
        classifier = list(self.model.get_classifier().parameters())  # type: ignore[operator]
        body = [p for part in (self.blocks, self.model.conv_head, self.model.bn2) for p in part.parameters()]  # type: ignore[union-attr]
        return [{"params": body, "lr": lr * blocks_scale}, {"params": classifier, "lr": lr}]


def _batch(maps: np.ndarray, device: torch.device) -> torch.Tensor:
    """float16 maps as the float32, channels-last input of the learning part (1.75× faster on a CPU)."""
    return torch.from_numpy(maps).float().to(device).contiguous(memory_format=torch.channels_last)


def top_logits(top: Top, views: list[np.ndarray], device: torch.device, *, pre_logits: bool = False) -> np.ndarray:
    """Mean logits (or pooled features) over ``views`` (the same rows, each view's maps), in batches."""
    top.eval()
    with torch.no_grad():
        return np.mean([np.concatenate([top(_batch(maps[s : s + EVAL_BATCH], device), pre_logits).cpu().numpy()
                                        for s in range(0, len(maps), EVAL_BATCH)]) for maps in views], axis=0)  # fmt: skip


def rows_logits(
    model: nn.Module, manifest: Manifest, rows: list[Row], config: TrainConfig, device: torch.device | None = None
) -> np.ndarray:  # fmt: skip
    """A partially fine-tuned ``model``'s logits for ``rows``, from its cached trunk maps, averaged over the
    test-time views: what the exported model gives their photos."""
    cache, (_, eval_views) = trunk_cache(config, manifest, model), views_of(config)
    device = device or torch.device("cpu")
    return top_logits(Top(model, config.model.frozen_blocks).to(device), [cache.get(rows, v) for v in eval_views],
                      device)  # fmt: skip


def _epoch(
    top: Top, views: list[np.ndarray], y: torch.Tensor, weights: torch.Tensor, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, config: TrainConfig, generator: torch.Generator,
    device: torch.device, desc: str,
) -> float:  # fmt: skip
    """One epoch: as many draws as there are photos, photos drawn by ``weights``, each in one of its views at random."""
    top.train()
    draws = len(y)
    rows = torch.multinomial(weights, draws, replacement=True, generator=generator)
    which = torch.randint(len(views), (draws,), generator=generator)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.optim.label_smoothing)
    batch, total = config.data.batch_size, 0.0
    steps = range(0, draws, batch)
    for start in tqdm(steps, desc=desc, leave=False):
        idx, view = rows[start : start + batch].numpy(), which[start : start + batch].numpy()
        maps = np.stack([views[v][i] for i, v in zip(idx, view, strict=True)])
        loss = loss_fn(top(_batch(maps, device)), y[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(idx)
    return total / max(draws, 1)


def fit_top(
    model: nn.Module, maps: list[np.ndarray], y: np.ndarray, groups: list[str], config: TrainConfig,
    device: torch.device, *, val: tuple[list[np.ndarray], np.ndarray, np.ndarray] | None = None,
    callbacks: Callback | None = None, stop: int | None = None, desc: str = "partial fine-tune",
    sources: list[str] | None = None,
) -> tuple[FitState, np.ndarray]:  # fmt: skip
    """Train ``model``'s top (``Top``) on trunk ``maps`` (one array per view) with ``config``'s recipe, for
    ``stop`` of its epochs (all by default). With ``val`` (its maps per test-time view, labels and weights), keep the
    best epoch on val macro-F1 and return its val logits; the model ends holding the weights kept. ``sources``
    (each row's) are what ``data.balance: sources`` balances."""
    seed_everything(config.seed)
    classes = int(model.get_classifier().out_features)  # type: ignore[operator]
    weights = torch.from_numpy(sample_weights(y.tolist(), groups, classes, config.data.balance, sources))
    for p in model.parameters():
        p.requires_grad_(False)
    top = Top(model, config.model.frozen_blocks).to(device).to(memory_format=torch.channels_last)
    parameter_groups = top.parameter_groups(config.optim.lr, config.optim.backbone_lr_scale)
    for group in parameter_groups:
        for p in group["params"]:
            p.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameter_groups, weight_decay=config.optim.weight_decay)
    steps = config.epochs * -(-len(y) // config.data.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in parameter_groups],
                                                    total_steps=steps, pct_start=0.3)  # fmt: skip
    generator = torch.Generator().manual_seed(config.seed)
    targets = torch.from_numpy(y)
    state, best, best_logits = FitState(), None, np.zeros((0, classes), dtype=np.float32)
    start = time.perf_counter()
    for epoch in range(config.epochs if stop is None else stop):
        loss = _epoch(top, maps, targets, weights, optimizer, scheduler, config, generator, device,
                      desc=f"{desc} {epoch + 1}/{config.epochs}")  # fmt: skip
        state.history.append({"epoch": epoch + 1, "train_loss": loss})
        state.epoch = epoch + 1
        if val is None:
            continue
        logits = top_logits(top, val[0], device)
        f1 = macro_f1(val[1], logits.argmax(axis=1), classes, val[2])
        state.history[-1]["val_macro_f1"] = f1
        if f1 > state.best_macro_f1:
            state.best_macro_f1, state.best_epoch, best_logits = f1, epoch + 1, logits
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if callbacks is not None:
            callbacks.on_epoch_end(epoch=epoch + 1, metrics={"train_loss": loss, "val_macro_f1": f1})
        print(f"{desc}: epoch {epoch + 1}/{config.epochs}, loss {loss:.4f}, val macro-F1 (per original) {f1:.4f}, "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    if best is not None:
        model.load_state_dict(best)
    model.to(memory_format=torch.contiguous_format).eval()
    return state, best_logits


def out_of_fold_logits(
    initial: dict[str, torch.Tensor], maps: list[np.ndarray], eval_maps: list[np.ndarray], y: np.ndarray,
    groups: list[str], config: TrainConfig, device: torch.device, *, folds: int, stop: int, sources: list[str],
) -> np.ndarray:  # fmt: skip
    """Logits of every row from a top that never saw its original (group k-fold), each fold's top trained from the
    ``initial`` weights with the shipped model's recipe for ``stop`` epochs, averaged over the test-time views."""
    from sklearn.model_selection import GroupKFold

    from pestid.training.models import create_model

    classes = int(initial["classifier.bias"].shape[0])
    logits = np.zeros((len(y), classes), dtype=np.float32)
    for k, (train, held) in enumerate(GroupKFold(n_splits=folds).split(y, y, groups)):
        model = create_model(config.model, classes)
        model.load_state_dict(initial)
        fit_top(model, [m[train] for m in maps], y[train], [groups[i] for i in train], config, device, stop=stop,
                desc=f"calibration fold {k + 1}/{folds}", sources=[sources[i] for i in train])  # fmt: skip
        logits[held] = top_logits(
            Top(model, config.model.frozen_blocks).to(device), [m[held] for m in eval_maps], device
        )
    return logits


def novelty_of(score: Mahalanobis, top: Top, views: list[np.ndarray], device: torch.device) -> np.ndarray:
    """Each row's novelty as the exported model gives it: scored per view, then averaged over the views."""
    return np.mean([score.score(top_logits(top, [maps], device, pre_logits=True)) for maps in views], axis=0)


def fit_novelty(
    model: nn.Module, manifest: Manifest, config: TrainConfig, run_dir: Path, train: tuple[np.ndarray, np.ndarray],
    val: tuple[list[np.ndarray], np.ndarray], val_groups: list[str], device: torch.device,
) -> None:  # fmt: skip
    """The open-set score (``training.novelty``) for ``eval.novelty_keep``: fitted on the training photos' pooled
    features (plain view), its threshold the one that keeps that share of val's in-scope photos, each original
    counted once. Written to ``novelty.npz``, which export turns into the model's second output."""
    from pestid.catalogue import load_catalogue

    path = run_dir / "novelty.npz"
    path.unlink(missing_ok=True)  # a score from an earlier run in this folder must not outlive it
    keep = config.eval.novelty_keep
    if keep <= 0:
        return
    top = Top(model, config.model.frozen_blocks).to(device)
    score = Mahalanobis.fit(top_logits(top, [train[0]], device, pre_logits=True), train[1], len(manifest.labels))
    scores, labels = novelty_of(score, top, val[0], device), val[1]
    in_scope = np.array(load_catalogue().in_scope(list(manifest.labels)))[labels]
    threshold = threshold_at(
        scores[in_scope], keep, group_weights([g for g, s in zip(val_groups, in_scope, strict=True) if s])
    )
    score.save(path, threshold=np.array(threshold), keep=np.array(keep))
    print(f"open-set score: Mahalanobis on {len(train[1])} training photos; novelty above {threshold:.1f} is "
          f"'not one I know' (keeps {keep:.0%} of val's in-scope photos)")  # fmt: skip


def shared_sources(rows: list[Row]) -> dict[str, set[str]]:
    """Each source that holds a class another source also holds, with those classes: the sources a model can be
    judged on as a new place (trained without it, shown its photos of classes the others taught)."""
    by_source: dict[str, set[str]] = {}
    for r in rows:
        by_source.setdefault(r.source, set()).add(r.label)
    out = {}
    for source, labels in sorted(by_source.items()):
        others = set().union(*(v for k, v in by_source.items() if k != source))
        if labels & others:
            out[source] = labels & others
    return out


def fit_held_out_sources(
    initial: dict[str, torch.Tensor], manifest: Manifest, config: TrainConfig, run_dir: Path,
    maps: dict[str, dict[str, np.ndarray]], rows: dict[str, list[Row]], device: torch.device,
) -> None:  # fmt: skip
    """Evidence for ``eval.species_level: held_out_sources`` (``training.metrics.travel``): for each source that
    shares classes with another, the top trained again without its photos (the shipped recipe, best epoch on the
    other sources' val), then its val logits (what that model would be calibrated on) and its logits on the
    left-out source's train and val photos of the shared classes (never test). Written to ``held_out.npz``.

    A model answers photos from a place it never saw less well than its val promises: the left-out source is
    that place, measured."""
    from pestid.training.models import create_model

    path = run_dir / "held_out.npz"
    path.unlink(missing_ok=True)  # evidence from an earlier run in this folder must not outlive it
    if config.eval.species_level != "held_out_sources":
        return
    train_views, eval_views = views_of(config)
    index = {label: i for i, label in enumerate(manifest.labels)}
    arrays: dict[str, np.ndarray] = {"labels": np.array(manifest.labels)}  # what the indices below mean
    k = 0  # entries written: a source skipped leaves no gap
    for source, classes in shared_sources([*rows["train"], *rows["val"]]).items():
        keep = {s: np.array([r.source != source for r in rows[s]]) for s in ("train", "val")}
        if not keep["val"].any() or not keep["train"].any():
            print(f"held-out source {source}: skipped (without it, no photo is left to train or to calibrate on)")
            continue
        model = create_model(config.model, len(manifest.labels))
        model.load_state_dict(initial)
        train_rows = [r for r, ok in zip(rows["train"], keep["train"], strict=True) if ok]
        val_rows = [r for r, ok in zip(rows["val"], keep["val"], strict=True) if ok]
        y_val = np.array([index[r.label] for r in val_rows])
        _, val_logits = fit_top(model, [maps["train"][v][keep["train"]] for v in train_views],
                                np.array([index[r.label] for r in train_rows]), [r.group for r in train_rows], config,
                                device, val=([maps["val"][v][keep["val"]] for v in eval_views], y_val,
                                             group_weights([r.group for r in val_rows])),
                                sources=[r.source for r in train_rows], desc=f"without {source}")  # fmt: skip
        top = Top(model, config.model.frozen_blocks).to(device)
        held = {s: np.array([r.source == source and r.label in classes for r in rows[s]]) for s in ("train", "val")}
        held_rows = [r for s in ("train", "val") for r, h in zip(rows[s], held[s], strict=True) if h]
        held_logits = top_logits(top, [np.concatenate([maps[s][v][held[s]] for s in ("train", "val")])
                                       for v in eval_views], device)  # fmt: skip
        arrays |= {f"{k}_source": np.array(source), f"{k}_val_logits": val_logits, f"{k}_val_labels": y_val,
                   f"{k}_val_groups": np.array([r.group for r in val_rows]), f"{k}_held_logits": held_logits,
                   f"{k}_held_labels": np.array([index[r.label] for r in held_rows]),
                   f"{k}_held_groups": np.array([r.group for r in held_rows])}  # fmt: skip
        print(f"held-out source {source}: {len({r.group for r in held_rows})} originals of {len(classes)} shared "
              f"classes answered by a top trained without them")  # fmt: skip
        k += 1
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle's bool


def load_held_out(path: Path, labels: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """``held_out.npz`` as one dict per left-out source (``source``, ``val_logits``, …, ``held_groups``). Evidence
    written for other labels (another dataset version's) is refused: its class indices would name other classes."""
    if not path.is_file():
        return []
    with np.load(path) as found:
        if "labels" not in found or found["labels"].tolist() != list(labels):
            raise ValueError(f"{path} was written for other labels than this model's; train the run again")
        keys = [key for key in found if key != "labels"]
        count = len({key.split("_", 1)[0] for key in keys})
        return [{key.split("_", 1)[1]: found[key] for key in keys if key.startswith(f"{k}_")} for k in range(count)]


def _check(model: nn.Module, manifest: Manifest, config: TrainConfig) -> None:
    """Refuse, before any work, a model this method cannot split and a calibration the data cannot fill."""
    blocks, frozen = getattr(model, "blocks", None), config.model.frozen_blocks
    if not isinstance(blocks, nn.Sequential) or not all(
        hasattr(model, m) for m in ("conv_stem", "bn1", "conv_head", "bn2")
    ):
        raise ConfigError(f"method=partial_finetune cần một EfficientNet của timm (conv_stem, bn1, blocks, conv_head, bn2); "
                          f"{config.model.name} không phải.",
                          f"method=partial_finetune needs a timm EfficientNet (conv_stem, bn1, blocks, conv_head, bn2); "
                          f"{config.model.name} is not one.")  # fmt: skip
    if not 0 < frozen < len(blocks):
        raise ConfigError(f"model.frozen_blocks phải từ 1 đến {len(blocks) - 1} (mô hình có {len(blocks)} khối), không phải {frozen}.",
                          f"model.frozen_blocks must be from 1 to {len(blocks) - 1} (the model has {len(blocks)} blocks), not {frozen}.")  # fmt: skip
    if config.epochs < 1:
        raise ConfigError(
            f"epochs phải ít nhất là 1, không phải {config.epochs}.", f"epochs must be at least 1, not {config.epochs}."
        )
    originals = len({r.group for s in ("train", "val") for r in manifest.split(s)})
    folds = config.eval.calibration_folds
    if config.eval.calibration == "out_of_fold" and originals < folds:
        raise ConfigError(f"Hiệu chỉnh ngoài fold cần ít nhất {folds} ảnh gốc trong train và val, chỉ có {originals}.",
                          f"Out-of-fold calibration needs at least {folds} originals in train and val; there are "
                          f"{originals}. Lower eval.calibration_folds or use eval.calibration=val.")  # fmt: skip


def train_partial(
    model: nn.Module, manifest: Manifest, config: TrainConfig, run_dir: Path, callbacks: Callback,
    device: torch.device | None = None,
) -> tuple[FitState, np.ndarray, list[Row]]:  # fmt: skip
    """Fine-tune ``model``'s last stages on cached trunk maps; save ``checkpoints/best.pt``; return the state and
    the logits to calibrate on with their rows: val's from the best epoch, or out-of-fold over train and val."""
    device = device or torch.device("cpu")
    _check(model, manifest, config)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cache = trunk_cache(config, manifest, model)
    train_rows, val_rows = manifest.split("train"), manifest.split("val")
    train_views, eval_views = views_of(config)
    train_maps = {v: cache.get(train_rows, v, desc=f"trunk: train {v}") for v in train_views}
    val_maps = {v: cache.get(val_rows, v, desc=f"trunk: val {v}") for v in eval_views}
    y_train, y_val = np.array(targets_of(manifest, train_rows)), np.array(targets_of(manifest, val_rows))
    start = time.perf_counter()
    state, logits = fit_top(model, list(train_maps.values()), y_train, [r.group for r in train_rows], config, device,
                            val=(list(val_maps.values()), y_val, group_weights([r.group for r in val_rows])),
                            callbacks=callbacks, sources=[r.source for r in train_rows])  # fmt: skip
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), run_dir / "checkpoints" / "best.pt")
    fit_novelty(model, manifest, config, run_dir, (train_maps["plain"], y_train), (list(val_maps.values()), y_val),
                [r.group for r in val_rows], device)  # fmt: skip
    fit_held_out_sources(initial, manifest, config, run_dir, {"train": train_maps, "val": val_maps},
                         {"train": train_rows, "val": val_rows}, device)  # fmt: skip
    print(f"partial fine-tune: blocks[{config.model.frozen_blocks}:] and the head, {state.epoch} epochs on {len(y_train)} photos in "
          f"{len(train_views)} views, {time.perf_counter() - start:.1f} s; best val macro-F1 (per original) "
          f"{state.best_macro_f1:.4f} at epoch {state.best_epoch}")  # fmt: skip
    if config.eval.calibration != "out_of_fold":
        return state, logits, val_rows
    # Thousands of unseen originals instead of val's hundreds, as for the linear probe (see probe.fit_head).
    both, rows = train_then_val(cache, train_rows, val_rows, train_maps, val_maps, train_views)
    logits = out_of_fold_logits(initial, [both[v] for v in train_views], [both[v] for v in eval_views],
                                np.concatenate([y_train, y_val]), [r.group for r in rows], config, device,
                                folds=config.eval.calibration_folds, stop=max(state.best_epoch, 1),
                                sources=[r.source for r in rows])  # fmt: skip
    return state, logits, rows
