"""Photos in an S3 bucket (PESTID_PHOTO_STORE=s3://…), against a real S3 server (SeaweedFS on 127.0.0.1): the
local store's promises hold. An acknowledged photo is in the bucket under its day; a failed request leaves no
object; reconcile removes old orphans and lists only the last days; officers see photos and previews within
their district; a retry stores one object; a receipt works on another replica."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

import pytest
from fastapi.testclient import TestClient

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app, open_storage
from pestid.serving.db import Photo, Submission
from pestid.serving.photos import day_prefixes
from pestid.serving.photos_s3 import S3PhotoStore
from pestid.serving.submissions import referenced_paths
from tests.conftest import Bucket, free_port, heic_bytes, photo
from tests.serving.conftest import cut_at_commit, jpeg, make_settings

pytestmark = pytest.mark.server
PASSWORD = "ruộng lúa xanh mướt 2026"


def _settings(bucket: Bucket, model, data_dir, **extra):
    return make_settings(model, data_dir, photo_store=bucket.url, s3_endpoint_url=bucket.server.endpoint_url, **extra)


def _service(bucket: Bucket, model, data_dir, **extra) -> TestClient:
    return TestClient(create_app(_settings(bucket, model, data_dir, **extra)), raise_server_exceptions=False)


def _send(client: TestClient, *photos: bytes, key: str | None = None, **data: str):
    files = [("photos", (f"{n}.jpg", p, "image/jpeg")) for n, p in enumerate(photos)]
    return client.post("/v1/identify", files=files, data=data, headers={"Idempotency-Key": key} if key else {})


def _rows(client: TestClient) -> int:
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        return session.query(Submission).count()


def _officer(client: TestClient, name: str, district: str) -> dict[str, str]:
    with client.app.state.sessions() as session, session.begin():  # type: ignore[attr-defined]
        add_user(session, name, PASSWORD, "officer", district)
    token = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def test_an_upload_is_kept_in_the_bucket_under_its_day_and_no_disk_reserve_applies(bucket, tiny_model, tmp_path):
    settings = _settings(bucket, tiny_model, tmp_path / "data", storage_reserve_bytes=10**18)  # no disk has that
    sent = jpeg(1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        answer = _send(client, sent)
        assert answer.status_code == 201, answer.text
        sid = answer.json()["submission_id"]
        with client.app.state.sessions() as session:  # type: ignore[attr-defined]
            created = session.get(Submission, sid).created_at
            path = session.query(Photo.path).filter_by(submission_id=sid).scalar()
    assert path == f"{created:%Y/%m/%d}/{sid}/0.jpg"
    assert bucket.keys() == [f"photos/{path}"]
    assert bucket.read(f"photos/{path}") == sent
    assert not settings.photo_dir.exists()  # nothing on the local disk


def test_a_failed_transaction_leaves_no_object_behind(bucket, tiny_model, tmp_path, monkeypatch):
    from sqlalchemy.orm import Session

    def broken_flush(self, *args, **kwargs):
        raise RuntimeError("the database went away")

    with _service(bucket, tiny_model, tmp_path / "data") as client:
        monkeypatch.setattr(Session, "flush", broken_flush)
        failed = _send(client, jpeg(2), jpeg(3))  # both photos were written before the row failed
        monkeypatch.undo()
        assert failed.status_code == 500 and failed.json()["code"] == "internal_error"
        assert (_rows(client), bucket.keys()) == (0, [])
        assert _send(client, jpeg(2)).status_code == 201  # and then it works
        assert len(bucket.keys()) == 1


@pytest.mark.parametrize("database_answers_after", [True, False])
def test_a_commit_whose_reply_is_lost_keeps_its_object(
    bucket, tiny_model, tmp_path, monkeypatch, database_answers_after
):
    """The object is written at its final key before the row: a commit that landed but whose reply was cut
    must not delete it (it did: the retry was answered "stored" and officers got a 500 for the photo)."""
    with _service(bucket, tiny_model, tmp_path / "data") as client:
        cut = cut_at_commit(monkeypatch, lambda: _rows(client), database_answers_after=database_answers_after)
        sent = _send(client, jpeg(8), key="cut-at-commit")
        monkeypatch.undo()
        assert cut and sent.status_code == (201 if database_answers_after else 500), sent.text
        assert _send(client, jpeg(8), key="cut-at-commit").status_code == 200 and _rows(client) == 1
        assert list(map(bucket.read, bucket.keys())) == [jpeg(8)]


def test_an_unreachable_store_is_a_503_to_send_again_with_nothing_stored(bucket, tiny_model, tmp_path):
    with _service(bucket, tiny_model, tmp_path / "data") as client:
        nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        client.app.state.photos = S3PhotoStore(bucket.url, endpoint_url=nowhere)  # type: ignore[attr-defined]
        refused = _send(client, jpeg(4))
        assert refused.status_code == 503 and refused.json()["code"] == "storage_unavailable"
        assert refused.headers["retry-after"] and "gửi lại" in refused.json()["detail_vi"]
        assert (_rows(client), bucket.keys()) == (0, [])


def test_reconcile_removes_old_orphans_and_lists_only_the_last_days(bucket, tiny_model, tmp_path):
    settings = _settings(bucket, tiny_model, tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        sid = _send(client, jpeg(5)).json()["submission_id"]
        sessions = client.app.state.sessions  # type: ignore[attr-defined]
        kept = bucket.keys()
    today = datetime.now(UTC).date()
    day = f"{today:%Y/%m/%d}"
    bucket.put(f"photos/{day}/{'d' * 32}/0.jpg", jpeg(6))  # a crash between the photo and its row
    bucket.put(f"photos/2020/01/01/{'e' * 32}/0.jpg", jpeg(7))  # an orphan from long ago: out of the window
    store = S3PhotoStore(bucket.url, endpoint_url=bucket.server.endpoint_url, window_days=2)
    listed: list[str] = []
    store.client.meta.events.register("before-parameter-build.s3.ListObjectsV2",
                                      lambda params, **_: listed.append(params["Prefix"]))  # fmt: skip
    time.sleep(4.0)
    # Young: maybe another replica's, still committing. An object's time is kept to the second, so it may read up
    # to a second older than it is: the margins are seconds, and nothing slow runs between this and the listing.
    bucket.put(f"photos/{day}/{'f' * 32}/0.jpg", jpeg(8))
    assert store.reconcile(partial(referenced_paths, sessions), min_age_s=2.5) == 1
    assert bucket.keys() == sorted([*kept, f"photos/2020/01/01/{'e' * 32}/0.jpg", f"photos/{day}/{'f' * 32}/0.jpg"])
    assert sid in kept[0]
    assert listed == [f"{bucket.prefix}/photos/{d}" for d in day_prefixes(today, 2)]  # three days, never all


def test_start_up_keeps_the_grace_for_a_bucket_other_replicas_write_to(bucket, tiny_model, tmp_path):
    """``pestid serve`` reconciles with no grace before its workers start: right for its own disk, wrong for a
    bucket, where another replica may be committing a photo just written."""
    young = f"photos/{datetime.now(UTC):%Y/%m/%d}/{'a' * 32}/0.jpg"
    bucket.put(young, jpeg(9))
    engine, _, _, removed = open_storage(_settings(bucket, tiny_model, tmp_path / "data"), orphan_grace_s=0)
    engine.dispose()
    assert removed == 0 and bucket.keys() == [young]
    settings = _settings(bucket, tiny_model, tmp_path / "data", orphan_grace_s=0)  # the operator says: none
    engine, _, _, removed = open_storage(settings, orphan_grace_s=0)
    engine.dispose()
    assert removed == 1 and bucket.keys() == []


def test_officers_see_photos_and_previews_from_the_bucket_only_within_their_district(bucket, tiny_model, tmp_path):
    sent_jpeg, sent_heic = jpeg(10), heic_bytes(photo("brown_planthopper", 11, size=160))
    with TestClient(create_app(_settings(bucket, tiny_model, tmp_path / "data"))) as client:
        files = [("photos", ("a.jpg", sent_jpeg, "image/jpeg")), ("photos", ("b.heic", sent_heic, "image/heic"))]
        sid = client.post("/v1/identify", files=files, data={"district": "Phú Tân"}).json()["submission_id"]
        lan, minh = _officer(client, "lan", "Phú Tân"), _officer(client, "minh", "Châu Đốc")
        original = client.get(f"/v1/submissions/{sid}/photos/0", headers=lan)
        assert original.status_code == 200 and original.content == sent_jpeg
        assert original.headers["content-type"] == "image/jpeg"
        assert original.headers["content-disposition"] == 'inline; filename="0.jpg"'
        heic = client.get(f"/v1/submissions/{sid}/photos/1", headers=lan)
        assert heic.content == sent_heic and heic.headers["content-type"] == "image/heic"
        preview = client.get(f"/v1/submissions/{sid}/photos/1/thumbnail", headers=lan)
        assert preview.status_code == 200 and preview.content[:3] == b"\xff\xd8\xff"  # a JPEG of the HEIC
        cached = bucket.keys("previews/")
        assert cached == [f"previews/{bucket.keys('photos/')[1].removeprefix('photos/')}.320.jpg"]
        assert client.get(f"/v1/submissions/{sid}/photos/1/thumbnail", headers=lan).content == preview.content
        for path in ("photos/0", "photos/1", "photos/0/large"):  # another district's officer: as if it did not exist
            assert client.get(f"/v1/submissions/{sid}/{path}", headers=minh).status_code == 404
        assert client.get(f"/v1/submissions/{sid}/photos/0").status_code == 401
        assert bucket.keys("previews/") == cached  # nothing made for those refused


def test_a_retry_and_a_race_under_one_key_each_store_one_object(bucket, tiny_model, tmp_path):
    with _service(bucket, tiny_model, tmp_path / "data") as client:
        first = _send(client, jpeg(12), key="k-1")
        again = _send(client, jpeg(12), key="k-1")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["submission_id"] == first.json()["submission_id"]
        assert len(bucket.keys()) == 1
        with ThreadPoolExecutor(8) as pool:  # the losers wrote their photo too, and delete it again
            answers = list(pool.map(lambda _: _send(client, jpeg(13), key="race"), range(8)))
        assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
        assert len(bucket.keys()) == 2 and _rows(client) == 2


def test_a_receipt_and_a_photo_work_from_another_replica(bucket, tiny_model, tmp_path):
    """Two replicas share the database and the bucket, nothing else: no disk, no memory."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    one = create_app(_settings(bucket, tiny_model, tmp_path / "one", database_url=database))
    other = create_app(_settings(bucket, tiny_model, tmp_path / "other", database_url=database))
    sent = jpeg(14)
    with TestClient(one) as first, TestClient(other) as second:
        answer = _send(first, sent, district="Phú Tân").json()
        state = second.get(f"/v1/submissions/{answer['submission_id']}", headers={"Receipt": answer["receipt"]})
        assert state.status_code == 200, state.text
        got = state.json()
        assert (got["submission_id"], got["decision"]) == (answer["submission_id"], answer["decision"])
        lan = _officer(second, "lan", "Phú Tân")
        seen = second.get(f"/v1/submissions/{answer['submission_id']}/photos/0", headers=lan)
        assert seen.status_code == 200 and seen.content == sent


