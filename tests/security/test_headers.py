"""What every answer says about itself: security headers everywhere, API answers never cached, stored photos
served as the bytes they are (not as the uploader claimed), and /docs, /openapi.json and /metrics off the
public port unless asked for. The operations port and the connection deadlines are tried on `pestid serve`."""

from __future__ import annotations

import socket
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from tests.conftest import REPO, corrupt_png, free_port, pestid_serve, photo
from tests.serving.conftest import jpeg, make_settings


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    photo(seed=5).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def service(tiny_model, tmp_path):
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.sessions() as session, session.begin():
            add_user(session, "officer", "correct horse battery", "senior")
        token = client.post("/v1/auth/login", json={"username": "officer", "password": "correct horse battery"})
        client.headers["Authorization"] = "Bearer " + token.json()["token"]
        yield client


def test_every_answer_carries_the_security_headers(service):
    answers = {
        "page": service.get("/"),
        "static": service.get("/static/app.js"),
        "created": service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(1), "image/jpeg"))]),
        "problem": service.post("/v1/identify", files=[("photos", ("a.png", corrupt_png(), "image/png"))]),
        "missing": service.get("/no/such/page"),
    }
    assert [a.status_code for a in answers.values()] == [200, 200, 201, 422, 404]
    for name, answer in answers.items():
        csp = answer.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, name
        assert answer.headers["x-content-type-options"] == "nosniff", name
        assert answer.headers["x-frame-options"] == "DENY", name
        assert answer.headers["referrer-policy"] == "no-referrer", name
        assert answer.headers["strict-transport-security"].startswith("max-age=31536000"), name
        assert "server" not in answer.headers, name
    assert answers["created"].headers["cache-control"] == "no-store"
    assert answers["static"].headers["cache-control"] == "no-cache"


def test_a_500_carries_the_security_headers_too(service):
    """Starlette makes a 500 outside every middleware; it used to leave without any security header."""

    def boom() -> None:
        raise RuntimeError("internal detail")

    service.app.add_api_route("/boom", boom)
    answer = service.get("/boom")
    assert answer.status_code == 500 and "internal detail" not in answer.text
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(("offered", "kept"), [("trace-0123456789abcdef", True), ("abc", False),
                                               ("x" * 65, False), ("<script>alert(1)</script>", False),
                                               ("id with spaces 123", False)])  # fmt: skip
def test_a_client_request_id_is_kept_only_when_it_is_plainly_an_id(service, offered, kept):
    answer = service.get("/healthz", headers={"X-Request-Id": offered})
    assert (answer.headers["x-request-id"] == offered) is kept
    assert len(answer.headers["x-request-id"]) <= 64


def test_a_malformed_upload_does_not_name_the_parsers_internals(service):
    answer = service.post(
        "/v1/identify", content=b"--b\r\nnonsense", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 400 and answer.json()["code"] == "malformed_multipart"
    assert "Error" not in answer.json()["detail_en"] and "Exception" not in answer.json()["detail_en"]


def test_a_photo_is_served_as_what_it_is_not_as_the_uploader_said(service):
    sub = service.post("/v1/identify", files=[("photos", ("x.jpg", _png(), "image/jpeg"))]).json()["submission_id"]
    served = service.get(f"/v1/submissions/{sub}/photos/0")
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.headers["content-disposition"].startswith("inline")
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.content == _png()


def test_docs_openapi_and_metrics_are_off_the_public_port_by_default(service, tiny_model, tmp_path):
    for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
        assert service.get(path).status_code == 404, path
    opened = create_app(make_settings(tiny_model, tmp_path / "open", public_operations=True))
    with TestClient(opened) as client:
        assert all(client.get(p).status_code == 200 for p in ("/docs", "/openapi.json", "/metrics"))


def _raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes, float]:
    start, received = time.monotonic(), b""
    sock.settimeout(seconds)
    try:
        while chunk := sock.recv(4096):
            received += chunk
        return True, received, time.monotonic() - start
    except TimeoutError:
        return False, received, time.monotonic() - start
    finally:
        sock.close()


@pytest.mark.server
def test_pestid_serve_deadlines_and_the_operations_port(tiny_model, tmp_path):
    """A trickled request head gets 408 and is closed; a stalled body is closed and stores nothing; neither
    slows a normal request; /metrics and /openapi.json answer on the operations port only; no Server header."""
    ops = free_port()
    command = [sys.executable, "-m", "pestid.cli", "serve", "--model", str(tiny_model)]
    limits = {"PESTID_OPS_PORT": str(ops), "PESTID_HEADER_TIMEOUT_S": "1.5", "PESTID_BODY_IDLE_TIMEOUT_S": "1.5"}
    with pestid_serve(command, tmp_path / "data", cwd=REPO, env=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        slow_head = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its head
        idle = _raw(port, b"")  # connects and says nothing
        stalled = _raw(port, b"POST /v1/identify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                             b"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n")  # fmt: skip
        healthy = httpx.get(f"{url}/healthz")
        assert healthy.status_code == 200 and "server" not in healthy.headers
        for sock in (slow_head, idle):
            closed, answer, after = _closed_within(sock, 6)
            assert closed and answer.startswith(b"HTTP/1.1 408") and after < 4, (answer, after)
        closed, _, after = _closed_within(stalled, 6)
        assert closed and after < 4
        for path in ("/metrics", "/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 404, path
            assert httpx.get(f"http://127.0.0.1:{ops}{path}").status_code == 200, path
        assert "pestid_http_requests_total" in httpx.get(f"http://127.0.0.1:{ops}/metrics").text
        assert "/v1/identify" in httpx.get(f"http://127.0.0.1:{ops}/openapi.json").json()["paths"]
    data = tmp_path / "data"
    assert not [p for p in (data / "photos").rglob("*") if p.is_file()]


@pytest.mark.server
def test_a_busy_operations_port_does_not_stop_serving(tiny_model, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        command = [sys.executable, "-m", "pestid.cli", "serve", "--model", str(tiny_model)]
        env = {"PESTID_OPS_PORT": str(busy.getsockname()[1])}
        with pestid_serve(command, tmp_path / "data", cwd=REPO, env=env) as url:
            assert (
                httpx.post(f"{url}/v1/identify", files=[("photos", ("a.jpg", jpeg(3), "image/jpeg"))]).status_code
                == 201
            )
