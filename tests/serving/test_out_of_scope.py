"""The out-of-scope path through the API: a trained not_rice answer is "not recognised", without advice;
a natural enemy carries do_not_spray. The models are tiny hand-built ONNX graphs whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pestid.serving.app import create_app
from tests.onnx_models import linear_model
from tests.serving.conftest import jpeg, make_settings

LABELS = ["brown_planthopper", "lady_beetle", "not_rice", "rice_blast"]


def constant_model(path: Path, logits: list[float], threshold: float = 0.6) -> Path:
    """A model that answers ``logits`` whatever the image (a zero weight on the colour)."""
    return linear_model(path, LABELS, weight=np.zeros((3, len(LABELS))), bias=logits, threshold=threshold)


def _identify(tmp_path: Path, logits: list[float], lang: str = "vi") -> dict:
    model = constant_model(tmp_path / "model.onnx", logits)
    with TestClient(create_app(make_settings(model, tmp_path / "data"))) as client:
        response = client.post("/v1/identify", files={"photos": ("p.jpg", jpeg(1), "image/jpeg")},
                               headers={"Accept-Language": lang})  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def test_a_confident_not_rice_answer_is_not_recognised_and_carries_no_advice(tmp_path):
    body = _identify(tmp_path, [1.0, 0.5, 6.0, 2.0])  # not_rice at about 97 %
    assert body["decision"] == "not_recognised"
    assert body["species"] is None and body["nearest_group"] is None and body["do_not_spray"] is False
    assert "không giống sâu bệnh hại lúa" in body["message"]
    assert [a["id"] for a in body["alternatives"]] == ["rice_blast", "brown_planthopper"]  # no "not_rice" guess
    assert all(set(a) == {"id", "name", "probability"} for a in body["alternatives"])  # no advice to act on


def test_english_out_of_scope_message(tmp_path):
    body = _identify(tmp_path, [1.0, 0.5, 6.0, 2.0], lang="en")
    assert body["decision"] == "not_recognised" and "does not look like a rice pest" in body["message"]


def test_a_low_confidence_pest_guess_shows_no_pest_advice(tmp_path):
    body = _identify(tmp_path, [0.3, 0.2, 0.1, 0.25])  # nothing near the threshold
    assert body["decision"] == "not_recognised"
    assert body["alternatives"] and all("advice" not in a for a in body["alternatives"])


@pytest.mark.parametrize(("logits", "spray"), [([0.0, 6.0, 0.0, 0.0], True), ([6.0, 0.0, 0.0, 0.0], False)])
def test_a_natural_enemy_answer_says_do_not_spray(tmp_path, logits, spray):
    body = _identify(tmp_path, logits)
    assert body["decision"] == "identified"
    assert body["do_not_spray"] is spray
    assert ("Không phun thuốc" in body["species"]["advice"]) is spray
