"""Approved submissions as a dataset version: what ``pestid data from-reviews`` calls."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from pestid.errors import ImageDecodeError
from pestid.grouping import GroupingConfig, threshold_for
from pestid.importers import describe_image
from pestid.manifest import Manifest, Row, read_manifest, write_manifest
from pestid.serving.db import Photo, Submission, open_database
from pestid.serving.photos import PhotoStore
from pestid.splits import extend_frozen, group_and_split
from pestid.vocabulary import ReviewStatus

SOURCE = "reviews"
TOKEN_PATTERN = r"^review:(?P<review_token>[0-9a-f]{32})/"  # photos of one submission are one observation


def approved_rows(database_url: str, photo_dir: Path, *, root: Path) -> tuple[list[Row], list[dict[str, str]]]:
    """Rows for every photo of every approved submission, paths relative to ``root``; unreadable photos listed.
    Only reads: the database is not migrated, and the photos are described as the importer describes any."""
    sessions, store = open_database(database_url, migrate_schema=False), PhotoStore(photo_dir)
    rows, skipped = [], []
    with sessions() as session:
        found = session.execute(select(Submission, Photo).join(Photo, Photo.submission_id == Submission.id)
                                .where(Submission.status == ReviewStatus.approved)
                                .order_by(Submission.id, Photo.position))  # fmt: skip
        for sub, photo in found:
            path = store.path(photo.path)
            try:
                described = describe_image(path.read_bytes())
            except (ImageDecodeError, OSError) as exc:
                reason = exc.message_en if isinstance(exc, ImageDecodeError) else f"cannot read the file: {exc}"
                skipped.append({"path": str(path), "code": getattr(exc, "code", "unreadable"), "reason": reason})
                continue
            rows.append(Row(path=os.path.relpath(path.resolve(), root.resolve()), label=sub.final_label or "",
                            **described, source=SOURCE, source_label=sub.predicted_label,
                            source_name=f"review:{sub.id}/{photo.position}"))  # fmt: skip
    return rows, skipped


def manifest_from_reviews(
    database_url: str, photo_dir: str | Path, out: str | Path, *, base: str | Path | None = None,
    threshold: int | None = None, seed: int = 0,
) -> dict[str, int]:  # fmt: skip
    """Approved review photos as a dataset version, merged into ``base`` with its test split frozen."""
    base_manifest = read_manifest(base) if base else None
    root = base_manifest.root if base_manifest else Path(photo_dir)
    new_rows, skipped = approved_rows(database_url, Path(photo_dir), root=root)
    if base_manifest is None:
        base_manifest = Manifest((), root, (), {})
    patterns = [p for p in (base_manifest.meta.get("token_pattern"), TOKEN_PATTERN) if p]
    config = GroupingConfig(
        threshold=threshold_for(base_manifest.meta, threshold),
        token_pattern="|".join(f"(?:{p})" for p in patterns),
    )
    if base:
        result, report = extend_frozen(base_manifest, new_rows, config=config, seed=seed)
    else:
        result, _ = group_and_split(base_manifest.with_rows(new_rows), config=config, seed=seed)
        report = {"base": 0, "new": len(new_rows), "added": len(new_rows), "left_out_near_test": 0}
    report["unreadable"] = len(skipped)
    write_manifest(result.with_rows(result.rows, token_pattern=config.token_pattern), out)
    return report
