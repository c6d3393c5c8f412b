"""Problem-details (RFC 9457) errors: a status, a code, one sentence in Vietnamese and English."""

from __future__ import annotations

import errno
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pestid.serving.headers import ALWAYS as SECURITY_HEADERS
from pestid.serving.language import request_language


class Problem(Exception):
    def __init__(self, status: int, code: str, vi: str, en: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:  # fmt: skip
        super().__init__(en)
        self.status, self.code, self.vi, self.en, self.extra = status, code, vi, en, extra
        self.headers = headers or {}


def problem_body(status: int, code: str, vi: str, en: str, lang: str = "vi", **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://pestid.example/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "detail": vi if lang == "vi" else en,
        "detail_vi": vi,
        "detail_en": en,
        "code": code,
        **extra,
    }


def problem_response(status: int, code: str, vi: str, en: str, lang: str = "vi", **extra: Any) -> JSONResponse:
    body = problem_body(status, code, vi, en, lang, **extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


async def handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    response = problem_response(exc.status, exc.code, exc.vi, exc.en, request_language(request), **exc.extra)
    response.headers.update(exc.headers)
    return response


async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("request",), "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"])
    return problem_response(422, "invalid_request", f"Yêu cầu không hợp lệ ở '{where}': {first['msg']}.",
                            f"Invalid request at '{where}': {first['msg']}.", request_language(request))  # fmt: skip


async def handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(exc.status_code, "http_error", str(exc.detail), str(exc.detail), request_language(request))


def disk_full(exc: BaseException) -> bool:
    """The database or a file could not be written for want of space (SQLite, PostgreSQL or the OS says so)."""
    text = str(getattr(exc, "orig", exc)).lower()
    errno_ = getattr(exc, "errno", None) or getattr(getattr(exc, "orig", None), "errno", None)
    return errno_ in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text or "no space left" in text


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if disk_full(exc):  # sign-in, a verdict, anything that writes: a 507 to retry later, not a 500
        response = problem_response(507, "storage_full", "Máy chủ hết chỗ lưu; chưa lưu được gì. Hãy thử lại sau.",
                                    "The server is out of storage; nothing was saved. Try again later.",
                                    request_language(request))  # fmt: skip
    else:
        response = problem_response(500, "internal_error", "Lỗi máy chủ, vui lòng thử lại sau.",
                                    "Server error, please try again later.", request_language(request))  # fmt: skip
    # The server drops the connection after an unhandled error: say so, or the client's next request is reset.
    response.headers["Connection"] = "close"
    # This answer is made outside the middleware that adds the security headers (Starlette's outermost layer).
    for name, value in SECURITY_HEADERS:
        response.headers[name.decode()] = value.decode()
    response.headers["Cache-Control"] = "no-store"
    return response
