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
from pestid.training.gate import GateDecision, GateFigures, judge


def _evaluate(name: str, version: str, manifest: str | Path, split: str) -> GateFigures:
    report, _ = evaluate_model(registry.download_onnx(name, version), manifest, split=split)
    return GateFigures.of(report)


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
    theirs = _evaluate(model_name, champion.version, manifest, split) if champion is not None else None
    decision = judge(ours, theirs, gate)
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
