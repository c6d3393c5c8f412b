"""District scoping on every officer endpoint: an officer reads and acts on their own district's submissions
and the unlocated ones; another district's are as if they did not exist (404, never listed or counted).
Senior officers and admins span every district by role."""

from __future__ import annotations

import unicodedata

import pytest
from fastapi.testclient import TestClient

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from tests.serving.conftest import jpeg, make_settings

PASSWORD = "correct horse battery"
ACCOUNTS = {"phu_tan": ("officer", "Phú Tân"), "chau_doc": ("officer", "Châu Đốc"), "senior": ("senior", None),
            "admin": ("admin", None)}  # fmt: skip


@pytest.fixture
def province(tiny_model, tmp_path):
    """A service with one submission in Phú Tân, one in Châu Đốc and one unlocated, each reviewed once by an
    account allowed to (so there is an audit entry to undo); yields (client, tokens, submission ids, audit ids)."""
    app = create_app(make_settings(tiny_model, tmp_path / "data", approvals_required=2))
    with TestClient(app) as client:
        with app.state.sessions() as session, session.begin():
            for name, (role, district) in ACCOUNTS.items():
                add_user(session, name, PASSWORD, role, district)
        tokens = {name: {"Authorization": "Bearer " + client.post("/v1/auth/login", json={
            "username": name, "password": PASSWORD}).json()["token"]} for name in ACCOUNTS}  # fmt: skip
        subs, audits = {}, {}
        for place, district, reviewer in (("phu_tan", "Phú Tân", "phu_tan"), ("chau_doc", "Châu Đốc", "chau_doc"),
                                          ("unlocated", None, "phu_tan")):  # fmt: skip
            data = {"district": district, "commune": "x"} if district else {}
            subs[place] = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(len(subs)), "image/jpeg"))],
                                      data=data).json()["submission_id"]  # fmt: skip
            done = client.post(f"/v1/review/{subs[place]}", json={"action": "confirm"}, headers=tokens[reviewer])
            assert done.status_code == 200, done.text
            audits[place] = done.json()["audit_id"]
        yield client, tokens, subs, audits


# Who may reach which submission: an officer their district's and the unlocated; seniors and admins all.
ALLOWED = {"phu_tan": {"phu_tan", "unlocated"}, "chau_doc": {"chau_doc", "unlocated"},
           "senior": {"phu_tan", "chau_doc", "unlocated"}, "admin": {"phu_tan", "chau_doc", "unlocated"}}  # fmt: skip


@pytest.mark.parametrize("account", list(ACCOUNTS))
def test_the_district_matrix_on_every_officer_endpoint(province, account):
    client, tokens, subs, audits = province
    headers = tokens[account]
    allowed = ALLOWED[account]
    listed = {item["id"] for item in client.get("/v1/review/queue", headers=headers).json()}
    assert listed == {subs[p] for p in allowed}, "queue"
    for place, sub in subs.items():
        photo = client.get(f"/v1/submissions/{sub}/photos/0", headers=headers)
        assert photo.status_code == (200 if place in allowed else 404), ("photo", place)
        preview = client.get(f"/v1/submissions/{sub}/photos/0/thumbnail", headers=headers)
        assert preview.status_code == (200 if place in allowed else 404), ("preview", place)
    outsider = next((p for p in subs if p not in allowed), None)
    if outsider is not None:  # writes on another district's submission change nothing
        vote = client.post(f"/v1/review/{subs[outsider]}", json={"action": "reject", "reason": "blurry"},
                           headers=headers)  # fmt: skip
        assert vote.status_code == 404, "verdict"
        undo = client.post(f"/v1/review/undo/{audits[outsider]}", headers=headers)
        assert undo.status_code == 404, "undo"
        seen = client.get("/v1/review/queue", headers=tokens["senior"]).json()
        assert all(item["status"] == "pending_review" for item in seen)


def test_an_officer_may_vote_in_their_district_and_counts_cover_their_district_only(province):
    client, tokens, subs, _ = province
    vote = client.post(f"/v1/review/{subs['phu_tan']}", json={"action": "confirm"}, headers=tokens["senior"])
    assert vote.status_code == 200 and vote.json()["status"] == "approved"
    other = client.post(f"/v1/review/{subs['chau_doc']}", json={"action": "confirm"}, headers=tokens["admin"])
    assert other.json()["status"] == "approved"
    counts = {row["district"] for row in client.get("/v1/outbreaks", headers=tokens["phu_tan"]).json()}
    assert counts == {"Phú Tân"}
    assert "Châu Đốc" not in client.get("/v1/outbreaks.csv", headers=tokens["phu_tan"]).text
    assert {row["district"] for row in client.get("/v1/outbreaks", headers=tokens["senior"]).json()} == {
        "Phú Tân", "Châu Đốc"}  # fmt: skip


@pytest.mark.parametrize("typed", ["Phú Tân", unicodedata.normalize("NFD", "Phú Tân"), "phu tan", "  PHÚ   TÂN ",
                                   "Phú\u200b Tân", "Phú Tân\u2060"])  # fmt: skip
def test_a_district_however_typed_reaches_its_officer(province, typed):
    client, tokens, _, _ = province
    sent = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(77), "image/jpeg"))], data={"district": typed})
    assert sent.status_code == 201, sent.text
    queue = client.get("/v1/review/queue", params={"limit": 200}, headers=tokens["phu_tan"]).json()
    mine = [item for item in queue if item["id"] == sent.json()["submission_id"]]
    assert len(mine) == 1 and mine[0]["district"] == "Phú Tân"


def test_an_unknown_district_is_refused_and_coordinates_find_the_nearest(province):
    client, tokens, _, _ = province
    unknown = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(78), "image/jpeg"))],
                          data={"district": "Atlantis"})  # fmt: skip
    assert unknown.status_code == 422 and unknown.json()["field"] == "district"
    assert "Phú Tân" in unknown.json()["detail_en"]  # the list to choose from
    located = client.post(
        "/v1/identify",
        files=[("photos", ("a.jpg", jpeg(79), "image/jpeg"))],
        data={"latitude": "10.65", "longitude": "105.28"},
    )  # near Phú Tân's centre, no district
    queue = client.get("/v1/review/queue", params={"limit": 200}, headers=tokens["phu_tan"]).json()
    assert [i["district"] for i in queue if i["id"] == located.json()["submission_id"]] == ["Phú Tân"]
    far = client.post(
        "/v1/identify",
        files=[("photos", ("a.jpg", jpeg(80), "image/jpeg"))],
        data={"latitude": "21.0", "longitude": "105.8"},
    )  # Hà Nội: no listed district near
    senior = client.get("/v1/review/queue", params={"limit": 200}, headers=tokens["senior"]).json()
    assert [i["district"] for i in senior if i["id"] == far.json()["submission_id"]] == [None]


def test_an_unlocated_submissions_place_and_note_stay_with_seniors(province):
    client, tokens, _, _ = province
    sent = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(81), "image/jpeg"))],
                       data={"latitude": "21.0", "longitude": "105.8", "note": "nhà ông Ba, ấp 3"})  # fmt: skip
    sub = sent.json()["submission_id"]

    def seen_by(account: str) -> dict:
        return next(i for i in client.get("/v1/review/queue", params={"limit": 200}, headers=tokens[account]).json()
                    if i["id"] == sub)  # fmt: skip

    officer, senior = seen_by("phu_tan"), seen_by("senior")
    assert (officer["latitude"], officer["longitude"], officer["note"]) == (None, None, None)
    assert (senior["latitude"], senior["note"]) == (21.0, "nhà ông Ba, ấp 3")
