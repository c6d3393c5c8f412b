"""Loading the model once: from a file, or from the MLflow registry by alias.

``models:/NAME@ALIAS`` is resolved to a fixed version at load time, and that
version is what every response reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pestid.contract import ModelContract, int8_path
from pestid.predictor import ModelError, Predictor
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


@dataclass(frozen=True)
class OfflineModel:
    """The INT8 copy the farmer page carries offline (``pestid export --int8``), served as a file."""

    path: Path
    sha256: str
    size_bytes: int
    contract: ModelContract


def load_offline(reference: str | None, served: LoadedModel) -> OfflineModel | None:
    """The offline copy: ``reference`` if given, else ``MODEL.int8.onnx`` beside a served ``MODEL.onnx``.

    None when there is none, or when it does not answer with the served model's labels: the page then
    works online only, rather than answer offline from a different model.
    """
    path = Path(reference) if reference else int8_path(served.path)
    if not path.is_file():
        return None
    try:
        contract = Predictor(path, threads=1).contract  # checks it is a model with pestid's contract
    except ModelError:
        return None
    if contract.labels != served.predictor.labels:
        return None
    data = path.read_bytes()
    return OfflineModel(path, hashlib.sha256(data).hexdigest(), len(data), contract)
