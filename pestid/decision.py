"""From fused probabilities to what a farmer is told, at the level the evidence supports.

- ``identified`` at the **species** level: the top class is at or above its rejection threshold (the model's
  per-class one where the contract has it, else the overall one; both chosen on unseen originals for a
  target precision).
- ``identified`` at the **group** level: no species is sure, but the summed probability of a group's members
  (the hoppers, the caterpillars, …: the catalogue's groups, nested) reaches that group's threshold. The
  smallest such group is named, with its advice: farmers act by kind, and a kind travels to photos from new
  places where a species does not.
- ``uncertain``: neither, but the top class is at least ``uncertain_floor``: its candidates are shown as
  candidates, no advice, and an officer checks.
- ``not_recognised``: below that, or whenever the top answer is the trained out-of-scope class (``not_rice``:
  a cow, a maize leaf, a screenshot), at any confidence. It never carries advice.
- ``not_recognised`` as **unfamiliar**: whenever the photo's novelty (the model's second output: how far its
  features lie from every class it was taught, ``training.novelty``) is above the contract's threshold. A rice bug,
  when no class is the rice bug, is not answered as its nearest look-alike with that one's advice; an officer
  looks at it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pestid.catalogue import Catalogue, Category, Organism
from pestid.contract import ModelContract
from pestid.vocabulary import Decision

Level = Literal["species", "group"]

# What a farmer is told, per outcome; {name} is the organism's name inside a sentence. The farmer page's offline
# twin (serving/static/offline.js) receives these same templates from GET /v1/offline/manifest.
MESSAGES: dict[str, dict[str, str]] = {
    "out_of_scope": {
        "vi": "Ảnh này không giống sâu bệnh hại lúa. Hãy chụp gần con vật hoặc chỗ lá, thân lúa bị hại.",
        "en": "This photo does not look like a rice pest or disease. Photograph the animal or the damaged "
              "rice leaf or stem up close.",
    },
    "identified": {"vi": "Đây là {name}.", "en": "Identified as {name}."},  # no article to get wrong
    "identified_group": {"vi": "Thuộc nhóm {name}; chưa chắc là loài nào.",
                         "en": "One of the {name}; which species is not certain."},
    "uncertain": {"vi": "Chưa chắc chắn — cán bộ bảo vệ thực vật sẽ kiểm tra ảnh này.",
                  "en": "Not sure — a plant-protection officer will check this photo."},
    "not_recognised": {"vi": "Không nhận ra. Hãy chụp lại gần hơn, rõ nét, hoặc chờ cán bộ kiểm tra.",
                       "en": "Not recognised. Take a closer, sharper photo, or wait for an officer to check."},
    "unfamiliar": {"vi": "Không giống loài nào pestid đã học. Đừng phun thuốc vội — cán bộ bảo vệ thực vật sẽ xem ảnh này.",
                   "en": "Not like any organism pestid has learnt. Do not spray yet — a plant-protection officer "
                         "will look at this photo."},
}  # fmt: skip


def in_sentence(name: str) -> str:
    """A catalogue name as it reads mid-sentence: "Rầy nâu" → "rầy nâu" (an acronym such as "IPM" stays)."""
    return name[:1].lower() + name[1:] if name[1:2].islower() else name


def message(kind: str, org: Organism) -> dict[str, str]:
    return {"vi": MESSAGES[kind]["vi"].format(name=in_sentence(org.name_vi)),
            "en": MESSAGES[kind]["en"].format(name=in_sentence(org.name_en))}  # fmt: skip


@dataclass(frozen=True)
class Ranked:
    id: str
    probability: float


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    ranked: list[Ranked]
    nearest_group: Ranked | None = None  # the group named by a group-level answer
    needs_review: bool = False
    do_not_spray: bool = False
    messages: dict[str, str] = field(default_factory=dict)
    level: Level | None = None  # for an identified answer: is it a species or a group
    unfamiliar: bool = False  # not recognised because the photo is unlike every class the model was taught

    @property
    def answer(self) -> Ranked | None:
        """The organism an identified answer names: the top species, or the group."""
        if self.decision != Decision.identified:
            return None
        return self.nearest_group if self.level == "group" else self.ranked[0]


def fuse(probabilities: np.ndarray) -> np.ndarray:
    """Photos of one observation: the mean of their calibrated probabilities."""
    return np.asarray(probabilities, dtype=np.float64).reshape(-1, probabilities.shape[-1]).mean(axis=0)


def fuse_novelty(novelty: np.ndarray | None) -> float | None:
    """Photos of one observation: the mean of their novelty scores (None for a model without them)."""
    return None if novelty is None or len(novelty) == 0 else float(np.mean(np.asarray(novelty, dtype=np.float64)))


def group_masses(probs: np.ndarray, labels: Sequence[str], catalogue: Catalogue) -> dict[str, tuple[float, int, int]]:
    """Each group above the labels: its members' summed probability, how many labels it holds and how deep it
    sits (its own count of groups above it). A label that is itself a group (``stem_borers``) counts towards
    its own mass. Summed in label order, as the offline twin does, so both get the same floats."""
    mass: dict[str, float] = defaultdict(float)
    size: dict[str, int] = defaultdict(int)
    for label, p in zip(labels, probs, strict=True):
        for group in catalogue.groups_of(label):
            mass[group.id] += float(p)
            size[group.id] += 1
    return {g: (mass[g], size[g], len(catalogue.ancestors(g))) for g in mass}


def sure_group(probs: np.ndarray, labels: Sequence[str], *, catalogue: Catalogue, threshold: float,
               group_thresholds: Mapping[str, float] | None = None) -> Ranked | None:  # fmt: skip
    """The smallest group whose summed probability reaches its threshold (its own, else the overall one): the
    fewest labels, then the deepest (the stem borers before the caterpillars that hold only them), then the
    likelier, then the first by id. None when no group is sure."""
    sure = [(size, -depth, -mass, gid) for gid, (mass, size, depth) in group_masses(probs, labels, catalogue).items()
            if mass >= (group_thresholds or {}).get(gid, threshold)]  # fmt: skip
    if not sure:
        return None
    *_, neg, gid = min(sure)
    return Ranked(gid, -neg)


def decide_by(contract: ModelContract, probs: np.ndarray, *, catalogue: Catalogue, uncertain_floor: float = 0.4,
              top: int = 3, novelty: float | None = None) -> Outcome:  # fmt: skip
    """``decide`` with the thresholds a model's contract carries."""
    return decide(probs, contract.labels, threshold=contract.threshold, class_thresholds=contract.class_thresholds,
                  group_thresholds=contract.group_thresholds, catalogue=catalogue, uncertain_floor=uncertain_floor,
                  top=top, novelty=novelty, novelty_threshold=contract.novelty_threshold)  # fmt: skip


