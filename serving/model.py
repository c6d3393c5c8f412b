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


def resolve_alias(reference: str, tracking_uri: str) -> tuple[str, str]:
    """``models:/NAME@ALIAS`` -> (NAME, version number) as the registry says now."""
    import mlflow
    from mlflow import MlflowClient

    name, sep, alias = reference.removeprefix("models:/").partition("@")
    if not sep:
        raise ModelError(f"Hãy dùng models:/TÊN@BÍ_DANH, không phải {reference}.",
                         f"Use models:/NAME@ALIAS (e.g. models:/pestid@champion), not {reference}.")  # fmt: skip
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except Exception as exc:  # noqa: BLE001 - MlflowException and connection errors
        raise ModelError(f"Không tìm thấy {reference} trong sổ đăng ký mô hình.",
                         f"{reference} was not found in the MLflow registry at {tracking_uri}: {exc}") from None  # fmt: skip


def _download(name: str, version: str) -> Path:
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    onnx = next(iter(sorted(local.rglob("*.onnx"))), None)
    if onnx is None:
        raise ModelError(
            f"Phiên bản {name}/{version} không có tệp ONNX.", f"Version {name}/{version} holds no ONNX file."
        )
    return onnx


def current_version(reference: str, *, tracking_uri: str) -> str:
    """The version a reference points at now, without loading it."""
    if reference.startswith("models:/"):
        name, number = resolve_alias(reference, tracking_uri)
        return f"{name}/{number}"
    return "sha256:" + hashlib.sha256(Path(reference).read_bytes()).hexdigest()[:12]


def load_model(reference: str, *, tracking_uri: str, threads: int) -> LoadedModel:
    if reference.startswith("models:/"):
        name, number = resolve_alias(reference, tracking_uri)
        path, version = _download(name, number), f"{name}/{number}"
        predictor = Predictor(path, threads=threads)
    else:
        path = Path(reference)
        predictor = Predictor(path, threads=threads)
        name = predictor.contract.model_name
        version = f"{name}@{current_version(reference, tracking_uri=tracking_uri)}"
    return LoadedModel(predictor, name, version, reference, path)
