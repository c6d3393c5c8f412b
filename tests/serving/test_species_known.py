"""GET /v1/species says, for each catalogue entry, whether the served model can name it (issue 24), and carries
what a farmer sees, the source and whether the advice is vouched for, without dropping a field of API v1."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pestid.catalogue import OFFICER_EN, load_catalogue
from pestid.serving.app import create_app
from tests.onnx_models import linear_model
from tests.serving.conftest import make_settings

V1_FIELDS = {"id", "kind", "name_vi", "name_en", "scientific", "category", "parent", "natural_enemy", "advice_vi",
             "advice_en"}  # fmt: skip


def test_species_listing_marks_what_the_served_model_knows(tmp_path):
    model = linear_model(tmp_path / "model.onnx", ["yellow_stem_borer", "rice_blast", "not_rice"])
    with TestClient(create_app(make_settings(model, tmp_path / "data"))) as client:
        entries = {e["id"]: e for e in client.get("/v1/species").json()}
        detail = client.get("/v1/species/caterpillars").json()
    assert len(entries) == len(load_catalogue())
    known = {oid for oid, entry in entries.items() if entry["known"]}
    # the labels, and every group holding one of them at any depth
    assert known == {"yellow_stem_borer", "stem_borers", "caterpillars", "rice_blast", "fungal_leaf_spots", "not_rice"}
    assert entries["striped_stem_borer"]["known"] is False  # a sibling the model never learnt
    assert entries["barnyard_grass"]["known"] is False and entries["weeds"]["known"] is False
    assert detail["known"] is True


def test_species_entries_keep_v1_fields_and_add_signs_source_and_vouching(client):
    for entry in client.get("/v1/species", params={"q": "chuot"}).json():
        assert set(entry) >= V1_FIELDS
        assert entry["category"] == "rodent" and entry["signs_vi"] and entry["signs_en"] and entry["source"]
        if not entry["advice_vouched"]:
            assert OFFICER_EN in entry["advice_en"]
    snail = client.get("/v1/species/golden_apple_snail").json()
    assert snail["advice_vouched"] is True and snail["source_url"].startswith("http")


def test_the_offline_manifest_leaves_out_what_the_phone_never_shows(tmp_path):
    import shutil

    from pestid.serving.routes.model import OFFLINE_LEAVES_OUT

    model = linear_model(tmp_path / "model.onnx", ["brown_planthopper", "rice_blast"])
    shutil.copy(model, model.with_suffix(".int8.onnx"))  # the offline copy beside the served model
    with TestClient(create_app(make_settings(model, tmp_path / "data"))) as client:
        catalogue = client.get("/v1/offline/manifest").json()["catalogue"]
    assert set(catalogue) == {"brown_planthopper", "planthoppers", "rice_blast", "fungal_leaf_spots"}
    for entry in catalogue.values():
        assert not OFFLINE_LEAVES_OUT & set(entry) and set(entry) >= V1_FIELDS and entry["known"] is True