def decide(
    probs: np.ndarray, labels: Sequence[str], *, threshold: float, catalogue: Catalogue,
    class_thresholds: Mapping[str, float] | None = None, group_thresholds: Mapping[str, float] | None = None,
    uncertain_floor: float = 0.4, top: int = 3, novelty: float | None = None, novelty_threshold: float | None = None,
) -> Outcome:  # fmt: skip
    order = np.argsort(-probs, kind="stable")
    best = Ranked(labels[order[0]], float(probs[order[0]]))
    ranked = [best, *(Ranked(labels[i], float(probs[i])) for i in order[1:] if catalogue.get(labels[i]).in_scope)]
    ranked = ranked[:top]
    if not catalogue.get(best.id).in_scope:
        return Outcome(Decision.not_recognised, ranked, needs_review=True, messages=dict(MESSAGES["out_of_scope"]))
    if novelty is not None and novelty_threshold is not None and novelty > novelty_threshold:
        return Outcome(Decision.not_recognised, ranked, needs_review=True, messages=dict(MESSAGES["unfamiliar"]),
                       unfamiliar=True)  # fmt: skip
    enemy = catalogue.get(best.id).category is Category.natural_enemy
    if best.probability >= (class_thresholds or {}).get(best.id, threshold):
        org = catalogue.get(best.id)
        return Outcome(Decision.identified, ranked, do_not_spray=enemy, messages=message("identified", org),
                       level="species")  # fmt: skip
    group = sure_group(probs, labels, catalogue=catalogue, threshold=threshold, group_thresholds=group_thresholds)
    if group is not None:
        org = catalogue.get(group.id)
        return Outcome(Decision.identified, ranked, nearest_group=group, do_not_spray=org.is_natural_enemy,
                       messages=message("identified_group", org), level="group")  # fmt: skip
    if best.probability >= uncertain_floor:
        return Outcome(Decision.uncertain, ranked, needs_review=True, do_not_spray=enemy,
                       messages=dict(MESSAGES["uncertain"]))  # fmt: skip
    return Outcome(Decision.not_recognised, ranked, needs_review=True, messages=dict(MESSAGES["not_recognised"]))
