"""Drift: per district and ISO week, have the answers moved away from what the model was measured on?

Two questions, each with a documented test and a minimum count:

- **The share of "not sure"** (answers that are not ``identified``: uncertain or not recognised). Its reference is
  the model's own test split: 1 − ``useful_coverage`` (the share of test originals given a species or group
  answer) from the model contract's metrics, or 1 − ``coverage`` where that is all it records, measured on
  ``originals`` test originals. A district-week moved when it has at least ``MIN_ANSWERS`` answers, the
  two-proportion z statistic (pooled, against the test split's count) is at least ``Z_FLAG`` in size (two-sided
  p < 0.001), and the share differs by at least ``MIN_SHIFT`` (10 points). A model whose contract records neither
  figure is compared with the same district's ``BASELINE_WEEKS`` weeks before.
- **The classes answered** (identified answers, by the species or group named). The reference is the contract's
  ``answer_shares`` (each answer's share of the test split's identified answers) when the model carries them;
  models trained so far do not, so it is the same district's ``BASELINE_WEEKS`` weeks before (a class never
  answered there gets half an answer, so that it can be tested). A district-week moved when it has at least
  ``MIN_ANSWERS`` identified answers, Pearson's chi-square test against the reference gives p < ``CHI_P`` (classes
  expected fewer than 5 times pooled), and the total-variation distance is at least ``MIN_DISTANCE`` (a fifth of
  the answers would have to change class).

A flagged row names the classes that rose and fell most against the reference: where officers should look and
what to photograph. Repeated photos (``Submission.duplicate_of``) are counted once.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from pestid.contract import ModelContract
from pestid.serving.audits import OPEN
from pestid.serving.db import Submission
from pestid.serving.estimates import chi_square, chi_square_sf, proportion_z, total_variation, two_sided_p
from pestid.serving.outbreaks import iso_week, monday_of
from pestid.serving.precision import named
from pestid.vocabulary import Decision

MIN_ANSWERS = 20
Z_FLAG = 3.29  # |z| ≥ 3.29: two-sided p < 0.001
MIN_SHIFT = 0.10
CHI_P = 0.001
MIN_DISTANCE = 0.20
BASELINE_WEEKS = 4
MOVERS = 3  # classes named as rising and as falling
MOVER_SHIFT = 0.05  # a class named as a mover changed its share by at least this


@dataclass(frozen=True)
class Reference:
    """What the model's contract says its answers looked like on its test split."""

    not_sure: float | None = None
    cases: float | None = None  # test originals it was measured on
    shares: dict[str, float] | None = None  # each answer's share of the identified answers

    @classmethod
    def of(cls, contract: ModelContract | None) -> Reference:
        metrics = contract.metrics if contract is not None else {}
        answered = metrics.get("useful_coverage", metrics.get("coverage"))
        not_sure = 1.0 - float(answered) if isinstance(answered, int | float) and math.isfinite(answered) else None
        cases = metrics.get("originals")
        shares = metrics.get("answer_shares")
        return cls(not_sure=not_sure, cases=float(cases) if isinstance(cases, int | float) and cases > 0 else None,
                   shares={str(k): float(v) for k, v in shares.items()} if isinstance(shares, dict) and shares else None)  # fmt: skip


@dataclass
class Tally:
    """One district's answers in one week."""

    answers: int = 0
    not_sure: int = 0
    confidence: float = 0.0
    classes: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.answers += other.answers
        self.not_sure += other.not_sure
        self.confidence += other.confidence
        self.classes.update(other.classes)


def tallies(
    session: Session, *, since: date, scope: ColumnElement[bool] | None = None
) -> dict[tuple[str | None, date], Tally]:
    """Answers per (district, Monday of the week they were given) since ``since``, repeated photos once. An audit
    item still open is counted once decided, not before: a district's figures polled before and after it arrived
    would otherwise tell an officer the class and confidence the blind check hides."""
    since_start = datetime.combine(since, datetime.min.time(), UTC)
    decided_or_no_audit = or_(Submission.audit_rate.is_(None), Submission.status.not_in(OPEN))
    query = select(Submission.district, Submission.created_at, Submission.decision, Submission.answer,
                   Submission.confidence).where(Submission.created_at >= since_start, Submission.duplicate_of.is_(None),
                                                decided_or_no_audit)  # fmt: skip
    if scope is not None:
        query = query.where(scope)
    out: dict[tuple[str | None, date], Tally] = {}
    for district, created, decision, answer, confidence in session.execute(query):
        tally = out.setdefault((district, monday_of(created.date())), Tally())
        tally.answers += 1
        tally.confidence += confidence
        if decision == Decision.identified and answer:
            tally.classes[answer] += 1
        else:
            tally.not_sure += 1
    return out


