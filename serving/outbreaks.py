"""Outbreak counts: confirmed reports per species, by commune or district and ISO week, with a rise flag.

A week is flagged ``rising`` for a place and species when its reports are at least ``RISE_MIN`` and at least
``RISE_FACTOR`` times the mean of the ``RISE_BASELINE`` weeks before it (weeks without reports count as 0).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from pestid.catalogue import load_catalogue
from pestid.serving.db import Submission
from pestid.vocabulary import ReviewStatus

RISE_FACTOR = 2.0
RISE_MIN = 5
RISE_BASELINE = 4


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_of(sub: Submission) -> date:
    """The Monday of the ISO week the observation was made (or sent, without a date)."""
    return monday_of(sub.observed_on or sub.created_at.date())


def iso_week(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def outbreak_counts(
    session: Session, *, by: str = "district", scope: ColumnElement[bool] | None = None, group: str | None = None,
    district: str | None = None, weeks: int | None = None, today: date | None = None,
) -> list[dict[str, object]]:  # fmt: skip
    """Approved reports per ISO week, place and species, with names and the rise flag.

    ``scope``: the reader's districts; ``group``: organisms or groups by id or by a name in either language, with
    or without diacritics ("ray", "Các loài rầy", "planthoppers"): their reports and their members';
    ``district``: one district; ``weeks``: the last so many weeks up to ``today``. A submission that repeats an
    approved one (``Submission.duplicate_of``) with the same organism in the same district is the same report and is
    counted once; one approved as another organism (a shared photo beside new ones), or sent from another district,
    is a report of its own.
    """
    catalogue = load_catalogue()
    query = select(Submission).where(Submission.status == ReviewStatus.approved)
    if scope is not None:
        query = query.where(scope)
    if district:
        query = query.where(Submission.district == district)
    wanted = set(catalogue.resolve(group)) if group else None
    approved = list(session.scalars(query))
    reported = {sub.id: (sub.final_label or sub.predicted_label, sub.district) for sub in approved}
    counts: Counter[tuple[date, str, str]] = Counter()
    for sub in approved:
        species = sub.final_label or sub.predicted_label
        if sub.duplicate_of is not None and reported.get(sub.duplicate_of) == (species, sub.district):
            continue  # the same photo of the same organism in the same district, approved before: one report

        if wanted is not None and wanted.isdisjoint([species, *(g.id for g in catalogue.ancestors(species))]):
            continue
        counts[(week_of(sub), (sub.district if by == "district" else sub.commune) or "—", species)] += 1
    first = monday_of(today or date.today()) - timedelta(weeks=weeks - 1) if weeks else None
    rows = []
    for (monday, place, species), reports in sorted(counts.items()):
        if first is not None and monday < first:
            continue
        before = [counts.get((monday - timedelta(weeks=k), place, species), 0) for k in range(1, RISE_BASELINE + 1)
                  if monday > date.min + timedelta(weeks=k)]  # fmt: skip
        rising = reports >= RISE_MIN and reports >= RISE_FACTOR * (sum(before) / RISE_BASELINE)
        org = catalogue.get(species)
        rows.append({"week": iso_week(monday), by: place, "species": species, "name_vi": org.name_vi,
                     "name_en": org.name_en, "scientific": org.scientific, "reports": reports, "rising": rising})  # fmt: skip
    return rows


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (farmer text such as ``=HYPERLINK(…)``) gets a leading
    apostrophe, so it is shown, not evaluated (OWASP's advice for CSV injection). Numbers stay numbers."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def to_csv(rows: list[dict[str, object]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()
