"""``pestid promote``: gate the registered ``@challenger`` against ``@champion`` and move the alias.

Both models are evaluated now, on the same manifest split (the frozen test
split), so the comparison is fair even if the champion was trained on
another dataset version. The decision and its reasons are printed and logged
to the challenger's MLflow run.
"""

from __future__ import annotations

from pathlib import Path

from pestid import registry
from pestid.registry import CHALLENGER, CHAMPION
from pestid.training.config import GateConfig
from pestid.training.evaluate import evaluate_model
from pestid.training.gate import GateDecision, GateFigures, judge, judge_grown
from pestid.training.report import EvaluationReport


def _evaluate(
    name: str, version: str, manifest: str | Path, split: str, *, known_only: bool = False
) -> EvaluationReport:
    report, _ = evaluate_model(registry.download_onnx(name, version), manifest, split=split, known_only=known_only)
    return report


def compare(challenger: EvaluationReport, champion: EvaluationReport | None, gate: GateConfig) -> GateDecision:
    """The gate's decision on two reports of one test split; ``champion``'s made with ``known_only`` (a challenger
    whose label set grew is judged by ``judge_grown``, the old classes on their own test originals)."""
    if champion is None:
        return judge(GateFigures.of(challenger), None, gate)
    old = list(champion.per_original.per_class)
    new = [n for n in challenger.per_original.per_class if n not in old]
    if not new:  # both in the champion's order: one index space for the paired intervals, whatever each's order
        return judge(GateFigures.of(challenger, classes=old), GateFigures.of(champion, classes=old), gate)
    everything = challenger.per_original.per_class
    decision = judge_grown(GateFigures.of(challenger, classes=old), GateFigures.of(champion, classes=old),
                           {n: (everything[n].f1, everything[n].support) for n in new}, gate)  # fmt: skip
    decision.reasons.insert(0, f"the label set grew by {', '.join(new)}: the {len(old)} classes both know are "
                               "judged on their own test originals, each new class on its own")  # fmt: skip
    return decision


def promote(
    *, model_name: str, manifest: str | Path, tracking_uri: str, gate: GateConfig, split: str = "test"
) -> GateDecision:
    client = registry.client(tracking_uri)
    challenger = registry.version_by_alias(tracking_uri, model_name, CHALLENGER)
    if challenger is None:
        from pestid.errors import PestidError

        raise PestidError(
            f"Chưa có mô hình {model_name}@challenger.",
            f"No {model_name}@challenger is registered: run 'pestid train' first.",
        )
    champion = registry.version_by_alias(tracking_uri, model_name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return GateDecision(False, [f"version {challenger.version} is already the champion"])
    ours = _evaluate(model_name, challenger.version, manifest, split)
    theirs = _evaluate(model_name, champion.version, manifest, split, known_only=True) if champion is not None else None
    decision = compare(ours, theirs, gate)
    decision.reasons.insert(0, f"challenger {model_name}/{challenger.version} vs champion "
                               f"{model_name}/{champion.version if champion else '—'} on split '{split}' of {manifest}")  # fmt: skip
    if decision.passed:
        registry.move_alias(tracking_uri, model_name, CHAMPION, challenger.version)
    if challenger.run_id:
        client.set_tag(challenger.run_id, "pestid.gate", "passed" if decision.passed else "refused")
        client.log_dict(challenger.run_id, {"passed": decision.passed, "reasons": decision.reasons,
                                            "challenger": decision.challenger, "champion": decision.champion},
                        "gate/decision.json")  # fmt: skip
    client.set_model_version_tag(model_name, challenger.version, "gate", "passed" if decision.passed else "refused")
    return decision
