"""Whatever a client puts in the body, the parser's failures are a 400 problem+json, never a 500; a body
without a declared length (chunked) meets the same ceiling; nothing is stored for a refusal."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pestid.serving.app import create_app
from tests.security.test_inputs import _stored
from tests.serving.conftest import jpeg, make_settings

PHOTO = jpeg(1)


def _part(boundary: bytes, headers: bytes, body: bytes, newline: bytes = b"\r\n") -> bytes:
    return b"--" + boundary + newline + headers + newline + newline + body + newline


def _body(boundary: bytes, *parts: bytes, newline: bytes = b"\r\n") -> bytes:
    return b"".join(parts) + b"--" + boundary + b"--" + newline


PHOTO_HEADERS = b'Content-Disposition: form-data; name="photos"; filename="a.jpg"\r\nContent-Type: image/jpeg'
B = b"pestid-boundary"
CASES = {
    "garbage body": (b"XX", b"garbage \x00\xff" * 50),
    "body under another boundary": (b"XX", _body(B, _part(B, PHOTO_HEADERS, PHOTO))),
    "LF-only line endings": (B, _body(B, _part(B, PHOTO_HEADERS.replace(b"\r\n", b"\n"), PHOTO, b"\n"), newline=b"\n")),
    "a header without a colon": (B, _body(B, _part(B, b"Content-Disposition form-data name photos", PHOTO))),
    "a boundary of 300 characters": (b"b" * 300, _body(b"b" * 300, _part(b"b" * 300, PHOTO_HEADERS, PHOTO))),
    "a part header of 5,000 bytes": (B, _body(B, _part(B, PHOTO_HEADERS + b"\r\nX-Pad: " + b"p" * 5000, PHOTO))),
    "a filename of 5,000 characters": (
        B, _body(B, _part(B, PHOTO_HEADERS.replace(b'filename="a.jpg"', b'filename="' + b"f" * 5000 + b'"'), PHOTO))),
    "no closing boundary": (B, _part(B, PHOTO_HEADERS, PHOTO)[:-40]),
    "cut inside the closing boundary": (B, _body(B, _part(B, PHOTO_HEADERS, PHOTO))[:-5]),
    "an empty body": (B, b""),
}  # fmt: skip


@pytest.fixture
def service(tiny_model, tmp_path):
    settings = make_settings(tiny_model, tmp_path / "data", max_upload_bytes=256 * 1024)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_multipart_is_a_4xx_problem_and_stores_nothing(service, case):
    boundary, body = CASES[case]
    response = service.post("/v1/identify", content=body,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"})  # fmt: skip
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail_vi"] and response.json()["detail_en"]
    assert _stored(service) == (0, 0)
    # the connection still serves the next request
    assert service.post("/v1/identify", files=[("photos", ("a.jpg", PHOTO, "image/jpeg"))]).status_code == 201


def test_a_chunked_body_of_many_small_fields_is_stopped_early(service):
    """No Content-Length (a generator body goes chunked), and each field is small: before, 2 million such fields
    were parsed into memory. Now the parts are counted as they arrive (the byte ceiling stays as a backstop)."""
    field = _part(B, b'Content-Disposition: form-data; name="note"', b"n" * 1000)

    def chunks():
        for _ in range(20_000):  # 20 MB of small fields, far past the ceiling of 5 × (256 KB + 4 KB) + 64 KB
            yield field

    response = service.post("/v1/identify", content=chunks(),
                            headers={"Content-Type": f"multipart/form-data; boundary={B.decode()}"})  # fmt: skip
    # which limit bites first depends on how the client cuts its chunks; both stop the read
    assert (response.status_code, response.json()["code"]) in {(400, "too_many_parts"), (413, "photo_too_large")}
    assert _stored(service) == (0, 0)


def test_parts_are_counted_under_the_byte_ceiling(service):
    """100 small fields (about 10 KB, far under every byte limit) are still no observation."""
    fields = b"".join(_part(B, f'Content-Disposition: form-data; name="f{k}"'.encode(), b"x") for k in range(100))
    response = service.post("/v1/identify", content=_body(B, _part(B, PHOTO_HEADERS, PHOTO), fields),
                            headers={"Content-Type": f"multipart/form-data; boundary={B.decode()}"})  # fmt: skip
    assert response.status_code == 400 and response.json()["code"] == "too_many_parts"
    assert _stored(service) == (0, 0)
