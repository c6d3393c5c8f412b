import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pestid.imaging import decode_image
from pestid.predictor import Predictor
from tests.conftest import corrupt_png, heic_bytes, photo, png_bomb
from tests.serving.conftest import jpeg


def _rows(client) -> int:
    db = Path(client.app.state.settings.data_dir) / "pestid.db"
    with sqlite3.connect(db) as connection:
        return connection.execute("select count(*) from submissions").fetchone()[0]


def _files(client) -> list[Path]:
    root = client.app.state.settings.photo_dir
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp"]


def _post(client, photos, data=None, headers=None, params=None):
    files = [("photos", (f"p{i}.jpg", body, kind)) for i, (body, kind) in enumerate(photos)]
    if not files:  # still multipart: the metadata as plain form fields
        files, data = [(key, (None, value)) for key, value in (data or {}).items()], None
    return client.post("/v1/identify", files=files, data=data or {}, headers=headers or {}, params=params or {})


def test_identify_answers_with_names_confidence_decision_and_model_version(client):
    response = _post(client, [(jpeg(1), "image/jpeg"), (jpeg(2), "image/jpeg")],
                     data={"latitude": "10.38", "longitude": "105.43", "commune": "Phú Tân", "date": "2026-11-20",
                           "crop_stage": "tillering", "note": "sau mưa"})  # fmt: skip
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["decision"] in {"identified", "uncertain", "not_recognised"}
    assert body["photos"] == 2 and body["status"] == ("pending_review" if body["needs_review"] else "answered")
    assert body["model"]["version"] == client.get("/v1/model").json()["version"]
    answer = body["species"] or body["nearest_group"]
    if answer is not None:  # the answer carries what to do; it is in one language
        assert {"id", "name", "scientific", "category", "advice", "probability"} <= set(answer)
        assert not {"name_vi", "name_en", "advice_vi", "advice_en"} & set(answer)
    for alternative in body["alternatives"]:  # a guess is a name and a probability, nothing to act on
        assert set(alternative) == {"id", "name", "probability"}
    assert not {"message_vi", "message_en"} & set(body)
    assert _rows(client) == 1 and len(_files(client)) == 2


def test_every_photo_is_kept_byte_for_byte(client):
    original = jpeg(5)
    _post(client, [(original, "image/jpeg")])
    assert _files(client)[0].read_bytes() == original


def test_fused_answer_matches_the_mean_of_onnx_probabilities(client, tiny_model):
    a, b = jpeg(11), jpeg(12, "brown_planthopper")
    body = _post(client, [(a, "image/jpeg"), (b, "image/jpeg")]).json()
    predictor = Predictor(tiny_model)
    fused = predictor.probabilities([decode_image(a), decode_image(b)]).mean(axis=0)
    shown = ([body["species"]] if body["species"] else []) + body["alternatives"]
    for item in shown:
        assert item["probability"] == pytest.approx(fused[predictor.labels.index(item["id"])], abs=1e-4)


def test_language_from_accept_language_or_query(client):
    english = _post(client, [(jpeg(3), "image/jpeg")], headers={"Accept-Language": "en-GB,en;q=0.9"}).json()
    assert english["lang"] == "en" and english["message"].isascii()
    forced = _post(client, [(jpeg(4), "image/jpeg")], headers={"Accept-Language": "en"}, params={"lang": "vi"}).json()
    assert forced["lang"] == "vi" and not forced["message"].isascii()
    unknown = _post(client, [(jpeg(5), "image/jpeg")], headers={"Accept-Language": "fr-FR, de;q=0.8"}).json()
    assert unknown["lang"] == "vi"  # a miss falls back to Vietnamese


def test_heic_phone_photo_is_accepted(client):
    response = _post(client, [(heic_bytes(photo(size=64)), "image/heic")])
    assert response.status_code == 201, response.text
    assert _files(client)[0].suffix == ".heic"


