"""``pestid train``: a dataset version in, a tracked, calibrated, exported model out.

train → pick the best epoch → fit temperature and rejection threshold on val →
export ONNX with its contract → evaluate on the held-out split. Every step is
reported to the callbacks (MLflow among them).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from pestid.errors import DatasetError
from pestid.manifest import Manifest, Row, read_manifest
from pestid.training.augment import MIN_CROP_AREA, colour_on_device, eval_transform, train_pixels, train_transform
from pestid.training.callbacks import Callback, CallbackList
from pestid.training.config import TrainConfig, save_config
from pestid.training.data import CachedImages, ManifestDataset, balanced_sampler, class_weights, targets_of
from pestid.training.image_cache import eval_preparation, image_cache, train_preparation, train_side
from pestid.training.loop import FitState, fit, is_main_process, predict_logits, seed_everything, unwrap
from pestid.training.metrics import calibrate
from pestid.training.models import create_model, preprocess_spec
from pestid.training.provenance import code_revision
from pestid.training.report import EvaluationReport


@dataclass
class TrainResult:
    run_dir: Path
    fit: FitState
    calibration: dict[str, Any]
    onnx_path: Path | None = None
    evaluation: EvaluationReport | None = None
    int8: Any = None  # training.quantize.Int8Result when export.int8 wrote the offline copy
    int8_refused: Any = None  # training.quantize.Int8Refused when the copy missed its budget (the model stands)


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _setup_distributed(device: torch.device) -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return torch.distributed.is_initialized()
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _loaders(
    manifest: Manifest, config: TrainConfig, distributed: bool, device: torch.device
) -> tuple[DataLoader, DataLoader, Dataset[tuple[torch.Tensor, int]]]:
    spec = preprocess_spec(config.model)
    colour = not colour_on_device(device)  # light and colour in the workers, or per batch on the GPU
    train_rows, val_rows = manifest.split("train"), manifest.split("val")
    train_set: Dataset[tuple[torch.Tensor, int]]
    val_set: Dataset[tuple[torch.Tensor, int]]
    if config.data.image_cache:  # decoded once, then uint8 arrays (normalised on the device)
        threads = max(1, config.data.workers)
        side = train_side(spec, MIN_CROP_AREA[config.data.augment])
        train_cache = image_cache(manifest, train_rows, train_preparation(side), config.data.image_cache,
                                  threads=threads, label="train")  # fmt: skip
        val_cache = image_cache(manifest, val_rows, eval_preparation(spec), config.data.image_cache,
                                threads=threads, label="val")  # fmt: skip
        train_set = CachedImages(
            train_cache, targets_of(manifest, train_rows), train_pixels(spec, config.data.augment, colour)
        )
        val_set = CachedImages(val_cache, targets_of(manifest, val_rows))
    else:
        train_set = ManifestDataset(manifest, train_rows, train_transform(spec, config.data.augment, colour))
        val_set = ManifestDataset(manifest, val_rows, eval_transform(spec))
    targets = train_set.targets
    sampler: Any = None
    if distributed:
        sampler = DistributedSampler(train_set, shuffle=True, seed=config.seed)
    elif config.data.balance in ("sampler", "groups"):
        groups = [r.group for r in train_rows] if config.data.balance == "groups" else None
        sampler = balanced_sampler(targets, len(manifest.labels), config.seed, groups)
    common: dict[str, Any] = {"batch_size": config.data.batch_size, "num_workers": config.data.workers,
                              "persistent_workers": config.data.workers > 0,
                              "pin_memory": torch.cuda.is_available()}  # fmt: skip
    train_loader = DataLoader(
        train_set, sampler=sampler, shuffle=sampler is None, drop_last=len(targets) > config.data.batch_size, **common
    )
    return train_loader, DataLoader(val_set, shuffle=False, **common), val_set


def train(config: TrainConfig, *, callbacks: list[Callback] | None = None, export: bool = True) -> TrainResult:
    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(config.data.manifest)
    if not manifest.split("train") or not manifest.split("val"):
        raise DatasetError(
            f"Manifest {config.data.manifest} chưa có tập train và val: hãy chạy 'pestid data split'.",
            f"Manifest {config.data.manifest} has no train or val rows: run 'pestid data split' first.",
        )
    probe = config.method == "linear_probe"
    device = torch.device("cpu") if probe else _device(config)
    distributed = False if config.method != "finetune" else _setup_distributed(device)
    seed_everything(config.seed)
    model: nn.Module = create_model(config.model, len(manifest.labels)).to(device)
    info = {"dataset_version": manifest.version, "manifest": str(config.data.manifest), "labels": list(manifest.labels),
            "code_revision": code_revision(), "preprocess": preprocess_spec(config.model).model_dump(mode="json"),
            "method": config.method, "train_images": len(manifest.split("train")),
            "val_images": len(manifest.split("val"))}  # fmt: skip
    hooks = CallbackList(callbacks if is_main_process() else [])
    if is_main_process():
        save_config(config, run_dir / "config.yaml")
        (run_dir / "run.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        hooks.on_train_start(config=config, run_dir=run_dir, info=info)
    try:
        if probe:
            from pestid.training.probe import train_probe

            state, logits, rows = train_probe(model, manifest, config, run_dir, hooks)
        elif config.method == "partial_finetune":
            from pestid.training.partial import train_partial

            state, logits, rows = train_partial(model, manifest, config, run_dir, hooks, device)
        else:
            state, logits = _finetune(model, manifest, config, run_dir, device, distributed, hooks)
            rows = manifest.split("val")
        if not is_main_process():
            return TrainResult(run_dir, state, {})
        return _finish(manifest, rows, logits, config, info, run_dir, state, hooks, export)
    except BaseException:
        hooks.on_finish(status="FAILED")
        raise
    finally:
        if distributed:
            torch.distributed.destroy_process_group()


def _finetune(model: nn.Module, manifest: Manifest, config: TrainConfig, run_dir: Path, device: torch.device,
              distributed: bool, hooks: CallbackList) -> tuple[FitState, np.ndarray]:  # fmt: skip
    """The whole network learns from images; returns the state and the best checkpoint's val logits."""
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_loader, val_loader, _ = _loaders(manifest, config, distributed, device)
    targets = train_loader.dataset.targets  # type: ignore[attr-defined]
    weights = class_weights(targets, len(manifest.labels)) if config.data.balance == "loss_weights" else None
    state = fit(model, train_loader, val_loader, config=config, run_dir=run_dir, device=device,
                callbacks=hooks, class_weights=weights)  # fmt: skip
    if not is_main_process():
        return state, np.zeros(0)
    core = unwrap(model)
    core.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", map_location=device, weights_only=True))
    logits, _ = predict_logits(core, val_loader, device, preprocess_spec(config.model), config.eval.tta)
    return state, logits


