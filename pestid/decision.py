"""From fused probabilities to what a farmer is told: identified, uncertain or not recognised.

- ``identified``: the top species is at or above its rejection threshold: the
  model's per-class one where the contract has it, else the overall one (both
  chosen on unseen originals for a target precision).
- ``uncertain``: below it but at least ``uncertain_floor``: shown with its
  alternatives and flagged for an officer.
- ``not_recognised``: below that, or whenever the top answer is the trained
  out-of-scope class (``not_rice``: a cow, a maize leaf, a screenshot), at any
  confidence. If the probabilities of one parent group's members add up past
  the threshold, the group is named ("a stem borer"). It never carries advice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pestid.catalogue import Catalogue, Category, Organism
from pestid.vocabulary import Decision

# What a farmer is told, per outcome; {name} is the organism's name inside a sentence. The farmer page's offline
# twin (serving/static/offline.js) receives these same templates from GET /v1/offline/manifest.
MESSAGES: dict[str, dict[str, str]] = {
    "out_of_scope": {
        "vi": "Ảnh này không giống sâu bệnh hại lúa. Hãy chụp gần con vật hoặc chỗ lá, thân lúa bị hại.",
        "en": "This photo does not look like a rice pest or disease. Photograph the animal or the damaged "
              "rice leaf or stem up close.",
    },
    "identified": {"vi": "Đây là {name}.", "en": "This is {name}."},
    "uncertain": {"vi": "Chưa chắc chắn — cán bộ bảo vệ thực vật sẽ kiểm tra ảnh này.",
                  "en": "Not sure — a plant-protection officer will check this photo."},
    "nearest_group": {"vi": "Không nhận ra chính xác loài, nhưng có thể là {name}.",
                      "en": "Species not recognised, but it looks like one of the {name}."},
    "not_recognised": {"vi": "Không nhận ra. Hãy chụp lại gần hơn, rõ nét, hoặc chờ cán bộ kiểm tra.",
                       "en": "Not recognised. Take a closer, sharper photo, or wait for an officer to check."},
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
    nearest_group: Ranked | None = None
    needs_review: bool = False
    do_not_spray: bool = False
    messages: dict[str, str] = field(default_factory=dict)


def fuse(probabilities: np.ndarray) -> np.ndarray:
    """Photos of one observation: the mean of their calibrated probabilities."""
    return np.asarray(probabilities, dtype=np.float64).reshape(-1, probabilities.shape[-1]).mean(axis=0)


def _group_mass(probs: np.ndarray, labels: Sequence[str], catalogue: Catalogue) -> dict[str, float]:
    mass: dict[str, float] = defaultdict(float)
    for label, p in zip(labels, probs, strict=True):
        parent = catalogue.get(label).parent
        if parent:
            mass[parent] += float(p)
    return mass


def decide(
    probs: np.ndarray, labels: Sequence[str], *, threshold: float, catalogue: Catalogue,
    class_thresholds: Mapping[str, float] | None = None, uncertain_floor: float = 0.4, top: int = 3,
) -> Outcome:  # fmt: skip
    order = np.argsort(-probs)
    best = Ranked(labels[order[0]], float(probs[order[0]]))
    ranked = [best, *(Ranked(labels[i], float(probs[i])) for i in order[1:] if catalogue.get(labels[i]).in_scope)]
    ranked = ranked[:top]
    if not catalogue.get(best.id).in_scope:
        return Outcome(Decision.not_recognised, ranked, needs_review=True, messages=dict(MESSAGES["out_of_scope"]))
    enemy = catalogue.get(best.id).category is Category.natural_enemy
    if best.probability >= (class_thresholds or {}).get(best.id, threshold):
        org = catalogue.get(best.id)
        return Outcome(Decision.identified, ranked, do_not_spray=enemy, messages=message("identified", org))
    if best.probability >= uncertain_floor:
        return Outcome(Decision.uncertain, ranked, needs_review=True, do_not_spray=enemy,
                       messages=dict(MESSAGES["uncertain"]))  # fmt: skip
    mass = _group_mass(probs, labels, catalogue)
    group = max(mass.items(), key=lambda kv: kv[1], default=None)
    nearest = Ranked(group[0], group[1]) if group and group[1] >= threshold else None
    messages = message("nearest_group", catalogue.get(nearest.id)) if nearest else dict(MESSAGES["not_recognised"])
    return Outcome(Decision.not_recognised, ranked, nearest_group=nearest, needs_review=True, messages=messages)
