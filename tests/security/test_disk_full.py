"""A full disk is a 507 the phone can retry, with nothing left behind: no row, no staged or placed file."""

from __future__ import annotations

import errno
import os

import pytest
from fastapi.testclient import TestClient

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
