"""Response schemas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from pestid.catalogue import Organism
from pestid.vocabulary import Decision, ReviewStatus


class Species(BaseModel):
    id: str
    name_vi: str
    name_en: str
    scientific: str
    category: str
    parent: str | None = None
    name: str  # in the request's language
    advice: str
    advice_vi: str
    advice_en: str
    probability: float | None = None
    natural_enemy: bool = False

    @classmethod
    def of(cls, org: Organism, lang: str, probability: float | None = None, *, advice: bool = True) -> Species:
        """The organism for people; ``advice=False`` leaves the advice empty (a guess is no grounds to act)."""
        view = org.view(probability, advice=advice)
        return cls(**view, name=org.name(lang), advice=view["advice_vi"] if lang == "vi" else view["advice_en"])


class ModelInfo(BaseModel):
    name: str
    version: str
    reference: str
    labels: list[str]
    dataset_version: str
    threshold: float
    class_thresholds: dict[str, float] = {}
    temperature: float
    preprocess: dict[str, object]


class IdentifyResponse(BaseModel):
    submission_id: str
    status: Literal[ReviewStatus.pending_review] = ReviewStatus.pending_review
    decision: Decision
    message: str
    message_vi: str
    message_en: str
    species: Species | None
    alternatives: list[Species]
    nearest_group: Species | None
    do_not_spray: bool
    needs_review: bool
    photos: int
    model: dict[str, str]
    lang: str
