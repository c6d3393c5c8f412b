"""The photo store: originals and their previews, behind one small interface, written so a crash leaves
nothing half-done.

``PhotoStorage`` is what the rest of serving sees. ``PhotoStore`` keeps photos on a local disk (the embedded
default); ``photos_s3.S3PhotoStore`` keeps them in any S3-compatible bucket. ``PESTID_PHOTO_STORE`` chooses
(``app.open_photo_store``). Either way a photo is written before the database transaction that records it
commits, and removed again if that transaction fails; ``reconcile`` (run at start-up) deletes what a crash
left: photos no row refers to.

On a local disk a photo is first written and fsynced under ``tmp/`` and moved into place only inside that
transaction. A photo's path carries its day (``relative_path``), so an object store's reconcile lists only
the last days' prefixes (``day_prefixes``) instead of every photo ever kept.
"""

from __future__ import annotations

import errno
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

Staged = Any  # what ``stage`` returns and ``place``/``discard`` take: a temporary file, or an object's key
Referenced = Callable[[Collection[str]], set[str]]  # of these relative paths, those a database row refers to


class PhotoStoreUnavailable(OSError):
    """The photo store cannot be reached or refused the call (an object store's network, credentials, bucket)."""


class PhotoStorage(Protocol):
    def free_bytes(self) -> int | None:
        """Free space for photos; ``None`` where the store has no disk to fill (an object store)."""
        ...

    def stage(self, data: bytes, relative: str) -> Staged:
        """Write a photo that will live at ``relative``, durably, before the transaction that records it."""
        ...

    def place(self, staged: Staged, relative: str) -> Staged:
        """Inside the transaction: make the staged photo the one at ``relative``."""
        ...

    def discard(self, staged: Iterable[Staged]) -> None:
        """Remove what ``stage`` or ``place`` wrote (the transaction failed); missing ones are no error."""
        ...

    def original(self, relative: str) -> Path | bytes:
        """The stored photo: a local file to send, or its bytes."""
        ...

    def preview(self, relative: str, longest: int) -> Path | bytes:
        """A JPEG of the photo, its longer side at most ``longest``, made once and kept."""
        ...

    def reconcile(self, referenced: Referenced, *, min_age_s: float = 600.0) -> int:
        """Delete crash leftovers older than ``min_age_s``; returns how many."""
        ...

    def stored(self, prefix: str = "") -> Iterator[str]:
        """The relative paths of the stored photos under ``prefix`` (``2026/12/``), previews and staging left out."""
        ...


def relative_path(created: datetime, submission_id: str, position: int, extension: str) -> str:
    """Where a submission's photo lives, relative to the store: under its day (``2026/12/04/…``)."""
    return f"{created:%Y/%m/%d}/{submission_id}/{position}.{extension}"


# Every key ``relative_path`` writes (a submission id is a uuid4's hex), and the older ``YYYY/MM/<id>/<n>.<ext>``:
# nothing else names a photo, so a name of any other shape (``..``, an absolute path) is refused where one is read.
PHOTO_KEY = re.compile(r"[0-9]{4}/[0-9]{2}(?:/[0-9]{2})?/[0-9a-f]{32}/[0-9]{1,3}\.[a-z0-9]{1,8}")


def is_photo_key(relative: str) -> bool:
    """Whether ``relative`` has the shape of a photo's place in the store (``relative_path``)."""
    return PHOTO_KEY.fullmatch(relative) is not None


def day_prefixes(today: date, days: int) -> list[str]:
    """The folders of the last ``days`` days' photos, today's first, and tomorrow's: a replica whose clock runs
    ahead may already have written there."""
    return [f"{today - timedelta(days=k):%Y/%m/%d}/" for k in range(-1, days)]


def submission_of(relative: str) -> str:
    """The submission a photo belongs to: the folder it lies in (``relative_path``, and the older ``YYYY/MM/…``)."""
    parts = relative.rsplit("/", 2)
    return parts[-2] if len(parts) > 1 else ""


def preview_jpeg(image: Image.Image, longest: int) -> bytes:
    """A decoded photo as an officer's preview: a JPEG whose longer side is at most ``longest``."""
    image.thumbnail((longest, longest))
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=85)
    return encoded.getvalue()


class PhotoStore:
    """Photos on a local disk (``root``), previews beside it (``root/../previews``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        """Free space on the disk that holds the photos."""
        return shutil.disk_usage(self.root).free

    def stage(self, data: bytes, relative: str | None = None) -> Path:
        """Write and fsync ``data`` under ``tmp/``; a failed write (a full disk) leaves no partial file."""
        path = self.tmp / uuid.uuid4().hex
        try:
            with path.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def place(self, staged: Path, relative: str) -> Path:
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        return final

    def path(self, relative: str) -> Path:
        return self.root / relative

    def original(self, relative: str) -> Path:
        return self.root / relative

    def preview(self, relative: str, longest: int) -> Path | bytes:
        """A JPEG of the stored photo, its longer side at most ``longest``, made once and kept on disk; its bytes
        instead when the disk has no room to keep it (an officer still sees the photo).

        Browsers cannot show HEIC and a 12 MP original is slow to load: officers see these instead. They live
        beside the photo folder (``previews/``), not in it, so start-up never takes them for leftovers.
        """
        cached = self.root.parent / "previews" / f"{relative}.{longest}.jpg"
        if cached.exists():
            return cached
        from pestid.imaging import read_image  # the decoder the model uses: EXIF orientation, HEIC, RGB

        encoded = preview_jpeg(read_image(self.root / relative), longest)
        partial = cached.with_name(f".{uuid.uuid4().hex}.tmp")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(encoded)
            os.replace(partial, cached)  # whole or not at all, even with two requests making it at once
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return encoded
        finally:
            partial.unlink(missing_ok=True)
        return cached

    def stored(self, prefix: str = "") -> Iterator[str]:
        start = self.root / prefix if prefix.endswith("/") or not prefix else (self.root / prefix).parent
        for path in start.rglob("*") if start.is_dir() else ():
            relative = path.relative_to(self.root).as_posix()
            if path.is_file() and path.parent != self.tmp and relative.startswith(prefix):
                yield relative

    @staticmethod
    def discard(paths: Iterable[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def reconcile(self, referenced: Referenced, *, min_age_s: float = 600.0) -> int:
        """Delete staged files and photos no database row refers to; returns how many.

        Only files older than ``min_age_s`` go: a younger one may belong to a transaction
        another worker is still committing. A local disk is walked whole (one replica's photos).
        """
        cutoff = time.time() - min_age_s
        old = [path for path in self.root.rglob("*") if path.is_file() and path.stat().st_mtime <= cutoff]
        placed = {path.relative_to(self.root).as_posix(): path for path in old if path.parent != self.tmp}
        kept = referenced(placed.keys()) if placed else set()
        gone = [path for path in old if path.parent == self.tmp] + [p for r, p in placed.items() if r not in kept]
        self.discard(gone)
        return len(gone)