def test_approved_photos_in_a_bucket_become_a_dataset_version_of_local_files(bucket, tiny_model, tmp_path, monkeypatch):
    """`pestid data from-reviews` read photos from the serving folder, so with a bucket every photo was "unreadable".
    It reads them through the store now: each approved one is downloaded once, checked against its row's digest."""
    from typer.testing import CliRunner

    from pestid.cli import app
    from pestid.manifest import read_manifest
    from pestid.serving.settings import get_settings

    settings = _settings(bucket, tiny_model, tmp_path / "data")
    approved, pending = jpeg(15, "brown_planthopper"), jpeg(16)
    with TestClient(create_app(settings)) as client:
        first = _send(client, approved, district="Phú Tân").json()["submission_id"]
        _send(client, pending, district="Phú Tân")
        lan = _officer(client, "lan", "Phú Tân")
        verdict = client.post(f"/v1/review/{first}", json={"action": "relabel", "label": "rice_bug"}, headers=lan)
        assert verdict.json()["status"] == "approved"
    for name, value in bucket.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    out = tmp_path / "v2.csv"
    command = ["data", "from-reviews", "--out", str(out), "--db", settings.resolved_database_url]
    try:
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        assert "1 ảnh duyệt được thêm" in result.output and "0 unreadable" in result.output
        manifest = read_manifest(out)
        (row,) = manifest.rows
        kept = manifest.image_path(row)
        assert row.label == "rice_bug" and kept.read_bytes() == approved
        assert kept.is_relative_to(tmp_path / "v2.photos")  # beside the manifest, named after it
        before = kept.stat().st_mtime_ns
        assert CliRunner().invoke(app, command).exit_code == 0
        assert kept.stat().st_mtime_ns == before  # kept, not downloaded again
    finally:
        get_settings.cache_clear()
