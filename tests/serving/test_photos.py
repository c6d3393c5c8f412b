"""The photo store's naming, without a store: paths carry their day, reconcile's prefixes are the last days',
and PESTID_PHOTO_STORE names a folder or a bucket."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pestid.serving.photos import day_prefixes, relative_path, submission_of
from pestid.serving.photos_s3 import parse_store_url
from pestid.serving.settings import Settings


def test_a_photo_path_starts_with_its_day_and_names_its_submission():
    path = relative_path(datetime(2026, 12, 4, 23, 59, tzinfo=UTC), "ab12", 1, "heic")
    assert path == "2026/12/04/ab12/1.heic"
    assert submission_of(path) == "ab12"
    assert submission_of("2026/11/cd34/0.jpg") == "cd34"  # the month-only paths of before
    assert submission_of("stray.jpg") == ""


def test_reconcile_lists_tomorrow_today_and_the_days_before_across_a_year():
    assert day_prefixes(date(2026, 1, 1), 3) == ["2026/01/02/", "2026/01/01/", "2025/12/31/", "2025/12/30/"]


def test_the_store_url_is_a_bucket_and_a_prefix():
    assert parse_store_url("s3://photos/pestid/prod/") == ("photos", "pestid/prod")
    assert parse_store_url("s3://photos") == ("photos", "")
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        parse_store_url("s3:///no-bucket")


def test_photo_store_names_a_bucket_or_a_folder(tmp_path):
    assert Settings(data_dir=tmp_path).photo_dir == tmp_path / "photos"
    assert Settings(data_dir=tmp_path).photo_bucket is None
    in_bucket = Settings(data_dir=tmp_path, photo_store="s3://photos/pestid")
    assert in_bucket.photo_bucket == "s3://photos/pestid"
    assert Settings(data_dir=tmp_path, photo_store="/srv/photos").photo_dir == Path("/srv/photos")


def test_a_folder_lists_its_photos_by_prefix_as_a_bucket_does_without_staged_files_or_previews(tmp_path):
    from pestid.serving.photos import PhotoStore

    store = PhotoStore(tmp_path / "photos")
    for relative in ("2026/12/04/a/0.jpg", "2026/12/04/a/1.png", "2026/12/05/b/0.jpg", "2026/11/c/0.jpg"):
        store.place(store.stage(b"photo", relative), relative)
    store.stage(b"half-written", "2026/12/06/d/0.jpg")  # staged, never placed
    (tmp_path / "previews" / "2026/12/04/a").mkdir(parents=True)
    (tmp_path / "previews" / "2026/12/04/a/0.jpg.320.jpg").write_bytes(b"preview")
    assert sorted(store.stored()) == ["2026/11/c/0.jpg", "2026/12/04/a/0.jpg", "2026/12/04/a/1.png",
                                      "2026/12/05/b/0.jpg"]  # fmt: skip
    assert sorted(store.stored("2026/12/04/")) == ["2026/12/04/a/0.jpg", "2026/12/04/a/1.png"]
    assert sorted(store.stored("2026/12/0")) == ["2026/12/04/a/0.jpg", "2026/12/04/a/1.png", "2026/12/05/b/0.jpg"]
    assert list(store.stored("2027/")) == [] and list(PhotoStore(tmp_path / "empty").stored()) == []
