"""Against a real `mlflow server` on 127.0.0.1, started by deploy/run-mlflow.sh: train, log and register; and at
scale, with its rows in PostgreSQL and its artefacts in an S3 bucket (SeaweedFS), through promotion to a service
that loads @champion and follows it to the next version."""

import time
import uuid

import httpx
import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from sqlalchemy import create_engine, text

from pestid.serving.app import create_app
from pestid.serving.settings import Settings
from pestid.training.config import GateConfig
from pestid.training.mlflow_callback import MLflowCallback
from pestid.training.promote import promote
from pestid.training.train import train
from tests.conftest import Bucket, jpeg_bytes, new_database, photo
from tests.stack import throwaway_mlflow
from tests.training.conftest import tiny_config

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture
def mlflow_server(tmp_path):
    """The server on SQLite, artefacts in a folder: (its URL, that folder)."""
    try:
        with throwaway_mlflow(tmp_path / "mlflow") as url:
            yield url, tmp_path / "mlflow" / "artifacts"
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_training_logs_and_registers_against_a_tracking_server(sample_split, tmp_path, mlflow_server):
    url, artifact_root = mlflow_server
    config = tiny_config(sample_split, tmp_path / "run", "mlflow.experiment=server-test", mlflow_uri=url)
    callback = MLflowCallback(config.mlflow)
    train(config, callbacks=[callback])
    mlflow.set_tracking_uri(url)
    run = mlflow.get_run(callback.run_id)
    assert run.data.metrics["test_macro_f1"] >= 0 and run.info.status == "FINISHED"
    version = MlflowClient(url).get_model_version_by_alias("pestid", "challenger")
    assert str(version.version) == callback.model_version
    assert any(artifact_root.rglob("model.onnx"))  # the server stored the artifacts


@pytest.fixture
def registry_at_scale(tmp_path, postgres_url, seaweedfs):
    """The server as deploy/ runs it: PostgreSQL for runs and the registry, a bucket for artefacts. Only the server
    holds the bucket's keys (this process has none): trainers and services reach artefacts through it.
    Yields (its URL, its database URL, the bucket prefix it writes to)."""
    database = new_database(postgres_url)
    bucket = Bucket(seaweedfs, f"mlflow-{uuid.uuid4().hex[:8]}")
    env = {"MLFLOW_S3_ENDPOINT_URL": seaweedfs.endpoint_url, "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
           "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "MLFLOW_SERVER_ALLOWED_HOSTS": "127.0.0.1:*,mlflow.internal:5000"}  # fmt: skip
    try:
        with throwaway_mlflow(tmp_path / "mlflow", backend_store_uri=database, artifacts_destination=bucket.url,
                              env=env) as url:  # fmt: skip
            yield url, database, bucket
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _train(manifest, out, url, *extra) -> MLflowCallback:
    """`pestid train` with MLflow at ``url``: a new version of pestid, @challenger."""
    config = tiny_config(manifest, out, "mlflow.experiment=at-scale", *extra, mlflow_uri=url)
    callback = MLflowCallback(config.mlflow)
    train(config, callbacks=[callback])
    return callback


def _registry_rows(database: str) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, str]]:
    """What PostgreSQL holds: pestid's aliases, its versions (number, run) and each run's artefact URI."""
    engine = create_engine(database)
    with engine.connect() as connection:
        aliases = dict(connection.execute(text("select alias, version from registered_model_aliases "
                                               "where name = 'pestid'")).all())  # fmt: skip
        versions = connection.execute(text("select version, run_id from model_versions where name = 'pestid' "
                                           "order by version")).all()  # fmt: skip
        runs = dict(connection.execute(text("select run_uuid, artifact_uri from runs")).all())
    engine.dispose()
    return {k: str(v) for k, v in aliases.items()}, [(str(v), r) for v, r in versions], runs


def test_mlflow_on_postgresql_and_a_bucket_trains_promotes_and_serves_the_champion(
    sample_split, tmp_path, registry_at_scale
):
    url, database, bucket = registry_at_scale
    first = _train(sample_split, tmp_path / "v1", url)
    decision = promote(model_name="pestid", manifest=sample_split, tracking_uri=url, gate=GateConfig())
    assert decision.passed, decision.summary()

    # The registry's rows are in PostgreSQL, and the run's artefacts are objects in the bucket, none on the server.
    aliases, versions, runs = _registry_rows(database)
    assert aliases == {"challenger": "1", "champion": "1"} and versions == [("1", first.run_id)]
    assert runs[first.run_id].startswith("mlflow-artifacts:/")  # proxied: clients never see the bucket
    keys = bucket.keys()
    assert f"{runs[first.run_id].split('/', 1)[1]}/config.yaml" in keys, keys
    assert any(key.endswith("/model.onnx") for key in keys) and any(key.endswith("gate/decision.json") for key in keys)
    assert not [p for p in (tmp_path / "mlflow").rglob("*") if p.suffix in {".onnx", ".yaml", ".json"}]
    # A name the server was told to accept (MLFLOW_SERVER_ALLOWED_HOSTS) answers; any other is refused.
    search = f"{url}/api/2.0/mlflow/registered-models/search"
    assert httpx.get(search, headers={"Host": "mlflow.internal:5000"}).status_code == 200
    assert httpx.get(search, headers={"Host": "mlflow.example.org"}).status_code == 403

    # A service started on models:/pestid@champion loads version 1 through the server, answers with it, and
    # follows @champion to version 2 by itself (PESTID_MODEL_REFRESH_S).
    settings = Settings(model="models:/pestid@champion", mlflow_tracking_uri=url, data_dir=tmp_path / "serving",
                        log_json=False, audit_share=0.0, model_refresh_s=1)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/model").json()["version"] == "pestid/1"
        upload = [("photos", ("p.jpg", jpeg_bytes(photo("brown_planthopper", 5, 96)), "image/jpeg"))]
        answer = client.post("/v1/identify", files=upload)
        assert answer.status_code == 201 and answer.json()["model"]["version"] == "pestid/1", answer.text

        second = _train(sample_split, tmp_path / "v2", url, "seed=1")
        lenient = GateConfig(macro_f1_tolerance=1.0, recall_tolerance=1.0)  # two tiny models: only the path counts
        assert promote(model_name="pestid", manifest=sample_split, tracking_uri=url, gate=lenient).passed
        deadline = time.monotonic() + 60
        while client.get("/v1/model").json()["version"] != "pestid/2" and time.monotonic() < deadline:
            time.sleep(0.5)
        answer = client.post("/v1/identify", files=upload)
        assert answer.status_code == 201 and answer.json()["model"]["version"] == "pestid/2", answer.text
    aliases, versions, _ = _registry_rows(database)
    assert aliases == {"challenger": "2", "champion": "2"} and versions == [("1", first.run_id), ("2", second.run_id)]
