"""Benchmark: accuracy on ricepest6 with pestid's leakage-free split.

Imports ../shared/datasets/ricepest6, groups and splits it with pestid, trains
the default config, evaluates the exported ONNX model on the test split, and
prints macro-F1, top-1, ECE, coverage at the rejection threshold, training
images/s and wall time beside a baseline computed in the same run: the frozen
ImageNet backbone with a logistic-regression head, on the same split.

    .venv/bin/python benchmarks/accuracy_ricepest6.py [--work /tmp/pestid-bench] [key=value ...]

Extra key=value pairs override the training config (e.g. epochs=2).
Nothing it writes goes into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pestid.dataset import import_to_manifest, split_manifest
from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.preprocess import preprocess
from pestid.training.config import resolve_config
from pestid.training.metrics import macro_f1
from pestid.training.models import create_model, preprocess_spec
from pestid.training.train import run

REPO = Path(__file__).resolve().parents[1]


def frozen_probe(manifest_path: Path, config_path: Path, overrides: list[str]) -> dict[str, float]:
    """Baseline: ImageNet features from the frozen backbone, logistic regression on top."""
    from sklearn.linear_model import LogisticRegression

    config = resolve_config(config_path, overrides)
    manifest = read_manifest(manifest_path)
    model = create_model(config.model, num_classes=len(manifest.labels))
    model.reset_classifier(0)  # type: ignore[operator]
    model.eval()
    spec = preprocess_spec(config.model)
    start = time.perf_counter()

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows = manifest.split(split)
        out = []
        with torch.no_grad():
            for k in range(0, len(rows), 64):
                batch = np.stack([preprocess(read_image(manifest.image_path(r)), spec) for r in rows[k : k + 64]])
                out.append(model(torch.from_numpy(batch)).numpy())
        return np.concatenate(out), np.array([manifest.labels.index(r.label) for r in rows])

    x_train, y_train = features("train")
    x_test, y_test = features("test")
    classifier = LogisticRegression(max_iter=2000, C=0.5, class_weight="balanced").fit(x_train, y_train)
    predicted = classifier.predict(x_test)
    return {"macro_f1": macro_f1(y_test, predicted, len(manifest.labels)), "top1": float((predicted == y_test).mean()),
            "wall_s": time.perf_counter() - start}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/pestid-bench"))
    parser.add_argument("--config", type=Path, default=REPO / "training/configs/default.yaml")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if not (REPO.parent / "shared/datasets/ricepest6/manifest.csv").is_file():
        sys.exit("../shared/datasets/ricepest6 is not here: this benchmark needs the real photos.")
    args.work.mkdir(parents=True, exist_ok=True)
    source, split = args.work / "ricepest6-source.csv", args.work / "ricepest6.csv"
    import_to_manifest(REPO / "datasets/ricepest6.yaml", source)
    split_manifest(source, split)

    baseline = frozen_probe(split, args.config, args.overrides)
    print(f"baseline (frozen backbone + logistic regression): {json.dumps(baseline)}", flush=True)

    start = time.perf_counter()
    result = run(args.config, data=str(split), out=str(args.work / "run"),
                 overrides=[*args.overrides, "resume=false", f"mlflow.tracking_uri=sqlite:///{args.work / 'mlflow.db'}",
                            f"mlflow.artifact_location={args.work / 'mlruns'}", "mlflow.experiment=benchmark-ricepest6"])  # fmt: skip
    wall = time.perf_counter() - start
    assert result.evaluation is not None, "the run was not exported and evaluated"
    e = result.evaluation
    speed = float(np.mean([h["images_per_s"] for h in result.fit.history]))
    print("\n| metric | fine-tuned | frozen probe (baseline) | ratio |")
    print("| --- | --- | --- | --- |")
    print(
        f"| test macro-F1 | {e.macro_f1:.4f} | {baseline['macro_f1']:.4f} | {e.macro_f1 / baseline['macro_f1']:.3f} |"
    )
    print(f"| test top-1 | {e.top1:.4f} | {baseline['top1']:.4f} | {e.top1 / baseline['top1']:.3f} |")
    print(f"| wall time, s | {wall:.0f} | {baseline['wall_s']:.0f} | {wall / baseline['wall_s']:.1f} |")
    print(f"| test ECE (calibrated) | {e.ece:.4f} | | |")
    print(
        f"| coverage at threshold {e.threshold:.3f} | {e.coverage:.4f} (accuracy {e.accuracy_at_threshold:.4f}) | | |"
    )
    print(f"| group top-1 | {e.group_top1:.4f} | | |")
    print(f"| OOD AUROC | {e.ood_auroc:.4f} | | |")
    print(f"| training images/s | {speed:.1f} | | |")
    print(f"\nepochs run: {len(result.fit.history)}, best epoch {result.fit.best_epoch}; model {result.onnx_path}")


if __name__ == "__main__":
    main()
