"""Loading the model once: from a file, or from the MLflow registry by alias.

``models:/NAME@ALIAS`` is resolved to a fixed version at load time, and that
version is what every response reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pestid.predictor import Predictor
from pestid.registry import download_onnx, resolve_alias


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor
    name: str
    version: str  # "NAME/3" from the registry, "NAME@sha256:abcd…" from a file
    reference: str
    path: Path


def current_version(reference: str, *, tracking_uri: str) -> str:
    """The version a reference points at now, without loading it."""
    if reference.startswith("models:/"):
        name, number = resolve_alias(reference, tracking_uri)
        return f"{name}/{number}"
    return "sha256:" + hashlib.sha256(Path(reference).read_bytes()).hexdigest()[:12]


def load_model(reference: str, *, tracking_uri: str, threads: int) -> LoadedModel:
    if reference.startswith("models:/"):
        name, number = resolve_alias(reference, tracking_uri)
        path, version = download_onnx(name, number), f"{name}/{number}"
        predictor = Predictor(path, threads=threads)
    else:
        path = Path(reference)
        predictor = Predictor(path, threads=threads)
        name = predictor.contract.model_name
        version = f"{name}@{current_version(reference, tracking_uri=tracking_uri)}"
    return LoadedModel(predictor, name, version, reference, path)
