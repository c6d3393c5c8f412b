"""The training loop: AdamW, warm-up then cosine decay, label smoothing, staged
unfreezing, bf16 autocast and channels-last on GPU, early stopping on
validation macro-F1, and checkpoints that let an interrupted run resume.

Each epoch reseeds every generator with ``seed + epoch``, so a resumed run
continues exactly as an uninterrupted one would. Under ``torchrun`` the model
is wrapped in DDP; rank 0 alone writes checkpoints and calls callbacks.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pestid.preprocess import PreprocessSpec
from pestid.training.augment import colour_on_device, field_colour
from pestid.training.callbacks import Callback
from pestid.training.config import TrainConfig
from pestid.training.metrics import macro_f1
from pestid.training.models import backbone_parameters, head_parameters, preprocess_spec


@dataclass
class FitState:
    epoch: int = 0  # epochs completed
    best_macro_f1: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself, out of its DDP wrapper when it has one."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_main_process() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _schedule(config: TrainConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    total = max(1, config.epochs * steps_per_epoch)
    warmup = max(1, int(config.optim.warmup_epochs * steps_per_epoch))
    frozen = config.optim.freeze_backbone_epochs * steps_per_epoch

    def head(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    def backbone(step: int) -> float:  # staged unfreezing: no backbone updates while frozen
        return 0.0 if step < frozen else head(step)

    return backbone, head


def build_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    core = unwrap(model)
    groups = [
        {"params": backbone_parameters(core), "lr": config.optim.lr * config.optim.backbone_lr_scale},
        {"params": head_parameters(core), "lr": config.optim.lr},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, list(_schedule(config, steps_per_epoch)))
    return optimizer, scheduler


def model_input(
    images: torch.Tensor, spec: PreprocessSpec, device: torch.device, channels_last: bool = False,
    colour: str = "none",
) -> torch.Tensor:  # fmt: skip
    """A loader's batch as the model's (N, 3, H, W) input on ``device``. uint8 NHWC pixels (the training loaders)
    travel as bytes, a quarter of float32, get the training batch's light and colour (``colour``: an augmentation
    strength, see ``augment.field_colour``) and are normalised there with ``pestid.preprocess.normalise``'s
    float32 arithmetic; float inputs (already normalised) pass through."""
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        mean = torch.tensor(spec.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        planar = images.permute(0, 3, 1, 2)  # an NCHW view of NHWC pixels: channels-last strides already
        x = field_colour((planar.float() if channels_last else planar.contiguous().float()).div_(255.0), colour)
        return x.sub_(mean).div_(std)  # per-channel broadcasting: 3.5x faster than over NHWC's last axis
    if colour != "none":
        raise ValueError("light and colour need the uint8 pixels; this batch is already normalised")
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@torch.no_grad()
def predict_logits(
    model: nn.Module, loader: DataLoader, device: torch.device, spec: PreprocessSpec, tta: Sequence[str] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of every batch, averaged over the test-time views as the exported model does."""
    model.eval()
    logits, labels = [], []
    for images, targets in loader:
        images = model_input(images, spec, device)
        out = model(images).float()
        if "hflip" in tta:
            out = (out + model(images.flip(-1)).float()) / 2
        logits.append(out.cpu())
        labels.append(targets)
    if not logits:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


@dataclass
class EpochTimes:
    """Where an epoch's time went: waiting for the loader, or in the training step (which ends with the loss
    read back, so on a GPU it includes the device's work). Whichever is larger is the bottleneck."""

    images: int = 0
    loader_s: float = 0.0
    step_s: float = 0.0

    def figures(self) -> dict[str, float]:
        total = max(self.loader_s + self.step_s, 1e-9)
        return {"images_per_s": self.images / total, "step_images_per_s": self.images / max(self.step_s, 1e-9),
                "loader_wait_share": self.loader_s / total}  # fmt: skip


