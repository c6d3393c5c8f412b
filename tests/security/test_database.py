"""The database under contention: SQLite writers queue and retry instead of answering 'database is locked'."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from pestid.serving.app import create_app
from pestid.serving.db import retry_locked
from tests.security.test_inputs import _stored
from tests.serving.conftest import jpeg, make_settings


def _locked() -> OperationalError:
    return OperationalError("INSERT …", {}, sqlite3.OperationalError("database is locked"))


def test_a_locked_database_is_retried_and_other_errors_are_not(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _locked()
        return "stored"

    assert retry_locked(flaky) == "stored" and len(calls) == 3

    def always() -> None:
        raise _locked()

    with pytest.raises(OperationalError):
        retry_locked(always, retries=2)

    def broken() -> None:
        calls.append(1)
        raise OperationalError("INSERT …", {}, sqlite3.OperationalError("no such table: submissions"))

    calls.clear()
    with pytest.raises(OperationalError):
        retry_locked(broken)
    assert len(calls) == 1


def test_an_upload_waits_for_another_writer_and_many_at_once_all_land(tiny_model, tmp_path):
    settings = make_settings(tiny_model, tmp_path / "data", uploads_at_once_per_address=100)  # 24 at once, one address
    with TestClient(create_app(settings)) as client:
        other = sqlite3.connect(settings.data_dir / "pestid.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for a second
        threading.Timer(1.0, lambda: other.execute("COMMIT")).start()
        start = time.monotonic()
        waited = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(1), "image/jpeg"))])
        assert waited.status_code == 201 and time.monotonic() - start >= 0.9
        threads = [threading.Thread(target=lambda k=k: results.append(client.post(
            "/v1/identify", files=[("photos", ("a.jpg", jpeg(k), "image/jpeg"))]).status_code)) for k in range(24)]  # fmt: skip
        results: list[int] = []
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [201] * 24
        assert _stored(client) == (25, 25)
