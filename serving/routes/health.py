"""Operations: liveness and readiness (model loaded) on the public port; Prometheus metrics on the
operations port (``observability.serve_operations``), or here too when ``public_operations`` is set."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from pestid.predictor import integer_kernels
from pestid.serving.observability import STORAGE_FREE, metrics_response, storage_low

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
    free, reserve = request.app.state.photos.free_bytes(), request.app.state.settings.storage_reserve_bytes
    if free is not None:  # a local photo disk (a bucket has none of ours to fill)
        STORAGE_FREE.set(free)
    # below the reserve new photos would be refused: a balancer sends farmers to a replica with room
    if free is not None and free < reserve:
        storage_low(free, reserve)
        return JSONResponse({"status": "storage_low", "free_bytes": free, "reserve_bytes": reserve}, status_code=503)
    body = {"status": "ready", "model_version": model.version, "precision": model.precision}
    if model.precision == "int8":  # its figures hold on the CPU they were measured on, within its tolerance elsewhere
        metrics = model.predictor.contract.metrics
        body |= {"int8_kernels": integer_kernels(), "int8_measured_on": metrics.get("int8_measured_on", ""),
                 "int8_cross_runtime_tolerance": metrics.get("int8_cross_runtime_tolerance")}  # fmt: skip
    return JSONResponse(body)


@metrics_router.get("/metrics")
def metrics() -> Response:
    return metrics_response()
