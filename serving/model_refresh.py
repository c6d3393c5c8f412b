"""Moving to a new model without downtime.

The new model is loaded beside the one serving; only then is the reference on
``app.state`` swapped, so every request is answered by one complete model.
A background task re-resolves ``models:/NAME@ALIAS`` every ``model_refresh_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from pestid.serving.model import current_version, load_served
from pestid.serving.observability import log


async def refresh_model(app: FastAPI) -> str:
    settings = app.state.settings
    loaded = app.state.model
    target = await run_in_threadpool(current_version, settings.model, tracking_uri=settings.mlflow_tracking_uri)
    if loaded is not None and loaded.version.endswith(target):
        return str(loaded.version)
    new = await run_in_threadpool(load_served, settings)
    app.state.model = new
    log.info("model switched", extra={"fields": {"from": getattr(loaded, "version", None), "to": new.version}})
    return new.version


async def watch(app: FastAPI, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await refresh_model(app)
        except Exception:  # noqa: BLE001 - keep serving the current model; try again next time
            log.exception("model refresh failed")


@contextlib.asynccontextmanager
async def watching(app: FastAPI, interval: float) -> AsyncIterator[None]:
    task = asyncio.create_task(watch(app, interval)) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
