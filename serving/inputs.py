"""One validation for what reaches the database, and a size limit on every body that is not a photo upload.

- Text: NUL and other control characters (tab and line breaks aside) are refused with 422 wherever they come
  from: a form field (``plain_text``), a JSON field (the ``Text`` type), the path or the query (``InputGuard``).
  PostgreSQL cannot store a NUL at all, and SQLite stores "Phú Tân\\0", which no officer's district matches.
- Integers in a path are bounded to the database's integer column (``RowId``): 2^31 and beyond is 422, not an
  overflow inside the driver.
- Bodies: every request body except the streamed photo upload (``POST /v1/identify``, which keeps its own
  per-photo limits) is counted as it arrives and refused with 413 past ``MAX_BODY_BYTES``, a declared
  ``Content-Length`` before a byte is read.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import Path
from pydantic import AfterValidator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pestid.serving.language import language_of
from pestid.serving.problems import problem_body

MAX_BODY_BYTES = 64 * 1024  # a sign-in or a verdict is under 1 KB
STREAMED = {("POST", "/v1/identify")}  # multipart photo uploads: limited per photo while they stream
ALLOWED_CONTROLS = {"\t", "\n", "\r"}
INT32_MAX = 2**31 - 1


def control_characters(text: str) -> bool:
    """Whether text holds a NUL or another control character a person does not type (or a lone surrogate)."""
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in ALLOWED_CONTROLS for c in text)


def _no_controls(text: str) -> str:
    if control_characters(text):
        raise ValueError("control characters (such as NUL) are not allowed")
    return text


Text = Annotated[str, AfterValidator(_no_controls)]  # a JSON field that reaches the database
RowId = Annotated[int, Path(ge=0, le=INT32_MAX)]  # a path integer that is looked up in the database


class InputGuard:
    """Pure ASGI middleware: control characters in the path or query, and oversized bodies, never reach a route."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        lang = language_of(scope.get("query_string", b""), headers.get(b"accept-language", b""))
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if any(control_characters(unquote_to_bytes(part).decode("utf-8", "replace"))
               for part in (raw_path, scope.get("query_string", b""))):  # fmt: skip
            await _refuse(send, 422, "control_characters", "Đường dẫn hoặc tham số có ký tự điều khiển (như NUL).",
                          "The path or a parameter holds a control character (such as NUL).", lang)  # fmt: skip
            return
        if (scope["method"], scope["path"]) in STREAMED:
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, 413, "body_too_large", *_too_large(self.max_body_bytes), lang, close=True)
            return
        # Read whole (it is small by definition), counting as it arrives, then hand it to the route.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                await _refuse(send, 413, "body_too_large", *_too_large(self.max_body_bytes), lang, close=True)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, given = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        await self.app(scope, replay, send)


def _too_large(limit: int) -> tuple[str, str]:
    kb = limit // 1024
    return f"Nội dung gửi quá lớn (tối đa {kb} KB).", f"The request body is too large (at most {kb} KB)."


async def _refuse(send: Send, status: int, code: str, vi: str, en: str, lang: str, *, close: bool = False) -> None:
    body = json.dumps(problem_body(status, code, vi, en, lang), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body was never read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
