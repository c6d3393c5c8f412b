"""Suspect labels from ``pestid data suspects`` into the officers' review queue.

Each suspect photo becomes a submission marked ``uncertain`` whose prediction
is the label the out-of-fold model suggests, with a note naming the dataset's
label and where the photo lives. The idempotency key is the photo's hash, so
loading the same list twice queues nothing twice.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from pestid.catalogue import load_catalogue
from pestid.errors import DatasetError, ImageDecodeError
from pestid.hashing import sha256_bytes
from pestid.imaging import decode_image
from pestid.serving.photos import PhotoStorage
from pestid.serving.submissions import AcceptedPhoto, Observation, find_by_key, store_submission

MODEL_VERSION = "suspects"


def load_suspects(
    path: str | Path, sessions: sessionmaker, store: PhotoStorage, *, limit: int | None = None
) -> dict[str, int]:
    """Queue the suspects of a CSV (worst first); returns counts of queued, already queued and unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Không tìm thấy {path}.", f"Suspect list {path} not found: run 'pestid data suspects'.")
    catalogue = load_catalogue()
    counts = {"queued": 0, "already_queued": 0, "unreadable": 0}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:limit]
    for row in rows:
        try:
            data = Path(row["path"]).read_bytes()
            image = decode_image(data)
        except (OSError, ImageDecodeError):
            counts["unreadable"] += 1
            continue
        digest = sha256_bytes(data)
        key = f"suspect:{digest}"
        with sessions() as session:
            if find_by_key(session, key, None) is not None:  # queued before, whatever its note said
                counts["already_queued"] += 1
                continue
        label, suggested = catalogue.get(row["label"]), catalogue.get(row["suggested"])
        note = (f"Nhãn nghi sai / suspect label: the dataset says {label.id} ({label.name_vi}), the out-of-fold model "
                f"says {suggested.id} ({suggested.name_vi}, p={float(row['suggested_probability']):.2f}). "
                f"{row.get('source', '')}: {row['path']}")  # fmt: skip
        photo = AcceptedPhoto.of(data, digest, image)
        store_submission(sessions, store, photos=[photo], observation=Observation(note=note[:1000], idempotency_key=key),
                         response={"decision": "uncertain", "source": "suspects"}, decision="uncertain",
                         label=suggested.id, confidence=float(row["suggested_probability"]), model_version=MODEL_VERSION,
                         lang="vi", fingerprint=digest)  # fmt: skip
        counts["queued"] += 1
    return counts
