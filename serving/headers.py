"""Security headers on every response, in one place (pure ASGI, like ``RequestContext``).

The pages load only their own scripts and styles (no inline code, no CDN), so a strict
Content-Security-Policy costs nothing. API answers carry farmers' locations and
officers' verdicts: they are never cached; static files, the service worker and the
offline model revalidate.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# 'wasm-unsafe-eval' lets the farmer page compile its own onnxruntime-web WebAssembly (offline identification);
# it allows no JavaScript eval.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # fmt: skip
ALWAYS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(self), geolocation=(self), microphone=(), payment=()"),
    # once a browser has reached the service over HTTPS it never falls back to HTTP (ignored over plain HTTP)
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
]


REVALIDATED = ("/static/", "/sw.js", "/v1/offline/")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cache = b"no-cache" if scope["path"].startswith(REVALIDATED) else b"no-store"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # uvicorn is told not to add "Server"
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in ALWAYS if k not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", cache))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
