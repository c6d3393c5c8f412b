"""Storing a farmer's submission: the photos and the row, together or not at all.

A retried upload with the same idempotency key returns the first answer and
stores nothing twice. The key is bound to a hash of what it was first sent with
(the photos' bytes and the observation), as payment APIs do: the same key with a
different request is refused with 422 instead of silently dropping the new photo.
"""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pestid.hashing import dihedral_variants, from_hex, hamming, phash, sha256_bytes, to_hex
from pestid.imaging import image_end
from pestid.serving.db import Photo, Submission, _id, retry_locked, writing
from pestid.serving.observability import log
from pestid.serving.photos import PhotoStorage, PhotoStoreUnavailable, Staged, relative_path, submission_of
from pestid.serving.problems import Problem
from pestid.vocabulary import ReviewStatus

# What a stored photo is, from its decoded format: its file extension and the type it is served as.
# The uploader's Content-Type is never trusted beyond the first "is it an image?" check.
FORMATS = {"JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "WEBP": ("webp", "image/webp"),
           "HEIF": ("heic", "image/heic"), "AVIF": ("avif", "image/avif")}  # fmt: skip
UNKNOWN_FORMAT = ("bin", "application/octet-stream")
MEDIA_TYPES = {extension: media for extension, media in [*FORMATS.values(), UNKNOWN_FORMAT]}


def media_type(path: str) -> str:
    """The type a stored photo is served as, from the extension its decoded format gave it."""
    return MEDIA_TYPES.get(path.rsplit(".", 1)[-1], UNKNOWN_FORMAT[1])


