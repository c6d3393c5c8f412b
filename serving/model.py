"""Loading the model once: from a file, or from the MLflow registry by alias.

``models:/NAME@ALIAS`` is resolved to a fixed version at load time, and that
version is what every response reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pestid.contract import ModelContract, int8_path
from pestid.hashing import sha256_bytes
from pestid.predictor import Predictor
from pestid.registry import download_offline, download_onnx, resolve_alias
from pestid.serving.observability import log
from pestid.serving.settings import Settings


@dataclass(frozen=True)
class LoadedModel:
    predictor: Predictor  # what answers: the model, or its INT8 copy where that passed the serving gate
    name: str
    version: str  # "NAME/3" from the registry, "NAME@sha256:abcd…" from a file
    reference: str
    path: Path  # the model as trained (FP32)
    sha256: str  # of that file: its version when it is one, and what its INT8 copy must have been made from
    precision: str = "fp32"  # "int8" when the INT8 copy answers
    offline_path: Path | None = None  # its INT8 copy: beside the file, or the one its registry version's run logged
    offline_unknown: bool = False  # the registry could not say whether its run logged one: ask again (model_refresh)


def current_version(reference: str, *, tracking_uri: str) -> str:
    """The version a reference points at now, without loading it."""
    if reference.startswith("models:/"):
        name, number = resolve_alias(reference, tracking_uri)
        return f"{name}/{number}"
    return "sha256:" + sha256_bytes(Path(reference).read_bytes())[:12]


def load_model(reference: str, *, tracking_uri: str, threads: int, int8_tolerance: float | None = None) -> LoadedModel:
    """The model ``reference`` names. With ``int8_tolerance``, its INT8 copy (``int8_path``) answers instead when
    the copy's contract records a per-original macro-F1 within that of the model's: the same answers, for about
    two thirds of the compute."""
    if reference.startswith("models:/"):
        name, number = resolve_alias(reference, tracking_uri)
        path, version = download_onnx(name, number), f"{name}/{number}"
        copy_path, unknown = _registry_copy(name, number)
    else:
        path, version = Path(reference), ""
        copy_path, unknown = int8_path(path), False
    predictor = Predictor(path, threads=threads)
    digest = sha256_bytes(path.read_bytes())  # once: the file's version, and what its INT8 copy must come from
    if not version:
        name = predictor.contract.model_name
        version = f"{name}@sha256:{digest[:12]}"
    copy = None
    if int8_tolerance is not None and copy_path is not None:
        copy = passed_int8(copy_path, digest, predictor, int8_tolerance, threads)
    precision = "int8" if copy is not None else "fp32"
    return LoadedModel(copy or predictor, name, version, reference, path, digest, precision, copy_path, unknown)


def _registry_copy(name: str, number: str) -> tuple[Path | None, bool]:
    """The INT8 copy NAME/NUMBER's run logged (the registry keeps the model's bytes, so the digest check holds), and
    whether the registry failed to say (then the model is served without one, and asked again later)."""
    try:
        return download_offline(name, number), False
    except Exception as exc:  # noqa: BLE001 - MlflowException, connection errors: the copy is optional
        log.warning("offline copy unknown", extra={"fields": {"model": f"{name}/{number}", "error": str(exc)}})
        return None, True


def _readable(path: Path, threads: int) -> Predictor | None:
    """A copy's predictor, or None for a file that is not a model with pestid's contract (a crafted or broken
    artifact must never stop the service, which then answers with the model itself)."""
    try:
        return Predictor(path, threads=threads)
    except Exception as exc:  # noqa: BLE001 - ModelError, a contract that does not validate, onnxruntime's errors
        log.warning("unusable INT8 copy", extra={"fields": {"path": str(path), "error": str(exc)[:300]}})
        return None


def load_served(settings: Settings) -> LoadedModel:
    """The model the service is configured to answer with (at start-up, and again when its alias moves)."""
    return load_model(settings.model, tracking_uri=settings.mlflow_tracking_uri, threads=settings.threads_per_worker,
                      int8_tolerance=settings.served_int8_tolerance)  # fmt: skip


def passed_int8(copy_path: Path, fp32_sha256: str, fp32: Predictor, tolerance: float, threads: int) -> Predictor | None:
    """The INT8 copy at ``copy_path`` when it was made from this very model (the digest its contract records),
    answers with the same labels and lost at most ``tolerance`` of per-original macro-F1 when it was made; else
    None, and the model itself answers. A copy left beside a model exported again later is stale, and never
    answers."""
    if not copy_path.is_file() or (copy := _readable(copy_path, threads)) is None:
        return None
    drop = copy.contract.macro_f1_drop()
    if (
        drop is None
        or drop > tolerance
        or copy.labels != fp32.labels
        or copy.contract.preprocess != fp32.contract.preprocess
        or copy.contract.metrics.get("fp32_sha256") not in (None, fp32_sha256)  # None: made before it was kept
    ):
        return None
    return copy


@dataclass(frozen=True)
class OfflineModel:
    """The INT8 copy the farmer page carries offline (``pestid export --int8``), served as a file."""

    path: Path
    sha256: str
    size_bytes: int
    contract: ModelContract


def load_offline(reference: str | None, served: LoadedModel) -> OfflineModel | None:
    """The offline copy: ``reference`` if given, else the served model's own (``MODEL.int8.onnx`` beside a served
    ``MODEL.onnx``, or the copy its registry version's training run logged).

    None when there is none, when it does not answer with the served model's labels, or when it records being a
    copy of another model (a stale copy beside a model exported again, an earlier champion's copy named in
    ``PESTID_OFFLINE_MODEL`` after the alias moved): the page then works online only, rather than answer offline
    from a different model. Called again whenever the served model changes.
    """
    path = Path(reference) if reference else served.offline_path
    if path is None or not path.is_file():
        return None
    # the copy that already answers on the server is not loaded a second time to read its contract
    answering = served.precision == "int8" and path == served.offline_path
    if (predictor := served.predictor if answering else _readable(path, 1)) is None:
        return None
    contract, data = predictor.contract, path.read_bytes()
    digest = sha256_bytes(data)
    if contract.labels != served.predictor.labels:
        return None
    # made from the very model served, or the served model itself; a copy that does not say what it was made
    # from (made before the digest was recorded) cannot be told from another model's, and is not offered
    if served.sha256 not in (contract.metrics.get("fp32_sha256"), digest):
        return None
    return OfflineModel(path, digest, len(data), contract)
