"""Bad input costs nothing and is refused with a 4xx that names the problem; nothing is stored for it."""

from __future__ import annotations

import csv
import io
import sqlite3

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pestid.errors import ImageDecodeError
from pestid.imaging import MAX_ASPECT, decode_image
from pestid.serving.app import create_app
from pestid.serving.outbreaks import to_csv
from tests.serving.conftest import jpeg, make_settings


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _stored(client: TestClient) -> tuple[int, int]:
    """(submission rows, photo files) the service holds."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    with sqlite3.connect(settings.data_dir / "pestid.db") as db:
        rows = db.execute("select count(*) from submissions").fetchone()[0]
    files = [p for p in settings.photo_dir.rglob("*") if p.is_file()]
    return rows, len(files)


@pytest.fixture
def service(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data")), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("size", [(1, 8000), (8000, 1), (30000, 1), (2, 2 * MAX_ASPECT + 2)])
def test_a_strip_image_is_refused_from_its_header(size):
    data = _png(*size)
    assert len(data) < 2000  # a few hundred bytes that would become a 256 × 2,048,000 image after the resize
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(data)
    assert refused.value.code == "extreme_aspect"


def test_a_panorama_within_the_ratio_is_decoded():
    assert decode_image(_png(4000, 1000)).size == (4000, 1000)
    assert decode_image(_png(MAX_ASPECT * 10, 10)).size == (MAX_ASPECT * 10, 10)


def test_the_api_answers_a_strip_with_422_and_stores_nothing(service):
    response = service.post("/v1/identify", files=[("photos", ("strip.png", _png(1, 30000), "image/png"))])
    assert response.status_code == 422 and response.json()["code"] == "extreme_aspect"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "quá dài" in response.json()["detail_vi"] and "too long" in response.json()["detail_en"]
    assert _stored(service) == (0, 0)


@pytest.mark.parametrize("field", ["commune", "district"])
def test_a_field_longer_than_its_column_is_422_on_any_database(service, field):
    """The limit comes from the schema (varchar(128)), so PostgreSQL never sees a value it would refuse."""
    too_long = {field: "x" * 129}
    response = service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))], data=too_long)
    assert response.status_code == 422 and response.json()["code"] == "invalid_metadata"
    assert field in response.json()["detail_en"] and "128" in response.json()["detail_en"]
    assert _stored(service) == (0, 0)
    fits = service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))], data={field: "x" * 128})
    assert fits.status_code == 201


def test_outbreak_csv_cells_that_a_spreadsheet_would_run_are_escaped():
    rows = [{"week": "2026-W47", "district": '=HYPERLINK("http://evil","x")', "species": "brown_planthopper",
             "reports": 3}, {"week": "2026-W47", "district": "@SUM(A1)", "species": "-1+2", "reports": 1},
            {"week": "2026-W47", "district": "Phú Tân", "species": "rice_blast", "reports": 2}]  # fmt: skip
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert parsed[0]["district"] == '\'=HYPERLINK("http://evil","x")'
    assert parsed[1]["district"] == "'@SUM(A1)" and parsed[1]["species"] == "'-1+2"
    assert parsed[2]["district"] == "Phú Tân" and parsed[2]["reports"] == "2"


def test_work_is_bounded_by_the_decoded_size_not_the_pixel_count():
    """An RGBA image costs 7 bytes a pixel to decode and flatten, an RGB one 3: the budget is an RGB image of
    ``max_pixels``, so the same canvas passes as RGB and is refused as RGBA (before, 8000×8000 RGBA took 0.8 GB)."""

    def png(mode: str) -> bytes:
        buffer = io.BytesIO()
        Image.new(mode, (100, 100)).save(buffer, format="PNG")
        return buffer.getvalue()

    assert decode_image(png("RGB"), max_pixels=20_000).size == (100, 100)
    assert decode_image(png("L"), max_pixels=20_000).mode == "RGB"
    with pytest.raises(ImageDecodeError) as refused:
        decode_image(png("RGBA"), max_pixels=20_000)
    assert refused.value.code == "too_many_pixels" and "RGBA" in refused.value.message_en
    assert decode_image(png("RGBA"), max_pixels=30_000).mode == "RGB"
