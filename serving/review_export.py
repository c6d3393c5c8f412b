"""Approved submissions as a dataset version: what ``pestid data from-reviews`` calls.

The photos are read through the photo store, wherever it keeps them. Training reads files: a photo on a local
disk is used where it lies; one in a bucket is downloaded once into a local folder (checked against the digest its
row records) and kept there, so the manifest's paths point at files and a second export downloads nothing again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from pestid.catalogue import load_catalogue
from pestid.errors import ImageDecodeError
from pestid.grouping import GroupingConfig, threshold_for
from pestid.hashing import sha256_bytes
from pestid.importers import describe_image
from pestid.manifest import Manifest, Row, read_manifest, write_manifest
from pestid.serving.db import Photo, Submission, open_database
from pestid.serving.photos import PhotoStorage
from pestid.splits import extend_frozen, group_and_split
from pestid.vocabulary import ReviewStatus

SOURCE = "reviews"
TOKEN_PATTERN = r"^review:(?P<review_token>[0-9a-f]{32})/"  # photos of one submission are one observation


def local_file(store: PhotoStorage, photo: Photo, folder: Path) -> Path:
    """A file holding the stored photo: the store's own where it keeps files, else a checked copy in ``folder``."""
    found = store.original(photo.path)
    if isinstance(found, Path):
        return found
    copy = folder / photo.path
    if copy.is_file() and sha256_bytes(copy.read_bytes()) == photo.sha256:
        return copy
    if sha256_bytes(found) != photo.sha256:
        raise OSError(f"the stored bytes do not match the digest recorded when {photo.path} was accepted")
    copy.parent.mkdir(parents=True, exist_ok=True)
    partial = copy.with_name(f".{uuid.uuid4().hex}.tmp")
    partial.write_bytes(found)
    os.replace(partial, copy)  # whole or not at all
    return copy


def approved_rows(
    database_url: str, store: PhotoStorage, *, root: Path, folder: Path
) -> tuple[list[Row], list[dict[str, str]]]:
    """Rows for every photo of every approved submission, paths relative to ``root``; unreadable photos listed.
    Only reads the database (it is not migrated); photos from a bucket are kept in ``folder``, and each is
    described as the importer describes any."""
    sessions = open_database(database_url, migrate_schema=False)
    rows, skipped = [], []
    with sessions() as session:
        found = session.execute(select(Submission, Photo).join(Photo, Photo.submission_id == Submission.id)
                                .where(Submission.status == ReviewStatus.approved)
                                .order_by(Submission.id, Photo.position))  # fmt: skip
        for sub, photo in found:
            try:
                path = local_file(store, photo, folder)
                described = describe_image(path.read_bytes())
            except (ImageDecodeError, OSError) as exc:
                reason = exc.message_en if isinstance(exc, ImageDecodeError) else f"cannot read the photo: {exc}"
                skipped.append({"path": photo.path, "code": getattr(exc, "code", "unreadable"), "reason": reason})
                continue
            rows.append(Row(path=os.path.relpath(path.resolve(), root.resolve()), label=sub.final_label or "",
                            **described, source=SOURCE, source_label=sub.predicted_label,
                            source_name=f"review:{sub.id}/{photo.position}"))  # fmt: skip
    return rows, skipped


def _without_new_groups(rows: list[Row], known: tuple[str, ...]) -> tuple[list[Row], dict[str, int]]:
    """Rows labelled with a catalogue group ("a planthopper") that the base does not have as a class are left out,
    counted per group: an officer's "one of these" is no class beside its own members, whatever its count. A
    group the base already has (stem borers) stays, as before."""
    catalogue = load_catalogue()
    left: dict[str, int] = {}
    kept = []
    for row in rows:
        if row.label not in known and row.label in catalogue and catalogue.get(row.label).kind == "group":
            left[row.label] = left.get(row.label, 0) + 1
        else:
            kept.append(row)
    return kept, dict(sorted(left.items()))


def photos_folder(out: str | Path) -> Path:
    """Where photos from a bucket are kept for training: beside the manifest, named after it."""
    out = Path(out)
    return out.with_name(f"{out.stem}.photos")


def manifest_from_reviews(
    database_url: str, store: PhotoStorage, out: str | Path, *, base: str | Path | None = None,
    folder: Path | None = None, threshold: int | None = None, seed: int = 0, new_class_originals: int = 20,
    new_class_test: float = 0.25,
) -> dict[str, Any]:  # fmt: skip
    """Approved review photos as a dataset version, merged into ``base`` with its test split frozen. Photos the store
    does not keep as files go to ``folder`` (default: ``photos_folder(out)``). A label ``base`` lacks becomes a
    class at ``new_class_originals`` approved originals, and waits until then (``pestid.splits.extend_frozen``)."""
    folder = folder or photos_folder(out)
    base_manifest = read_manifest(base) if base else None
    root = base_manifest.root if base_manifest else Path(out).parent
    new_rows, skipped = approved_rows(database_url, store, root=root, folder=folder)
    if base_manifest is None:
        base_manifest = Manifest((), root, (), {})
    new_rows, kinds_only = _without_new_groups(new_rows, base_manifest.labels)
    patterns = [p for p in (base_manifest.meta.get("token_pattern"), TOKEN_PATTERN) if p]
    config = GroupingConfig(
        threshold=threshold_for(base_manifest.meta, threshold),
        token_pattern="|".join(f"(?:{p})" for p in patterns),
    )
    if base:
        result, report = extend_frozen(base_manifest, new_rows, config=config, seed=seed,
                                       new_class_originals=new_class_originals, new_class_test=new_class_test)  # fmt: skip
    else:
        result, _ = group_and_split(base_manifest.with_rows(new_rows), config=config, seed=seed)
        report = {"base": 0, "new": len(new_rows), "added": len(new_rows), "left_out_near_test": 0}
    report["unreadable"] = len(skipped)
    report["left_out_group_labels"] = kinds_only
    write_manifest(result.with_rows(result.rows, token_pattern=config.token_pattern), out)
    return report
