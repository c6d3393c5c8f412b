"""A new organism from officers' labels: the sample model knows five classes, not the rice bug. Officers label
rice-bug photos through the review API; below ``reviews.new_class_originals`` they wait, at it ``pestid retrain``
adds the class, the gate judges the grown model (old classes on their own test originals, the rice bug against its
floor) and prints why, and the service answers with the new version."""

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pestid.cli import app as pestid_cli
from pestid.manifest import read_manifest
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.review_export import manifest_from_reviews
from pestid.serving.settings import Settings
from pestid.training.config import GateConfig, save_config
from pestid.training.mlflow_callback import MLflowCallback
from pestid.training.promote import promote
from pestid.training.train import train
from tests.conftest import jpeg_bytes, photo, split_sample
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow

PASSWORD = "mật khẩu dài"


@pytest.fixture
def sample_dataset(tmp_path):
    """The five sample classes, 12 originals × 4 files each, grouped and split."""
    return split_sample(tmp_path, originals=12, seed=3, name="base")


def _token(client, username):
    answer = client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def _send_and_label(client, officer, label, seeds):
    """Farmers send one photo each; an officer names the organism, whatever the model said."""
    for seed in seeds:
        body = client.post(
            "/v1/identify", files=[("photos", ("p.jpg", jpeg_bytes(photo(label, seed, 96)), "image/jpeg"))]
        ).json()
        reviewed = client.post(f"/v1/review/{body['submission_id']}", json={"action": "relabel", "label": label},
                               headers=officer)  # fmt: skip
        assert reviewed.status_code == 200, reviewed.text
        assert reviewed.json()["status"] == "approved" and reviewed.json()["final_label"] == label


def test_new_class_from_officers_labels_is_learnt_gated_and_served(sample_dataset, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(sample_dataset, tmp_path / "v1", "optim.lr=0.01", "epochs=4", "model.image_size=64",
                         mlflow_uri=uri)  # fmt: skip
    train(config, callbacks=[MLflowCallback(config.mlflow)])
    assert promote(model_name="pestid", manifest=sample_dataset, tracking_uri=uri, gate=GateConfig()).passed
    settings = Settings(model="models:/pestid@champion", mlflow_tracking_uri=uri, data_dir=tmp_path / "serving",
                        log_json=False, model_refresh_s=0, upload_rate_per_address="1000/minute")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        with client.app.state.sessions() as session, session.begin():
            add_user(session, "an", PASSWORD, "officer")
            add_user(session, "admin", PASSWORD, "admin")
        officer, admin = _token(client, "an"), _token(client, "admin")
        assert "rice_bug" not in client.get("/v1/model").json()["labels"]
        assert client.get("/v1/species/rice_bug").json()["known"] is False

        # any catalogue organism is a label an officer may give, not only the model's; 19 originals wait
        _send_and_label(client, officer, "rice_bug", range(700, 719))
        # a group ("a planthopper, not sure which") is a label, never a class beside its own members
        _send_and_label(client, officer, "planthoppers", range(600, 621))
        waiting = manifest_from_reviews(settings.resolved_database_url, client.app.state.photos,
                                        tmp_path / "waiting.csv", base=sample_dataset)  # fmt: skip
        assert waiting["waiting"] == {"rice_bug": 19} and waiting["left_out_group_labels"] == {"planthoppers": 21}
        assert {"rice_bug", "planthoppers"}.isdisjoint(read_manifest(tmp_path / "waiting.csv").labels)

        _send_and_label(client, officer, "rice_bug", range(719, 740))  # 40 originals: a class, 10 of them its test
        config_path = tmp_path / "retrain.yaml"
        save_config(config, config_path)
        out = tmp_path / "v2.csv"
        result = CliRunner().invoke(pestid_cli, [
            "retrain", "--config", str(config_path), "--out", str(out), "--base", str(sample_dataset),
            "--db", settings.resolved_database_url, "--photos", str(settings.photo_dir), f"out={tmp_path / 'v2'}",
            "seed=1", "epochs=6", "gate.macro_f1_tolerance=0.3", "gate.recall_tolerance=0.5",
            "gate.class_f1_tolerance=0.5",
        ])  # fmt: skip
        print(result.output)
        assert "lớp mới / new class rice_bug: 40 approved originals (at least 20)" in result.output
        assert "the label set grew by rice_bug" in result.output
        assert "new class rice_bug: F1 per original" in result.output  # the new class against its own floor
        assert "F1 of brown_planthopper" in result.output  # the old classes on their own test originals
        assert result.exit_code == 0 and "ĐẠT / PASSED" in result.output
        grown = read_manifest(out)
        assert grown.labels[-1] == "rice_bug" and grown.meta["from_reviews"]["new_classes"] == {"rice_bug": 40}
        assert "planthoppers" not in grown.labels
        assert client.post("/v1/admin/reload", headers=admin).json()["model_version"] == "pestid/2"
        assert "rice_bug" in client.get("/v1/model").json()["labels"]
        assert client.get("/v1/species/rice_bug").json()["known"] is True
        answer = client.post(
            "/v1/identify", files=[("photos", ("p.jpg", jpeg_bytes(photo("rice_bug", 900, 96)), "image/jpeg"))]
        ).json()
        assert answer["model"]["version"] == "pestid/2"
