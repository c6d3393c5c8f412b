"""``pestid backup`` and ``pestid restore``: the database and the photos it refers to, as one moment, with a
manifest of counts and checksums; restored only into an empty database and an empty photo store.

A backup holds everything the service knows and must be guarded like the live database: officers' password
hashes, the hashes of their sign-in tokens and the addresses they signed in from, the key that signs farmers'
receipts and draws the blind audit (``service_secrets``), farmers' field coordinates and notes, and their photos.
``backup`` makes its folder readable by its owner only (0700, the files it writes 0600); copy it only to places
as closed.

A backup folder holds:
- ``database.sqlite`` (SQLite's online backup API) or ``database.pgdump`` (``pg_dump --format=custom``);
- ``photos/<path>``: every original the copied database refers to, read through the photo store (a folder or a
  bucket), each checked against the digest its row recorded when it was accepted. Previews are not kept: they are
  made again when an officer first opens a photo;
- ``photos.sha256``: one line per photo kept, as ``sha256sum -c`` reads it;
- ``manifest.json``, written last: rows per table, the photos kept (count and bytes), the digests of the other
  files, and under ``photos.missing`` the photos a row names that the store had lost or damaged. A folder without
  it is an unfinished backup, and ``restore`` refuses it.

The photos are those the copied database refers to, read after it was copied: a photo is stored before the row
that names it commits and never changed after, so every one of them should be there, and photos of later
submissions are simply not part of this backup.

A photo the store has lost, or whose bytes no longer match its row, cannot be backed up, and must not make the
backup unrestorable either: it is left out of ``photos.sha256`` and named under ``photos.missing`` with what was
wrong, and ``pestid backup`` names it and exits 1 so that someone looks for what removed it. Its row is backed up:
a restore brings back every row and every other photo, names the missing photos again and exits 1 too. They stay
missing, as they were in the live service; nothing pretends they are there.

``restore`` trusts nothing in the folder it is given. Every name in ``photos.sha256`` must have the shape of a
photo's key (``photos.is_photo_key``); every file is read without following a symbolic link, and a photo may be
no larger than the upload limit; the photos listed and recorded missing must be exactly those the copied rows
name, each with its row's digest; and the copied schema must be one this code's migrations know (an older one is
upgraded at the next start, a newer one is refused). All of it is checked before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO

from pestid.serving.dumps import DUMP_FILES, BackupError, contents, dump, holds_data, kind, known_schemas, load, moment
from pestid.serving.photos import PhotoStorage, is_photo_key
from pestid.serving.settings import Settings

FORMAT = "pestid-backup/1"
MANIFEST, PHOTO_LIST, PHOTOS = "manifest.json", "photos.sha256", "photos"
COPIERS = 8  # photos read or written at once: an object store answers each in tens of milliseconds
KEPT = ("linked", "copied", "read")  # how a photo came into a backup; anything else says why it is missing
UPLOAD_LIMIT: int = Settings.model_fields["max_upload_bytes"].default  # the default most a photo may weigh
SHOWN = 5  # names quoted in a refusal; the rest are counted
Progress = Callable[[int, int], None]
Photo = tuple[str, str, int]  # a row's (path, sha256, bytes)


def _plain_file(root: Path, relative: str) -> BinaryIO:
    """``root/relative`` open for reading, one folder at a time, never through a symbolic link: an ``OSError``
    for a link, a missing file or anything but a regular file (``root`` itself, the operator's, may be a link)."""
    *folders, name = relative.split("/")
    at = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for folder in folders:
            inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at)
            os.close(at)
            at = inner
        opened = os.fdopen(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at), "rb")
    finally:
        os.close(at)
    if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
        opened.close()
        raise OSError(f"{relative} is not a regular file")
    return opened


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with _plain_file(path.parent, path.name) as fh:
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


