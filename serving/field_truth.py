"""Field truth, kept current: every ``field_refresh_s`` each worker computes delivered precision (all districts, the
served model) and this week's drift, sets the Prometheus gauges, and logs the alert.

The alert is a log line in the style of ``storage_low``: ``precision_below_promise`` with the class, its audits,
its estimate and interval and the promise, repeated at most every ``ALERT_REPEAT_S`` per class while it holds;
``pestid_precision_below_promise{label}`` is 1 meanwhile, and the officers' API marks the class (``alert``).
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import UTC, date, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from pestid.contract import ModelContract
from pestid.serving import observability as obs
from pestid.serving.background import repeating
from pestid.serving.drift import MIN_ANSWERS, Reference, drift_report
from pestid.serving.outbreaks import iso_week, monday_of
from pestid.serving.precision import decided_audits, precision_report

ALERT_REPEAT_S = 600.0
UNLOCATED = "unlocated"  # the metrics' name for submissions that name no district
_last_alert: dict[str, float] = {}


def served(app: FastAPI) -> tuple[str | None, ModelContract | None]:
    """The served model's version and contract (None, None while none is loaded)."""
    model = getattr(app.state, "model", None)
    return (model.version, model.predictor.contract) if model is not None else (None, None)


def alert(report: dict[str, Any]) -> None:
    """The log line for each class below its promise, at most once per ``ALERT_REPEAT_S`` per class."""
    now = time.monotonic()
    for row in report["classes"]:
        if not row["alert"] or now - _last_alert.get(row["id"], -ALERT_REPEAT_S) < ALERT_REPEAT_S:
            continue
        _last_alert[row["id"]] = now
        obs.log.warning("precision_below_promise", extra={"fields": {
            "label": row["id"], "model_version": report["model_version"], "audits": row["audits"],
            "precision": row["precision"], "low": row["low"], "high": row["high"], "promised": row["promised"]}})  # fmt: skip


def publish_precision(report: dict[str, Any]) -> None:
    for by, rows, key in (("class", report["classes"], "id"), ("district", report["districts"], "district"),
                          ("version", report["versions"], "model_version")):  # fmt: skip
        for row in rows:
            name = row[key] or UNLOCATED
            obs.AUDITS.labels(by, name).set(row["audits"])
            for bound, value in (("estimate", row["precision"]), ("low", row["low"]), ("high", row["high"])):
                obs.AUDIT_PRECISION.labels(by, name, bound).set(value)
    for row in report["classes"]:
        obs.BELOW_PROMISE.labels(row["id"]).set(1 if row["alert"] else 0)


def publish_drift(rows: list[dict[str, Any]], today: date) -> None:
    """Per district: flagged when this week or the last is; the shares of the latest week with enough answers."""
    this_week = iso_week(monday_of(today))
    by_district: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_district.setdefault(row["district"] or UNLOCATED, []).append(row)
    for district, weeks in by_district.items():
        obs.DRIFT_FLAGGED.labels(district).set(1 if any(w["flagged"] for w in weeks) else 0)
        latest = sorted(weeks, key=lambda w: (w["week"] == this_week and w["answers"] >= MIN_ANSWERS, w["week"]))[-1]
        # NaN where the week had too few answers to compare: "not measured", never "no shift" (0)
        obs.DRIFT_NOT_SURE.labels(district).set(_or_nan(latest["not_sure_share"]))
        obs.DRIFT_DISTANCE.labels(district).set(_or_nan(latest["class_distance"]))


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def refresh(app: FastAPI, *, today: date | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Delivered precision and the last two weeks' drift over every district, published and alerted on."""
    version, contract = served(app)
    today = today or datetime.now(UTC).date()
    with app.state.sessions() as session:
        report = precision_report(decided_audits(session, required=app.state.settings.approvals_required), model_version=version,
                                  promised=contract.target_precision if contract else None)  # fmt: skip
        drift = drift_report(session, reference=Reference.of(contract), weeks=2, today=today)
    publish_precision(report)
    publish_drift(drift, today)
    alert(report)
    return report, drift


def watching(app: FastAPI, interval: float) -> contextlib.AbstractAsyncContextManager[None]:
    """Refresh the figures at once and then every ``interval`` seconds while the block runs (0: never)."""
    return repeating(lambda: run_in_threadpool(refresh, app), interval, at_start=True,
                     failed="field truth refresh failed")  # fmt: skip
