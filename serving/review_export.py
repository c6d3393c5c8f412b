"""Approved submissions as manifest rows: what ``pestid data from-reviews`` reads."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from pestid.errors import ImageDecodeError
from pestid.hashing import phash, to_hex
from pestid.imaging import read_image
from pestid.manifest import Row
from serving.db import Photo, Submission, open_database

SOURCE = "reviews"
TOKEN_PATTERN = r"^review:(?P<review_token>[0-9a-f]{32})/"  # photos of one submission are one observation


def approved_rows(database_url: str, photo_dir: Path, *, root: Path) -> tuple[list[Row], list[dict[str, str]]]:
    """Rows for every photo of every approved submission, paths relative to ``root``; unreadable photos listed."""
    sessions = open_database(database_url)
    rows, skipped = [], []
    with sessions() as session:
        found = session.execute(select(Submission, Photo).join(Photo, Photo.submission_id == Submission.id)
                                .where(Submission.status == "approved").order_by(Submission.id, Photo.position))  # fmt: skip
        for sub, photo in found:
            path = photo_dir / photo.path
            try:
                image = read_image(path)
            except ImageDecodeError as exc:
                skipped.append({"path": str(path), "code": exc.code, "reason": exc.message_en})
                continue
            rows.append(Row(path=os.path.relpath(path.resolve(), root.resolve()), label=sub.final_label or "",
                            sha256=photo.sha256, phash=to_hex(phash(image)), width=image.width,
                            height=image.height, source=SOURCE, source_label=sub.predicted_label,
                            source_name=f"review:{sub.id}/{photo.position}"))  # fmt: skip
    return rows, skipped
