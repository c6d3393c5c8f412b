"""GET /v1/model and the species catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from pestid.catalogue import load_catalogue
from pestid.errors import CatalogueError
from pestid.serving.deps import get_model
from pestid.serving.model import LoadedModel
from pestid.serving.problems import Problem
from pestid.serving.schemas import CatalogueEntry, ModelInfo

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelInfo)
def model_info(model: Annotated[LoadedModel, Depends(get_model)]) -> ModelInfo:
    contract = model.predictor.contract
    return ModelInfo(name=model.name, version=model.version, reference=model.reference, labels=contract.labels,
                     dataset_version=contract.dataset_version, threshold=contract.threshold,
                     class_thresholds=contract.class_thresholds, temperature=contract.temperature, preprocess=contract.preprocess.model_dump())  # fmt: skip


@router.get("/species", response_model=list[CatalogueEntry])
def species_list(q: str = "") -> list[CatalogueEntry]:
    """The catalogue, searchable by Vietnamese, English or scientific name."""
    catalogue = load_catalogue()
    found = catalogue.search(q) if q else list(catalogue)
    return [CatalogueEntry.of(org) for org in found]


@router.get("/species/{organism_id}", response_model=CatalogueEntry, responses={404: {}})
def species_detail(organism_id: str) -> CatalogueEntry:
    try:
        org = load_catalogue().get(organism_id)
    except CatalogueError as exc:
        raise Problem(404, "unknown_species", exc.message_vi, exc.message_en) from None
    return CatalogueEntry.of(org)