def _not_sure(week: Tally, baseline: Tally, reference: Reference) -> dict[str, Any]:
    if reference.not_sure is not None:
        p0, n0, source = reference.not_sure, reference.cases, "contract"
    elif baseline.answers >= MIN_ANSWERS:
        p0, n0, source = baseline.not_sure / baseline.answers, float(baseline.answers), "baseline"
    else:
        return {"not_sure_reference": None, "not_sure_source": None, "not_sure_z": None, "not_sure_p": None,
                "not_sure_moved": False}  # fmt: skip
    z = proportion_z(week.not_sure, week.answers, p0, n0)
    share = week.not_sure / week.answers if week.answers else 0.0
    moved = week.answers >= MIN_ANSWERS and abs(z) >= Z_FLAG and abs(share - p0) >= MIN_SHIFT
    return {"not_sure_reference": round(p0, 4), "not_sure_source": source,
            "not_sure_z": round(z, 2) if math.isfinite(z) else None, "not_sure_p": two_sided_p(z),
            "not_sure_moved": moved}  # fmt: skip


def _reference_shares(
    baseline: Tally, reference: Reference, seen: set[str]
) -> tuple[dict[str, float] | None, str | None]:
    if reference.shares:
        return reference.shares, "contract"
    total = sum(baseline.classes.values())
    if total < MIN_ANSWERS:
        return None, None
    keys = seen | set(baseline.classes)
    return {k: (baseline.classes[k] + 0.5) / (total + 0.5 * len(keys)) for k in keys}, "baseline"


def _classes(week: Tally, baseline: Tally, reference: Reference) -> dict[str, Any]:
    identified = sum(week.classes.values())
    shares, source = _reference_shares(baseline, reference, set(week.classes))
    if shares is None or identified == 0:
        return {"class_source": source, "class_distance": None, "chi_square": None, "p_value": None,
                "classes_moved": False, "rising": [], "falling": []}  # fmt: skip
    observed = {k: n / identified for k, n in week.classes.items()}
    statistic, df = chi_square(week.classes, shares)
    p_value = chi_square_sf(statistic, df)
    distance = total_variation(observed, shares)
    moved = identified >= MIN_ANSWERS and p_value < CHI_P and distance >= MIN_DISTANCE
    change = {k: observed.get(k, 0.0) - shares.get(k, 0.0) for k in set(observed) | set(shares)}

    def movers(sign: int) -> list[dict[str, Any]]:
        ranked = sorted((k for k in change if sign * change[k] >= MOVER_SHIFT), key=lambda k: -sign * change[k])
        return [{**named(k), "share": round(observed.get(k, 0.0), 4), "reference_share": round(shares.get(k, 0.0), 4)}
                for k in ranked[:MOVERS]]  # fmt: skip

    return {"class_source": source, "class_distance": round(distance, 4), "chi_square": round(statistic, 2),
            "p_value": p_value, "classes_moved": moved, "rising": movers(1), "falling": movers(-1)}  # fmt: skip


def judge_week(week: Tally, baseline: Tally, reference: Reference) -> dict[str, Any]:
    """The figures and flags of one district-week against the reference (or its baseline weeks)."""
    row = {"answers": week.answers, "not_sure": week.not_sure,
           "not_sure_share": round(week.not_sure / week.answers, 4) if week.answers else None,
           "identified": sum(week.classes.values()),
           "mean_confidence": round(week.confidence / week.answers, 4) if week.answers else None,
           **_not_sure(week, baseline, reference), **_classes(week, baseline, reference)}  # fmt: skip
    row["flagged"] = bool(row["not_sure_moved"] or row["classes_moved"])
    return row


def drift_report(session: Session, *, reference: Reference, weeks: int, today: date,
                 scope: ColumnElement[bool] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Every district-week with answers in the last ``weeks`` weeks up to ``today``, newest week first, flagged ones
    first within a week."""
    last = monday_of(today)
    first = last - timedelta(weeks=weeks - 1)
    counted = tallies(session, since=first - timedelta(weeks=BASELINE_WEEKS), scope=scope)
    rows = []
    for (district, monday), week in counted.items():
        if monday < first:
            continue
        baseline = Tally()
        for k in range(1, BASELINE_WEEKS + 1):
            baseline.add(counted.get((district, monday - timedelta(weeks=k)), Tally()))
        rows.append({"week": iso_week(monday), "monday": monday.isoformat(), "district": district,
                     **judge_week(week, baseline, reference)})  # fmt: skip
    rows.sort(key=lambda r: (r["monday"], r["flagged"], r["answers"]), reverse=True)
    return rows