def test_idempotent_retry_returns_the_first_answer_and_stores_nothing_twice(client):
    first = _post(client, [(jpeg(6), "image/jpeg")], headers={"Idempotency-Key": "abc-123"})
    again = _post(client, [(jpeg(6), "image/jpeg")], headers={"Idempotency-Key": "abc-123"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _rows(client) == 1 and len(_files(client)) == 1
    by_field = _post(client, [(jpeg(6), "image/jpeg")], data={"idempotency_key": "abc-123"})
    assert by_field.json()["submission_id"] == first.json()["submission_id"]


BAD_INPUTS = {
    "non_image": ([(b"just some text", "image/jpeg")], {}, 422, "not_an_image"),
    "corrupt": ([(corrupt_png(), "image/png")], {}, 422, "corrupt"),
    "truncated": ([(jpeg(7)[:900], "image/jpeg")], {}, 422, "truncated"),
    "empty": ([(b"", "image/jpeg")], {}, 422, "empty"),
    "bomb": ([(png_bomb(), "image/png")], {}, 413, "too_many_pixels"),
    "too_many": ([(jpeg(k), "image/jpeg") for k in range(6)], {}, 400, "too_many_photos"),
    "wrong_type": ([(jpeg(8), "text/plain")], {}, 415, "wrong_content_type"),
    "latitude": ([(jpeg(9), "image/jpeg")], {"latitude": "123", "longitude": "105"}, 422, "invalid_metadata"),
    "half_location": ([(jpeg(9), "image/jpeg")], {"latitude": "10"}, 422, "invalid_metadata"),
    "date": ([(jpeg(9), "image/jpeg")], {"date": "22/11/2026"}, 422, "invalid_metadata"),
    "stage": ([(jpeg(9), "image/jpeg")], {"crop_stage": "dancing"}, 422, "invalid_metadata"),
    "unknown_field": ([(jpeg(9), "image/jpeg")], {"colour": "red"}, 422, "invalid_metadata"),
    "no_photos": ([], {"commune": "x"}, 400, "no_photos"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_bilingual_problem_and_stores_nothing(client, case):
    photos, data, status, code = BAD_INPUTS[case]
    response = _post(client, photos, data=data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["detail_vi"] and body["detail_en"] and body["detail"] == body["detail_vi"]
    assert _rows(client) == 0 and _files(client) == []


def test_not_multipart_is_refused(client):
    response = client.post("/v1/identify", json={"photos": []})
    assert response.status_code == 415 and response.json()["code"] == "wrong_content_type"


def test_size_limit_is_enforced_while_reading_not_after(tiny_model, tmp_path):
    """Drive the ASGI app with a body that arrives in 64 KiB pieces and count how many it pulls."""
    import asyncio

    from fastapi.testclient import TestClient

    from pestid.serving.app import create_app
    from tests.serving.conftest import make_settings

    head = b'--XyZ\r\nContent-Disposition: form-data; name="photos"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    pieces = [head] + [b"\xff" * 65536] * 200  # 12.5 MiB if it were all read
    pulled, sent = [], []

    async def receive():
        if len(pulled) < len(pieces):
            pulled.append(1)
            return {"type": "http.request", "body": pieces[len(pulled) - 1], "more_body": True}
        return {"type": "http.request", "body": b"\r\n--XyZ--\r\n", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/identify", "raw_path": b"/v1/identify",
             "query_string": b"", "headers": [(b"content-type", b"multipart/form-data; boundary=XyZ")],
             "scheme": "http", "server": ("test", 80), "client": ("test", 1), "http_version": "1.1",
             "root_path": "", "asgi": {"version": "3.0"}}  # fmt: skip
    app = create_app(make_settings(tiny_model, tmp_path / "data", max_upload_bytes=256 * 1024))
    with TestClient(app):  # runs the lifespan: model, database, photo store
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert len(pulled) <= 6  # stopped at the 256 KiB limit, not after 12.5 MiB


def test_declared_oversized_body_is_refused_before_reading(client):
    response = client.post("/v1/identify", content=b"x",
                           headers={"Content-Type": "multipart/form-data; boundary=a", "Content-Length": str(10**9)})  # fmt: skip
    assert response.status_code == 413


def test_model_endpoint_reports_version_labels_and_contract(client, tiny_model):
    info = client.get("/v1/model").json()
    assert info["labels"] == Predictor(tiny_model).labels
    assert info["version"].startswith("pestid@sha256:") and 0 <= info["threshold"] <= 1


def test_species_search_by_any_language(client):
    found = client.get("/v1/species", params={"q": "ốc bươu"}).json()
    assert [s["id"] for s in found] == ["golden_apple_snail"]
    assert client.get("/v1/species/nope").status_code == 404


def test_species_search_is_ranked_and_marks_kinds_and_natural_enemies(client):
    """What an officer's Enter takes: the exact name first, species before their group, natural enemies marked."""
    spiders = client.get("/v1/species", params={"q": "nhen"}).json()
    assert spiders[0]["id"] == "spiders" and spiders[0]["natural_enemy"] is True
    assert client.get("/v1/species", params={"q": "chuon chuon"}).json()[0]["id"] == "dragonfly"
    hoppers = client.get("/v1/species", params={"q": "ray"}).json()
    assert hoppers[-1] == {**hoppers[-1], "id": "planthoppers", "kind": "group"}
    assert {h["kind"] for h in hoppers[:-1]} == {"organism"}


def test_an_identified_answer_reads_as_a_sentence_in_english():
    from pestid.decision import MESSAGES, in_sentence

    for name in ("lady beetle", "hunting spiders", "brown planthopper"):  # no article to get wrong
        assert MESSAGES["identified"]["en"].format(name=in_sentence(name)) == f"Identified as {name}."


def test_the_favicon_is_served(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg") and client.get("/static/favicon.svg").status_code == 200


def test_probabilities_sum_to_one_and_are_calibrated_by_temperature(tiny_model):
    predictor = Predictor(tiny_model)
    probs = predictor.probabilities([decode_image(jpeg(1))])
    assert np.isclose(probs.sum(), 1.0)


def test_the_offline_manifest_offers_only_a_copy_of_the_served_model(tiny_model, tmp_path):
    import hashlib
    import shutil

    from fastapi.testclient import TestClient

    from pestid.decision import MESSAGES
    from pestid.serving.app import create_app
    from tests.onnx_models import linear_model
    from tests.serving.conftest import make_settings

    served = tmp_path / "model.onnx"
    shutil.copy(tiny_model, served)
    with TestClient(create_app(make_settings(served, tmp_path / "none"))) as client:  # no copy beside it
        assert client.get("/v1/offline/manifest").json()["code"] == "offline_unavailable"
    other = linear_model(tmp_path / "other.onnx", ["brown_planthopper", "rice_blast"])
    with TestClient(create_app(make_settings(served, tmp_path / "other", offline_model=str(other)))) as client:
        assert client.get("/v1/offline/manifest").status_code == 404  # another model's labels: never offered
    shutil.copy(tiny_model, served.with_suffix(".int8.onnx"))
    with TestClient(create_app(make_settings(served, tmp_path / "beside"))) as client:
        manifest = client.get("/v1/offline/manifest").json()
        assert manifest["contract"]["labels"] == Predictor(served).labels and manifest["messages"] == MESSAGES
        assert "planthoppers" in manifest["catalogue"]  # the parents its answers can name
        model = client.get(manifest["model"]["url"])
        assert hashlib.sha256(model.content).hexdigest() == manifest["model"]["sha256"]
        assert model.headers["cache-control"] == "no-cache"


def _solid(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    from tests.conftest import jpeg_bytes

    return jpeg_bytes(Image.new("RGB", (64, 64), rgb))


def test_open_set_a_photo_unlike_every_known_class_is_not_recognised_and_carries_no_advice(tmp_path):
    """The model's novelty output (how unlike its classes a photo is) overrides a confident softmax: the photo is
    'not recognised', flagged unfamiliar, sent to an officer, and names no species to act on."""
    from fastapi.testclient import TestClient

    from pestid.preprocess import PreprocessSpec
    from pestid.sample import SAMPLE_CLASSES
    from pestid.serving.app import create_app
    from tests.onnx_models import linear_model
    from tests.serving.conftest import make_settings

    spec = PreprocessSpec(size=32, crop_pct=1.0)
    green, magenta = (60, 140, 50), (230, 30, 200)
    weight = np.zeros((3, len(SAMPLE_CLASSES)))
    weight[0, SAMPLE_CLASSES.index("brown_planthopper")] = 20.0  # red: a confident brown planthopper
    weight[1, SAMPLE_CLASSES.index("rice_blast")] = 20.0  # green: a confident blast
    centre = ((np.array(green) / 255 - np.array(spec.mean)) / np.array(spec.std)).tolist()
    model = linear_model(tmp_path / "model.onnx", weight=weight, novelty_centre=centre, novelty_threshold=0.5)
    predictor = Predictor(model)
    near, far = predictor.assess([decode_image(_solid(green)), decode_image(_solid(magenta))]).novelty
    assert near < 0.5 < far  # the JPEG moves the colour a little, far less than the threshold
    with TestClient(create_app(make_settings(model, tmp_path / "data"))) as client:
        known = _post(client, [(_solid(green), "image/jpeg")]).json()
        assert known["decision"] == "identified" and known["species"]["id"] == "rice_blast"
        assert known["unfamiliar"] is False
        assert predictor.probabilities([decode_image(_solid(magenta))]).max() > 0.99  # the softmax alone is sure
        for photos in ([_solid(magenta)], [_solid(magenta), _solid(green)]):  # alone, and fused with a known one
            body = _post(client, [(p, "image/jpeg") for p in photos], headers={"Accept-Language": "en"}).json()
            assert body["decision"] == "not_recognised" and body["unfamiliar"] is True
            assert body["species"] is None and body["nearest_group"] is None and body["do_not_spray"] is False
            assert body["needs_review"] is True and body["status"] == "pending_review"
            assert body["message"].startswith("Not like any organism pestid has learnt")
            assert all(set(a) == {"id", "name", "probability"} for a in body["alternatives"])
        vi = _post(client, [(_solid(magenta), "image/jpeg")], headers={"Accept-Language": "vi"}).json()
        assert vi["message"].startswith("Không giống loài nào pestid đã học")
