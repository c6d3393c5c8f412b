"""Officer endpoints for field truth: delivered precision from the blind audits, and drift per district and week.

Both are computed within the reader's districts (``accounts.district_scope``): an officer's figures are their own
district's (and the unlocated submissions'); senior officers and admins see the whole province.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import sessionmaker

from pestid.serving.accounts import district_scope
from pestid.serving.db import User
from pestid.serving.deps import get_sessions, require
from pestid.serving.drift import (
    BASELINE_WEEKS,
    CHI_P,
    MIN_ANSWERS,
    MIN_DISTANCE,
    MIN_SHIFT,
    Z_FLAG,
    Reference,
    drift_report,
)
from pestid.serving.field_truth import served
from pestid.serving.precision import ALERT_MIN_AUDITS, decided_audits, precision_report
from pestid.vocabulary import Role

router = APIRouter(prefix="/v1", tags=["field truth"])
Officer = Annotated[User, Depends(require(Role.officer))]
Sessions = Annotated[sessionmaker, Depends(get_sessions)]


@router.get("/precision")
def precision(request: Request, user: Officer, sessions: Sessions) -> dict[str, Any]:
    """Delivered precision of identified answers from the blind audits, per class and per district for the served
    model and per model version, each with its 95 % Wilson interval; ``alerts`` lists the classes whose interval
    lies wholly below the promise (the contract's ``target_precision``) with at least ``alert_min_audits`` audits."""
    version, contract = served(request.app)
    with sessions() as session:
        audits = decided_audits(session, district_scope(user), required=request.app.state.settings.approvals_required)
    report = precision_report(audits, model_version=version, promised=contract.target_precision if contract else None)
    return {**report, "alert_min_audits": ALERT_MIN_AUDITS}


@router.get("/drift")
def drift(
    request: Request, user: Officer, sessions: Sessions, weeks: Annotated[int, Query(ge=1, le=52)] = 8,
) -> dict[str, Any]:  # fmt: skip
    """Per district and ISO week, the share of "not sure" answers and the classes answered against the served
    model's test split (its contract's metrics) or, where the contract lacks the figure, the district's own weeks
    before; ``flagged`` rows moved (the rules are in ``serving/drift.py`` and in ``rules``)."""
    _, contract = served(request.app)
    reference = Reference.of(contract)
    with sessions() as session:
        rows = drift_report(session, reference=reference, weeks=weeks, today=datetime.now(UTC).date(),
                            scope=district_scope(user))  # fmt: skip
    return {"weeks": weeks, "rows": rows,
            "reference": {"not_sure": reference.not_sure, "originals": reference.cases,
                          "class_shares": "contract" if reference.shares else "baseline"},
            "rules": {"min_answers": MIN_ANSWERS, "z": Z_FLAG, "min_shift": MIN_SHIFT, "chi_square_p": CHI_P,
                      "min_distance": MIN_DISTANCE, "baseline_weeks": BASELINE_WEEKS}}  # fmt: skip
