"""Response schemas."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pestid.catalogue import Organism, load_catalogue
from pestid.vocabulary import Decision


class CatalogueEntry(BaseModel):
    """A catalogue entry in both languages, for officers' search and the farmer page's species list."""

    id: str
    kind: Literal["organism", "group"] = "organism"
    name_vi: str
    name_en: str
    scientific: str
    category: str
    parent: str | None = None
    natural_enemy: bool = False
    advice_vi: str
    advice_en: str
    # Added within v1 (issue 24): what a farmer sees, whether the project vouches for the advice (when not, the
    # advice sends the farmer to the commune's officer), where the facts come from, and whether the served model
    # can name it: itself a label, or a group holding one (false while no model is loaded).
    signs_vi: str = ""
    signs_en: str = ""
    advice_vouched: bool = False
    source: str = ""
    source_url: str | None = None
    known: bool = False

    @classmethod
    def of(cls, org: Organism, *, known: bool = False) -> CatalogueEntry:
        view = org.view()
        del view["probability"]
        return cls(**view, kind=org.kind, signs_vi=org.signs_vi, signs_en=org.signs_en,
                   advice_vouched=org.advice_vouched, source=org.source, source_url=org.source_url,
                   known=known)  # fmt: skip


class Named(BaseModel):
    """An organism or group by id and its name in the answer's language."""

    id: str
    name: str


class Guess(Named):
    """Another possibility: who it might be and how likely, nothing to act on."""

    probability: float


class Answer(Guess):
    """The species (or, when not recognised, the group) a farmer is told about, with what to do."""

    scientific: str
    category: str
    parent: Named | None = None
    natural_enemy: bool = False
    advice: str

    @classmethod
    def of(cls, org: Organism, lang: str, probability: float) -> Answer:
        catalogue = load_catalogue()
        parent = catalogue.get(org.parent) if org.parent else None
        return cls(id=org.id, name=org.name(lang), probability=round(probability, 4), scientific=org.scientific,
                   category=org.category.value, natural_enemy=org.is_natural_enemy, advice=org.advice(lang),
                   parent=named(parent, lang) if parent else None)  # fmt: skip


def named(org: Organism, lang: str) -> Named:
    return Named(id=org.id, name=org.name(lang))


def guess(org: Organism, lang: str, probability: float) -> Guess:
    return Guess(id=org.id, name=org.name(lang), probability=round(probability, 4))


class ModelInfo(BaseModel):
    name: str
    version: str
    reference: str
    labels: list[str]
    dataset_version: str
    threshold: float
    class_thresholds: dict[str, float] = {}
    group_thresholds: dict[str, float] = {}  # a group answers at or above its own; above 1: never answered
    novelty_threshold: float | None = None  # above it a photo is unlike every class: not recognised (None: no score)
    temperature: float
    preprocess: dict[str, object]


class OfflineManifest(BaseModel):
    """Everything the farmer page's offline predictor reads (``GET /v1/offline/manifest``)."""

    model: dict[str, Any]
    contract: dict[str, Any]
    uncertain_floor: float
    messages: dict[str, dict[str, str]]
    catalogue: dict[str, dict[str, Any]]


class ModelRef(BaseModel):
    name: str
    version: str


class IdentifyResponse(BaseModel):
    """API v1's answer, in one language (``lang``): see "API v1" in the README for what may change."""

    submission_id: str
    status: Literal["answered", "pending_review"]  # pending_review exactly when needs_review
    decision: Decision
    message: str
    lang: Literal["vi", "en"]
    species: Answer | None  # the answer when identified: a species, or a group (``level``)
    level: Literal["species", "group"] | None = None  # what an identified answer names
    # not recognised because the photo is unlike every organism the model was taught (pestid.decision)
    unfamiliar: bool = False
    nearest_group: Answer | None  # the group, when the answer is at the group's level
    alternatives: list[Guess]
    do_not_spray: bool
    needs_review: bool
    photos: int
    model: ModelRef
    # The private token that reads this submission back (GET /v1/submissions/{id}); sent, never stored.
    receipt: str = ""


class Decided(Named):
    """The organism the officers named, with what to do about it."""

    scientific: str
    category: str
    natural_enemy: bool = False
    advice: str

    @classmethod
    def of(cls, org: Organism, lang: str) -> Decided:
        return cls(id=org.id, name=org.name(lang), scientific=org.scientific, category=org.category.value,
                   natural_enemy=org.is_natural_enemy, advice=org.advice(lang))  # fmt: skip


class Verdict(BaseModel):
    """What the officers decided, in the farmer's language: the organism, or why the photo was not used."""

    species: Decided | None = None  # approved: what it is, with its advice
    # approved as something other than the model's identified answer (or the model had none): "corrected to"
    corrected: bool = False
    rejected: str | None = None  # rejected: the sentence saying why
    decided_at: str


class SubmissionState(BaseModel):
    """Where a farmer's submission stands (``GET /v1/submissions/{id}``, with its receipt)."""

    submission_id: str
    created_at: str
    status: Literal["pending_review", "approved", "rejected", "disputed"]
    decision: Decision  # what the model said at the time
    species: Named | None  # the model's answer at the time, when it identified one
    verdict: Verdict | None  # set once the officers have decided


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, with the sentence in both languages and ``detail`` in the request's."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    detail_vi: str
    detail_en: str
    code: str


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for problem statuses, as ``application/problem+json``."""
    schema = ProblemDetail.model_json_schema()
    return {status: {"description": HTTPStatus(status).phrase,
                     "content": {"application/problem+json": {"schema": schema}}} for status in statuses}  # fmt: skip
