"""One photo, three paths: training-time evaluation (PyTorch), the ONNX predictor and the HTTP API."""

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from pestid.imaging import decode_image
from pestid.predictor import Predictor, softmax
from pestid.serving.app import create_app
from pestid.training.augment import eval_transform
from pestid.training.config import resolve_config
from pestid.training.models import create_model, preprocess_spec
from tests.serving.conftest import jpeg, make_settings


def test_same_probabilities_from_training_eval_onnx_and_api(trained_tiny_model, tmp_path):
    tiny_model = trained_tiny_model
    data = jpeg(21, "brown_planthopper")
    image = decode_image(data)
    run_dir = tiny_model.parent
    config = resolve_config(run_dir / "config.yaml")
    predictor = Predictor(tiny_model)
    model = create_model(config.model, len(predictor.labels))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(eval_transform(preprocess_spec(config.model))(image))[None]).numpy()
    training = softmax(logits, predictor.contract.temperature)[0]
    onnx = predictor.probabilities([image])[0]
    assert np.abs(training - onnx).max() <= 1e-4
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data"))) as client:
        body = client.post("/v1/identify", files=[("photos", ("a.jpg", data, "image/jpeg"))]).json()
    shown = ([body["species"]] if body["species"] else []) + body["alternatives"]
    assert len(shown) == 3
    for item in shown:
        assert item["probability"] == pytest.approx(onnx[predictor.labels.index(item["id"])], abs=1e-4)
