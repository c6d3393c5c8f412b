"""Which language a request asks for: Vietnamese first, English where asked."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import Request


def request_language(request: Request) -> str:
    """``?lang=`` first, then Accept-Language; Vietnamese by default."""
    return choose_language(request.query_params.get("lang"), request.headers.get("accept-language", ""))


def language_of(query_string: bytes, accept_language: bytes) -> str:
    """``request_language`` from an ASGI scope's raw parts, for middleware that answers before any route."""
    lang = parse_qs(query_string.decode("latin-1")).get("lang", [None])[0]
    return choose_language(lang, accept_language.decode("latin-1"))


def choose_language(lang: str | None, accept_language: str) -> str:
    if lang in ("vi", "en"):
        return lang
    for item in accept_language.split(","):
        code = item.split(";")[0].strip().lower()[:2]
        if code in ("vi", "en"):
            return code
    return "vi"
