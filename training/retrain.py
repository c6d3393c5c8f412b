"""``pestid retrain``: approved reviews → dataset version → train → @challenger → gate → maybe @champion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.config import resolve_config
from training.gate import GateDecision
from training.promote import promote
from training.train import TrainResult, run


@dataclass
class RetrainResult:
    manifest: Path
    dataset_report: dict[str, int]
    train: TrainResult
    decision: GateDecision


def retrain(
    config_path: str | Path, *, base: str | Path | None, out_manifest: str | Path, database_url: str,
    photo_dir: str | Path, overrides: list[str] | None = None,
) -> RetrainResult:  # fmt: skip
    from serving.review_export import manifest_from_reviews

    report = manifest_from_reviews(database_url, photo_dir, out_manifest, base=base)
    result = run(config_path, data=str(out_manifest), overrides=overrides)
    config = resolve_config(config_path, overrides)
    decision = promote(model_name=config.mlflow.registered_model, manifest=out_manifest,
                       tracking_uri=config.mlflow.tracking_uri, gate=config.gate, split="test")  # fmt: skip
    return RetrainResult(Path(out_manifest), report, result, decision)
