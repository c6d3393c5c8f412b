"""The photo store: original bytes on local disk, written so a crash leaves nothing half-done.

A photo is first written and fsynced under ``tmp/``, moved into place only
inside the database transaction that records it, and removed again if that
transaction fails. ``reconcile`` (run at start-up) deletes what a crash left:
staged files and files that no row refers to.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path


class PhotoStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def free_bytes(self) -> int:
        """Free space on the disk that holds the photos."""
        return shutil.disk_usage(self.root).free

    def stage(self, data: bytes) -> Path:
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

        image = read_image(self.root / relative)
        image.thumbnail((longest, longest))
        encoded = io.BytesIO()
        image.save(encoded, format="JPEG", quality=85)
        partial = cached.with_name(f".{uuid.uuid4().hex}.tmp")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(encoded.getvalue())
            os.replace(partial, cached)  # whole or not at all, even with two requests making it at once
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            return encoded.getvalue()
        finally:
            partial.unlink(missing_ok=True)
        return cached

    @staticmethod
    def discard(paths: Iterable[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def reconcile(self, referenced: set[str], *, min_age_s: float = 600.0) -> int:
        """Delete staged files and photos no database row refers to; returns how many.

        Only files older than ``min_age_s`` go: a younger one may belong to a transaction
        another worker is still committing.
        """
        removed = 0
        cutoff = time.time() - min_age_s
        for path in self.root.rglob("*"):
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            relative = path.relative_to(self.root).as_posix()
            if path.parent == self.tmp or relative not in referenced:
                path.unlink()
                removed += 1
        return removed
