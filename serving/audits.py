"""The audit sample: a share of identified answers goes to the officers blind, so the service learns how right its
answers are in the field (``serving/precision.py`` turns the verdicts into estimates).

The rule, per identified answer, in its cell (the answer's class — a species or a group — and the district):

- the cell's **rate** is ``boost`` (default 0.5) while the cell holds fewer than ``min_per_cell`` (3) audits drawn
  in the last ``AUDIT_WINDOW`` (30 days), and ``share`` (``PESTID_AUDIT_SHARE``, 5 %) after that. So a common cell
  is audited at the share, and a rare one (a class seldom answered in a district) still gets about
  ``min_per_cell`` audits a month: about half of its first answers until then. ``share`` 0 turns audits off.
- the **draw** is deterministic but unpredictable: an answer is audited when HMAC-SHA256(the service's key, the
  submission id), read as a number in [0, 1), falls below the rate. The key is the one receipts are signed with
  (``receipts.receipt_key``, under its own message prefix), kept in the database: every worker draws the same,
  and nobody without the key can tell which answers will be audited.
- the rate an audit was drawn at is stored with it (``Submission.audit_rate``): an estimate weighs each audit by
  its inverse, so the rare cells' extra audits do not tilt a class's or a district's figure.

An audit item is **blind**: an officer who has not given a verdict on it is not sent the model's answer, its
confidence or its other guesses (``routes.review``), nor those of the submissions of the same photo, and cannot
confirm what they have not seen; they name the species (or reject the photo), and then the model's answer is shown.

What the estimate counts is each officer's **blind answer**: their first verdict on the item, given while it was
blind to them (``Review.blind``, written with the verdict and never changed). Anything after the reveal — a
confirm, an undo and a new label, a rejection as blurry, or a verdict by an officer who could already see the
answer (the audit was decided) — may still change the photo's label for training, but not the audit's outcome.
An undo of a blind answer takes back the label, not the answer: the reply had already revealed the model's
answer, so the officer is no longer blind and their first answer stands for the estimate.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from pestid.serving.db import Review, Submission, User
from pestid.vocabulary import ReviewStatus

AUDIT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class AuditPlan:
    key: bytes
    share: float = 0.05
    min_per_cell: int = 3
    boost: float = 0.5

    def rate(self, audits_in_cell: int) -> float:
        """The chance the next identified answer of a cell is audited, given the audits the cell already holds."""
        if self.share <= 0:
            return 0.0
        return max(self.share, self.boost) if audits_in_cell < self.min_per_cell else self.share

    def draw(self, submission_id: str) -> float:
        """A number in [0, 1) fixed by the submission id and the key, and unknown to whoever lacks the key."""
        digest = hmac.new(self.key, b"audit\0" + submission_id.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def choose(self, submission_id: str, audits_in_cell: int) -> float | None:
        """The rate the answer was drawn at when it is audited, else None."""
        rate = self.rate(audits_in_cell)
        return rate if rate > 0 and self.draw(submission_id) < rate else None


def audits_in_cell(session: Session, *, answer: str, district: str | None, now: datetime) -> int:
    """Audits drawn in the last ``AUDIT_WINDOW`` for this answer in this district (the unlocated are one cell)."""
    place = Submission.district == district if district else Submission.district.is_(None)
    return session.scalar(select(func.count()).select_from(Submission)
                          .where(Submission.answer == answer, place, Submission.audit_rate.is_not(None),
                                 Submission.created_at >= now - AUDIT_WINDOW)) or 0  # fmt: skip


Marks = Callable[[Session, str, datetime], dict[str, Any]]


def audit_marks(plan: AuditPlan | None, *, answer: str | None, district: str | None) -> Marks:
    """What ``store_submission`` writes on a new submission: the answer it was told and, when drawn, its audit
    rate. Called with the session, the submission id and the time, before the row is written."""

    def marks(session: Session, submission_id: str, now: datetime) -> dict[str, Any]:
        if answer is None or plan is None or plan.share <= 0:
            return {"answer": answer}
        count = audits_in_cell(session, answer=answer, district=district, now=now)
        return {"answer": answer, "audit_rate": plan.choose(submission_id, count)}

    return marks


OPEN = (ReviewStatus.pending_review, ReviewStatus.disputed)


def blind_to(session: Session, reader: User, subs: list[Submission]) -> set[str]:
    """Of these submissions, the ids whose model answer ``reader`` must not be shown: audit items still open
    (waiting or disputed) and never decided (an undo or a late dispute reopens one whose answer was already shown
    to all) on which the reader has never given a verdict (one undone counts: its reply showed the
    answer), and every submission of the same photo as such an item (``duplicate_of``: a resent photo carries the
    same answer). Two queries for a page of the queue."""
    groups = {s.duplicate_of or s.id for s in subs}
    if not groups:
        return set()
    audits: dict[str, str | None] = dict(session.execute(select(Submission.id, Submission.duplicate_of)
                                  .where(or_(Submission.id.in_(sorted(groups)), Submission.duplicate_of.in_(sorted(groups))),
                                         Submission.audit_rate.is_not(None), Submission.status.in_(OPEN),
                                         Submission.first_decided_at.is_(None))).all())  # fmt: skip
    if not audits:
        return set()
    judged = set(session.scalars(select(Review.submission_id).where(Review.submission_id.in_(list(audits)),
                                                                    Review.user_id == reader.id)))  # fmt: skip
    blind = {audits[sid] or sid for sid in audits if sid not in judged}
    return {s.id for s in subs if (s.duplicate_of or s.id) in blind}
