"""`pestid backup` and `pestid restore`: a backup restores into an empty database and photo store, and every
submission, photo (bytes equal), review and audit row is back; a receipt given before still works. On SQLite
with a photo folder, and on PostgreSQL with a bucket in a real S3 server (SeaweedFS) while farmers keep sending.
A crafted backup (names out of the store, links, photos the rows do not name, a newer schema) is refused before
anything is written; a photo the store lost is named, and everything else backs up and restores."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from pestid.cli import app as cli
from pestid.serving import backup as backups
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app, open_photo_store
from pestid.serving.dumps import BackupError, contents
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


def where(settings: Settings) -> list[str]:
    return ["--db", settings.resolved_database_url, "--photos", str(settings.photo_dir)]


@dataclass(frozen=True)
class Served:
    """A populated service on SQLite and a photo folder, and a backup of it."""

    settings: Settings
    sent: list[dict]
    before: dict[str, list[tuple]]
    backup: Path

    def copy(self, into: Path) -> Path:
        """A copy of the backup to alter (links stay links, times stay)."""
        return Path(shutil.copytree(self.backup, into / "backup", symlinks=True))


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory) -> Served:
    """Made once for the tests that alter a backup or its service: each alters a copy."""
    root = tmp_path_factory.mktemp("served")
    settings = make_settings(tiny_model, root / "live")
    with TestClient(create_app(settings)) as client:
        sent = populate(client)
    run("backup", "--out", str(root / "backup"), *where(settings))
    return Served(settings, sent, rows(settings.resolved_database_url), root / "backup")


def relist(folder: Path, lines: list[str]) -> None:
    """Write the backup's photo list and seal it into the manifest, as someone crafting a backup would."""
    (folder / "photos.sha256").write_text("".join(f"{line}\n" for line in lines))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["photos"]["list_sha256"] = _sha256(folder / "photos.sha256")
    (folder / "manifest.json").write_text(json.dumps(manifest))


def listing(folder: Path) -> list[str]:
    return (folder / "photos.sha256").read_text().splitlines()


def nothing_restored(target: Settings) -> bool:
    return not (target.data_dir / "pestid.db").exists() and not (target.data_dir / "previews").exists() and list(
        open_photo_store(target).stored()) == []  # fmt: skip


def _into_previews(folder: Path, outside: Path) -> str:
    """A name that climbs out of the photo folder to overwrite a cached preview (a tester's finding)."""
    name = f"../previews/{listing(folder)[0].split('  photos/')[1]}.320.jpg"
    (folder / "photos" / name).parent.mkdir(parents=True)
    (folder / "photos" / name).write_bytes(b"not a preview")
    relist(folder, [*listing(folder), f"{_sha256(folder / 'photos' / name)}  photos/{name}"])
    return "not a photo's place"


def _linked_file(folder: Path, outside: Path) -> str:
    """A photo whose file is a link to one outside the backup (the same bytes: its checksum matches)."""
    photo = folder / listing(folder)[0].split("  ")[1]
    outside.mkdir()
    shutil.move(photo, outside / "photo.jpg")
    photo.symlink_to(outside / "photo.jpg")
    return "symbolic link"


def _linked_folder(folder: Path, outside: Path) -> str:
    """A folder of photos that is a relative link to one outside the backup."""
    year = next((folder / "photos").iterdir())
    shutil.move(year, outside)
    year.symlink_to(os.path.relpath(outside, year.parent))
    return "symbolic link"


@pytest.mark.parametrize("craft", [_into_previews, _linked_file, _linked_folder])
def test_restore_writes_nowhere_but_the_store_and_reads_no_link(served, tiny_model, tmp_path, craft):
    """A crafted backup, its checksums all matching: a name out of the store's shape, or a link in its folder."""
    folder = served.copy(tmp_path)
    expected = craft(folder, tmp_path / "outside")
    target = make_settings(tiny_model, tmp_path / "restored")
    assert expected in refused("restore", str(folder), *where(target))
    assert nothing_restored(target)


