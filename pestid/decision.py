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

from pestid.catalogue import Catalogue, Category
from pestid.vocabulary import Decision


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
        return Outcome(Decision.not_recognised, ranked, needs_review=True, messages={
            "vi": "Ảnh này không giống sâu bệnh hại lúa. Hãy chụp gần con vật hoặc chỗ lá, thân lúa bị hại.",
            "en": "This photo does not look like a rice pest or disease. Photograph the animal or the damaged "
                  "rice leaf or stem up close.",
        })  # fmt: skip
    enemy = catalogue.get(best.id).category is Category.natural_enemy
    if best.probability >= (class_thresholds or {}).get(best.id, threshold):
        org = catalogue.get(best.id)
        return Outcome(Decision.identified, ranked, do_not_spray=enemy,
                       messages={"vi": f"Đây là {org.name_vi}.", "en": f"This is {org.name_en}."})  # fmt: skip
    if best.probability >= uncertain_floor:
        return Outcome(Decision.uncertain, ranked, needs_review=True, do_not_spray=enemy, messages={
            "vi": "Chưa chắc chắn — cán bộ bảo vệ thực vật sẽ kiểm tra ảnh này.",
            "en": "Not sure — a plant-protection officer will check this photo.",
        })  # fmt: skip
    mass = _group_mass(probs, labels, catalogue)
    group = max(mass.items(), key=lambda kv: kv[1], default=None)
    nearest = Ranked(group[0], group[1]) if group and group[1] >= threshold else None
    if nearest:
        g = catalogue.get(nearest.id)
        messages = {"vi": f"Không nhận ra chính xác loài, nhưng có thể là {g.name_vi.lower()}.",
                    "en": f"Species not recognised, but it looks like one of the {g.name_en}."}  # fmt: skip
    else:
        messages = {"vi": "Không nhận ra. Hãy chụp lại gần hơn, rõ nét, hoặc chờ cán bộ kiểm tra.",
                    "en": "Not recognised. Take a closer, sharper photo, or wait for an officer to check."}  # fmt: skip
    return Outcome(Decision.not_recognised, ranked, nearest_group=nearest, needs_review=True, messages=messages)
