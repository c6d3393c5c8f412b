"""Store what is a photo: bytes after an image's end are not kept, and what remains is bounded by its pixels.

An 11 KB JPEG padded with zeros to 15 MB used to be stored as 15 MB: one anonymous client filled a 2 GB disk in
about 10 s."""

from __future__ import annotations

import io
import os

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from pestid.hashing import sha256_bytes
from pestid.serving.app import create_app
from pestid.serving.db import Photo
from tests.conftest import heic_bytes, photo
from tests.security.test_inputs import _stored
from tests.serving.conftest import make_settings

PAD = 14 * 1024 * 1024


@pytest.fixture
def service(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data")), raise_server_exceptions=False) as client:
        yield client


def _encoded(fmt: str, **save: object) -> bytes:
    if fmt == "HEIF":
        return heic_bytes(photo("brown_planthopper", 5, size=160))
    buffer = io.BytesIO()
    photo("brown_planthopper", 5, size=160).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _stored_bytes(client: TestClient) -> list[bytes]:
    folder = client.app.state.settings.photo_dir  # type: ignore[attr-defined]
    return [p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()]


@pytest.mark.parametrize(
    ("fmt", "save", "padding"),
    [
        ("JPEG", {}, b"\0" * PAD),
        ("JPEG", {"progressive": True}, os.urandom(PAD)),  # random bytes, 0xFF and fake markers included
        ("PNG", {}, b"\0" * PAD),
        ("WEBP", {}, os.urandom(PAD)),
        ("HEIF", {}, b"\0" * PAD),
    ],
)
def test_padding_after_the_image_is_not_stored(service, fmt, save, padding):
    image = _encoded(fmt, **save)
    sent = service.post("/v1/identify", files=[("photos", ("p.img", image + padding, "image/jpeg"))])
    assert sent.status_code == 201, sent.text
    assert _stored_bytes(service) == [image]  # the photo, byte for byte, and nothing after it
    with service.app.state.sessions() as session:  # type: ignore[attr-defined]
        assert session.scalars(select(Photo.sha256)).one() == sha256_bytes(image)  # a duplicate is found by it


def test_a_photo_is_stored_whole_when_nothing_follows_it(service):
    image = _encoded("JPEG", restart_marker_blocks=2)  # restart markers inside the scan are not an end
    assert service.post("/v1/identify", files=[("photos", ("p.jpg", image, "image/jpeg"))]).status_code == 201
    assert _stored_bytes(service) == [image]


def test_bytes_inside_the_image_are_bounded_by_its_pixels(service):
    """A 160 × 160 JPEG carrying 3 MB in a comment segment: not padding, but no photo needs it."""
    small = photo("brown_planthopper", 6, size=160)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", comment=b"x" * 60_000)
    with_comment = buffer.getvalue()
    stuffed = with_comment[:2] + b"".join(b"\xff\xfe\xff\xff" + b"y" * 65533 for _ in range(48)) + with_comment[2:]
    assert Image.open(io.BytesIO(stuffed)).size == (160, 160)
    refused = service.post("/v1/identify", files=[("photos", ("p.jpg", stuffed, "image/jpeg"))])
    assert refused.status_code == 413 and refused.json()["code"] == "photo_larger_than_its_pixels"
    assert _stored(service) == (0, 0)


def test_a_box_longer_than_the_file_is_kept_whole_not_cut_to_its_header(service):
    """A HEIC whose mdat box claims more bytes than the file has was cut to its 370-byte header: stored
    undecodable, its preview a 500."""
    image = _encoded("HEIF")
    pos = 0
    while image[pos + 4 : pos + 8] != b"mdat":  # the top-level boxes up to mdat
        pos += int.from_bytes(image[pos : pos + 4], "big")
    lying = image[:pos] + (len(image) - pos + 1000).to_bytes(4, "big") + image[pos + 4 :]
    sent = service.post("/v1/identify", files=[("photos", ("p.heic", lying, "image/heic"))])
    if sent.status_code == 201:  # the decoder took it: then it is stored whole, and previewed or refused, not 500
        assert _stored_bytes(service) == [lying]
    else:
        assert sent.status_code == 422
