"""Several photos of one observation: what fusing them does to the farmer's answer.

The API answers 1–5 photos of one observation with the mean of their calibrated probabilities
(``pestid.decision.fuse``), decided by the model's contract (``decide_by``). This benchmark takes the test
originals that have two or more files and answers each original three ways: from one file (the baseline),
from two files fused, and from all its files fused: by the mean of probabilities (as served) and, to compare,
by their geometric mean. Per original, with 95 % bootstrap intervals over originals:
the share of in-scope originals with a useful answer (species or group), and the precision of those answers.
Ratios are against the one-file baseline measured in the same run.

The shared datasets' files of one original are augmented copies of it (turned, cropped, recoloured), not
independent photos, so this measures fusion over views of one scene: an upper bound's shape, not a field
figure for a close-up plus a whole-plant photo.

    .venv/bin/python benchmarks/fusion.py --model runs/default/model.onnx [--manifest data/manifests/merged.csv]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from pestid.catalogue import load_catalogue
from pestid.decision import decide_by, fuse
from pestid.manifest import read_manifest
from pestid.predictor import Predictor
from pestid.training.evaluate import predict_rows
from pestid.training.metrics import bootstrap_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", default="data/manifests/merged.csv")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    predictor, manifest, catalogue = Predictor(args.model), read_manifest(args.manifest), load_catalogue()
    rows = manifest.split(args.split)
    probs, bad = predict_rows(predictor, [manifest.image_path(r) for r in rows])
    kept = [r for k, r in enumerate(rows) if k not in set(bad)]
    by_original: dict[str, list[int]] = defaultdict(list)
    for k, row in enumerate(kept):
        by_original[row.group or row.path].append(k)
    originals = sorted(g for g, idx in by_original.items() if len(idx) >= 2)
    names = predictor.labels
    in_scope = dict(zip(names, catalogue.in_scope(list(names)), strict=True))
    within = {n: {n, *(g.id for g in catalogue.groups_of(n))} for n in names}
    print(f"{args.model} on {args.split}: {len(originals)} originals with 2 or more files "
          f"(of {len(by_original)}), {sum(len(by_original[g]) for g in originals)} files")  # fmt: skip

    def geometric(p: np.ndarray) -> np.ndarray:  # the mean of log-probabilities: agreeing photos grow surer
        log = np.log(np.clip(p, 1e-12, 1.0)).mean(axis=0)
        return np.exp(log - log.max()) / np.exp(log - log.max()).sum()

    def answers(take: int | None, how: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        useful, right, scope = [], [], []
        for g in originals:
            idx = by_original[g][:take]
            fused = fuse(probs[idx]) if how == "mean" else geometric(probs[idx])
            outcome = decide_by(predictor.contract, fused, catalogue=catalogue)
            label = kept[idx[0]].label
            answer = outcome.answer
            useful.append(answer is not None)
            right.append(answer is not None and answer.id in (within[label] if outcome.level == "group" else {label}))
            scope.append(in_scope[label])
        return np.array(useful), np.array(right), np.array(scope)

    print("| photos per observation | useful answers, in-scope originals [95 % CI] | precision of answers [95 % CI] "
          "| useful vs one photo |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    base = None
    for name, take, how in (("one", 1, "mean"), ("two, fused (mean, as served)", 2, "mean"),
                            ("all, fused (mean, as served)", None, "mean"), ("two, geometric mean", 2, "geometric"),
                            ("all, geometric mean", None, "geometric")):  # fmt: skip
        useful, right, scope = answers(take, how)
        groups = [g for g, s in zip(originals, scope, strict=True) if s]
        u, r = useful[scope], right[scope]
        share = float(u.mean())
        precision = float(r[u].mean()) if u.any() else float("nan")
        share_ci = bootstrap_interval(lambda w, u=u: float((w * u).sum() / w.sum()), groups, resamples=500)
        precision_ci = bootstrap_interval(
            lambda w, u=u, r=r: float((w * r).sum() / (w * u).sum()) if (w * u).sum() else float("nan"), groups,
            resamples=500,
        )  # fmt: skip
        base = base or share
        print(f"| {name} | {share:.1%} [{share_ci[0]:.1%}, {share_ci[1]:.1%}] | {precision:.1%} "
              f"[{precision_ci[0]:.1%}, {precision_ci[1]:.1%}] | {share / base:.3f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