def _finish(manifest: Manifest, rows: list[Row], logits: np.ndarray, config: TrainConfig, info: dict[str, Any],
            run_dir: Path, state: FitState, hooks: CallbackList, export: bool) -> TrainResult:  # fmt: skip
    """Calibrate on ``rows`` (originals the scoring model never trained on), export, evaluate."""
    labels = np.array(targets_of(manifest, rows))
    from pestid.training.partial import load_held_out  # written by the partial fine-tune for eval.species_level

    # Only this run's evidence: another method trained into the same folder must not pick up an older file.
    asked = config.method == "partial_finetune" and config.eval.species_level == "held_out_sources"
    held_out = load_held_out(run_dir / "held_out.npz", manifest.labels) if asked else []
    calibration = calibrate(logits, labels, [r.group for r in rows], list(manifest.labels),
                            config.eval.target_precision, per_class=config.eval.per_class_threshold,
                            held_out=held_out)  # fmt: skip
    calibration["calibrated_on"] = config.eval.calibration if config.method != "finetune" else "val"
    for name, seen in calibration.get("species_travel", {}).items():
        if seen["level"] == "group":
            group_at = calibration["group_thresholds"].get(seen["group"], 1.01)
            said = f"answered as {seen['group']} from {group_at:.3f}" if group_at <= 1 else "never named, nor its group"
            print(f"{name}: {said}; on sources the model never saw, the answers naming it were right "
                  f"{seen['species_precision']:.0%} of {seen['answers']:.1f} originals (weighted), as "
                  f"{seen['group']} {seen['group_precision']:.0%}")  # fmt: skip
    if (run_dir / "novelty.npz").is_file():  # written by the partial fine-tune for eval.novelty_keep
        from pestid.training.novelty import Mahalanobis

        _, found = Mahalanobis.load(run_dir / "novelty.npz")
        calibration["novelty_threshold"], calibration["novelty_keep"] = float(found["threshold"]), float(found["keep"])
    (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    result = TrainResult(run_dir, state, calibration)
    hooks.on_train_end(run_dir=run_dir, result={"fit": asdict(state), "calibration": calibration})
    if export:
        from pestid.training.evaluate import evaluate_model
        from pestid.training.export import export_run, write_contract, write_model_card

        # The contract is written twice: parity and evaluation read the exported file, and the evaluation's
        # figures then go into it. The model card is written once, with them.
        exported = export_run(run_dir, run_dir / "model.onnx", run=(config, info, calibration), card=False)
        report, files = evaluate_model(exported.onnx_path, config.data.manifest, split=config.eval.split,
                                       out_dir=run_dir / "evaluation")  # fmt: skip
        hooks.on_evaluation(split=config.eval.split, report=report, files=files)
        exported.contract.metrics = report.figures()
        write_contract(exported.onnx_path, exported.contract)
        write_model_card(exported.onnx_path, exported.contract, exported.parity_max_abs_diff)
        hooks.on_export(onnx_path=exported.onnx_path, files=[exported.card_path], contract=exported.contract)
        if config.export.int8:
            from pestid.training.quantize import Int8Refused, quantize_int8, refit_recipe

            # A copy that loses too much is not written, but the FP32 model it was made from is exported, evaluated
            # and registered already: the run finishes (so a retrain still reaches its gate), only without a
            # refreshed offline copy, and says so.
            try:
                int8 = quantize_int8(exported.onnx_path, config.data.manifest, split=config.eval.split,
                                     fp32_report=report, tolerance=config.export.int8_tolerance,
                                     photos=config.export.calibration_photos, refit=refit_recipe(config),
                                     fp32_blocks=config.export.int8_fp32_blocks)  # fmt: skip
            except Int8Refused as refused:
                hooks.on_int8_refused(error=refused)
                result.int8_refused = refused
            else:
                hooks.on_int8(path=int8.path, figures=int8.summary())
                result.int8 = int8
        result.onnx_path, result.evaluation = exported.onnx_path, report
    hooks.on_finish(status="FINISHED")
    return result


def run(config_path: str | Path | None, *, data: str | None = None, out: str | None = None,
        overrides: list[str] | None = None) -> TrainResult:  # fmt: skip
    """What ``pestid train`` calls: resolve the config, attach MLflow when enabled, train."""
    from pestid.training.config import resolve_config

    flags: dict[str, Any] = {"data.manifest": data, "out": out}
    config = resolve_config(config_path, overrides, **flags)
    callbacks: list[Callback] = []
    if config.mlflow.enabled:
        from pestid.training.mlflow_callback import MLflowCallback

        callbacks.append(MLflowCallback(config.mlflow))
    return train(config, callbacks=callbacks)
