"""Identify photo files with an ONNX model: what ``pestid predict`` calls.

Each photo gets the same answer the API gives (``pestid.decision.decide``):
identified, uncertain or not recognised, with the top species.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pestid.catalogue import load_catalogue
from pestid.decision import decide_by
from pestid.errors import ImageDecodeError
from pestid.imaging import read_image
from pestid.predictor import Predictor


def identify_files(model: str | Path, images: Sequence[str | Path], *, top: int = 3) -> list[dict[str, Any]]:
    """One result per image: the decision and its message, the top-k species with names and confidence,
    or the reason the image was unreadable."""
    predictor = Predictor(model)
    contract, catalogue = predictor.contract, load_catalogue()
    results: list[dict[str, Any]] = []
    for path in images:
        try:
            image = read_image(path)
        except ImageDecodeError as exc:
            results.append({"image": str(path), "error": str(exc), "code": exc.code})
            continue
        probs = predictor.probabilities([image])[0]
        outcome = decide_by(contract, probs, catalogue=catalogue, top=top)
        results.append({
            "image": str(path),
            "decision": outcome.decision,
            "level": outcome.level,
            "answer": catalogue.get(outcome.answer.id).view(outcome.answer.probability) if outcome.answer else None,
            "message_vi": outcome.messages.get("vi", ""),
            "message_en": outcome.messages.get("en", ""),
            "do_not_spray": outcome.do_not_spray,
            "top": [catalogue.get(r.id).view(r.probability) for r in outcome.ranked],
        })  # fmt: skip
    return results
