"""An idempotency key is bound to the request it was first used with: a retry replays, a different request
under the same key is refused (422) and stores nothing, and keys are compared byte for byte."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from pestid.serving.app import create_app
from tests.security.test_inputs import _stored
from tests.serving.conftest import jpeg, make_settings


@pytest.fixture
def service(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data")), raise_server_exceptions=False) as client:
        yield client


def _send(client: TestClient, photo: bytes, key: str, **data: str):
    return client.post("/v1/identify", files=[("photos", ("a.jpg", photo, "image/jpeg"))], data=data,
                       headers={"Idempotency-Key": key})  # fmt: skip


def test_the_same_request_replays_and_a_different_one_is_refused(service):
    first = _send(service, jpeg(1), "k-1", district="Phú Tân")
    assert first.status_code == 201
    assert _send(service, jpeg(1), "k-1", district="Phú Tân").status_code == 200
    other_photo = _send(service, jpeg(2), "k-1", district="Phú Tân")
    other_place = _send(service, jpeg(1), "k-1", district="Châu Đốc")
    for refused in (other_photo, other_place):
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "idempotency_key_reused" and refused.json()["detail_en"]
    assert _stored(service) == (1, 1)
    assert _send(service, jpeg(2), "k-2", district="Phú Tân").status_code == 201  # a new key is a new submission


def test_a_race_of_different_requests_under_one_key_stores_exactly_one(service):
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda seed: _send(service, jpeg(seed % 2), "race"), range(16)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 422}, statuses
    winner = next(a for a in answers if a.status_code == 201).json()["submission_id"]
    assert all(a.json()["submission_id"] == winner for a in answers if a.status_code == 200)
    assert _stored(service) == (1, 1)


def test_keys_are_compared_byte_for_byte(service):
    """Before, every non-UTF-8 key decoded to U+FFFD and all of them collided into one submission."""
    for raw in (b"\xff\xfe", b"\xfe\xff"):
        body = (b"--b\r\nContent-Disposition: form-data; name=\"idempotency_key\"\r\n\r\n" + raw +
                b"\r\n--b\r\nContent-Disposition: form-data; name=\"photos\"; filename=\"a.jpg\"\r\n"
                b"Content-Type: image/jpeg\r\n\r\n" + jpeg(3) + b"\r\n--b--\r\n")  # fmt: skip
        refused = service.post(
            "/v1/identify", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_encoding"
    non_ascii = service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(3), "image/jpeg"))],
                             headers={"Idempotency-Key": "khóa".encode()})  # fmt: skip
    assert non_ascii.status_code == 422 and non_ascii.json()["field"] == "idempotency_key"
    assert _stored(service) == (0, 0)
