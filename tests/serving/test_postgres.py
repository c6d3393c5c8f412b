"""The service on a real PostgreSQL server through its SQLAlchemy URL: submissions, idempotency, review."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from tests.serving.conftest import jpeg, make_settings

pytestmark = pytest.mark.server


def test_submissions_and_reviews_on_postgresql(tiny_model, tmp_path, postgres_url):
    settings = make_settings(tiny_model, tmp_path / "data", database_url=postgres_url)
    with TestClient(create_app(settings)) as client:
        files = [("photos", ("a.jpg", jpeg(), "image/jpeg"))]
        first = client.post(
            "/v1/identify", files=files, headers={"Idempotency-Key": "pg-1"}, data={"district": "Chợ Mới"}
        )
        again = client.post("/v1/identify", files=files, headers={"Idempotency-Key": "pg-1"},
                            data={"district": "Chợ Mới"})  # fmt: skip
        assert first.status_code == 201 and again.json() == first.json()
        reused = client.post("/v1/identify", files=files, headers={"Idempotency-Key": "pg-1"})  # no district now
        assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
        too_long = client.post("/v1/identify", files=files, data={"commune": "x" * 129})  # varchar(128)
        assert too_long.status_code == 422 and too_long.json()["field"] == "commune"
        with client.app.state.sessions() as session, session.begin():
            add_user(session, "pg", "mật khẩu dài", "officer", "Chợ Mới")
        token = client.post("/v1/auth/login", json={"username": "pg", "password": "mật khẩu dài"}).json()["token"]
        sub = first.json()["submission_id"]
        reviewed = client.post(f"/v1/review/{sub}", json={"action": "relabel", "label": "rice_bug"},
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert reviewed.json()["status"] == "approved"
    with create_engine(postgres_url).connect() as connection:
        assert connection.execute(text("select count(*) from submissions")).scalar() == 1
        assert connection.execute(text("select final_label from submissions")).scalar() == "rice_bug"
        assert connection.execute(text("select count(*) from photos")).scalar() == 1


def test_nul_bytes_and_huge_integers_are_refused_before_postgresql_sees_them(tiny_model, tmp_path, postgres_url):
    """PostgreSQL cannot store a NUL and its integers stop at 2^31: both used to be a 500 (psycopg DataError,
    NumericValueOutOfRange). Now they are 4xx wherever they come from, and a real upload still lands."""
    settings = make_settings(tiny_model, tmp_path / "data", database_url=postgres_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        with client.app.state.sessions() as session, session.begin():
            add_user(session, "pg2", "mật khẩu dài", "officer", "Chợ Mới")
        token = client.post("/v1/auth/login", json={"username": "pg2", "password": "mật khẩu dài"}).json()["token"]
        officer = {"Authorization": f"Bearer {token}"}
        files = [("photos", ("a.jpg", jpeg(7), "image/jpeg"))]
        answers = [
            client.post("/v1/identify", files=files, data={"district": "Chợ Mới\x00"}),
            client.post("/v1/identify", files=files, data={"note": "rầy\x00"}),
            client.post("/v1/auth/login", json={"username": "pg2\x00", "password": "x"}),
            client.get("/v1/review/queue?district=a%00", headers=officer),
            client.get("/v1/submissions/a%00b", headers={"Receipt": "x"}),
            client.post("/v1/review/undo/2147483648", headers=officer),
            client.get("/v1/submissions/abc/photos/2147483648", headers=officer),
        ]
        assert [a.status_code for a in answers] == [422, 422, 422, 422, 422, 422, 422], [a.text for a in answers]
        assert client.post("/v1/identify", files=files, data={"district": "Chợ Mới"}).status_code == 201


def test_replicas_starting_together_on_an_empty_database_take_turns_migrating(postgres_url, tmp_path):
    """Each host's file lock serialises its own workers only; replicas on several hosts started together on a fresh
    PostgreSQL used to fail on each other's CREATE TABLE (2 of 4 here). They take turns on an advisory lock now."""
    import subprocess
    import sys

    from tests.conftest import REPO, new_database

    url = new_database(postgres_url)
    start = ("import sys, pathlib; from pestid.serving.db import make_engine, migrate; "
             "migrate(make_engine(sys.argv[1]), lock=pathlib.Path(sys.argv[2]) / '.migrate.lock')")  # fmt: skip
    replicas = [subprocess.Popen([sys.executable, "-c", start, url, str(tmp_path / f"host-{k}")], cwd=REPO,
                                 stderr=subprocess.PIPE, text=True) for k in range(4)]  # fmt: skip
    outcomes = [(p.communicate(timeout=120)[1], p.returncode) for p in replicas]
    assert [error[-500:] for error, code in outcomes if code != 0] == []
    with create_engine(url).connect() as connection:
        assert connection.execute(text("select count(*) from alembic_version")).scalar() == 1
