"""Delivered precision, from the blind audits (``serving/audits.py``): per class, per district and per model version,
each with its 95 % Wilson interval, and the alert when a class's interval lies wholly below its promise.

What an audit says about the answer it audits:

- approved as the answer itself, or as a member of the group answered (the model said "stem borers", the officer
  named the yellow stem borer): **right**;
- approved as anything else: **wrong**; rejected as "not rice" or "not a harmful organism": **wrong** (the model
  named an organism where the officer saw none);
- approved as a group the answer belongs to (the officer could say "a planthopper" but not which), or rejected as
  blurry or a duplicate: **no verdict on the answer**, left out.

An audit is judged by its blind answers only (``outcome``): each officer's first verdict, given before the model's
answer was shown to them. Answers that disagree on right or wrong (one officer names another species, or rejects
as not rice where another rejects as blurry) are a dispute, left out until a senior's blind answer settles it;
the item's status and final label (which later verdicts and undos still change, for training) play no part.

Each audit weighs 1 / the rate it was drawn at (``weighted_precision``), and its interval is a Wilson interval on
the effective number of audits. A class's **alert** fires when it has at least ``ALERT_MIN_AUDITS`` audits and the
upper end of its interval lies below the model contract's ``target_precision``: even the most favourable reading
of the audits breaks the promise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from pestid.catalogue import load_catalogue
from pestid.errors import CatalogueError
from pestid.serving.db import Review, Submission, User
from pestid.serving.estimates import Estimate, weighted_precision
from pestid.vocabulary import RejectReason, ReviewStatus, Role

ALERT_MIN_AUDITS = 5
WRONG_REJECTIONS = {RejectReason.not_rice.value, RejectReason.not_harmful.value}


@dataclass(frozen=True)
class Audited:
    """One decided audit: the answer it audited, where and by which model, the rate it was drawn at, and whether
    the answer was right."""

    answer: str
    district: str | None
    model_version: str
    rate: float
    right: bool


def judge(answer: str, status: str, final_label: str | None, reject_reason: str | None) -> bool | None:
    """Whether the answer was right (see the module's text); None when the verdict says nothing about it."""
    if status == ReviewStatus.rejected:
        return False if reject_reason in WRONG_REJECTIONS else None
    if status != ReviewStatus.approved or not final_label:
        return None
    if final_label == answer:
        return True
    catalogue = load_catalogue()
    try:
        if answer in {g.id for g in catalogue.ancestors(final_label)}:
            return True  # a group answered, a member of it confirmed
        if final_label in {g.id for g in catalogue.ancestors(answer)}:
            return None  # the officer named only the group: right or wrong, the species is not known
    except CatalogueError:
        pass
    return False


def outcome(answer: str, blind: list[tuple[bool, str, str | None, str | None]], required: int) -> bool | None:
    """Whether the answer was right, from the blind answers to its audit, each (by a senior, verdict, label,
    reason), in the order given; None while undecided. A senior's blind answer settles it (the last one); else the
    officers' must agree on right or wrong (a rejection as blurry, which says nothing, disagrees with one as not
    rice) and be at least ``required``."""
    judged = [(senior, judge(answer, ReviewStatus.approved if verdict == "label" else ReviewStatus.rejected, label,
                             reason)) for senior, verdict, label, reason in blind]  # fmt: skip
    seniors = [right for senior, right in judged if senior]
    if seniors:
        return seniors[-1]
    views = {right for _, right in judged}
    return views.pop() if len(views) == 1 and len(judged) >= required else None


def decided_audits(session: Session, scope: ColumnElement[bool] | None = None, *, required: int = 1) -> list[Audited]:
    """Every audit the officers have decided by their blind answers (``audits.py``: each officer's first verdict,
    given before the reveal), within ``scope`` (the reader's districts). The item's status and label, which later
    verdicts and undos may change, play no part."""
    where: list[ColumnElement[bool]] = [Submission.audit_rate.is_not(None), Submission.answer.is_not(None),
                                        Review.blind.is_(True)]  # fmt: skip
    if scope is not None:
        where.append(scope)
    rows = session.execute(select(Submission.id, Submission.answer, Submission.district, Submission.model_version,
                                  Submission.audit_rate, User.id, User.role, Review.verdict, Review.label, Review.reason)
                           .join(Review, Review.submission_id == Submission.id).join(User, User.id == Review.user_id)
                           .where(*where).order_by(Review.created_at, Review.id)).all()  # fmt: skip
    items: dict[str, tuple[str, str | None, str, float]] = {}
    answers: dict[str, dict[int, tuple[bool, str, str | None, str | None]]] = {}
    for sid, answer, district, version, rate, user_id, role, verdict, label, reason in rows:
        if answer is None or rate is None:
            continue
        items[sid] = (answer, district, version, rate)
        answers.setdefault(sid, {}).setdefault(user_id, (role in (Role.senior, Role.admin), verdict, label, reason))
    out = []
    for sid, (answer, district, version, rate) in items.items():
        right = outcome(answer, list(answers[sid].values()), required)
        if right is not None and rate:
            out.append(Audited(answer, district, version, rate, right))
    return out


def _row(estimate: Estimate, promised: float | None) -> dict[str, Any]:
    alert = promised is not None and estimate.audits >= ALERT_MIN_AUDITS and estimate.high < promised
    return {"audits": estimate.audits, "correct": estimate.correct, "effective": round(estimate.effective, 2),
            "precision": round(estimate.precision, 4), "low": round(estimate.low, 4), "high": round(estimate.high, 4),
            "promised": promised, "alert": alert}  # fmt: skip


def by(audits: list[Audited], key: Callable[[Audited], str | None]) -> dict[str | None, Estimate]:
    cells: dict[str | None, list[tuple[bool, float]]] = {}
    for a in audits:
        cells.setdefault(key(a), []).append((a.right, 1.0 / a.rate))
    return {k: e for k, cases in cells.items() if (e := weighted_precision(cases)) is not None}


def named(organism_id: str) -> dict[str, Any]:
    try:
        org = load_catalogue().get(organism_id)
    except CatalogueError:
        return {"id": organism_id, "name_vi": organism_id, "name_en": organism_id, "scientific": ""}
    return {"id": org.id, "name_vi": org.name_vi, "name_en": org.name_en, "scientific": org.scientific}


def precision_report(audits: list[Audited], *, model_version: str | None, promised: float | None) -> dict[str, Any]:
    """Per class and per district for the served model (``model_version``; its audits only: the promise is its
    own), and per model version over all the audits, with the classes whose alert fires."""
    served = [a for a in audits if model_version is None or a.model_version == model_version]
    classes = [{**named(str(k)), **_row(e, promised)} for k, e in sorted(by(served, lambda a: a.answer).items(),
                                                                          key=lambda kv: str(kv[0]))]  # fmt: skip
    districts = [{"district": k, **_row(e, promised)}
                 for k, e in sorted(by(served, lambda a: a.district).items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]  # fmt: skip
    versions = [{"model_version": k, **_row(e, promised if k == model_version else None)}
                for k, e in sorted(by(audits, lambda a: a.model_version).items(), key=lambda kv: str(kv[0]))]  # fmt: skip
    return {"model_version": model_version, "promised": promised, "confidence": 0.95, "classes": classes,
            "districts": districts, "versions": versions,
            "alerts": [row["id"] for row in classes if row["alert"]]}  # fmt: skip
