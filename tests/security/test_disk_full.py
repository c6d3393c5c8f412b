"""A full disk is a 507 the phone can retry, with nothing left behind: no row, no staged or placed file."""

from __future__ import annotations

import errno
import os

import pytest
from fastapi.testclient import TestClient

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.photos import PhotoStore
from tests.security.test_inputs import _stored
from tests.serving.conftest import jpeg, make_settings


@pytest.mark.parametrize("full_at", [0, 1, 2])
def test_a_full_disk_while_staging_photos_is_507_and_leaves_nothing(tiny_model, tmp_path, monkeypatch, full_at):
    """The disk fills while writing photo ``full_at`` of three: half of it is written, then ENOSPC."""
    writes = []
    real_fsync = os.fsync

    def fsync(fd):
        writes.append(fd)
        if len(writes) == full_at + 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data")), raise_server_exceptions=False) as client:
        monkeypatch.setattr("pestid.serving.photos.os.fsync", fsync)
        photos = [("photos", (f"{k}.jpg", jpeg(k), "image/jpeg")) for k in range(3)]
        response = client.post("/v1/identify", files=photos)
        monkeypatch.undo()
        assert response.status_code == 507 and response.json()["code"] == "storage_full"
        assert "gửi lại" in response.json()["detail_vi"]
        assert _stored(client) == (0, 0)
        assert client.post("/v1/identify", files=photos[:1]).status_code == 201  # room again: it works


def test_a_failed_stage_removes_its_partial_file(tmp_path, monkeypatch):
    store = PhotoStore(tmp_path)

    def fail(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pestid.serving.photos.os.fsync", fail)
    with pytest.raises(OSError):
        store.stage(b"x" * 1000)
    assert list(store.tmp.iterdir()) == []


def test_photos_are_refused_before_the_disk_is_full_and_readyz_says_so(tiny_model, tmp_path, monkeypatch, capfd):
    """One anonymous client filled a 2 GB disk in 10 s and every later request failed, sign-in included. Now the
    photo disk keeps a reserve: a photo that would eat into it is 507, /readyz is 503 "storage_low" (a balancer
    sends farmers elsewhere), an alert is logged, and officers keep working."""
    settings = make_settings(tiny_model, tmp_path / "data", storage_reserve_bytes=50_000_000)
    free = {"bytes": 50_000_000 + 10_000}  # room for one small photo before the reserve
    monkeypatch.setattr(PhotoStore, "free_bytes", lambda self: free["bytes"])
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        small = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(1), "image/jpeg"))])
        assert small.status_code == 201
        free["bytes"] = 50_000_000 - 1
        refused = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(2), "image/jpeg"))])
        assert refused.status_code == 507 and refused.json()["code"] == "storage_full"
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "storage_low"
        assert "storage_low" in capfd.readouterr().err  # the alert
        with client.app.state.sessions() as session, session.begin():
            add_user(session, "lan", "ruộng lúa xanh mướt 2026", "officer", "Phú Tân")
        signed = client.post("/v1/auth/login", json={"username": "lan", "password": "ruộng lúa xanh mướt 2026"})
        assert signed.status_code == 200  # the reserve is for the database: officers still sign in and review
        assert _stored(client)[0] == 1


def test_a_full_database_disk_is_507_for_sign_in_and_verdicts_and_previews_are_still_served(tiny_model, tmp_path,
                                                                                            monkeypatch):  # fmt: skip
    """On SQLite a full disk made sign-in and verdicts 500, and previews 500 on every database."""
    import sqlite3
    from pathlib import Path

    from sqlalchemy import event

    password = "ruộng lúa xanh mướt 2026"
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.sessions() as session, session.begin():
            add_user(session, "lan", password, "officer", "Phú Tân")
        token = client.post("/v1/auth/login", json={"username": "lan", "password": password}).json()["token"]
        officer = {"Authorization": f"Bearer {token}"}
        sub = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(5), "image/jpeg"))],
                          data={"district": "Phú Tân"}).json()["submission_id"]  # fmt: skip
        engine = app.state.sessions.kw["bind"]
        full = {"on": True}

        @event.listens_for(engine, "before_cursor_execute")
        def no_room(conn, cursor, statement, parameters, context, executemany):
            if full["on"] and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise sqlite3.OperationalError("database or disk is full")

        signed = client.post("/v1/auth/login", json={"username": "lan", "password": password})
        verdict = client.post(f"/v1/review/{sub}", json={"action": "relabel", "label": "rice_blast"}, headers=officer)
        assert [signed.status_code, verdict.status_code] == [507, 507]
        assert signed.json()["code"] == verdict.json()["code"] == "storage_full"
        assert "content-security-policy" in verdict.headers

        real_write = Path.write_bytes

        def no_space(self: Path, data: bytes) -> int:
            if self.name.endswith(".tmp"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(self, data)

        monkeypatch.setattr(Path, "write_bytes", no_space)
        preview = client.get(f"/v1/submissions/{sub}/photos/0/large", headers=officer)
        assert preview.status_code == 200 and preview.content[:3] == b"\xff\xd8\xff"  # made, shown, not kept
        full["on"] = False
