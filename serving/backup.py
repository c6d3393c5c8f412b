"""``pestid backup`` and ``pestid restore``: the database and the photos it refers to, as one moment, with a
manifest of counts and checksums; restored only into an empty database and an empty photo store.

A backup folder holds:
- ``database.sqlite`` (SQLite's online backup API) or ``database.pgdump`` (``pg_dump --format=custom``);
- ``photos/<path>``: every original the copied database refers to, read through the photo store (a folder or a
  bucket), each checked against the digest its row recorded when it was accepted. Previews are not kept: they are
  made again when an officer first opens a photo;
- ``photos.sha256``: one line per photo, as ``sha256sum -c`` reads it;
- ``manifest.json``, written last: rows per table, photo count and bytes, and the digests of the other files. A
  folder without it is an unfinished backup, and ``restore`` refuses it.

The photos are those the copied database refers to, read after it was copied: a photo is stored before the row
that names it commits and never changed after, so every one of them is there, and photos of later submissions
are simply not part of this backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from pestid.serving.dumps import BackupError, counts, dump, holds_data, kind, load, photo_rows, revision
from pestid.serving.photos import PhotoStorage

FORMAT = "pestid-backup/1"
MANIFEST, PHOTO_LIST, PHOTOS = "manifest.json", "photos.sha256", "photos"
COPIERS = 8  # photos read or written at once: an object store answers each in tens of milliseconds
Progress = Callable[[int, int], None]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(store: PhotoStorage, relative: str) -> bytes:
    found = store.original(relative)
    return found.read_bytes() if isinstance(found, Path) else found


def _each(work: Callable[[Any], Any], items: list[Any], progress: Progress | None) -> list[Any]:
    """``work`` on every item, COPIERS at a time, in order, with progress."""
    done: list[Any] = []
    with ThreadPoolExecutor(COPIERS) as pool:
        for result in pool.map(work, items):
            done.append(result)
            if progress:
                progress(len(done), len(items))
    return done


def backup(
    database_url: str, store: PhotoStorage, out: Path, *, previous: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Back the service up into the new or empty folder ``out``; returns the manifest. Photos that are missing or
    whose bytes no longer match their row are listed under ``photos.damaged`` (the rest is still kept).

    With ``previous`` (an earlier backup), a photo it already holds with the same digest is hard-linked from it
    after its checksum is checked, not read from the store again: a photo never changes once accepted, so a daily
    backup reads only the day's new photos, and each backup folder is still whole on its own."""
    out = Path(out)
    earlier = dict(listed_photos(previous, read_manifest(previous))) if previous is not None else {}
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"Thư mục {out} không trống; hãy sao lưu vào thư mục mới.",
                          f"{out} is not empty: back up into a new folder.")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)

    def moment(connection: Connection) -> tuple[dict[str, int], list[tuple[str, str, int]], str | None]:
        return counts(connection), photo_rows(connection), revision(connection)

    database_file, (rows, photos, schema) = dump(database_url, out, moment)

    def keep(photo: tuple[str, str, int]) -> str:
        """How the photo was kept: "linked" from the previous backup, "read" from the store, or what is wrong."""
        relative, digest, _ = photo
        target = out / PHOTOS / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if previous is not None and earlier.get(relative) == digest and _linked(previous / PHOTOS / relative, target,
                                                                                digest):  # fmt: skip
            return "linked"
        try:
            data = _read(store, relative)
        except OSError as exc:
            return f"{relative}: {exc}"
        if hashlib.sha256(data).hexdigest() != digest:
            return f"{relative}: its bytes no longer match the digest recorded when it was accepted"
        target.write_bytes(data)
        return "read"

    kept = _each(keep, photos, progress)
    damaged = [how for how in kept if how not in ("linked", "read")]
    (out / PHOTO_LIST).write_text("".join(f"{digest}  {PHOTOS}/{relative}\n" for relative, digest, _ in photos))
    manifest = {
        "format": FORMAT, "pestid": _version(), "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(), "database": {
            "kind": kind(database_url), "file": database_file, "sha256": file_sha256(out / database_file),
            "bytes": (out / database_file).stat().st_size, "schema": schema},
        "rows": rows,
        "photos": {"count": len(photos), "bytes": sum(size for *_, size in photos), "list": PHOTO_LIST,
                   "list_sha256": file_sha256(out / PHOTO_LIST), "damaged": damaged,
                   "linked_from": str(Path(previous).resolve()) if previous is not None else None,
                   "linked": kept.count("linked")},
    }  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _linked(earlier: Path, target: Path, digest: str) -> bool:
    """``target`` as a hard link to an earlier backup's copy (a copy across file systems), when that copy is sound."""
    if not _matches(earlier, digest):
        return False
    try:
        os.link(earlier, target)
    except OSError:
        shutil.copyfile(earlier, target)
    return True