def _extra(folder: Path) -> str:
    """A photo listed (and present, its checksum matching) that no row names."""
    day = listing(folder)[0].split("  photos/")[1].rsplit("/", 2)[0]
    name = f"{day}/{uuid.uuid4().hex}/0.jpg"
    (folder / "photos" / name).parent.mkdir()
    (folder / "photos" / name).write_bytes(jpeg(999))
    relist(folder, [*listing(folder), f"{_sha256(jpeg(999))}  photos/{name}"])
    return "listed, but no database row names them"


def _unlisted(folder: Path) -> str:
    """A row whose photo the list leaves out."""
    relist(folder, listing(folder)[1:])
    return "neither listed nor recorded missing"


def _other_digest(folder: Path) -> str:
    """A photo listed with bytes (and a checksum) other than its row's."""
    first, *rest = listing(folder)
    (folder / first.split("  ")[1]).write_bytes(jpeg(998))
    relist(folder, [f"{_sha256(jpeg(998))}  {first.split('  ')[1]}", *rest])
    return "listed with another digest than their rows'"


@pytest.mark.parametrize("craft", [_extra, _unlisted, _other_digest])
def test_restore_refuses_photos_other_than_those_the_rows_name(served, tiny_model, tmp_path, craft):
    folder = served.copy(tmp_path)
    expected = craft(folder)
    target = make_settings(tiny_model, tmp_path / "restored")
    assert expected in refused("restore", str(folder), *where(target))
    assert nothing_restored(target)


def test_restore_refuses_a_photo_larger_than_the_upload_limit(served, tiny_model, tmp_path):
    target = make_settings(tiny_model, tmp_path / "restored")
    with pytest.raises(BackupError, match="larger than the 1000 bytes a photo may have"):
        backups.restore(served.backup, target.resolved_database_url, open_photo_store(target), max_photo_bytes=1000)
    assert nothing_restored(target)


