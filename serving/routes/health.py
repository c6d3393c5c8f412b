"""Operations: liveness and readiness (model loaded) on the public port; Prometheus metrics on the
operations port (``observability.serve_operations``), or here too when ``public_operations`` is set."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from pestid.serving.observability import metrics_response

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"], include_in_schema=False)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    model = getattr(request.app.state, "model", None)
    if model is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "model_version": model.version, "precision": model.precision})


@metrics_router.get("/metrics")
def metrics() -> Response:
    return metrics_response()
