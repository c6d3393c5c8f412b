"""The MLflow model registry, in one place: alias names, resolving an alias, downloading a version's ONNX
file, moving an alias. Only mlflow-skinny's client API is used (either extra installs it), imported inside
the functions, so ``pip install pestid`` alone never needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pestid.predictor import ModelError

CHAMPION, CHALLENGER = "champion", "challenger"
OFFLINE = "offline"  # where a training run logs its INT8 offline copy (training.mlflow_callback), read back here


def client(tracking_uri: str) -> Any:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient()


def version_by_alias(tracking_uri: str, name: str, alias: str) -> Any | None:
    """The registry's ModelVersion behind NAME@ALIAS, or None where the alias is not set."""
    try:
        return client(tracking_uri).get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - MlflowException when the alias does not exist
        return None


def resolve_alias(reference: str, tracking_uri: str) -> tuple[str, str]:
    """``models:/NAME@ALIAS`` -> (NAME, version number) as the registry says now."""
    name, sep, alias = reference.removeprefix("models:/").partition("@")
    if not sep:
        raise ModelError(f"Hãy dùng models:/TÊN@BÍ_DANH, không phải {reference}.",
                         f"Use models:/NAME@ALIAS (e.g. models:/pestid@champion), not {reference}.")  # fmt: skip
    try:
        return name, str(client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except Exception as exc:  # noqa: BLE001 - MlflowException and connection errors
        raise ModelError(f"Không tìm thấy {reference} trong sổ đăng ký mô hình.",
                         f"{reference} was not found in the MLflow registry at {tracking_uri}: {exc}") from None  # fmt: skip


def download_onnx(name: str, version: str) -> Path:
    """The ONNX file of NAME/VERSION, downloaded from the registry (the tracking URI already set)."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    onnx = next(iter(sorted(local.rglob("*.onnx"))), None)
    if onnx is None:
        raise ModelError(
            f"Phiên bản {name}/{version} không có tệp ONNX.", f"Version {name}/{version} holds no ONNX file."
        )
    return onnx


def download_offline(name: str, version: str) -> Path | None:
    """The INT8 offline copy that NAME/VERSION's training run logged (``offline/model.int8.onnx``, what
    ``training.mlflow_callback`` logs), downloaded; None when the run logged none (its copy missed the INT8 budget,
    or export.int8 was off). Raises when the registry cannot say (a connection error): not the same as none."""
    import mlflow
    from mlflow import MlflowClient

    run_id = MlflowClient().get_model_version(name, version).run_id
    if not run_id:
        return None
    logged = {Path(f.path).name for f in MlflowClient().list_artifacts(run_id, OFFLINE)}
    if "model.int8.onnx" not in logged:  # another file there is not a copy this project made of this version
        return None
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{OFFLINE}/model.int8.onnx"))


def move_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    client(tracking_uri).set_registered_model_alias(name, alias, version)
