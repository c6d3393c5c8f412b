"""Prometheus metrics and structured JSON logs with request ids."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("pestid_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("pestid_http_request_seconds", "HTTP request latency", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))  # fmt: skip
DECISIONS = Counter("pestid_decisions_total", "Identification decisions", ["decision"])
PREDICTED = Counter("pestid_predicted_class_total", "Top predicted class", ["label"])
CONFIDENCE = Histogram("pestid_confidence", "Confidence of the top class",
                       buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))  # fmt: skip
BATCH_SIZE = Histogram("pestid_inference_batch_photos", "Photos in one model run (micro-batching)",
                       buckets=(1, 2, 4, 8, 16, 32, 64))  # fmt: skip

STORAGE_FREE = Gauge("pestid_storage_free_bytes", "Free bytes on the photo disk", multiprocess_mode="min")
# Field truth (serving/field_truth.py): every worker computes the same figures from the database; the latest wins.
AUDIT_PRECISION = Gauge("pestid_audit_precision", "Delivered precision from blind audits, with its 95 % Wilson interval "
                        "(by class and district for the served model, by model version over all)",
                        ["by", "key", "bound"], multiprocess_mode="mostrecent")  # fmt: skip
AUDITS = Gauge("pestid_audits", "Decided blind audits", ["by", "key"], multiprocess_mode="mostrecent")
BELOW_PROMISE = Gauge("pestid_precision_below_promise", "1 when a class's 95 % interval lies wholly below the "
                      "model's target precision", ["label"], multiprocess_mode="mostrecent")  # fmt: skip
DRIFT_FLAGGED = Gauge("pestid_drift_flagged", "1 when a district's answers moved from the model's reference this "
                      "ISO week or the last", ["district"], multiprocess_mode="mostrecent")  # fmt: skip
DRIFT_NOT_SURE = Gauge("pestid_drift_not_sure_share", "Share of not-sure answers in a district's latest week",
                       ["district"], multiprocess_mode="mostrecent")  # fmt: skip
DRIFT_DISTANCE = Gauge("pestid_drift_class_distance", "Total-variation distance of a district's latest week's "
                       "answered classes from the reference", ["district"], multiprocess_mode="mostrecent")  # fmt: skip

log = logging.getLogger("pestid.serving")
_last_storage_alert = 0.0


def storage_low(free: int, reserve: int) -> None:
    """The alert: one log line a minute at most while the photo disk is below its reserve."""
    global _last_storage_alert
    if time.monotonic() - _last_storage_alert >= 60:
        _last_storage_alert = time.monotonic()
        log.warning("storage_low", extra={"fields": {"free_bytes": free, "reserve_bytes": reserve}})


REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{8,64}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}  # fmt: skip
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(json_logs: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


class RequestContext:
    """Pure ASGI middleware: request id, latency and status metrics, one JSON log line per request.

    (Starlette's function middleware re-streams every response, which cost ~40 ms per keep-alive request.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"")
        # a client's id is kept only when it is plainly an id (a proxy's trace id); anything else is replaced,
        # so no client text is echoed into headers or logs
        request_id = offered.decode() if REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - start
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(elapsed)
            log.info("request", extra={"fields": {"request_id": request_id, "method": scope["method"], "path": route,
                                                  "status": status, "ms": round(elapsed * 1000, 1)}})  # fmt: skip


def metrics_text() -> bytes:
    """Every worker's metrics (their shared folder when there are several), in Prometheus' text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


def metrics_response() -> Response:
    return Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)


def serve_operations(host: str, port: int, openapi: dict[str, Any]) -> ThreadingHTTPServer:
    """``/metrics`` and ``/openapi.json`` on the operations address (loopback by default), answered by a
    daemon thread of the calling process, so neither is reachable through the public port."""
    document = json.dumps(openapi, ensure_ascii=False).encode()
    pages = {"/metrics": (metrics_text, CONTENT_TYPE_LATEST), "/openapi.json": (lambda: document, "application/json")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = pages.get(self.path.split("?", 1)[0])
            body, kind = (page[0](), page[1]) if page else (b"not found", "text/plain")
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="pestid-operations", daemon=True).start()
    return server