def _train_epoch(
    model: nn.Module, loader: DataLoader, optimizer: Any, scheduler: Any, loss_fn: nn.Module,
    config: TrainConfig, device: torch.device, epoch: int,
) -> tuple[float, EpochTimes]:  # fmt: skip
    model.train()
    autocast = device.type == "cuda" and config.amp
    spec = preprocess_spec(config.model)
    channels_last = device.type == "cuda" and config.channels_last
    colour = config.data.augment if colour_on_device(device) else "none"  # else the workers did light and colour
    total, times = 0.0, EpochTimes()
    steps = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not is_main_process(), leave=False)
    batches = iter(loader)
    for _ in range(steps):
        start = time.perf_counter()
        batch = next(batches, None)
        arrived = time.perf_counter()
        if batch is None:
            break
        images = model_input(batch[0], spec, device, channels_last, colour=colour)
        targets = batch[1].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_value = loss.item()
        total += loss_value * len(targets)
        times.images += len(targets)
        times.loader_s += arrived - start
        times.step_s += time.perf_counter() - arrived
        bar.update(1)
        figures = times.figures()
        bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{figures['images_per_s']:.1f}",
                        loader=f"{figures['loader_wait_share']:.0%}")  # fmt: skip
    bar.close()
    return total / max(times.images, 1), times


def _freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """Staged unfreezing. Without DDP the frozen backbone also skips its backward pass;
    under DDP (which fixes the trainable set at wrap time) its learning rate is 0 instead."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return
    for parameter in backbone_parameters(model):
        parameter.requires_grad_(not frozen)


def _checkpoint(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, state: FitState) -> None:
    core = unwrap(model)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "state": state.__dict__}, tmp)  # fmt: skip
    tmp.replace(path)


def _resume(path: Path, model: nn.Module, optimizer: Any, scheduler: Any) -> FitState:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    core = unwrap(model)
    core.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return FitState(**saved["state"])


def fit(
    model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, *, config: TrainConfig, run_dir: Path,
    device: torch.device, callbacks: Callback, class_weights: torch.Tensor | None = None,
) -> FitState:  # fmt: skip
    """Train until ``config.epochs`` or early stopping; returns the state with the history."""
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    steps = (
        len(train_loader) if config.max_steps_per_epoch is None else min(len(train_loader), config.max_steps_per_epoch)
    )
    optimizer, scheduler = build_optimizer(model, config, steps)
    weight = class_weights.to(device) if class_weights is not None else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.optim.label_smoothing)
    last = ckpt_dir / "last.pt"
    state = _resume(last, model, optimizer, scheduler) if config.resume and last.is_file() else FitState()
    if state.epoch and is_main_process():
        print(f"Tiếp tục từ / resuming from epoch {state.epoch} ({last})")
    for epoch in range(state.epoch, config.epochs):
        if state.bad_epochs >= config.patience:
            break
        seed_everything(config.seed + epoch)
        _freeze_backbone(model, epoch < config.optim.freeze_backbone_epochs)
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        train_loss, times = _train_epoch(model, train_loader, optimizer, scheduler, loss_fn, config, device, epoch)
        logits, labels = predict_logits(model, val_loader, device, preprocess_spec(config.model))
        f1 = macro_f1(labels, logits.argmax(axis=1), logits.shape[1]) if len(labels) else 0.0
        metrics = {"train_loss": train_loss, "val_macro_f1": f1, **times.figures(),
                   "val_top1": float((logits.argmax(axis=1) == labels).mean()) if len(labels) else 0.0,
                   "lr": float(scheduler.get_last_lr()[-1])}  # fmt: skip
        state.history.append({"epoch": epoch + 1, **metrics})
        state.epoch = epoch + 1
        improved = f1 > state.best_macro_f1
        state.best_macro_f1, state.best_epoch = (f1, epoch + 1) if improved else (state.best_macro_f1, state.best_epoch)
        state.bad_epochs = 0 if improved else state.bad_epochs + 1
        state.stopped_early = state.bad_epochs >= config.patience and state.epoch < config.epochs
        if is_main_process():
            if improved:
                core = unwrap(model)
                torch.save(core.state_dict(), ckpt_dir / "best.pt")
            _checkpoint(last, model, optimizer, scheduler, state)
            callbacks.on_epoch_end(epoch=epoch + 1, metrics=metrics)
            print(
                f"epoch {epoch + 1}: loss {train_loss:.4f}  val macro-F1 {f1:.4f}  {metrics['images_per_s']:.1f} img/s "
                f"(step alone {metrics['step_images_per_s']:.1f} img/s, waiting for the loader "
                f"{metrics['loader_wait_share']:.0%} of the time)"
            )
    return state
