"""MLflow tracking as a training callback.

Logs the resolved config as params, the dataset version and manifest hash,
the code revision, per-epoch metrics, calibration, the final evaluation with
its plots, and the exported ONNX model, which is registered as a new version
and given the alias ``challenger`` (aliases, never stages).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from pestid.registry import CHALLENGER, OFFLINE
from pestid.training.callbacks import Callback
from pestid.training.config import MlflowConfig, TrainConfig
from pestid.training.report import EvaluationReport


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else key, inner, out)
    else:
        out[prefix] = value
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ensure_experiment(config: MlflowConfig) -> str:
    """Point MLflow at the tracking store and make sure the experiment exists."""
    mlflow.set_tracking_uri(config.tracking_uri)
    existing = mlflow.get_experiment_by_name(config.experiment)
    if existing is not None:
        return existing.experiment_id
    location: str | None = config.artifact_location
    if config.tracking_uri.startswith(("http://", "https://")):
        location = None  # a tracking server decides where artifacts live (it proxies them)
    elif location and "://" not in location:
        location = Path(location).resolve().as_uri()
    return mlflow.create_experiment(config.experiment, artifact_location=location)


class MLflowCallback(Callback):
    def __init__(self, config: MlflowConfig) -> None:
        self.config = config
        self.run_id: str | None = None
        self.model_version: str | None = None

    def on_train_start(self, *, config: TrainConfig, run_dir: Path, info: dict[str, Any]) -> None:
        experiment_id = ensure_experiment(self.config)
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_dir.name)
        self.run_id = run.info.run_id
        (run_dir / "mlflow_run_id").write_text(self.run_id + "\n", encoding="utf-8")
        mlflow.log_params(_flat("", config.model_dump(mode="json"), {}))
        mlflow.set_tags({
            "pestid.dataset_version": info["dataset_version"],
            "pestid.manifest": info["manifest"],
            "pestid.manifest_sha256": file_sha256(info["manifest"]),
            "pestid.code_revision": info["code_revision"],
            "pestid.labels": ",".join(info["labels"]),
        })  # fmt: skip
        mlflow.log_artifact(str(run_dir / "config.yaml"))
        mlflow.log_dict(info, "run.json")

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    def on_train_end(self, *, run_dir: Path, result: dict[str, Any]) -> None:
        calibration = result["calibration"]
        mlflow.log_metrics({f"val_{k}": float(v) for k, v in calibration.items() if isinstance(v, int | float)})
        mlflow.log_metric("best_epoch", result["fit"]["best_epoch"])
        mlflow.log_dict(calibration, "calibration.json")  # thresholds, and which species answer as their group
        from pestid.training.plots import history_png

        if result["fit"]["history"]:
            mlflow.log_artifact(str(history_png(result["fit"]["history"], run_dir / "history.png")), "plots")

    def on_evaluation(self, *, split: str, report: EvaluationReport, files: list[Path]) -> None:
        figures = report.figures().items()
        scalars = {k: float(v) for k, v in figures if isinstance(v, int | float) and not isinstance(v, bool)}
        mlflow.log_metrics({f"{split}_{k}": v for k, v in scalars.items()})
        for name, stats in report.per_original.per_class.items():  # per original, like the headline
            mlflow.log_metrics({f"{split}_recall.{name}": stats.recall, f"{split}_f1.{name}": stats.f1})
        for path in files:
            mlflow.log_artifact(str(path), "evaluation")

    def on_int8(self, *, path: Path, figures: dict[str, float]) -> None:
        """The offline (INT8) copy rides along as an artifact of the run; it is not a registered version."""
        mlflow.log_metrics({f"int8_{k}": v for k, v in figures.items()})
        mlflow.log_artifact(str(path), OFFLINE)

    def on_int8_refused(self, *, error: Exception) -> None:
        """No offline copy rides along: the tag says why, so whoever promotes the version knows the phones keep
        the copy they have."""
        mlflow.set_tag("offline_copy", f"not written: {error}")
        if self.model_version is not None:  # on the version too: it is what gets promoted
            MlflowClient().set_model_version_tag(self.config.registered_model, self.model_version, "offline_copy",
                                                 "not written")  # fmt: skip

    def on_export(self, *, onnx_path: Path, files: list[Path], contract: Any) -> None:
        import onnx

        info = mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model", save_as_external_data=False)
        for path in files:
            mlflow.log_artifact(str(path), "model_card")
        if not self.config.register_model:
            return
        version = mlflow.register_model(info.model_uri, self.config.registered_model)
        self.model_version = str(version.version)
        client = MlflowClient()
        client.set_registered_model_alias(self.config.registered_model, CHALLENGER, self.model_version)
        client.set_model_version_tag(self.config.registered_model, self.model_version, "dataset_version",
                                     contract.dataset_version)  # fmt: skip
        mlflow.set_tag("pestid.registered_version", self.model_version)

    def on_finish(self, *, status: str) -> None:
        if mlflow.active_run() is not None:
            mlflow.end_run(status=status)
