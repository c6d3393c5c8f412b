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
from pestid.serving.accounts import add_user
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
    if field == "commune":  # a district must be a listed one whatever its length (test_districts.py)
        fits = service.post(
            "/v1/identify", files=[("photos", ("a.jpg", jpeg(), "image/jpeg"))], data={field: "x" * 128}
        )
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


def _officer(client: TestClient) -> dict[str, str]:
    with client.app.state.sessions() as session, session.begin():  # type: ignore[attr-defined]
        add_user(session, "lan", "ruộng lúa xanh mướt 2026", "officer", "Phú Tân")
    token = client.post("/v1/auth/login", json={"username": "lan", "password": "ruộng lúa xanh mướt 2026"}).json()[
        "token"
    ]
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("field", ["district", "commune", "note", "crop_stage", "date"])
def test_a_nul_in_a_form_field_is_422_and_nothing_is_stored(service, field):
    sent = service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(1), "image/jpeg"))],
                        data={field: "Phú Tân\x00"})  # fmt: skip
    assert sent.status_code == 422 and sent.json()["field"] == field
    assert _stored(service) == (0, 0)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/auth/login", {"username": "lan\x00", "password": "x"}),
        ("POST", "/v1/review/abc", {"action": "relabel", "label": "rice_blast\x00"}),
        ("GET", "/v1/submissions/abc%00", None),
        ("GET", "/v1/review/queue?district=Ph%C3%BA%20T%C3%A2n%00", None),
        ("GET", "/v1/species?q=%01", None),
    ],
)
def test_control_characters_in_json_path_or_query_are_422(service, method, path, body):
    headers = _officer(service)
    refused = service.request(method, path, json=body, headers={**headers, "Receipt": "r"})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/v1/review/undo/2147483648", "/v1/review/undo/99999999999999999999999",
                                  "/v1/submissions/abc/photos/9223372036854775808",
                                  "/v1/submissions/abc/photos/2147483648/large", "/v1/review/queue?offset=2147483648"])  # fmt: skip
def test_integers_past_the_columns_range_are_refused_not_overflowed(service, path):
    headers = _officer(service)
    method = "POST" if "undo" in path else "GET"
    answered = service.request(method, path, headers=headers)
    assert answered.status_code in (404, 422), answered.text


def test_a_non_ascii_receipt_is_simply_a_wrong_receipt(service):
    sent = service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(2), "image/jpeg"))]).json()
    wrong = service.get(f"/v1/submissions/{sent['submission_id']}", headers={"Receipt": "bi\u00ean nh\u1eadn".encode()})
    assert wrong.status_code == 404 and wrong.json()["code"] == "submission_not_found"


def test_a_json_body_past_64_kb_is_413_declared_or_streamed(service):
    big = b'{"username": "' + b"a" * 300_000 + b'", "password": "x"}'
    declared = service.post("/v1/auth/login", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for k in range(0, len(big), 8192):
            yield big[k : k + 8192]

    streamed = service.post("/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["code"] == "body_too_large"
    small = service.post("/v1/auth/login", json={"username": "nobody", "password": "x"})
    assert small.status_code == 401  # a normal body still reaches the route


@pytest.mark.parametrize("day", ["0001-01-03", "9999-12-31", "2020-01-01"])
def test_an_observation_date_outside_the_last_year_is_422(service, day):
    """An approved report dated year 1 broke every outbreak view of its district (OverflowError, 500)."""
    sent = service.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(3), "image/jpeg"))], data={"date": day})
    assert sent.status_code == 422 and sent.json()["field"] == "date"
    assert _stored(service) == (0, 0)


def test_outbreaks_of_the_earliest_weeks_still_count():
    from datetime import date

    from sqlalchemy import create_engine

    from pestid.serving.db import Base, Submission, session_factory
    from pestid.serving.outbreaks import outbreak_counts

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        session.add(Submission(decision="identified", predicted_label="rice_blast", confidence=0.9, model_version="m",
                               response={}, status="approved", district="Phú Tân", final_label="rice_blast",
                               observed_on=date(1, 1, 3)))  # fmt: skip  # stored before dates were bounded
    with sessions() as session:
        assert [r["reports"] for r in outbreak_counts(session)] == [1]


def test_a_format_without_reduced_decode_has_a_lower_pixel_budget(tiny_model, tmp_path):
    """Five 62 MP HEICs a request starved every farmer's upload: HEIC, PNG, WebP… decode every pixel, so they may
    have at most PESTID_MAX_PIXELS_FULL_DECODE (25 M); a JPEG is decoded at a reduced scale and keeps 64 M."""
    settings = make_settings(tiny_model, tmp_path / "data", max_pixels_full_decode=1_000_000)
    with TestClient(create_app(settings)) as client:
        big_png = client.post("/v1/identify", files=[("photos", ("a.png", _png(1100, 1000), "image/png"))])
        assert big_png.status_code == 413 and big_png.json()["code"] == "too_many_pixels"
        assert "megapixel" in big_png.json()["detail_en"]
        buffer = io.BytesIO()
        Image.new("RGB", (1100, 1000), (90, 140, 70)).save(buffer, format="JPEG")
        assert (
            client.post("/v1/identify", files=[("photos", ("a.jpg", buffer.getvalue(), "image/jpeg"))]).status_code
            == 201
        )
        assert (
            client.post("/v1/identify", files=[("photos", ("b.png", _png(900, 1000), "image/png"))]).status_code == 201
        )
