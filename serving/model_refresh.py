"""Moving to a new model without downtime.

The new model is loaded beside the one serving; only then is the reference on
``app.state`` swapped, so every request is answered by one complete model.
A background task re-resolves ``models:/NAME@ALIAS`` every ``model_refresh_s``.
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from pestid.serving.background import repeating
from pestid.serving.model import current_version, load_offline, load_served
from pestid.serving.observability import log


async def refresh_model(app: FastAPI) -> str:
    settings = app.state.settings
    loaded = app.state.model
    target = await run_in_threadpool(current_version, settings.model, tracking_uri=settings.mlflow_tracking_uri)
    if loaded is not None and loaded.version.endswith(target) and not loaded.offline_unknown:
        return str(loaded.version)  # (a version whose offline copy the registry could not tell is loaded again)
    new = await run_in_threadpool(load_served, settings)
    offline = await run_in_threadpool(load_offline, settings.offline_model, new)  # the phones' copy moves with it
    app.state.model, app.state.offline = new, offline
    log.info("model switched", extra={"fields": {"from": getattr(loaded, "version", None), "to": new.version}})
    return new.version


def watching(app: FastAPI, interval: float) -> contextlib.AbstractAsyncContextManager[None]:
    """Re-resolve the model's alias every ``interval`` seconds while the block runs (0: never)."""
    return repeating(lambda: refresh_model(app), interval, at_start=False, failed="model refresh failed")
