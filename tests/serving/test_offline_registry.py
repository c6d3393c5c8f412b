"""The farmer page's offline copy follows the registry's champion: served from ``models:/NAME@champion``, the page
is offered the INT8 copy that the champion's own training run logged; when the alias moves to a version whose copy
missed the INT8 budget (none was logged), the service stops offering the earlier champion's copy instead of
letting phones answer offline with a model it no longer serves."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from pestid.registry import CHAMPION, move_alias
from pestid.serving.app import create_app
from pestid.serving.model_refresh import refresh_model
from pestid.training.mlflow_callback import MLflowCallback
from pestid.training.train import train
from tests.serving.conftest import make_settings
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow


def _train(manifest, out, uri, tolerance, seed=0):
    config = tiny_config(manifest, out, "export.int8=true", f"export.int8_tolerance={tolerance}",
                         "export.calibration_photos=8", f"seed={seed}", mlflow_uri=uri)  # fmt: skip
    return train(config, callbacks=[MLflowCallback(config.mlflow)])


def test_the_offline_copy_is_the_champions_own_and_goes_when_the_champion_has_none(sample_split, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _train(sample_split, tmp_path / "v1", uri, tolerance=1.0)
    assert first.int8 is not None
    move_alias(uri, "pestid", CHAMPION, "1")
    settings = make_settings("models:/pestid@champion", tmp_path / "data", mlflow_tracking_uri=uri,
                             model_refresh_s=0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        offered = client.get("/v1/offline/manifest")
        assert offered.status_code == 200
        assert offered.json()["model"]["sha256"] == hashlib.sha256(first.int8.path.read_bytes()).hexdigest()
        assert client.get(offered.json()["model"]["url"]).content == first.int8.path.read_bytes()
        assert client.get("/v1/model").json()["version"] == "pestid/1"

        second = _train(sample_split, tmp_path / "v2", uri, tolerance=-1.0)  # its copy is refused: none logged
        assert second.int8 is None and second.int8_refused is not None
        move_alias(uri, "pestid", CHAMPION, "2")
        assert client.portal.call(refresh_model, client.app) == "pestid/2"
        assert client.get("/v1/model").json()["version"] == "pestid/2"
        assert client.get("/v1/offline/manifest").status_code == 404  # not pestid/1's copy
        assert client.get(offered.json()["model"]["url"]).status_code == 404

        move_alias(uri, "pestid", CHAMPION, "1")  # rolled back: its own copy is offered again
        assert client.portal.call(refresh_model, client.app) == "pestid/1"
        assert client.get("/v1/offline/manifest").json()["model"]["sha256"] == offered.json()["model"]["sha256"]


def test_a_named_offline_copy_of_another_model_is_not_offered(sample_split, tmp_path):
    """PESTID_OFFLINE_MODEL naming an earlier model's INT8 copy (same labels, another model): the page works online
    only rather than answer offline from a model the service does not serve."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _train(sample_split, tmp_path / "v1", uri, tolerance=1.0)
    second = _train(sample_split, tmp_path / "v2", uri, tolerance=1.0, seed=1)
    assert first.onnx_path.read_bytes() != second.onnx_path.read_bytes()
    settings = make_settings(second.onnx_path, tmp_path / "data", offline_model=str(first.int8.path))
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/offline/manifest").status_code == 404
    settings = make_settings(second.onnx_path, tmp_path / "data2", offline_model=str(second.int8.path))
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/offline/manifest").status_code == 200
