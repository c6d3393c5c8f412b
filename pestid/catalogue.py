"""The species catalogue: every organism pestid can name, shipped as package data.

Validated on load: unique ids, parents that exist and are groups, both languages
present (names, what a farmer sees, advice), a source for every entry, advice the
project cannot vouch for that sends the farmer to the commune's officer, and vector
relations that point at diseases.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable, Iterator
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pestid.errors import CatalogueError


class Category(StrEnum):
    insect = "insect"
    mite = "mite"
    mollusc = "mollusc"
    rodent = "rodent"
    fungus = "fungus"
    bacterium = "bacterium"
    virus = "virus"
    natural_enemy = "natural_enemy"
    healthy = "healthy"
    out_of_scope = "out_of_scope"  # the trained "not a rice pest or disease" class
    nematode = "nematode"
    bird = "bird"
    weed = "weed"


DISEASE_CATEGORIES = {Category.fungus, Category.bacterium, Category.virus}
# Advice the project cannot vouch for sends the farmer to this person, in these words (folded, so any spelling
# of the diacritics counts), in each language.
OFFICER_VI = "cán bộ bảo vệ thực vật xã"
OFFICER_EN = "commune's plant-protection officer"


class Organism(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Literal["organism", "group"] = "organism"
    category: Category
    parent: str | None = None
    name_vi: str
    name_en: str
    scientific: str
    signs_vi: str  # what a farmer sees in the field: the animal, the plant or the damage
    signs_en: str
    advice_vi: str
    advice_en: str
    # False: the project cannot vouch for the advice, which then tells the farmer to ask the commune's officer
    advice_vouched: bool = False
    source: str  # where the facts come from, by name ("IRRI Rice Knowledge Bank", "Cục Bảo vệ thực vật")
    source_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    vector_of: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # what people also call it, in either language ("nhện" for the hunting spiders)

    @field_validator("name_vi", "name_en", "scientific", "signs_vi", "signs_en", "advice_vi", "advice_en", "source")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _unvouched_advice_names_the_officer(self) -> Organism:
        if self.advice_vouched:
            return self
        if fold(OFFICER_VI) not in fold(self.advice_vi) or OFFICER_EN not in self.advice_en.replace("’", "'"):
            raise ValueError(
                f"the advice of '{self.id}' is not vouched for (advice_vouched: false), so it must send the farmer "
                f"to the officer in both languages: '{OFFICER_VI}' in advice_vi and '{OFFICER_EN}' in advice_en"
            )
        return self

    @property
    def is_natural_enemy(self) -> bool:
        return self.category is Category.natural_enemy

    @property
    def in_scope(self) -> bool:
        """False for the trained out-of-scope class: its answer is "not recognised", never advice."""
        return self.category is not Category.out_of_scope

    def name(self, lang: str) -> str:
        return self.name_vi if lang == "vi" else self.name_en

    def advice(self, lang: str) -> str:
        return self.advice_vi if lang == "vi" else self.advice_en

    def view(self, probability: float | None = None, *, advice: bool = True) -> dict[str, Any]:
        """The organism for people, in both languages: what `pestid predict` prints and the API's species
        carries. ``advice=False`` leaves the advice empty (a guess is no grounds to act)."""
        return {"id": self.id, "name_vi": self.name_vi, "name_en": self.name_en, "scientific": self.scientific,
                "category": self.category.value, "parent": self.parent, "natural_enemy": self.is_natural_enemy,
                "advice_vi": self.advice_vi if advice else "", "advice_en": self.advice_en if advice else "",
                "probability": None if probability is None else round(probability, 4)}  # fmt: skip


class Catalogue:
    """An immutable, validated set of organisms, looked up by id."""

    def __init__(self, organisms: list[Organism]) -> None:
        self._by_id: dict[str, Organism] = {}
        for org in organisms:
            if org.id in self._by_id:
                raise CatalogueError(
                    f"Mã loài '{org.id}' bị trùng trong danh mục.",
                    f"Organism id '{org.id}' appears twice in the catalogue.",
                )
            self._by_id[org.id] = org
        for org in organisms:
            _check_links(org, self._by_id)
        for org in organisms:
            _check_no_cycle(org, self._by_id)

    def __iter__(self) -> Iterator[Organism]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, organism_id: object) -> bool:
        return organism_id in self._by_id

    def ids(self) -> list[str]:
        return list(self._by_id)

    def get(self, organism_id: str) -> Organism:
        try:
            return self._by_id[organism_id]
        except KeyError:
            near = ", ".join(self.closest(organism_id)) or "—"
            raise CatalogueError(
                f"Không có loài '{organism_id}' trong danh mục (gần giống: {near}).",
                f"No organism '{organism_id}' in the catalogue (closest: {near}).",
                code="unknown_label",
            ) from None

    def closest(self, text: str, n: int = 3) -> list[str]:
        """Catalogue ids closest to ``text``, by id and English name."""
        key = text.lower().replace("-", "_").replace(" ", "_")
        by_name = {o.name_en.lower().replace(" ", "_"): o.id for o in self}
        hits = difflib.get_close_matches(key, [*self._by_id, *by_name], n=n * 2, cutoff=0.5)
        out: list[str] = []
        for hit in hits:
            oid = by_name.get(hit, hit)
            if oid not in out:
                out.append(oid)
        return out[:n]

    def in_scope(self, organism_ids: list[str] | tuple[str, ...]) -> list[bool]:
        """For each id: may an answer of it be "identified"? Not for the out-of-scope class."""
        return [self.get(oid).in_scope for oid in organism_ids]

    def parent_of(self, organism_id: str) -> Organism | None:
        parent = self.get(organism_id).parent
        return self._by_id[parent] if parent else None

    def ancestors(self, organism_id: str) -> list[Organism]:
        """The groups an organism belongs to, nearest first: a yellow stem borer's are the stem borers, then the
        caterpillars."""
        out: list[Organism] = []
        parent = self.parent_of(organism_id)
        while parent is not None:
            out.append(parent)
            parent = self.parent_of(parent.id)
        return out

    def groups_of(self, label: str) -> list[Organism]:
        """The groups whose answers a label counts towards: the label itself when it is a group (``stem_borers``),
        then its ancestors."""
        org = self.get(label)
        return ([org] if org.kind == "group" else []) + self.ancestors(label)

    def children_of(self, group_id: str) -> list[Organism]:
        return [o for o in self if o.parent == group_id]

    def known_to(self, labels: list[str] | tuple[str, ...]) -> set[str]:
        """The ids a model with these labels can name: each label, and every group holding one of them at any
        depth (the caterpillars are known to a model that knows the yellow stem borer). Labels the catalogue
        lacks are left out."""
        known = {label for label in labels if label in self._by_id}
        return known | {group.id for label in known for group in self.ancestors(label)}

    def counts_by_category(self) -> dict[Category, tuple[int, int]]:
        """Per category, in the catalogue's order of categories: how many organisms and how many groups."""
        counts = {category: (0, 0) for category in Category}
        for org in self:
            organisms, groups = counts[org.category]
            counts[org.category] = (organisms, groups + 1) if org.kind == "group" else (organisms + 1, groups)
        return counts

    def search(self, text: str) -> list[Organism]:
        """Organisms whose id, any name or alias contains ``text``, ranked as people look: an exact name first, then
        a name starting with the text, then one with a word starting with it, then any other match; species before
        groups; shorter names first. Case, diacritics and Unicode form do not matter, so "Rầy nâu", "ray nau" and an
        NFD-encoded "Rầy nâu" find the same entries; but diacritics typed are meant: where names carry them as typed
        ("ốc"), only those are listed, not every "oc" (octovalvis). A text of under 4 letters matches at a word's
        start only ("rat" is no part of "oratorius")."""
        needle = fold(text.replace("_", " "))
        if not needle:
            return list(self)
        typed = _as_typed(text.replace("_", " "))
        if typed != needle:  # the text carries diacritics
            found = self._ranked(typed, _as_typed)
            if found:
                return found
        return self._ranked(needle, fold)

    def _ranked(self, needle: str, form: Callable[[str], str]) -> list[Organism]:
        ranked = []
        for order, org in enumerate(self):
            names = [form(n) for n in (org.name_vi, org.name_en, org.scientific, *org.aliases)]
            if needle in names:
                rank = 0
            elif any(n.startswith(needle) for n in names):
                rank = 1
            elif any(word.startswith(needle) for n in names for word in n.split()):
                rank = 2
            elif len(needle) >= 4 and any(needle in n for n in [*names, form(org.id.replace("_", " "))]):
                rank = 3
            else:
                continue
            ranked.append(((rank, org.kind == "group", len(org.name_vi), order), org))
        return [org for _, org in sorted(ranked, key=lambda pair: pair[0])]

    def resolve(self, text: str) -> list[str]:
        """The ids a filter names: an id, or a name in either language (folded) naming one organism exactly,
        otherwise every organism whose names contain it."""
        if text in self._by_id:
            return [text]
        needle = fold(text.replace("_", " "))
        exact = [o.id for o in self if needle in {fold(n) for n in (o.name_vi, o.name_en, o.scientific, *o.aliases)}]
        return exact or [o.id for o in self.search(text)]


