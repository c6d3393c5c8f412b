"""GET /v1/model and the species catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from pestid.catalogue import load_catalogue
from pestid.decision import MESSAGES
from pestid.errors import CatalogueError
from pestid.serving.deps import get_model, get_offline
from pestid.serving.model import LoadedModel, OfflineModel
from pestid.serving.problems import Problem
from pestid.serving.schemas import CatalogueEntry, ModelInfo, OfflineManifest, problems

router = APIRouter(prefix="/v1", tags=["model"])
# What the phone's offline answer never shows, kept out of the manifest it downloads and stores
OFFLINE_LEAVES_OUT = {"signs_vi", "signs_en", "source", "source_url"}


@router.get("/model", response_model=ModelInfo)
def model_info(model: Annotated[LoadedModel, Depends(get_model)]) -> ModelInfo:
    contract = model.predictor.contract
    return ModelInfo(name=model.name, version=model.version, reference=model.reference, labels=contract.labels,
                     dataset_version=contract.dataset_version, threshold=contract.threshold,
                     class_thresholds=contract.class_thresholds, group_thresholds=contract.group_thresholds,
                     novelty_threshold=contract.novelty_threshold, temperature=contract.temperature,
                     preprocess=contract.preprocess.model_dump())  # fmt: skip


def served_ids(request: Request) -> set[str]:
    """The ids the served model can name (its labels and the groups above them); none while no model is loaded.
    Read per request, so a model swapped in while serving counts at once. Not ``get_model``: the catalogue
    answers without a model, as it always has."""
    model: LoadedModel | None = getattr(request.app.state, "model", None)
    return load_catalogue().known_to(model.predictor.contract.labels) if model is not None else set()


@router.get("/species", response_model=list[CatalogueEntry], responses=problems(422))
def species_list(known: Annotated[set[str], Depends(served_ids)], q: str = "") -> list[CatalogueEntry]:
    """The catalogue, searchable by Vietnamese, English or scientific name; each entry says whether the served
    model knows it."""
    catalogue = load_catalogue()
    found = catalogue.search(q) if q else list(catalogue)
    return [CatalogueEntry.of(org, known=org.id in known) for org in found]


@router.get("/species/{organism_id}", response_model=CatalogueEntry, responses=problems(404, 422))
def species_detail(organism_id: str, known: Annotated[set[str], Depends(served_ids)]) -> CatalogueEntry:
    try:
        org = load_catalogue().get(organism_id)
    except CatalogueError as exc:
        raise Problem(404, "unknown_species", exc.message_vi, exc.message_en) from None
    return CatalogueEntry.of(org, known=org.id in known)


@router.get("/offline/manifest", response_model=OfflineManifest, responses=problems(404))
def offline_manifest(request: Request, offline: Annotated[OfflineModel, Depends(get_offline)]) -> OfflineManifest:
    """What the farmer page needs to identify without a connection, exactly as the server does: the INT8 model's
    address and digest, its contract, the decision's floor and message templates, and the catalogue entries its
    answers can name (every label and its parent group)."""
    catalogue = load_catalogue()
    contract = offline.contract
    ids = {*contract.labels, *(group.id for label in contract.labels for group in catalogue.ancestors(label))}
    return OfflineManifest(
        model={"url": f"/v1/offline/model.onnx?v={offline.sha256[:16]}", "sha256": offline.sha256,
               "bytes": offline.size_bytes, "quantization": contract.quantization},
        contract={"labels": contract.labels, "preprocess": contract.preprocess.model_dump(), "tta": contract.tta,
                  "temperature": contract.temperature, "threshold": contract.threshold,
                  "class_thresholds": contract.class_thresholds, "group_thresholds": contract.group_thresholds,
                  "novelty_threshold": contract.novelty_threshold},
        uncertain_floor=request.app.state.settings.uncertain_floor, messages=MESSAGES,
        catalogue={org.id: {**CatalogueEntry.of(org, known=True).model_dump(exclude=OFFLINE_LEAVES_OUT),
                            "in_scope": org.in_scope, "kind": org.kind}
                   for org in map(catalogue.get, sorted(ids))},
    )  # fmt: skip


@router.get("/offline/model.onnx", response_class=FileResponse, responses=problems(404))
def offline_model_file(offline: Annotated[OfflineModel, Depends(get_offline)], v: str | None = None) -> FileResponse:
    """The INT8 model file; its address carries its digest (``v``), so a cached copy is never stale. An address
    naming another copy (the manifest a phone read before the served model changed) is 404, never this copy's
    bytes under that copy's address."""
    if v is not None and not offline.sha256.startswith(v):
        raise Problem(404, "offline_model_changed", "Mô hình ngoại tuyến đã đổi; hãy tải lại trang.",
                      "The offline model has changed since this address was given: load the page again.")  # fmt: skip
    return FileResponse(offline.path, media_type="application/octet-stream",
                        headers={"ETag": f'"{offline.sha256}"'})  # fmt: skip