def test_restore_refuses_a_backup_of_a_newer_schema(served, tiny_model, tmp_path):
    """A backup made by a newer pestid: restored, the next start would fail on a schema it does not know."""
    folder = served.copy(tmp_path)
    with sqlite3.connect(folder / "database.sqlite") as copy:
        copy.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    copy.close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["database"] |= {"sha256": _sha256(folder / "database.sqlite"), "schema": "0099_from_the_future"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    target = make_settings(tiny_model, tmp_path / "restored")
    assert "0099_from_the_future, newer than this pestid knows" in refused("restore", str(folder), *where(target))
    assert nothing_restored(target)


def test_a_photo_the_store_lost_is_named_and_everything_else_backs_up_and_restores(served, tiny_model, tmp_path):
    """Before, the backup listed it anyway and every restore of it was refused."""
    shutil.copytree(served.settings.data_dir, tmp_path / "live")
    source = make_settings(tiny_model, tmp_path / "live")
    lost = sorted(open_photo_store(source).stored())[0]
    (source.photo_dir / lost).unlink()
    backed_up = CliRunner().invoke(cli, ["backup", "--out", str(tmp_path / "backup"), *where(source)])
    assert backed_up.exit_code == 1 and "1 photo(s) missing" in backed_up.output and lost in backed_up.output
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert [m["path"] for m in manifest["photos"]["missing"]] == [lost] and manifest["photos"]["count"] == 8
    assert lost not in (tmp_path / "backup" / "photos.sha256").read_text()

    target = make_settings(tiny_model, tmp_path / "restored")
    restored = CliRunner().invoke(cli, ["restore", str(tmp_path / "backup"), *where(target)])
    assert restored.exit_code == 1 and "already missing when the backup was made" in restored.output
    assert lost in restored.output and rows(target.resolved_database_url) == served.before  # the rows stay
    store = open_photo_store(target)
    assert sorted(store.stored()) == sorted(set(open_photo_store(served.settings).stored()) - {lost})
    for path in store.stored():
        assert _sha256(store.original(path)) == _sha256(served.settings.photo_dir / path)


def test_a_backup_made_before_photos_missing_restores_all_but_its_damaged_photos(served, tiny_model, tmp_path):
    """Such a backup listed a photo it could not read (and had no file for) under ``photos.damaged`` too."""
    folder = served.copy(tmp_path)
    lost = listing(folder)[0].split("  photos/")[1]
    (folder / "photos" / lost).unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    for added in ("missing", "copied", "read", "not_linked"):
        del manifest["photos"][added]
    manifest["photos"]["damaged"] = [f"{lost}: [Errno 2] No such file or directory"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    target = make_settings(tiny_model, tmp_path / "restored")
    restored = CliRunner().invoke(cli, ["restore", str(folder), *where(target)])
    assert restored.exit_code == 1 and f"{lost}: [Errno 2] No such file or directory" in restored.output
    assert rows(target.resolved_database_url) == served.before
    assert len(list(open_photo_store(target).stored())) == 8


def test_a_backup_is_readable_by_its_owner_only(served, tmp_path):
    """It holds password hashes, the receipt key, sign-in addresses and farmers' coordinates."""
    before = os.umask(0o022)
    try:
        run("backup", "--out", str(tmp_path / "backup"), *where(served.settings))
    finally:
        os.umask(before)
    made = [tmp_path / "backup", *(tmp_path / "backup").rglob("*")]
    modes = {stat.S_IMODE(p.stat().st_mode) for p in made if p.is_dir()}, {
        stat.S_IMODE(p.stat().st_mode) for p in made if p.is_file()}  # fmt: skip
    assert modes == ({0o700}, {0o600})
    assert os.umask(before) == before  # the process's umask is as it was


def test_a_daily_backup_trusts_the_previous_checksums_and_hashes_no_earlier_photo(served, tmp_path, monkeypatch):
    """Reading every earlier photo again would read the whole archive every day. An earlier copy changed since
    that backup finished is not trusted: the photo is read from the store again."""
    monday = served.copy(tmp_path)
    changed = monday / listing(monday)[0].split("  ")[1]
    changed.write_bytes(bytes(len(changed.read_bytes())))  # the same size, written after the manifest
    hashed: list[Path] = []
    real = backups.file_sha256

    def spied(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(backups, "file_sha256", spied)
    printed = run("backup", "--out", str(tmp_path / "tuesday"), *where(served.settings), "--previous", str(monday))
    assert "(8 photos linked from the previous backup)" in printed and "copied" not in printed
    assert not [path for path in hashed if monday in path.parents]
    tuesday = tmp_path / "tuesday" / changed.relative_to(monday)
    assert tuesday.read_bytes() == (served.settings.photo_dir / changed.relative_to(monday / "photos")).read_bytes()


def test_a_daily_backup_across_file_systems_copies_and_says_so_once(served, tmp_path, monkeypatch):
    def cross_device(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(os, "link", cross_device)
    printed = run("backup", "--out", str(tmp_path / "tuesday"), *where(served.settings), "--previous",
                  str(served.backup))  # fmt: skip
    assert printed.count("not hard-linked") == 1 and "9 photos copied from the previous backup" in printed
    photos = json.loads((tmp_path / "tuesday" / "manifest.json").read_text())["photos"]
    assert (photos["linked"], photos["copied"], photos["read"], photos["not_linked"]) == (0, 9, 0, os.strerror(
        errno.EXDEV))  # fmt: skip


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
    assert manifest["database"]["kind"] == "postgresql" and manifest["photos"]["missing"] == []
    assert manifest["rows"]["photos"] == manifest["photos"]["count"] >= 9
    schema, named = contents(out / "database.pgdump")  # what restore checks first, read from pg_restore's script
    assert schema == manifest["database"]["schema"] is not None and len(named) == manifest["photos"]["count"]

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
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()
