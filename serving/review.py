"""Officer review: verdicts, agreement, disputes, undo, the audit trail, and the queue order.

A submission is approved (or rejected) when ``required`` officers agree; any
disagreement marks it ``disputed`` for a senior officer, whose verdict settles
it. Every action writes an audit entry with the state before and after, and
can be undone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from pestid.catalogue import load_catalogue
from pestid.serving.db import AuditEntry, Review, Submission, User
from pestid.vocabulary import Decision, ReviewStatus, Role


@dataclass(frozen=True)
class Verdict:
    kind: str  # "label" or "reject"
    label: str | None = None
    reason: str | None = None


def snapshot(sub: Submission) -> dict[str, Any]:
    return {"status": sub.status, "final_label": sub.final_label}


def resolve(reviews: list[tuple[Review, User]], required: int) -> tuple[str, str | None]:
    """(status, final label) from the active reviews of one submission."""
    active = [(r, u) for r, u in reviews if r.undone_at is None]
    senior = [r for r, u in active if u.role in (Role.senior, Role.admin)]
    if senior:
        last = max(senior, key=lambda r: (r.created_at, r.id))
        return (ReviewStatus.approved, last.label) if last.verdict == "label" else (ReviewStatus.rejected, None)
    votes = Counter((r.verdict, r.label) for r, _ in active)
    if len(votes) > 1:
        return ReviewStatus.disputed, None
    if votes:
        (verdict, label), count = votes.most_common(1)[0]
        if count >= required:
            return (ReviewStatus.approved, label) if verdict == "label" else (ReviewStatus.rejected, None)
    return ReviewStatus.pending_review, None


def _reviews(session: Session, submission_id: str) -> list[tuple[Review, User]]:
    rows = session.execute(select(Review, User).join(User, Review.user_id == User.id)
                           .where(Review.submission_id == submission_id))  # fmt: skip
    return [(r, u) for r, u in rows]


def _apply(session: Session, sub: Submission, required: int) -> None:
    sub.status, sub.final_label = resolve(_reviews(session, sub.id), required)
    sub.reviewed_at = datetime.now(UTC) if sub.status in (ReviewStatus.approved, ReviewStatus.rejected) else None
    sub.first_decided_at = sub.first_decided_at or sub.reviewed_at


def record_verdict(
    session: Session, sub: Submission, user: User, verdict: Verdict, *, required: int, blind: bool = False,
    action: str | None = None,
) -> AuditEntry:  # fmt: skip
    """One officer's verdict; an earlier active verdict of the same officer is replaced. ``blind``: given on an
    audit item whose answer the officer had not seen (``audits.blind_to``), kept as their blind answer.
    ``action``: what the officer did (confirm, relabel, reject), logged as it is; without it, a label equal to the
    model's is logged as a confirm, which an audit item must not be (it would tell the model's answer)."""
    if verdict.kind == "label":
        load_catalogue().get(verdict.label or "")  # an unknown label is refused here
    before = snapshot(sub)
    for review, author in _reviews(session, sub.id):
        if author.id == user.id and review.undone_at is None:
            review.undone_at = datetime.now(UTC)
    review = Review(submission_id=sub.id, user_id=user.id, verdict=verdict.kind, label=verdict.label,
                    reason=verdict.reason, created_at=datetime.now(UTC), blind=blind)  # fmt: skip
    session.add(review)
    session.flush()
    _apply(session, sub, required)
    action = action or (
        "reject" if verdict.kind == "reject" else ("confirm" if verdict.label == sub.predicted_label else "relabel")
    )
    entry = AuditEntry(user_id=user.id, action=action, submission_id=sub.id, review_id=review.id, before=before,
                       after={**snapshot(sub), "label": verdict.label, "reason": verdict.reason})  # fmt: skip
    session.add(entry)
    session.flush()
    return entry


def undo(session: Session, entry: AuditEntry, user: User, *, required: int) -> AuditEntry:
    review = session.get(Review, entry.review_id) if entry.review_id else None
    sub = session.get(Submission, entry.submission_id) if entry.submission_id else None
    if review is None or sub is None or review.undone_at is not None:
        raise LookupError("nothing to undo")
    before = snapshot(sub)
    review.undone_at = datetime.now(UTC)
    session.flush()
    _apply(session, sub, required)
    undo_entry = AuditEntry(user_id=user.id, action="undo", submission_id=sub.id, review_id=review.id,
                            before=before, after={**snapshot(sub), "undid": entry.id})  # fmt: skip
    session.add(undo_entry)
    session.flush()
    return undo_entry


def queue(
    session: Session, *, status: str = ReviewStatus.pending_review, district: str | None = None,
    species: list[str] | None = None, decision: str | None = None, since: date | None = None,
    until: date | None = None, limit: int = 50, offset: int = 0, scope: ColumnElement[bool] | None = None,
    audit: bool | None = None,
) -> tuple[list[Submission], int]:  # fmt: skip
    """One page of the queue and how many it holds in all, sorted and paged by the database (an index on status
    and time), so a flood of uploads cannot push a report off the pages. Most useful first: located reports (a
    district or coordinates) before those with no place, then uncertain and not-recognised answers, then rare
    classes, then the oldest. Audit items (``serving/audits.py``) rank with the unsure answers, and never by their
    class: their place in the queue says nothing of the model's answer. ``species``: predicted ids
    (``Catalogue.resolve`` turns a name into them); audit items and the resent photos of one are left out, since a
    filter by the model's answer would tell it. ``scope``: the submissions the reader may see (``accounts.district_scope``); ``audit``: only
    audit items (True) or none (False)."""
    where = [Submission.status == status]
    if scope is not None:
        where.append(scope)
    if district:
        where.append(Submission.district == district)
    # an audit item and every submission of the same photo (its resent copies, the earlier one it repeats): their
    # answer is hidden, so neither a filter nor the order may depend on it
    audited_ids = select(Submission.id).where(Submission.audit_rate.is_not(None)).scalar_subquery()
    repeated = select(Submission.duplicate_of).where(Submission.audit_rate.is_not(None),
                                                     Submission.duplicate_of.is_not(None)).scalar_subquery()  # fmt: skip
    audited = or_(Submission.audit_rate.is_not(None),  # never NULL: ~audited must keep rows with no duplicate
                  and_(Submission.duplicate_of.is_not(None), Submission.duplicate_of.in_(audited_ids)),
                  Submission.id.in_(repeated))  # fmt: skip
    if species is not None:
        where.extend([Submission.predicted_label.in_(species), ~audited])
    if audit is not None:
        where.append(Submission.audit_rate.is_not(None) if audit else Submission.audit_rate.is_(None))
    if decision:
        where.append(Submission.decision == decision)
    if since:
        where.append(Submission.created_at >= datetime.combine(since, datetime.min.time(), UTC))
    if until:
        where.append(Submission.created_at < datetime.combine(until, datetime.max.time(), UTC))
    total = session.scalar(select(func.count()).select_from(Submission).where(*where)) or 0
    approved = (select(Submission.final_label.label("label"), func.count().label("n"))
                .where(Submission.status == ReviewStatus.approved).group_by(Submission.final_label).subquery())  # fmt: skip
    unlocated = and_(Submission.district.is_(None), Submission.latitude.is_(None))
    query = (select(Submission).outerjoin(approved, approved.c.label == Submission.predicted_label).where(*where)
             .order_by(case((unlocated, 1), else_=0),
                       case((and_(Submission.decision == Decision.identified, ~audited), 1), else_=0),
                       case((audited, 0), else_=func.coalesce(approved.c.n, 0)), Submission.created_at, Submission.id)
             .offset(offset).limit(limit))  # fmt: skip
    return list(session.scalars(query)), total
