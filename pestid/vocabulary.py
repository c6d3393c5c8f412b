"""The project's words, defined once: what a farmer is told, where a submission stands in review, why an
officer rejects a photo, and who may do what. Each is a ``StrEnum``, so it is stored, sent and compared as its
plain string ("approved" == ReviewStatus.approved)."""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    """What a farmer is told about a photo (``pestid.decision.decide``)."""

    identified = "identified"
    uncertain = "uncertain"
    not_recognised = "not_recognised"


class ReviewStatus(StrEnum):
    """Where a submission stands with the officers."""

    pending_review = "pending_review"
    approved = "approved"
    rejected = "rejected"
    disputed = "disputed"  # two officers disagreed: a senior officer decides


class RejectReason(StrEnum):
    blurry = "blurry"
    not_rice = "not_rice"
    duplicate = "duplicate"
    not_harmful = "not_harmful"


class Role(StrEnum):
    """Accounts, lowest rank first: a senior officer settles disputes, an admin also manages the service."""

    officer = "officer"
    senior = "senior"
    admin = "admin"


RANK: dict[str, int] = {role.value: rank for rank, role in enumerate(Role)}
