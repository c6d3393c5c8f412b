"""Photos in any S3-compatible bucket (AWS S3, Ceph, MinIO, SeaweedFS), through boto3.

``s3://BUCKET/PREFIX`` keeps originals under ``PREFIX/photos/`` and previews under ``PREFIX/previews/``, named
as on a local disk (``photos.relative_path``, which starts with the photo's day). An object store has no
rename: a photo is written under its final key before the transaction that records it commits and deleted if
that transaction fails (``stage``, ``discard``; ``place`` has nothing left to do). A crash between the two
leaves an object no row refers to: ``reconcile`` lists the last days' prefixes (``photos.day_prefixes``), never
the whole bucket, and deletes those older than the grace.

Credentials come as boto3 finds them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws, an
instance role), as for MLflow's S3 artefact store.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pestid.serving.observability import log
from pestid.serving.photos import PhotoStoreUnavailable, Referenced, day_prefixes, preview_jpeg

MISSING = {"NoSuchKey", "404", "NotFound"}  # what a GET of an absent key answers, by store
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys


def parse_store_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` as (bucket, prefix without slashes at either end)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"PESTID_PHOTO_STORE={url!r} is not a folder or s3://BUCKET/PREFIX.")
    return parts.netloc, parts.path.strip("/")


def s3_client(endpoint_url: str | None) -> Any:
    """A thread-safe client; path-style addressing for a store of one's own (http://host:port/BUCKET/KEY)."""
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30,
                    max_pool_connections=32, s3={"addressing_style": "path"} if endpoint_url else None)  # fmt: skip
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


class S3PhotoStore:
    def __init__(self, url: str, *, endpoint_url: str | None = None, window_days: int = 2,
                 client: Any = None) -> None:  # fmt: skip
        self.bucket, prefix = parse_store_url(url)
        base = f"{prefix}/" if prefix else ""
        self.photos, self.previews = f"{base}photos/", f"{base}previews/"
        self.window_days = window_days
        self.client = client or s3_client(endpoint_url)

    def free_bytes(self) -> None:
        """No disk of ours fills: the store's operator watches its capacity."""
        return None

    def stage(self, data: bytes, relative: str) -> str:
        key = self.photos + relative
        with self._calling("writing", key):  # acknowledged by the store only once it is durable there
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return key

    def place(self, staged: str, relative: str) -> str:
        return staged  # already at its final key

    def discard(self, staged: Iterable[str]) -> None:
        """Delete what this request wrote; if the store cannot be reached now, ``reconcile`` removes it later."""
        keys = sorted(set(staged))
        try:
            self._delete(keys)
        except PhotoStoreUnavailable as exc:
            log.warning("photos_not_discarded", extra={"fields": {"keys": keys, "reason": str(exc)}})

    def original(self, relative: str) -> bytes:
        return self._read(self.photos + relative)

    def preview(self, relative: str, longest: int) -> bytes:
        """As ``PhotoStore.preview``, kept under ``previews/`` in the bucket; made and shown, not kept, when the
        store refuses to keep it."""
        key = f"{self.previews}{relative}.{longest}.jpg"
        try:
            return self._read(key)
        except FileNotFoundError:
            pass
        from pestid.imaging import decode_image  # the decoder the model uses: EXIF orientation, HEIC, RGB

        encoded = preview_jpeg(decode_image(self.original(relative)), longest)
        try:
            with self._calling("writing", key):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=encoded, ContentType="image/jpeg")
        except PhotoStoreUnavailable as exc:
            log.warning("preview_not_kept", extra={"fields": {"key": key, "reason": str(exc)}})
        return encoded

    def reconcile(self, referenced: Referenced, *, min_age_s: float = 600.0) -> int:
        """Delete photos of the last ``window_days`` days that no row refers to and are older than ``min_age_s``
        (a younger one may belong to a transaction another worker or replica is still committing)."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(seconds=min_age_s)
        old = {item["Key"].removeprefix(self.photos): item["Key"]
               for day in day_prefixes(now.date(), self.window_days) for item in self._listed(self.photos + day)
               if item["LastModified"] <= cutoff}  # fmt: skip
        kept = referenced(old.keys()) if old else set()
        gone = [key for relative, key in old.items() if relative not in kept]
        self._delete(gone)
        return len(gone)

    def stored(self, prefix: str = "") -> Iterator[str]:
        for item in self._listed(self.photos + prefix):
            yield item["Key"].removeprefix(self.photos)

    def _listed(self, prefix: str) -> Iterator[dict[str, Any]]:
        with self._calling("listing", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                yield from page.get("Contents", [])

    def _read(self, key: str) -> bytes:
        with self._calling("reading", key):
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with self._calling("deleting", batch[0]):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch],
                                                                                "Quiet": True})  # fmt: skip
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise PhotoStoreUnavailable(f"deleting s3://{self.bucket}/{first.get('Key')} failed: "
                                            f"{first.get('Code')} {first.get('Message')}")  # fmt: skip

    @contextmanager
    def _calling(self, action: str, key: str) -> Iterator[None]:
        """boto3's errors as the store's: an absent key is ``FileNotFoundError``, the rest ``PhotoStoreUnavailable``
        naming what failed where."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in MISSING:
                raise FileNotFoundError(errno.ENOENT, "no such photo", f"s3://{self.bucket}/{key}") from None
            raise PhotoStoreUnavailable(f"{action} s3://{self.bucket}/{key} failed: {error.get('Code')} "
                                        f"{error.get('Message', '')}".strip()) from exc  # fmt: skip
        except BotoCoreError as exc:
            raise PhotoStoreUnavailable(f"{action} s3://{self.bucket}/{key} failed: {exc}") from exc
