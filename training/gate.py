"""The promotion gate: pure threshold functions over two evaluation reports.

A challenger passes when its macro-F1 does not drop by more than the
tolerance and no class's recall drops by more than its tolerance, compared
with the champion on the same test split. Every check gives a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.config import GateConfig


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verdict = (
            "ĐẠT / PASSED: the challenger becomes champion"
            if self.passed
            else "KHÔNG ĐẠT / REFUSED: the champion stays"
        )
        return "\n".join([verdict, *(f"  - {r}" for r in self.reasons)])


def macro_f1_check(challenger: float, champion: float, tolerance: float) -> tuple[bool, str]:
    drop = champion - challenger
    ok = drop <= tolerance
    return (
        ok,
        f"macro-F1 {challenger:.4f} vs champion {champion:.4f} (drop {drop:+.4f}, allowed {tolerance:.4f}): {'ok' if ok else 'too large'}",
    )


def recall_check(name: str, challenger: float, champion: float, tolerance: float) -> tuple[bool, str]:
    drop = champion - challenger
    ok = drop <= tolerance
    return (
        ok,
        f"recall of {name} {challenger:.3f} vs {champion:.3f} (drop {drop:+.3f}, allowed {tolerance:.3f}): {'ok' if ok else 'too large'}",
    )


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, config: GateConfig) -> GateDecision:
    """Compare two evaluation reports (``macro_f1`` and ``per_class`` recall/support)."""
    if champion is None:
        return GateDecision(True, ["no champion yet: the first model becomes champion"],
                            {"macro_f1": challenger["macro_f1"]})  # fmt: skip
    checks = [macro_f1_check(challenger["macro_f1"], champion["macro_f1"], config.macro_f1_tolerance)]
    for name, stats in champion["per_class"].items():
        if stats["support"] < config.min_support:
            checks.append(
                (True, f"recall of {name}: {int(stats['support'])} test images, below {config.min_support}; not gated")
            )
            continue
        theirs = challenger["per_class"].get(name, {"recall": 0.0})["recall"]
        tolerance = config.class_recall_tolerance.get(name, config.recall_tolerance)
        checks.append(recall_check(name, theirs, stats["recall"], tolerance))
    return GateDecision(all(ok for ok, _ in checks), [reason for _, reason in checks],
                        {"macro_f1": challenger["macro_f1"]}, {"macro_f1": champion["macro_f1"]})  # fmt: skip