def _some(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


@contextmanager
def _private() -> Iterator[None]:
    """Folders and files made meanwhile are their owner's only (umask 077). A umask is the whole process's: the
    command line makes nothing else meanwhile."""
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


@dataclass
class _Earlier:
    """An earlier backup, whose photos a new one links instead of reading them from the store again."""

    folder: Path
    digests: dict[str, str]
    finished: float  # when its manifest was written: a photo file changed after that is not trusted
    link_error: str | None = None  # why a hard link failed (another file system): the photos are copied instead

    @classmethod
    def read(cls, folder: Path) -> _Earlier:
        folder = Path(folder)
        digests = dict(listed_photos(folder, read_manifest(folder)))
        return cls(folder, digests, (folder / MANIFEST).stat().st_mtime)

    def reuse(self, photo: Photo, target: Path) -> str | None:
        """Hard-link the earlier backup's copy of ``photo`` at ``target`` ("linked"), or copy it where a link
        cannot be made ("copied", checked as it is read); ``None`` where it holds no copy to vouch for.

        Its checksum list is trusted, not checked again, for a file of the photo's size that is unchanged since
        that backup finished: a photo never changes once accepted, and reading every earlier photo again would
        read the whole archive every day."""
        relative, digest, size = photo
        if self.digests.get(relative) != digest:
            return None
        try:
            with _plain_file(self.folder, f"{PHOTOS}/{relative}") as fh:
                found = os.fstat(fh.fileno())
                if found.st_size != size or found.st_mtime > self.finished:
                    return None
                try:
                    os.link(self.folder / PHOTOS / relative, target, follow_symlinks=False)
                    return "linked"
                except OSError as exc:
                    self.link_error = self.link_error or exc.strerror or str(exc)
                data = fh.read()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != digest:
            return None
        target.write_bytes(data)
        return "copied"


def _keeper(store: PhotoStorage, out: Path, earlier: _Earlier | None) -> Callable[[Photo], str]:
    def keep(photo: Photo) -> str:
        """How the photo was kept ("linked" or "copied" from the earlier backup, "read" from the store), or why
        it could not be."""
        relative, digest, _ = photo
        if not is_photo_key(relative):
            return "its path is not a photo's place in the store"
        target = out / PHOTOS / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        reused = earlier.reuse(photo, target) if earlier is not None else None
        if reused is not None:
            return reused
        try:
            data = _read(store, relative)
        except OSError as exc:
            return f"the photo store cannot give it ({exc})"
        if hashlib.sha256(data).hexdigest() != digest:
            return "its bytes no longer match the digest recorded when it was accepted"
        target.write_bytes(data)
        return "read"

    return keep


def backup(
    database_url: str, store: PhotoStorage, out: Path, *, previous: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Back the service up into the new or empty folder ``out``, its owner's only; returns the manifest. Photos
    the store has lost or whose bytes no longer match their row are named under ``photos.missing``, not kept.

    With ``previous`` (an earlier backup), a photo it already holds is hard-linked from it (``_Earlier.reuse``),
    not read from the store again: a daily backup reads only the day's new photos, and each backup folder is
    still whole on its own. Across file systems it is copied, and the manifest says why (``photos.not_linked``)."""
    out = Path(out)
    earlier = _Earlier.read(previous) if previous is not None else None
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"Thư mục {out} không trống; hãy sao lưu vào thư mục mới.",
                          f"{out} is not empty: back up into a new folder.")  # fmt: skip
    with _private():
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o700)
        started = datetime.now(UTC)
        database_file, (rows, photos, schema) = dump(database_url, out, moment)
        kept = _each(_keeper(store, out, earlier), photos, progress)
        held = [photo for photo, how in zip(photos, kept, strict=True) if how in KEPT]
        (out / PHOTO_LIST).write_text("".join(f"{digest}  {PHOTOS}/{relative}\n" for relative, digest, _ in held))
        manifest = {
            "format": FORMAT, "pestid": _version(), "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(), "database": {
                "kind": kind(database_url), "file": database_file, "sha256": file_sha256(out / database_file),
                "bytes": (out / database_file).stat().st_size, "schema": schema},
            "rows": rows,
            "photos": {"count": len(held), "bytes": sum(size for *_, size in held), "list": PHOTO_LIST,
                       "list_sha256": file_sha256(out / PHOTO_LIST),
                       "missing": [{"path": path, "sha256": digest, "bytes": size, "problem": how}
                                   for (path, digest, size), how in zip(photos, kept, strict=True) if how not in KEPT],
                       "linked_from": str(Path(previous).resolve()) if previous is not None else None,
                       **{how: kept.count(how) for how in KEPT},
                       "not_linked": earlier.link_error if earlier is not None else None},
        }  # fmt: skip
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _version() -> str:
    try:
        return version("pestid")
    except PackageNotFoundError:
        return "unknown"


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        with _plain_file(Path(folder), MANIFEST) as fh:
            manifest: dict[str, Any] = json.loads(fh.read())
    except OSError:
        raise BackupError(f"{folder} không phải bản sao lưu hoàn chỉnh (thiếu {MANIFEST}).",
                          f"{folder} is not a finished backup: it has no {MANIFEST}.") from None  # fmt: skip
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{folder / MANIFEST} không phải định dạng {FORMAT}.",
                          f"{folder / MANIFEST} is not a {FORMAT} manifest.")  # fmt: skip
    return manifest


def listed_photos(folder: Path, manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(relative path, sha256) of every photo the backup holds, the list checked against the manifest first. A
    name is where a restore writes: one not shaped like a photo's key (``..``, an absolute path) is refused."""
    listing = Path(folder) / PHOTO_LIST
    try:
        with _plain_file(Path(folder), PHOTO_LIST) as fh:
            text = fh.read()
    except OSError:
        text = b""
    if hashlib.sha256(text).hexdigest() != manifest["photos"]["list_sha256"]:
        raise BackupError(f"{listing} đã bị thay đổi.", f"{listing} does not match the manifest's checksum.")
    photos = []
    for line in text.decode(errors="replace").splitlines():
        digest, _, name = line.partition(f"  {PHOTOS}/")
        if not is_photo_key(name) or len(digest) != 64:
            raise BackupError(f"{listing} có tên ảnh không hợp lệ: {line!r}.",
                              f"{listing} names {line!r}, which is not a photo's place in a photo store "
                              "(YYYY/MM/DD/<id>/<n>.<ext>): the backup was altered; restore another one.")  # fmt: skip
        photos.append((name, digest))
    return photos


def _store_is_empty(store: PhotoStorage) -> bool:
    return next(iter(store.stored()), None) is None


def _database_copy(folder: Path, manifest: dict[str, Any]) -> Path:
    """The backup's copy of the database, checked against the manifest."""
    name = manifest["database"]["file"]
    copy = folder / str(name)
    try:
        sound = name in DUMP_FILES and file_sha256(copy) == manifest["database"]["sha256"]
    except OSError:
        sound = False
    if not sound:
        raise BackupError(f"{copy} không khớp mã kiểm tra.", f"{copy} is missing or does not match the manifest's "
                          "checksum.")  # fmt: skip
    return copy


def _held_and_missing(
    listed: list[tuple[str, str]], manifest: dict[str, Any]
) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The photos the backup holds, and those it records as missing. A backup made before ``photos.missing``
    listed them anyway and named them under ``photos.damaged`` ("path: problem"), without a file."""
    missing: list[dict[str, Any]] = list(manifest["photos"].get("missing", []))
    damaged = {
        path: problem for path, _, problem in (str(e).partition(": ") for e in manifest["photos"].get("damaged", []))
    }
    missing += [{"path": p, "sha256": digest, "problem": damaged[p]} for p, digest in listed if p in damaged]
    return [(path, digest) for path, digest in listed if path not in damaged], missing


def _matches_rows(copy: Path, photos: list[tuple[str, str]], missing: list[dict[str, Any]]) -> None:
    """Refuse a copy of a schema this code does not know, or whose rows name other photos than those the backup
    lists and records as missing (or with other digests)."""
    schema, named = contents(copy)
    known = known_schemas()
    if schema is not None and schema not in known:
        raise BackupError(f"Bản sao lưu có lược đồ {schema}, mới hơn phiên bản pestid này ({known[0]}); hãy "
                          "khôi phục bằng phiên bản pestid đã tạo ra nó.",
                          f"The backup's database schema is {schema}, newer than this pestid knows (its newest is "
                          f"{known[0]}): it was made by a newer pestid; restore it with that version or a later "
                          "one.")  # fmt: skip
    held = dict(photos) | {str(m["path"]): str(m["sha256"]) for m in missing}
    extra = sorted(held.keys() - named.keys())
    unlisted = sorted(named.keys() - held.keys())
    other = sorted(path for path in held.keys() & named.keys() if held[path] != named[path])
    for names, vi, en in (
        (extra, "có trong danh sách nhưng không dòng nào nhắc tới", "listed, but no database row names them"),
        (unlisted, "được cơ sở dữ liệu nhắc tới nhưng không có trong danh sách",
         "named by database rows, but neither listed nor recorded missing"),
        (other, "có mã kiểm tra khác với dòng của chúng", "listed with another digest than their rows'"),
    ):  # fmt: skip
        if names:
            raise BackupError(f"{len(names)} ảnh của bản sao lưu {vi}: {_some(names)}.",
                              f"{len(names)} photo(s) of the backup are {en}: {_some(names)}. The backup was altered "
                              "or mixed with another; restore another one.")  # fmt: skip


def _backup_photo(folder: Path, relative: str, digest: str, limit: int) -> bytes:
    """A photo's bytes from the backup: a regular file reached through no symbolic link, within ``limit``,
    matching ``digest``."""
    try:
        with _plain_file(folder, f"{PHOTOS}/{relative}") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise BackupError(f"Ảnh {relative} trong bản sao lưu bị thiếu hoặc không phải tệp thường.",
                          f"The backup's copy of {relative} is missing, not a regular file, or reached through a "
                          f"symbolic link ({exc.strerror or exc}).") from None  # fmt: skip
    if len(data) > limit:
        raise BackupError(f"Ảnh {relative} trong bản sao lưu lớn hơn giới hạn {limit} byte.",
                          f"The backup's copy of {relative} is larger than the {limit} bytes a photo may have: raise "
                          "PESTID_MAX_UPLOAD_BYTES if photos were accepted under a higher limit.")  # fmt: skip
    if hashlib.sha256(data).hexdigest() != digest:
        raise BackupError(f"Ảnh {relative} trong bản sao lưu bị thiếu hoặc hỏng.",
                          f"The backup's copy of {relative} is missing or does not match its checksum.")  # fmt: skip
    return data


def restore(
    folder: Path, database_url: str, store: PhotoStorage, *, force: bool = False,
    max_photo_bytes: int = UPLOAD_LIMIT, progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Restore the backup in ``folder`` into an empty database and an empty photo store (with ``force``, over
    what they hold: the database is replaced, photos of the same path are overwritten, others stay). The whole
    backup is checked first (the module's docstring says how), and the restored rows are counted against it.
    Returns the rows restored, the photos and their bytes, and the photos the backup recorded as ``missing``: their
    rows are restored, the photos are not there."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    copy = _database_copy(folder, manifest)
    photos, missing = _held_and_missing(listed_photos(folder, manifest), manifest)
    _matches_rows(copy, photos, missing)
    if not force:
        full = [name for name, used in (("database", holds_data(database_url)), ("photo store", not _store_is_empty(store)))
                if used]  # fmt: skip
        if full:
            raise BackupError(f"Nơi khôi phục đã có dữ liệu ({', '.join(full)}); dùng --force để ghi đè.",
                              f"The target {' and '.join(full)} already hold data: restore into empty ones, or pass "
                              "--force to overwrite.")  # fmt: skip

    def check(photo: tuple[str, str]) -> None:
        _backup_photo(folder, *photo, max_photo_bytes)

    def put(photo: tuple[str, str]) -> None:
        relative, digest = photo
        store.place(store.stage(_backup_photo(folder, relative, digest, max_photo_bytes), relative), relative)

    _each(check, photos, progress)  # the whole backup is checked before anything is written
    _each(put, photos, progress)  # photos before rows: a restore that stops midway leaves no row without its photo
    rows = load(database_url, copy)
    if rows != manifest["rows"]:
        raise BackupError("Số dòng sau khi khôi phục không khớp bản sao lưu.",
                          f"The restored rows {rows} differ from the backup's {manifest['rows']}.")  # fmt: skip
    return {"rows": rows, "photos": len(photos), "bytes": manifest["photos"]["bytes"], "missing": missing}