def _as_typed(text: str) -> str:
    """Text with its diacritics, in one Unicode form, without case or extra spaces."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def fold(text: str) -> str:
    """Text as a farmer or officer might type it: no diacritics (đ counts as d), any Unicode form, no case."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def _check_links(org: Organism, by_id: dict[str, Organism]) -> None:
    if org.parent is not None:
        parent = by_id.get(org.parent)
        if parent is None or parent.kind != "group":
            raise CatalogueError(
                f"Loài '{org.id}' có nhóm cha '{org.parent}' không tồn tại.",
                f"Organism '{org.id}' names parent '{org.parent}', which is not a group in the catalogue.",
            )
    for target in org.vector_of:
        disease = by_id.get(target)
        if disease is None or disease.category not in DISEASE_CATEGORIES:
            raise CatalogueError(
                f"Loài '{org.id}' truyền '{target}', nhưng đó không phải bệnh trong danh mục.",
                f"Organism '{org.id}' is a vector of '{target}', which is not a disease in the catalogue.",
            )


def _check_no_cycle(org: Organism, by_id: dict[str, Organism]) -> None:
    seen, parent = {org.id}, org.parent
    while parent is not None:
        if parent in seen:
            raise CatalogueError(
                f"Nhóm cha của '{org.id}' vòng lại chính nó (qua '{parent}').",
                f"The groups above '{org.id}' loop back on themselves (through '{parent}').",
            )
        seen.add(parent)
        parent = by_id[parent].parent


def parse_catalogue(text: str) -> Catalogue:
    """Parse and validate catalogue YAML text."""
    try:
        data = yaml.safe_load(text) or {}
        organisms = [Organism.model_validate(item) for item in data.get("organisms", [])]
    except (ValueError, yaml.YAMLError) as exc:
        raise CatalogueError(
            f"Danh mục loài không hợp lệ: {exc}",
            f"The species catalogue is invalid: {exc}",
        ) from exc
    return Catalogue(organisms)


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    """The catalogue shipped with pestid (cached)."""
    text = resources.files("pestid").joinpath("data/catalogue.yaml").read_text(encoding="utf-8")
    return parse_catalogue(text)
