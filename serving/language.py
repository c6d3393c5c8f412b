"""Which language a request asks for: Vietnamese first, English where asked."""

from __future__ import annotations

from fastapi import Request


def request_language(request: Request) -> str:
    """``?lang=`` first, then Accept-Language; Vietnamese by default."""
    lang = request.query_params.get("lang")
    if lang in ("vi", "en"):
        return lang
    for item in request.headers.get("accept-language", "").split(","):
        code = item.split(";")[0].strip().lower()[:2]
        if code in ("vi", "en"):
            return code
    return "vi"
