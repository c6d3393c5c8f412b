"""``pestid retrain``'s training half: a dataset version → train → @challenger → gate → maybe @champion.

The dataset version comes from the reviews (``pestid.serving.review_export``); the
CLI composes the two, so training never imports serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pestid.training.config import resolve_config
from pestid.training.gate import GateDecision
from pestid.training.promote import promote
from pestid.training.train import TrainResult, run


@dataclass
class RetrainResult:
    manifest: Path
    train: TrainResult
    decision: GateDecision


def retrain(config_path: str | Path, manifest: str | Path, *, overrides: list[str] | None = None) -> RetrainResult:
    result = run(config_path, data=str(manifest), overrides=overrides)
    config = resolve_config(config_path, overrides)
    decision = promote(model_name=config.mlflow.registered_model, manifest=manifest,
                       tracking_uri=config.mlflow.tracking_uri, gate=config.gate, split="test")  # fmt: skip
    return RetrainResult(Path(manifest), result, decision)
