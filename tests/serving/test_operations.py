import sqlite3
import time

import pytest
from fastapi.testclient import TestClient

from pestid.serving.app import create_app
from tests.serving.conftest import cut_at_commit, jpeg, make_settings


def test_health_is_live_and_ready_only_once_the_model_is_loaded(tiny_model, tmp_path):
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    cold = TestClient(app)  # no lifespan: nothing loaded
    assert cold.get("/healthz").status_code == 200
    assert cold.get("/readyz").status_code == 503
    assert cold.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))]).status_code == 503
    with TestClient(app) as warm:
        ready = warm.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"].startswith("pestid@")


def test_metrics_count_requests_decisions_classes_and_confidence(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data", public_operations=True))) as client:
        client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))])
        text = client.get("/metrics").text
    for name in ("pestid_http_requests_total", "pestid_http_request_seconds", "pestid_decisions_total",
                 "pestid_predicted_class_total", "pestid_confidence_bucket"):  # fmt: skip
        assert name in text
    assert 'route="/v1/identify"' in text


def test_every_response_carries_a_request_id(client):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_a_failing_database_write_leaves_no_photo_behind(tiny_model, tmp_path, monkeypatch):
    from sqlalchemy.orm import Session

    def broken_flush(self, *args, **kwargs):
        raise RuntimeError("disk full")

    client = TestClient(create_app(make_settings(tiny_model, tmp_path / "data")), raise_server_exceptions=False)
    client.__enter__()
    monkeypatch.setattr(Session, "flush", broken_flush)
    response = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))])
    assert response.status_code == 500 and response.json()["code"] == "internal_error"
    assert response.headers["connection"] == "close"  # the client opens a new connection for its next request
    monkeypatch.undo()
    photo_dir = client.app.state.settings.photo_dir
    assert [p for p in photo_dir.rglob("*") if p.is_file()] == []
    with sqlite3.connect(client.app.state.settings.data_dir / "pestid.db") as db:
        assert db.execute("select count(*) from submissions").fetchone()[0] == 0
    client.__exit__(None, None, None)


@pytest.mark.parametrize("database_answers_after", [True, False])
def test_a_commit_whose_reply_is_lost_keeps_the_photo(tiny_model, tmp_path, monkeypatch, database_answers_after):
    """A connection cut while COMMIT's reply is on its way: the row is in the database, so its photo must stay.
    Deleting it (as any failed write did) left a submission whose retry was answered "stored" with no photo."""
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data")), raise_server_exceptions=False) as client:
        cut = cut_at_commit(monkeypatch, lambda: _count(client), database_answers_after=database_answers_after)
        sent = _send_keyed(client, jpeg(7), "cut-at-commit")
        monkeypatch.undo()
        # The database says the row is there: the farmer is told it was stored. It cannot say: a 500, and the
        # page's retry with the same key is answered from the row.
        assert cut and _count(client) == 1
        assert sent.status_code == (201 if database_answers_after else 500), sent.text
        assert _send_keyed(client, jpeg(7), "cut-at-commit").status_code == 200 and _count(client) == 1
        photo_dir = client.app.state.settings.photo_dir
        stored = [p for p in photo_dir.rglob("*") if p.is_file() and p.parent != photo_dir / "tmp"]
        assert [p.read_bytes() for p in stored] == [jpeg(7)]


def _send_keyed(client: TestClient, data: bytes, key: str):
    return client.post(
        "/v1/identify", files=[("photos", ("a.jpg", data, "image/jpeg"))], headers={"Idempotency-Key": key}
    )


def _count(client: TestClient) -> int:
    with sqlite3.connect(client.app.state.settings.data_dir / "pestid.db") as db:
        return db.execute("select count(*) from submissions").fetchone()[0]


def test_a_crash_between_photo_and_row_is_cleaned_up_at_start(tiny_model, tmp_path):
    settings = make_settings(tiny_model, tmp_path / "data", orphan_grace_s=0)
    with TestClient(create_app(settings)) as client:
        kept = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))]).json()
    # what a killed process leaves: a staged file, and a placed photo whose transaction never committed
    (settings.photo_dir / "tmp" / "half-written").write_bytes(b"\xff\xd8 partial")
    orphan = settings.photo_dir / "2026" / "11" / "deadbeef" / "0.jpg"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(jpeg(3))
    with TestClient(create_app(settings)) as client:
        files = sorted(
            p.relative_to(settings.photo_dir).as_posix() for p in settings.photo_dir.rglob("*") if p.is_file()
        )
        assert len(files) == 1 and kept["submission_id"] in files[0]
        assert client.get("/readyz").status_code == 200


def test_a_running_worker_removes_crash_leftovers_again_every_reconcile_interval(tiny_model, tmp_path):
    """A replica killed mid-upload and restarted within the grace kept its orphan until some later restart."""
    settings = make_settings(tiny_model, tmp_path / "data", orphan_grace_s=0, reconcile_s=0.2)
    with TestClient(create_app(settings)) as client:
        kept = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))]).json()
        orphan = settings.photo_dir / "2026" / "11" / "deadbeef" / "0.jpg"  # left by a sibling that died
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(jpeg(3))
        deadline = time.monotonic() + 10
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not orphan.exists()
        files = [p for p in settings.photo_dir.rglob("*") if p.is_file()]
        assert len(files) == 1 and kept["submission_id"] in files[0].as_posix()


def test_any_sqlalchemy_url_works(tiny_model, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'other.db'}"
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data", database_url=url))) as client:
        assert client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))]).status_code == 201
    with sqlite3.connect(tmp_path / "elsewhere" / "other.db") as db:
        assert db.execute("select count(*) from submissions").fetchone()[0] == 1
        assert db.execute("select version_num from alembic_version").fetchone()[0] == _head_revision()


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pestid.serving.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return str(ScriptDirectory.from_config(config).get_current_head())


@pytest.mark.server
def test_pestid_serve_with_two_workers_on_a_fresh_data_folder(tiny_model, tmp_path):
    """Both workers start together on an empty database (migrations must not race) and answer."""
    import sys

    import httpx

    from tests.conftest import REPO, pestid_serve

    command = [sys.executable, "-m", "pestid.cli", "serve", "--model", str(tiny_model), "--workers", "2"]
    with (
        pestid_serve(command, tmp_path / "data", cwd=REPO) as url,
        httpx.Client() as client,
    ):  # keep-alive, as phones do
        answers = [client.post(f"{url}/v1/identify", files=[("photos", ("a.jpg", jpeg(k), "image/jpeg"))])
                   for k in range(4)]  # fmt: skip
    assert [a.status_code for a in answers] == [201] * 4


def test_start_up_spares_fresh_files_another_worker_may_still_be_committing(tiny_model, tmp_path):
    settings = make_settings(tiny_model, tmp_path / "data")  # default grace: 10 minutes
    in_flight = settings.photo_dir / "2026" / "11" / "cafebabe" / "0.jpg"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(jpeg(4))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
    assert in_flight.exists()