@dataclass(frozen=True)
class AcceptedPhoto:
    data: bytes
    sha256: str
    content_type: str
    format: str
    width: int
    height: int
    phash: str

    @classmethod
    def of(cls, data: bytes, sha256: str, image: Image.Image) -> AcceptedPhoto:
        """A decoded photo as it is stored: its own bytes only (``image_end``), typed by what they are (not what an
        uploader said), sized as in the file (``decode_image``'s ``full_size``, not a reduced decode's), with its
        perceptual hash."""
        fmt = (image.format or "BIN").upper()
        width, height = image.info.get("full_size", image.size)
        end = image_end(data, fmt)  # what follows the image's own bytes (padding, an appended file) is not kept
        if end < len(data):
            data, sha256 = data[:end], sha256_bytes(data[:end])
        small = image.reduce(
            max(1, min(image.size) // 128)
        )  # ~128 px: a 12 MP photo and its 1,280 px copy differ by ~1 bit
        return cls(data, sha256, FORMATS.get(fmt, UNKNOWN_FORMAT)[1], fmt, width, height, to_hex(phash(small)))


@dataclass(frozen=True)
class Observation:
    latitude: float | None = None
    longitude: float | None = None
    commune: str | None = None
    district: str | None = None
    observed_on: date | None = None
    crop_stage: str | None = None
    note: str | None = None
    idempotency_key: str | None = None


def request_hash(photo_digests: list[str], observation: Observation) -> str:
    """What a request asks for, as one hash: its photos in order and its observation, the key left out."""
    fields = {k: v for k, v in asdict(observation).items() if k != "idempotency_key"}
    canonical = json.dumps({"photos": photo_digests, "observation": fields}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def store_unavailable() -> Problem:
    return Problem(503, "storage_unavailable", "Máy chủ tạm thời không lưu được ảnh; ảnh chưa được lưu. Hãy gửi lại sau.",
                   "The photo store cannot be reached just now; nothing was stored. Send again later.",
                   headers={"Retry-After": "30"})  # fmt: skip


def key_reused() -> Problem:
    return Problem(422, "idempotency_key_reused",
                   "Mã gửi (Idempotency-Key) này đã dùng cho một lần gửi khác; hãy tạo mã mới cho ảnh mới.",
                   "This Idempotency-Key was already used for a different request; make a new key for new photos.")  # fmt: skip


def find_by_key(session: Session, key: str | None, fingerprint: str | None) -> Submission | None:
    """The submission first stored under ``key``, if any; 422 if it was stored for a different request.

    ``fingerprint=None`` asks only whether the key is taken, whatever it was used for.
    """
    if not key:
        return None
    existing = session.scalars(select(Submission).where(Submission.idempotency_key == key)).first()
    if existing is not None and fingerprint is not None and existing.request_hash not in (None, fingerprint):
        raise key_reused()
    return existing


# A near-identical photo: at most this many of the perceptual hash's 64 bits differ (a re-saved, re-sized or
# re-compressed copy differs by 0–2), mirrored or turned included; looked for among the same district's latest
# DUPLICATE_RECENT photos of the last DUPLICATE_WINDOW, so the cost per upload stays bounded as a district fills.
NEAR_BITS = 4
DUPLICATE_WINDOW = timedelta(days=30)
DUPLICATE_RECENT = 5000


def find_duplicate(session: Session, photos: list[AcceptedPhoto], district: str | None, now: datetime) -> str | None:
    """The earliest submission this one repeats: one with a byte-identical photo (sha256, anywhere, any time), or
    with a near-identical one (perceptual hash, under any flip or quarter turn) among the same district's recent
    photos. An officer still sees both; outbreaks count them once (``outbreaks.outbreak_counts``)."""
    same = select(Photo.submission_id).where(Photo.sha256.in_([p.sha256 for p in photos]))
    candidates = set(session.scalars(same))
    recent = (select(Photo.submission_id, Photo.phash).join(Submission, Submission.id == Photo.submission_id)
              .where(Submission.created_at >= now - DUPLICATE_WINDOW, Photo.phash.is_not(None),
                     Submission.district == district if district else Submission.district.is_(None))
              .order_by(Submission.created_at.desc()).limit(DUPLICATE_RECENT))  # fmt: skip
    rows = [(sid, h) for sid, h in session.execute(recent) if h]
    if rows:
        theirs = from_hex([h for _, h in rows])
        ours = dihedral_variants(from_hex([p.phash for p in photos])).ravel()  # 8 forms of each of ours
        near = (hamming(theirs[:, None], ours[None, :]) <= NEAR_BITS).any(axis=1)
        candidates.update(rows[i][0] for i in np.flatnonzero(near))
    if not candidates:
        return None
    first = session.scalars(select(Submission).where(Submission.id.in_(candidates))
                            .order_by(Submission.created_at, Submission.id)).first()  # fmt: skip
    return None if first is None else first.duplicate_of or first.id


def store_submission(
    sessions: sessionmaker, store: PhotoStorage, *, photos: list[AcceptedPhoto], observation: Observation,
    response: dict[str, Any], decision: str, label: str, confidence: float, model_version: str, lang: str,
    fingerprint: str, marks: Callable[[Session, str, datetime], dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Returns (the stored response, whether this call created it). ``marks`` gives more columns of the new row
    (``audits.audit_marks``: the answer, and whether it is drawn for an audit), read before the write lock; a
    repeated photo is not drawn for an audit (the first one was)."""
    submission_id, created = _id(), datetime.now(UTC)
    staged: list[Staged] = []
    placed: list[Staged] = []
    response = {**response, "submission_id": submission_id}
    paths = [relative_path(created, submission_id, n, FORMATS.get(p.format, UNKNOWN_FORMAT)[0])
             for n, p in enumerate(photos)]  # fmt: skip
    try:  # staged inside the try: a full disk or an unreachable store midway leaves nothing
        staged.extend(store.stage(p.data, path) for p, path in zip(photos, paths, strict=True))
        with sessions() as session:  # read before the write lock: the scan must not hold other writers up
            repeats = find_duplicate(session, photos, observation.district, created)
            extra = marks(session, submission_id, created) if marks is not None else {}
            if repeats is not None:
                extra.pop("audit_rate", None)

        def transaction() -> None:
            # Short: the rows are written first (waiting for the write lock here, where a retry is safe),
            # then the staged files are moved into place and the transaction commits.
            with writing(sessions) as session:
                row = Submission(id=submission_id, created_at=created, decision=decision, predicted_label=label,
                                 confidence=confidence, model_version=model_version, response=response, lang=lang,
                                 status=ReviewStatus.pending_review, request_hash=fingerprint, duplicate_of=repeats,
                                 **asdict(observation), **extra)  # fmt: skip
                session.add(row)
                session.add_all(Photo(submission_id=submission_id, position=n, path=path, sha256=photo.sha256,
                                      content_type=photo.content_type, size_bytes=len(photo.data), width=photo.width,
                                      height=photo.height, phash=photo.phash) for n, (photo, path) in enumerate(zip(photos, paths, strict=True)))  # fmt: skip
                session.flush()
                placed.extend(store.place(tmp, path) for tmp, path in zip(staged, paths, strict=True))

        retry_locked(transaction)
        return response, True
    except IntegrityError:
        store.discard([*staged, *placed])
        with sessions() as session:
            existing = find_by_key(session, observation.idempotency_key, fingerprint)
            if existing is None:
                raise
            return existing.response, False
    except OSError as exc:
        store.discard([*staged, *placed])
        if isinstance(exc, PhotoStoreUnavailable):  # the operator hears why; the phone is told to send again
            log.warning("photo_store_unavailable", extra={"fields": {"reason": str(exc)}})
            raise store_unavailable() from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise Problem(507, "storage_full", "Máy chủ hết chỗ lưu ảnh; ảnh chưa được lưu. Hãy gửi lại sau.",
                          "The server has no room to store photos; nothing was stored. Send again later.") from None  # fmt: skip
        raise
    except BaseException as exc:
        committed = _landed(sessions, submission_id) if placed else False
        store.discard(staged[len(placed) :] if committed is not False else [*staged, *placed])
        if committed is None:  # the database cannot say: the files stay, and reconcile removes them if no row landed
            log.warning("commit_unknown", extra={"fields": {"submission_id": submission_id, "reason": repr(exc)}})
        elif committed and isinstance(exc, Exception):  # the commit landed and only its reply was lost
            log.warning("commit_reply_lost", extra={"fields": {"submission_id": submission_id, "reason": repr(exc)}})
            return response, True
        raise


def _landed(sessions: sessionmaker, submission_id: str) -> bool | None:
    """Whether a submission's row is in the database, asked again after its commit raised: a connection cut while
    COMMIT's reply was on its way leaves the row there, and its photos must then stay. None when it cannot be
    asked (the database is still unreachable)."""
    try:
        with sessions() as session:
            return session.get(Submission, submission_id) is not None
    except Exception:  # noqa: BLE001 — any failure here means "cannot tell", which keeps the photos
        return None


REFERENCED_BATCH = 500  # submission ids in one IN (…): well under every database's limit on parameters


def referenced_paths(sessions: sessionmaker, among: Collection[str]) -> set[str]:
    """Of these photo paths, those a row refers to: asked by their submissions' ids (indexed), a batch at a time,
    so a reconcile reads the rows of the photos it found, not every photo ever stored."""
    submissions = sorted({submission_of(path) for path in among})
    found: set[str] = set()
    with sessions() as session:
        for start in range(0, len(submissions), REFERENCED_BATCH):
            batch = submissions[start : start + REFERENCED_BATCH]
            found.update(session.scalars(select(Photo.path).where(Photo.submission_id.in_(batch))))
    return found & set(among)
