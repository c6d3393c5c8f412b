"""The app factory. The model is loaded once, in ``lifespan``."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from pestid.serving import STATIC, field_truth, problems
from pestid.serving.audits import AuditPlan
from pestid.serving.background import repeating
from pestid.serving.batching import MicroBatcher
from pestid.serving.db import make_engine, migrate, session_factory
from pestid.serving.headers import SecurityHeaders
from pestid.serving.inputs import InputGuard
from pestid.serving.memory import return_freed_memory
from pestid.serving.model import load_offline, load_served
from pestid.serving.model_refresh import watching
from pestid.serving.observability import RequestContext, configure_logging, log
from pestid.serving.photos import PhotoStorage, PhotoStore
from pestid.serving.ratelimit import FairSlots, InFlight, UploadLimits
from pestid.serving.receipts import receipt_key
from pestid.serving.routes import field, health, identify, model, pages, review, submissions
from pestid.serving.settings import Settings, get_settings
from pestid.serving.submissions import referenced_paths


def open_photo_store(settings: Settings) -> PhotoStorage:
    """The photo store ``PESTID_PHOTO_STORE`` names: a bucket (``s3://…``) or a local folder."""
    if settings.photo_bucket:
        from pestid.serving.photos_s3 import S3PhotoStore  # boto3 is loaded only by those who use it

        return S3PhotoStore(settings.photo_bucket, endpoint_url=settings.s3_endpoint_url,
                            window_days=settings.orphan_window_days)  # fmt: skip
    return PhotoStore(settings.photo_dir)


def open_storage(settings: Settings, *, orphan_grace_s: float) -> tuple[Engine, sessionmaker, PhotoStorage, int]:
    """The database at its newest schema and the photo store, with crash leftovers older than the grace removed.

    ``pestid serve`` calls it once with no grace before any worker starts, when nothing can be in flight;
    each worker calls it again with the grace, because a restarted worker has siblings mid-commit. A bucket
    always keeps the grace: other replicas' workers write there too, whatever this one knows.
    """
    engine = make_engine(settings.resolved_database_url)
    migrate(engine, lock=settings.data_dir / ".migrate.lock")
    sessions = session_factory(engine)
    photos = open_photo_store(settings)
    grace = max(orphan_grace_s, settings.orphan_grace_s) if settings.photo_bucket else orphan_grace_s
    return engine, sessions, photos, remove_leftovers(photos, sessions, grace)


def remove_leftovers(photos: PhotoStorage, sessions: sessionmaker, grace_s: float) -> int:
    """Delete crash leftovers older than ``grace_s`` that no row refers to (``PhotoStorage.reconcile``)."""
    return photos.reconcile(partial(referenced_paths, sessions), min_age_s=grace_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_json)
        return_freed_memory()
        engine, app.state.sessions, app.state.photos, removed = open_storage(settings,
                                                                             orphan_grace_s=settings.orphan_grace_s)  # fmt: skip
        app.state.receipt_key = receipt_key(app.state.sessions)
        app.state.audit_plan = AuditPlan(key=app.state.receipt_key, share=settings.audit_share,
                                         min_per_cell=settings.audit_min_per_cell, boost=settings.audit_boost)  # fmt: skip
        app.state.model = load_served(settings)
        app.state.offline = load_offline(settings.offline_model, app.state.model)
        log.info("ready", extra={"fields": {"model_version": app.state.model.version, "orphans_removed": removed,
                                            "precision": app.state.model.precision}})  # fmt: skip
        app.state.batcher = (MicroBatcher(max_wait_s=settings.batch_wait_ms / 1000, max_batch=settings.max_batch)
                             if settings.max_batch > 1 else None)  # fmt: skip
        interval = settings.model_refresh_s if settings.model.startswith("models:/") else 0
        leftovers = partial(remove_leftovers, app.state.photos, app.state.sessions, settings.orphan_grace_s)
        async with (
            watching(app, interval),
            field_truth.watching(app, settings.field_refresh_s),
            repeating(lambda: run_in_threadpool(leftovers), settings.reconcile_s, at_start=False,
                      failed="photo reconcile failed"),
        ):  # fmt: skip
            yield
        if app.state.batcher is not None:
            app.state.batcher.close()
        app.state.model = None
        engine.dispose()

    public = settings.public_operations  # otherwise /docs, /openapi.json and /metrics stay off the public port
    app = FastAPI(title="pestid", version="0.1.0", lifespan=lifespan,
                  description="Nhận diện sâu bệnh hại lúa / rice pest and disease identification",
                  docs_url="/docs" if public else None, redoc_url=None,
                  openapi_url="/openapi.json" if public else None)  # fmt: skip
    app.state.settings = settings
    app.state.model = None
    # decoded photos held at once, one client at most half of them (a 62 MP HEIC has no reduced decode)
    app.state.decode_slots = FairSlots(settings.threads_per_worker, per_client=settings.threads_per_worker // 2)
    app.state.in_flight = InFlight(settings.uploads_at_once_per_address)
    app.state.hash_slots = threading.BoundedSemaphore(settings.threads_per_worker)  # argon2 verifications at once
    app.state.upload_limits = UploadLimits(settings.upload_rate_per_address, settings.upload_rate_per_device,
                                           settings.rate_limit_storage)  # fmt: skip
    # Text, JSON and the offline runtime travel compressed (its 14 MB of WebAssembly as 3.7 MB); photos do not.
    app.add_middleware(InputGuard)  # control characters and oversized bodies stop here, before any route
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestContext)
    app.add_exception_handler(problems.Problem, problems.handle_problem)
    app.add_exception_handler(RequestValidationError, problems.handle_validation)
    app.add_exception_handler(StarletteHTTPException, problems.handle_http)
    app.add_exception_handler(Exception, problems.handle_unexpected)
    for router in (identify.router, submissions.router, model.router, review.router, field.router, health.router,
                   pages.router):  # fmt: skip
        app.include_router(router)
    if public:
        app.include_router(health.metrics_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
