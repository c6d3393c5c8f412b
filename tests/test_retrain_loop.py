"""The whole loop: photos in through the API → officers approve and relabel → from-reviews →
tiny retrain → gate passes (or refuses a worse model) → the service answers with the new version."""

import pytest
from fastapi.testclient import TestClient

from pestid.manifest import read_manifest
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.review_export import manifest_from_reviews
from pestid.serving.settings import Settings
from pestid.training.config import GateConfig
from pestid.training.mlflow_callback import MLflowCallback
from pestid.training.promote import promote
from pestid.training.train import train
from tests.conftest import jpeg_bytes, photo, split_sample
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow


def _train(manifest, out, mlflow_uri, *extra):
    config = tiny_config(manifest, out, "optim.lr=0.01", *extra, mlflow_uri=mlflow_uri)
    train(config, callbacks=[MLflowCallback(config.mlflow)])
    return config


@pytest.fixture
def base_dataset(tmp_path):
    """A sample big enough for a tiny model to beat chance clearly (12 originals × 4 copies per class)."""
    return split_sample(tmp_path, originals=12, seed=3, name="base")


def test_reviews_become_a_dataset_a_better_model_is_promoted_and_served(base_dataset, tmp_path):
    sample_split = base_dataset
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _train(sample_split, tmp_path / "v1", uri, "epochs=4")
    decision = promote(model_name="pestid", manifest=sample_split, tracking_uri=uri, gate=GateConfig())
    assert decision.passed and "no champion" in decision.reasons[1]

    settings = Settings(model="models:/pestid@champion", mlflow_tracking_uri=uri, data_dir=tmp_path / "serving",
                        log_json=False, model_refresh_s=0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/model").json()["version"] == "pestid/1"
        with client.app.state.sessions() as session, session.begin():
            add_user(session, "an", "mật khẩu dài", "officer")
            add_user(session, "admin", "mật khẩu dài", "admin")
        officer = {
            "Authorization": "Bearer "
            + client.post("/v1/auth/login", json={"username": "an", "password": "mật khẩu dài"}).json()["token"]
        }
        admin = {
            "Authorization": "Bearer "
            + client.post("/v1/auth/login", json={"username": "admin", "password": "mật khẩu dài"}).json()["token"]
        }
        for k, label in enumerate(["golden_apple_snail"] * 3 + ["brown_planthopper"] * 3):
            body = client.post(
                "/v1/identify", files=[("photos", ("p.jpg", jpeg_bytes(photo(label, 500 + k, 96)), "image/jpeg"))]
            ).json()
            assert body["model"]["version"] == "pestid/1"
            # the officer gives the true species: a confirm where the model was right, a relabel where not
            reviewed = client.post(
                f"/v1/review/{body['submission_id']}", json={"action": "relabel", "label": label}, headers=officer
            )
            assert reviewed.json()["status"] == "approved" and reviewed.json()["final_label"] == label

        manifest = tmp_path / "v2.csv"
        report = manifest_from_reviews(
            settings.resolved_database_url, client.app.state.photos, manifest, base=sample_split
        )
        assert report["new"] == 6 and report["added"] + report["left_out_near_test"] == 6
        base_test = {r.path for r in read_manifest(sample_split).split("test")}
        assert {r.path for r in read_manifest(manifest).split("test")} == base_test  # the benchmark stays frozen

        second = _train(manifest, tmp_path / "v2", uri, "epochs=4", "seed=1")
        # a retrained tiny model is about as good as the last one: the gate allows it some noise
        passed = promote(
            model_name="pestid",
            manifest=manifest,
            tracking_uri=uri,
            gate=GateConfig(macro_f1_tolerance=0.15, recall_tolerance=0.5),
        )
        print(passed.summary())
        assert passed.passed
        assert client.post("/v1/admin/reload", headers=admin).json()["model_version"] == "pestid/2"
        answer = client.post(
            "/v1/identify", files=[("photos", ("p.jpg", jpeg_bytes(photo(seed=900)), "image/jpeg"))]
        ).json()
        assert answer["model"]["version"] == "pestid/2"

        _train(manifest, tmp_path / "v3", uri, "optim.lr=0.0")  # learns nothing: a worse model
        refused = promote(model_name="pestid", manifest=manifest, tracking_uri=uri, gate=GateConfig())
        print(refused.summary())
        assert not refused.passed and any("too large" in r for r in refused.reasons)
        assert client.post("/v1/admin/reload", headers=admin).json()["model_version"] == "pestid/2"
    assert first.mlflow.registered_model == second.mlflow.registered_model
