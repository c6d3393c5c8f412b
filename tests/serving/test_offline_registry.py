"""The farmer page's offline copy follows the registry's champion: served from ``models:/NAME@champion``, the page
is offered the INT8 copy that the champion's own training run logged; when the alias moves to a version whose copy
missed the INT8 budget (none was logged), the service stops offering the earlier champion's copy instead of
letting phones answer offline with a model it no longer serves."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("torch", reason="training the registry's models needs the [train] extra")
pytest.importorskip("mlflow", reason="the registry needs the [registry] or [train] extra")

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


def _broken_copy(good, out):
    """``good``'s bytes with a contract that does not validate (a key no version of pestid writes)."""
    import json

    import onnx

    from pestid.contract import METADATA_KEY

    model = onnx.load(str(good))
    entry = next(e for e in model.metadata_props if e.key == METADATA_KEY)
    entry.value = json.dumps({**json.loads(entry.value), "smuggled": 1})
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def test_a_broken_or_unreachable_offline_copy_never_stops_the_service_and_an_old_address_is_not_the_new_copy(
    sample_split, tmp_path, monkeypatch
):
    """An attacker's cases: a logged copy whose contract does not validate stopped start-up and every refresh; a
    copy the registry failed to fetch once was gone until the alias moved; the old copy's address served the new
    copy's bytes after a switch (a phone would pair one manifest with another model's weights)."""
    import mlflow

    from pestid import registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _train(sample_split, tmp_path / "v1", uri, tolerance=1.0)
    second = _train(sample_split, tmp_path / "v2", uri, tolerance=1.0, seed=1)
    third = _train(sample_split, tmp_path / "v3", uri, tolerance=-1.0, seed=2)  # logs no copy of its own …
    client = mlflow.MlflowClient(uri)
    run3 = client.get_model_version("pestid", "3").run_id
    client.log_artifact(run3, str(_broken_copy(first.int8.path, tmp_path / "crafted" / "model.int8.onnx")), "offline")
    assert third.int8 is None  # … so the one under offline/ is the crafted file
    move_alias(uri, "pestid", CHAMPION, "3")
    settings = make_settings("models:/pestid@champion", tmp_path / "data", mlflow_tracking_uri=uri,
                             model_refresh_s=0)  # fmt: skip
    with TestClient(create_app(settings)) as client_:
        assert client_.get("/v1/model").json()["version"] == "pestid/3"  # started, answering with the model itself
        assert client_.get("/v1/offline/manifest").status_code == 404

        real = registry.download_offline
        calls = {"n": 0}

        def flaky(name, version):
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("the tracking server did not answer")
            return real(name, version)

        monkeypatch.setattr("pestid.serving.model.download_offline", flaky)
        move_alias(uri, "pestid", CHAMPION, "1")
        assert client_.portal.call(refresh_model, client_.app) == "pestid/1"
        assert client_.get("/v1/offline/manifest").status_code == 404  # the registry could not say: online only …
        assert client_.portal.call(refresh_model, client_.app) == "pestid/1"
        v1 = client_.get("/v1/offline/manifest").json()["model"]  # … and asked again on the next round
        assert v1["sha256"] == hashlib.sha256(first.int8.path.read_bytes()).hexdigest()

        move_alias(uri, "pestid", CHAMPION, "2")
        assert client_.portal.call(refresh_model, client_.app) == "pestid/2"
        v2 = client_.get("/v1/offline/manifest").json()["model"]
        assert v2["sha256"] == hashlib.sha256(second.int8.path.read_bytes()).hexdigest()
        assert client_.get(v2["url"]).content == second.int8.path.read_bytes()
        stale = client_.get(v1["url"])  # the address a phone read before the switch
        assert stale.status_code == 404 and stale.json()["code"] == "offline_model_changed"


def test_a_named_copy_that_does_not_say_what_it_was_made_from_is_offered_only_for_itself(sample_split, tmp_path):
    import json

    import onnx

    from pestid.contract import METADATA_KEY

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _train(sample_split, tmp_path / "v1", uri, tolerance=1.0)
    second = _train(sample_split, tmp_path / "v2", uri, tolerance=1.0, seed=1)
    model = onnx.load(str(first.int8.path))
    entry = next(e for e in model.metadata_props if e.key == METADATA_KEY)
    contract = json.loads(entry.value)
    contract["metrics"].pop("fp32_sha256")
    entry.value = json.dumps(contract)
    unsaid = tmp_path / "unsaid.int8.onnx"
    onnx.save(model, str(unsaid))
    with TestClient(create_app(make_settings(second.onnx_path, tmp_path / "a", offline_model=str(unsaid)))) as c:
        assert c.get("/v1/offline/manifest").status_code == 404  # another model's copy, same labels
    served = second.onnx_path  # the served model named as its own offline model (tests and small sites do)
    with TestClient(create_app(make_settings(served, tmp_path / "b", offline_model=str(served)))) as c:
        assert c.get("/v1/offline/manifest").status_code == 200
