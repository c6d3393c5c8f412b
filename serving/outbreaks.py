"""Outbreak counts: confirmed reports per species, by commune or district and ISO week."""

from __future__ import annotations

import csv
import io
from collections import Counter

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from pestid.serving.db import Submission
from pestid.vocabulary import ReviewStatus


def iso_week(sub: Submission) -> str:
    day = sub.observed_on or sub.created_at.date()
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def outbreak_counts(
    session: Session, *, by: str = "district", scope: ColumnElement[bool] | None = None
) -> list[dict[str, object]]:
    """Approved reports per ISO week, place and species, within ``scope`` (the reader's districts) if given."""
    query = select(Submission).where(Submission.status == ReviewStatus.approved)
    rows = session.scalars(query if scope is None else query.where(scope))
    counts: Counter[tuple[str, str, str]] = Counter()
    for sub in rows:
        place = (sub.district if by == "district" else sub.commune) or "—"
        counts[(iso_week(sub), place, sub.final_label or sub.predicted_label)] += 1
    return [{"week": w, by: p, "species": s, "reports": n} for (w, p, s), n in sorted(counts.items())]


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
