"""`pestid backup` and `pestid restore`: a backup restores into an empty database and photo store, and every
submission, photo (bytes equal), review and audit row is back; a receipt given before still works. On SQLite
with a photo folder, and on PostgreSQL with a bucket in a real S3 server (SeaweedFS) while farmers keep sending."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from pestid.cli import app as cli
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app, open_photo_store
from pestid.serving.dumps import BackupError
from pestid.serving.settings import Settings
from tests.conftest import Bucket, new_database
from tests.serving.conftest import jpeg, make_settings

PASSWORD = "ruộng lúa xanh mướt 2026"
TABLES = ("submissions", "photos", "reviews", "audit_log", "users", "service_secrets")


def _signed_in(client: TestClient, name: str, role: str, district: str | None) -> dict[str, str]:
    with client.app.state.sessions() as session, session.begin():  # type: ignore[attr-defined]
        add_user(session, name, PASSWORD, role, district)
    token = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD}).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def populate(client: TestClient) -> list[dict]:
    """Submissions of one and two photos in two districts, reviewed (relabel, reject, confirm), one undone."""
    lan = _signed_in(client, "lan", "officer", "Phú Tân")
    _signed_in(client, "minh", "admin", None)
    sent = []
    for k in range(6):
        photos = [jpeg(100 + k), jpeg(200 + k, "brown_planthopper")][: 1 + k % 2]
        files = [("photos", (f"{n}.jpg", p, "image/jpeg")) for n, p in enumerate(photos)]
        answer = client.post("/v1/identify", files=files, data={"district": ["Phú Tân", "Chợ Mới"][k % 2]},
                             headers={"Idempotency-Key": f"b-{k}"}).json()  # fmt: skip
        sent.append({**answer, "sent": photos})
    first = client.post(f"/v1/review/{sent[0]['submission_id']}", json={"action": "relabel", "label": "rice_bug"},
                        headers=lan).json()  # fmt: skip
    client.post(f"/v1/review/{sent[2]['submission_id']}", json={"action": "reject", "reason": "blurry"}, headers=lan)
    client.post(f"/v1/review/undo/{first['audit_id']}", headers=lan)
    client.post(f"/v1/review/{sent[0]['submission_id']}", json={"action": "relabel", "label": "yellow_stem_borer"},
                headers=lan)  # fmt: skip
    return sent


def rows(database_url: str) -> dict[str, list[tuple]]:
    """Every row of the tables a backup must bring back, in a stable order."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        found = {t: sorted(tuple(map(str, r)) for r in connection.execute(text(f"SELECT * FROM {t}"))) for t in TABLES}
    engine.dispose()
    return found


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str) -> str:
    """What the command refused with (``pestid`` prints it as one sentence in each language and exits 2)."""
    result = CliRunner().invoke(cli, list(args))
    assert isinstance(result.exception, BackupError), result.output
    return str(result.exception)


def check_restored(settings: Settings, sent: list[dict], before: dict[str, list[tuple]]) -> None:
    """Every row as it was; every photo's bytes as sent, served from the restored store; receipts still work."""
    assert rows(settings.resolved_database_url) == before
    assert len(before["audit_log"]) == 4 and len(before["reviews"]) == 3
    with TestClient(create_app(settings)) as client:
        token = client.post("/v1/auth/login", json={"username": "minh", "password": PASSWORD}).json()["token"]
        for answer in sent:
            sub = answer["submission_id"]
            assert client.get(f"/v1/submissions/{sub}", headers={"Receipt": answer["receipt"]}).status_code == 200
            for n, photo in enumerate(answer["sent"]):
                served = client.get(f"/v1/submissions/{sub}/photos/{n}", headers={"Authorization": f"Bearer {token}"})
                assert served.status_code == 200 and served.content == photo


def test_backup_restores_sqlite_and_a_photo_folder_into_empty_ones(tiny_model, tmp_path):
    source = make_settings(tiny_model, tmp_path / "live")
    with TestClient(create_app(source)) as client:
        sent = populate(client)
    before = rows(source.resolved_database_url)
    out = tmp_path / "backup"
    printed = run("backup", "--out", str(out), "--db", source.resolved_database_url, "--photos", str(source.photo_dir))
    assert "6 submissions, 9 photos" in printed and "4 audit entries" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"]["submissions"] == 6 and manifest["photos"]["count"] == 9
    with create_engine(source.resolved_database_url).connect() as connection:
        schema = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert manifest["database"] | {"sha256": "", "bytes": 0} == {"kind": "sqlite", "file": "database.sqlite",
                                                                 "sha256": "", "bytes": 0, "schema": schema}  # fmt: skip
    assert (out / "photos.sha256").read_text().count("  photos/") == 9  # sha256sum -c reads it

    target = make_settings(tiny_model, tmp_path / "restored")
    run("restore", str(out), "--db", target.resolved_database_url, "--photos", str(target.photo_dir))
    check_restored(target, sent, before)

    again = refused("restore", str(out), "--db", target.resolved_database_url, "--photos", str(target.photo_dir))
    assert "already hold data" in again  # never over data, unless forced
    run("restore", str(out), "--db", target.resolved_database_url, "--photos", str(target.photo_dir), "--force")
    assert rows(target.resolved_database_url) == before