def _version() -> str:
    try:
        return version("pestid")
    except PackageNotFoundError:
        return "unknown"


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BackupError(f"{folder} không phải bản sao lưu hoàn chỉnh (thiếu {MANIFEST}).",
                          f"{folder} is not a finished backup: it has no {MANIFEST}.")  # fmt: skip
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} không phải định dạng {FORMAT}.", f"{path} is not a {FORMAT} manifest.")
    return manifest


def listed_photos(folder: Path, manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(relative path, sha256) of every photo in the backup, the list itself checked first."""
    listing = Path(folder) / manifest["photos"]["list"]
    if file_sha256(listing) != manifest["photos"]["list_sha256"]:
        raise BackupError(f"{listing} đã bị thay đổi.", f"{listing} does not match the manifest's checksum.")
    photos = []
    for line in listing.read_text().splitlines():
        digest, _, name = line.partition("  ")
        photos.append((name.removeprefix(f"{PHOTOS}/"), digest))
    return photos


def _store_is_empty(store: PhotoStorage) -> bool:
    return next(iter(store.stored()), None) is None


def restore(
    folder: Path, database_url: str, store: PhotoStorage, *, force: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Restore the backup in ``folder`` into an empty database and an empty photo store (with ``force``, over
    what they hold: the database is replaced, photos of the same path are overwritten, others stay). Every file is
    checked against the manifest before it is used, and the restored rows are counted against it."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    copy = folder / manifest["database"]["file"]
    if file_sha256(copy) != manifest["database"]["sha256"]:
        raise BackupError(f"{copy} không khớp mã kiểm tra.", f"{copy} does not match the manifest's checksum.")
    photos = listed_photos(folder, manifest)
    if not force:
        full = [name for name, used in (("database", holds_data(database_url)), ("photo store", not _store_is_empty(store)))
                if used]  # fmt: skip
        if full:
            raise BackupError(f"Nơi khôi phục đã có dữ liệu ({', '.join(full)}); dùng --force để ghi đè.",
                              f"The target {' and '.join(full)} already hold data: restore into empty ones, or pass "
                              "--force to overwrite.")  # fmt: skip

    def check(photo: tuple[str, str]) -> None:
        relative, digest = photo
        if not _matches(folder / PHOTOS / relative, digest):
            raise BackupError(f"Ảnh {relative} trong bản sao lưu bị thiếu hoặc hỏng.",
                              f"The backup's copy of {relative} is missing or does not match its checksum.")  # fmt: skip

    def put(photo: tuple[str, str]) -> None:
        relative, _ = photo
        store.place(store.stage((folder / PHOTOS / relative).read_bytes(), relative), relative)

    _each(check, photos, progress)  # the whole backup is checked before anything is written
    _each(put, photos, progress)  # photos before rows: a restore that stops midway leaves no row without its photo
    rows = load(database_url, copy)
    if rows != manifest["rows"]:
        raise BackupError("Số dòng sau khi khôi phục không khớp bản sao lưu.",
                          f"The restored rows {rows} differ from the backup's {manifest['rows']}.")  # fmt: skip
    return {"rows": rows, "photos": len(photos), "bytes": manifest["photos"]["bytes"]}


def _matches(path: Path, digest: str) -> bool:
    return path.is_file() and file_sha256(path) == digest
