"""Loading the model once: from a file, or from the MLflow registry by alias.

``models:/NAME@ALIAS`` is resolved to a fixed version at load time, and that
version is what every response reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pestid.predictor import ModelError, Predictor


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor
    name: str
    version: str  # "NAME/3" from the registry, "NAME@sha256:abcd…" from a file
    reference: str
    path: Path


def _registry_path(reference: str, tracking_uri: str) -> tuple[Path, str, str]:
    import mlflow
    from mlflow import MlflowClient

    target = reference.removeprefix("models:/")
    name, sep, alias = target.partition("@")
    if not sep:
        raise ModelError(f"Hãy dùng models:/TÊN@BÍ_DANH, không phải {reference}.",
                         f"Use models:/NAME@ALIAS (e.g. models:/pestid@champion), not {reference}.")  # fmt: skip
    mlflow.set_tracking_uri(tracking_uri)
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
    except Exception as exc:  # noqa: BLE001 - MlflowException and connection errors
        raise ModelError(f"Không tìm thấy {reference} trong sổ đăng ký mô hình.",
                         f"{reference} was not found in the MLflow registry at {tracking_uri}: {exc}") from None  # fmt: skip
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}"))
    onnx = next(iter(sorted(local.rglob("*.onnx"))), None)
    if onnx is None:
        raise ModelError(f"Phiên bản {name}/{version.version} không có tệp ONNX.",
                         f"Version {name}/{version.version} holds no ONNX file.")  # fmt: skip
    return onnx, name, f"{name}/{version.version}"


def load_model(reference: str, *, tracking_uri: str, threads: int) -> LoadedModel:
    if reference.startswith("models:/"):
        path, name, version = _registry_path(reference, tracking_uri)
        predictor = Predictor(path, threads=threads)
    else:
        path = Path(reference)
        predictor = Predictor(path, threads=threads)
        name = predictor.contract.model_name
        version = f"{name}@sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    return LoadedModel(predictor, name, version, reference, path)