def test_a_damaged_backup_is_refused_before_anything_is_restored(tiny_model, tmp_path):
    source = make_settings(tiny_model, tmp_path / "live")
    with TestClient(create_app(source)) as client:
        populate(client)
    out = tmp_path / "backup"
    run("backup", "--out", str(out), "--db", source.resolved_database_url, "--photos", str(source.photo_dir))
    damaged = next((out / "photos").rglob("*.jpg"))
    damaged.write_bytes(damaged.read_bytes()[:-10])
    target = make_settings(tiny_model, tmp_path / "restored")
    damage = refused("restore", str(out), "--db", target.resolved_database_url, "--photos", str(target.photo_dir))
    assert "does not match its checksum" in damage
    assert not Path(target.resolved_database_url.removeprefix("sqlite:///")).exists()
    assert list(open_photo_store(target).stored()) == []
    (out / "manifest.json").unlink()  # an unfinished backup
    assert "not a finished backup" in refused("restore", str(out), "--db", target.resolved_database_url)


def test_a_daily_backup_links_what_the_previous_one_holds_and_reads_only_new_photos(tiny_model, tmp_path):
    source = make_settings(tiny_model, tmp_path / "live")
    with TestClient(create_app(source)) as client:
        sent = populate(client)
        where = ["--db", source.resolved_database_url, "--photos", str(source.photo_dir)]
        run("backup", "--out", str(tmp_path / "monday"), *where)
        for k in range(2):
            answer = client.post("/v1/identify", files=[("photos", ("n.jpg", jpeg(400 + k), "image/jpeg"))]).json()
            sent.append({**answer, "sent": [jpeg(400 + k)]})
    printed = run("backup", "--out", str(tmp_path / "tuesday"), *where, "--previous", str(tmp_path / "monday"))
    assert "(9 photos linked from the previous backup)" in printed
    manifest = json.loads((tmp_path / "tuesday" / "manifest.json").read_text())
    assert (manifest["photos"]["count"], manifest["photos"]["linked"]) == (11, 9)
    monday = {p.relative_to(tmp_path / "monday"): p.stat().st_ino for p in (tmp_path / "monday").rglob("*.jpg")}
    tuesday = {p.relative_to(tmp_path / "tuesday"): p.stat().st_ino for p in (tmp_path / "tuesday").rglob("*.jpg")}
    assert len(tuesday) == 11 and all(tuesday[name] == inode for name, inode in monday.items())  # one copy on disk
    shutil.rmtree(tmp_path / "monday")  # each backup is whole on its own
    target = make_settings(tiny_model, tmp_path / "restored")
    run("restore", str(tmp_path / "tuesday"), "--db", target.resolved_database_url, "--photos", str(target.photo_dir))
    check_restored(target, sent, rows(source.resolved_database_url))


@pytest.fixture
def endpoint_in_env(seaweedfs, monkeypatch):
    """The S3 endpoint where the command line reads its settings (the environment), for this test only."""
    from pestid.serving.settings import get_settings

    monkeypatch.setenv("PESTID_S3_ENDPOINT_URL", seaweedfs.endpoint_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.server
def test_backup_restores_postgresql_and_a_bucket_into_empty_ones_while_farmers_send(
    tiny_model, tmp_path, postgres_url, bucket, seaweedfs, endpoint_in_env
):  # fmt: skip
    """The backup is one moment: uploads that go on while it runs are either wholly in it or not at all."""
    endpoint = {"s3_endpoint_url": seaweedfs.endpoint_url}
    source = make_settings(tiny_model, tmp_path / "live", database_url=new_database(postgres_url),
                           photo_store=bucket.url, **endpoint)  # fmt: skip
    out = tmp_path / "backup"
    with TestClient(create_app(source)) as client:
        sent = populate(client)
        stop = threading.Event()

        def farmers() -> None:
            k = 0
            while not stop.is_set():
                client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(300 + k), "image/jpeg"))])
                k += 1

        sender = threading.Thread(target=farmers)
        sender.start()
        try:
            run("backup", "--out", str(out), "--db", source.resolved_database_url, "--photos", bucket.url)
        finally:
            stop.set()
            sender.join()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "postgresql" and manifest["photos"]["damaged"] == []
    assert manifest["rows"]["photos"] == manifest["photos"]["count"] >= 9

    other = Bucket(seaweedfs, f"t-{uuid.uuid4().hex[:12]}")
    target = make_settings(tiny_model, tmp_path / "restored", database_url=new_database(postgres_url),
                           photo_store=other.url, **endpoint)  # fmt: skip
    with TestClient(create_app(target)):  # a fresh start made the schema and a receipt key: still no data
        pass
    run("restore", str(out), "--db", target.resolved_database_url, "--photos", other.url)
    restored = rows(target.resolved_database_url)
    assert len(restored["submissions"]) == manifest["rows"]["submissions"]
    assert len(other.keys("photos/")) == manifest["photos"]["count"]  # every photo the rows name, nothing else
    store = open_photo_store(target)
    for path, digest in ((r[3], r[4]) for r in restored["photos"]):
        assert _sha256(store.original(path)) == digest
    moment = {k: v for k, v in restored.items() if k != "submissions"}
    assert {k: len(v) for k, v in moment.items()} == {k: manifest["rows"][k] for k in moment}
    live = rows(source.resolved_database_url)
    print(f"backed up while sending: {manifest['rows']['submissions']} submissions and {manifest['photos']['count']} "
          f"photos in the backup, {len(live['submissions'])} submissions live afterwards")  # fmt: skip
    assert set(restored["submissions"]) <= set(live["submissions"]) and restored["audit_log"] == live["audit_log"]
    check_restored(target, sent, restored)


def _sha256(data: bytes | Path) -> str:
    import hashlib

    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()
