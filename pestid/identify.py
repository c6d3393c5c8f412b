"""Identify photo files with an ONNX model: what ``pestid predict`` calls."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pestid.errors import ImageDecodeError
from pestid.imaging import read_image
from pestid.predictor import Predictor, describe


def identify_files(model: str | Path, images: Sequence[str | Path], *, top: int = 3) -> list[dict[str, Any]]:
    """One result per image: top-k species with names and confidence, or the reason it was unreadable."""
    predictor = Predictor(model)
    results: list[dict[str, Any]] = []
    for path in images:
        try:
            image = read_image(path)
        except ImageDecodeError as exc:
            results.append({"image": str(path), "error": str(exc), "code": exc.code})
            continue
        probs = predictor.probabilities([image])[0]
        results.append({
            "image": str(path),
            "recognised": predictor.recognised(probs),
            "threshold": predictor.contract.threshold_for(predictor.labels[int(probs.argmax())]),
            "top": [describe(c) for c in predictor.top_k(probs, top)],
        })  # fmt: skip
    return results
