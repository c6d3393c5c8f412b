"""Suspect labels into the review queue: each photo queued once, as uncertain, with a note an officer can act on."""

from __future__ import annotations

import csv

from sqlalchemy import select

from pestid.serving.db import Submission, open_database
from pestid.serving.photos import PhotoStore
from pestid.serving.suspects_import import load_suspects
from tests.conftest import jpeg_bytes, photo


def test_suspects_are_queued_once_as_uncertain_with_the_dataset_label_in_the_note(tmp_path):
    rows = []
    for k, (label, suggested) in enumerate([("whorl_maggot", "rice_blast"), ("weevils", "brown_planthopper")]):
        path = tmp_path / f"{k}.jpg"
        path.write_bytes(jpeg_bytes(photo(suggested, k)))
        rows.append({"path": str(path), "label": label, "suggested": suggested, "label_probability": "0.01",
                     "suggested_probability": "0.93", "group": f"g{k}", "source": "ricepest6", "split": "train",
                     "source_label": label})  # fmt: skip
    rows.append({**rows[0], "path": str(tmp_path / "gone.jpg")})
    listing = tmp_path / "suspects.csv"
    with listing.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sessions = open_database(f"sqlite:///{tmp_path / 'pestid.db'}")
    store = PhotoStore(tmp_path / "photos")
    assert load_suspects(listing, sessions, store) == {"queued": 2, "already_queued": 0, "unreadable": 1}
    assert load_suspects(listing, sessions, store) == {"queued": 0, "already_queued": 2, "unreadable": 1}
    with sessions() as session:
        queued = session.scalars(select(Submission).order_by(Submission.predicted_label)).all()
    assert [(s.decision, s.status, s.predicted_label) for s in queued] == [
        ("uncertain", "pending_review", "brown_planthopper"), ("uncertain", "pending_review", "rice_blast")]  # fmt: skip
    assert "the dataset says whorl_maggot" in queued[1].note and "Ruồi đục nõn" in queued[1].note
