"""Typed settings, read lazily from the environment (prefix ``PESTID_``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PESTID_", extra="ignore", protected_namespaces=())

    model: str = "artifacts/model.onnx"  # a file, or models:/NAME@ALIAS from the MLflow registry
    offline_model: str | None = None  # the farmer page's INT8 copy; default: MODEL.int8.onnx beside the model
    mlflow_tracking_uri: str = "sqlite:///mlflow.db"
    data_dir: Path = Path("data/serving")
    # Where photos and their previews live: a folder (default: DATA_DIR/photos, previews beside it), or
    # s3://BUCKET/PREFIX in any S3-compatible store, with credentials as boto3 finds them (AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws, an instance role).
    photo_store: str | None = None
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 (SeaweedFS); none: AWS, or AWS_ENDPOINT_URL_S3
    database_url: str | None = None  # default: SQLite in data_dir
    max_upload_bytes: int = 15 * 1024 * 1024  # per photo
    max_photos: int = 5
    max_pixels: int = 64_000_000
    # HEIC, PNG, WebP… have no reduced decode: each pixel costs, so fewer are allowed (a 24 MP phone HEIC passes;
    # five 62 MP HEICs a request starved every farmer's upload)
    max_pixels_full_decode: int = 25_000_000
    max_field_bytes: int = 4096  # each metadata field
    # Kept free on the photo disk: below it new photos are 507 (before the disk is full for the database too),
    # /readyz says "storage_low" and an alert is logged. A local photo folder only: a bucket has no disk of ours.
    storage_reserve_bytes: int = 1024**3
    # Photo uploads per client (serving/ratelimit.py; the limits library's notation): the address is looser, since
    # many farmers share a mobile carrier's address. memory:// counts per worker; redis://… shares the count.
    upload_rate_per_address: str = "60/minute;1000/hour"
    upload_rate_per_device: str = "30/minute;300/hour"
    rate_limit_storage: str = "memory://"
    uploads_at_once_per_address: int = 8  # per worker: uploads one address may have in flight together
    # Addresses (comma-separated, or CIDR) whose X-Forwarded-For is believed: the nginx in front, never clients.
    trusted_proxies: str = ""
    uncertain_floor: float = 0.4
    reduced_decode: bool = True  # decode JPEGs at the smallest DCT scale the model needs (preprocess.draft_side)
    ort_threads: int = 0  # 0: the cores divided among the workers
    # The INT8 copy beside the model (pestid export --int8) answers when its contract records a per-original
    # macro-F1 within int8_tolerance of the model's; otherwise the model itself does.
    serve_int8: bool = True
    int8_tolerance: float = 0.005
    # Micro-batching: requests whose photos are ready together share one model run. The inference thread waits
    # for photos still being decoded at most this long (0: no waiting, each batch is whatever is ready).
    batch_wait_ms: float = 2.0
    max_batch: int = 32  # photos in one run; 1: no micro-batching (each request runs the model in its own thread)
    workers: int = 1
    log_json: bool = True
    approvals_required: int = Field(default=1, ge=1, le=2)  # agreeing officers needed to approve a label
    # The audit sample (serving/audits.py): this share of identified answers goes to the officers blind; a
    # (class, district) cell with fewer than audit_min_per_cell audits in 30 days is drawn at audit_boost until it
    # has them. 0 turns audits off.
    audit_share: float = Field(default=0.05, ge=0, le=1)
    audit_min_per_cell: int = Field(default=3, ge=0)
    audit_boost: float = Field(default=0.5, ge=0, le=1)
    # How often each worker recomputes delivered precision and drift for /metrics and the alert log; 0: never.
    field_refresh_s: float = 60.0
    orphan_grace_s: float = 600.0  # start-up removes crash leftovers older than this
    orphan_window_days: int = Field(default=2, ge=1)  # a bucket's reconcile lists only this many days back
    # How often each worker removes crash leftovers again while it runs (a replica killed mid-upload and restarted
    # within the grace would otherwise keep its photo until some later restart); 0: only at start.
    reconcile_s: float = 3600.0
    model_refresh_s: float = 30.0  # how often a models:/NAME@ALIAS reference is re-resolved; 0 = never
    # Operations (/metrics, /openapi.json) listen on their own address, not the public port;
    # public_operations=true also puts them and /docs on the public port (behind a trusted proxy only).
    ops_host: str = "127.0.0.1"
    ops_port: int = 9464  # 0: no operations listener
    public_operations: bool = False
    # A slow client may hold a connection only so long (uvicorn has no such limits of its own).
    header_timeout_s: float = 10.0  # from connecting (or the previous answer) to a complete request head
    body_idle_timeout_s: float = 60.0  # the longest silence while a body is arriving
    body_timeout_s: float = 600.0  # the whole body, however it trickles

    @property
    def photo_bucket(self) -> str | None:
        """The ``s3://…`` URL of the photo store, if it is an object store."""
        return self.photo_store if self.photo_store and self.photo_store.startswith("s3://") else None

    @property
    def photo_dir(self) -> Path:
        """The local photo folder (unused when the photos are in a bucket)."""
        return Path(self.photo_store) if self.photo_store and not self.photo_bucket else self.data_dir / "photos"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'pestid.db').resolve()}"

    @property
    def served_int8_tolerance(self) -> float | None:
        return self.int8_tolerance if self.serve_int8 else None

    @property
    def threads_per_worker(self) -> int:
        return self.ort_threads or max(1, (os.cpu_count() or 1) // max(1, self.workers))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
