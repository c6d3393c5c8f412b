"""The farmer's page at /, served by the app itself (no external CDN)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from pestid.serving import STATIC

router = APIRouter(include_in_schema=False)


@router.get("/")
def farmer_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/sw.js")
def service_worker() -> FileResponse:
    """The farmer page's service worker, at the root so its scope is the whole page (offline use)."""
    return FileResponse(STATIC / "sw.js", media_type="text/javascript; charset=utf-8")


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico whatever the page links: the same leaf as /static/favicon.svg."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=604800"})  # fmt: skip


@router.get("/officer")
def officer_page() -> FileResponse:
    return FileResponse(STATIC / "officer.html", media_type="text/html; charset=utf-8")
