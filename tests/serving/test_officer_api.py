"""What the officer page reads and may do: the queue by species name in either language (any diacritics or
Unicode form), its total and pages, catalogue names and the top 3 on each item, and no confirming of a guess."""

from __future__ import annotations

import unicodedata

import pytest
from fastapi.testclient import TestClient

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from tests.serving.conftest import jpeg, make_settings
from tests.serving.test_out_of_scope import constant_model

PASSWORD = "correct horse battery"


@pytest.fixture
def officer(tmp_path):
    """A service whose model always says brown planthopper at about 60 %: an uncertain answer (threshold 0.9)."""
    model = constant_model(tmp_path / "model.onnx", [3.0, 1.0, 0.5, 2.5], threshold=0.9)
    app = create_app(make_settings(model, tmp_path / "data"))
    with TestClient(app) as client:
        with app.state.sessions() as session, session.begin():
            add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
        token = client.post("/v1/auth/login", json={"username": "lan", "password": PASSWORD}).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        for k in range(7):
            assert client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(k), "image/jpeg"))],
                               data={"district": "Phú Tân"}).status_code == 201  # fmt: skip
        yield client


@pytest.mark.parametrize("name", ["brown_planthopper", "Rầy nâu", "ray nau", "RẦY NÂU",
                                  unicodedata.normalize("NFD", "Rầy nâu"), "Brown planthopper"])  # fmt: skip
def test_the_species_filter_takes_a_name_in_either_language(officer, name):
    page = officer.get("/v1/review/queue", params={"species": name})
    assert page.status_code == 200 and page.headers["x-total-count"] == "7" and len(page.json()) == 7
    other = officer.get("/v1/review/queue", params={"species": "Đạo ôn"})  # rice blast: none predicted
    assert other.headers["x-total-count"] == "0" and other.json() == []


def test_the_queue_has_a_total_and_pages(officer):
    first = officer.get("/v1/review/queue", params={"limit": 3})
    second = officer.get("/v1/review/queue", params={"limit": 3, "offset": 3})
    last = officer.get("/v1/review/queue", params={"limit": 3, "offset": 6})
    assert [first.headers["x-total-count"], second.headers["x-total-count"]] == ["7", "7"]
    ids = [item["id"] for page in (first, second, last) for item in page.json()]
    assert len(ids) == 7 == len(set(ids))


def test_each_item_carries_catalogue_names_and_the_top_three(officer):
    item = officer.get("/v1/review/queue").json()[0]
    assert item["predicted"] == {"id": "brown_planthopper", "name_vi": "Rầy nâu", "name_en": "brown planthopper",
                                 "scientific": "Nilaparvata lugens"}  # fmt: skip
    top = item["top"]
    assert [t["id"] for t in top] == ["brown_planthopper", "rice_blast", "lady_beetle"]
    assert all(t["name_vi"] and t["scientific"] for t in top)
    assert top[0]["probability"] > top[1]["probability"] > top[2]["probability"]


def test_a_guess_cannot_be_confirmed_only_relabelled(officer):
    sub = officer.get("/v1/review/queue").json()[0]
    assert sub["decision"] == "uncertain"
    confirmed = officer.post(f"/v1/review/{sub['id']}", json={"action": "confirm"})
    assert confirmed.status_code == 422 and confirmed.json()["code"] == "species_required"
    assert officer.get("/v1/review/queue").headers["x-total-count"] == "7"  # still waiting
    chosen = officer.post(f"/v1/review/{sub['id']}", json={"action": "relabel", "label": "brown_planthopper"})
    assert chosen.status_code == 200 and chosen.json()["status"] == "approved"


def test_signing_out_ends_the_token_at_once(officer):
    assert officer.get("/v1/auth/me").status_code == 200
    assert officer.post("/v1/auth/logout").status_code == 204
    assert officer.get("/v1/auth/me").status_code == 401


def test_previews_are_jpeg_for_every_format_heic_included_and_made_once(officer):
    import io

    from PIL import Image

    from tests.conftest import heic_bytes, photo

    big = photo(seed=3, size=2000)
    sent = officer.post("/v1/identify", files=[("photos", ("p.heic", heic_bytes(big), "image/heic"))],
                        data={"district": "Phú Tân"})  # fmt: skip
    assert sent.status_code == 201
    item = next(i for i in officer.get("/v1/review/queue", params={"limit": 200}).json()
                if i["id"] == sent.json()["submission_id"])  # fmt: skip
    for size, longest in (("thumbnail", 320), ("large", 1600)):
        first = officer.get(item["previews"][0][size])
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(first.content))
        assert image.format == "JPEG" and max(image.size) == longest
        settings = officer.app.state.settings
        cached = list((settings.data_dir / "previews").rglob(f"*.{longest}.jpg"))
        assert len(cached) == 1
        made = cached[0].stat().st_mtime_ns
        assert officer.get(item["previews"][0][size]).content == first.content
        assert cached[0].stat().st_mtime_ns == made  # served from the cache, not made again
    assert officer.get(f"/v1/submissions/{item['id']}/photos/0/huge").status_code == 422
