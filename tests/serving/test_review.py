"""Officer accounts, roles on every endpoint, the review queue, agreement, disputes, undo, outbreaks."""

import io
import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from pestid.catalogue import load_catalogue
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.db import Submission
from tests.conftest import jpeg_bytes
from tests.serving.conftest import jpeg, make_settings

PASSWORD = "correct horse battery"
ENDPOINTS = [  # (method, path, lowest role allowed)
    ("GET", "/v1/auth/me", "officer"),
    ("GET", "/v1/review/queue", "officer"),
    ("POST", "/v1/review/SUB", "officer"),
    ("POST", "/v1/review/undo/1", "officer"),
    ("GET", "/v1/submissions/SUB/photos/0", "officer"),
    ("GET", "/v1/outbreaks", "officer"),
    ("GET", "/v1/outbreaks.csv", "officer"),
    ("GET", "/v1/precision", "officer"),
    ("GET", "/v1/drift", "officer"),
    ("GET", "/v1/audit", "senior"),
    ("POST", "/v1/admin/reload", "admin"),
]


@pytest.fixture
def review_app(tiny_model, tmp_path):
    def build(required: int = 1):
        app = create_app(make_settings(tiny_model, tmp_path / f"data{required}", approvals_required=required))
        client = TestClient(app)
        client.__enter__()
        tokens = {}
        with app.state.sessions() as session, session.begin():
            for name, role, district in (("an", "officer", "Phú Tân"), ("binh", "officer", "Phú Tân"),
                                         ("chi", "senior", None), ("dung", "admin", None)):  # fmt: skip
                add_user(session, name, PASSWORD, role, district)
        for name in ("an", "binh", "chi", "dung"):
            tokens[name] = {
                "Authorization": f"Bearer {client.post('/v1/auth/login', json={'username': name, 'password': PASSWORD}).json()['token']}"
            }
        return client, tokens

    clients = []

    def factory(required: int = 1):
        clients.append(build(required))
        return clients[-1]

    yield factory
    for client, _ in clients:
        client.__exit__(None, None, None)


SEEDS = itertools.count(100)  # each submission its own photo: the same photo twice is one report


def _submit(client, **fields) -> str:
    response = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(next(SEEDS)), "image/jpeg"))], data=fields)
    assert response.status_code == 201, response.text
    return response.json()["submission_id"]


def _request(client, method, path, headers=None, sub="none"):
    path = path.replace("SUB", sub)
    body = {"action": "confirm"} if method == "POST" and "/review/" in path and "undo" not in path else None
    return client.request(method, path, headers=headers or {}, json=body)


@pytest.mark.parametrize(("method", "path", "role"), ENDPOINTS)
def test_every_officer_endpoint_refuses_anonymous_and_wrong_role_calls(review_app, method, path, role):
    client, tokens = review_app()
    sub = _submit(client)
    assert _request(client, method, path, sub=sub).status_code == 401
    assert _request(client, method, path, {"Authorization": "Bearer forged"}, sub=sub).status_code == 401
    lower = {"officer": None, "senior": "an", "admin": "chi"}[role]
    if lower:
        assert _request(client, method, path, tokens[lower], sub=sub).status_code == 403
    allowed = {"officer": "an", "senior": "chi", "admin": "dung"}[role]
    assert _request(client, method, path, tokens[allowed], sub=sub).status_code not in (401, 403)


def test_wrong_password_and_disabled_account_cannot_sign_in(review_app, tmp_path):
    client, tokens = review_app()
    assert client.post("/v1/auth/login", json={"username": "an", "password": "nope nope"}).status_code == 401
    from pestid.serving.accounts import set_active

    with client.app.state.sessions() as session, session.begin():
        set_active(session, "an", False)
    assert client.get("/v1/auth/me", headers=tokens["an"]).status_code == 401
    assert client.post("/v1/auth/login", json={"username": "an", "password": PASSWORD}).status_code == 401


def test_queue_puts_uncertain_and_rare_first_and_filters(review_app):
    client, tokens = review_app()
    now = datetime.now(UTC)
    with client.app.state.sessions() as session, session.begin():
        for k, (decision, label, district) in enumerate([
            ("identified", "brown_planthopper", "Phú Tân"), ("uncertain", "brown_planthopper", "Phú Tân"),
            ("identified", "golden_apple_snail", "Châu Đốc"), ("not_recognised", "rice_blast", "Phú Tân"),
        ]):  # fmt: skip
            session.add(Submission(id=f"s{k}", created_at=now + timedelta(seconds=k), decision=decision,
                                   predicted_label=label, confidence=0.5, model_version="v", response={},
                                   district=district, lang="vi", status="pending_review"))  # fmt: skip
        session.add(Submission(id="old", created_at=now - timedelta(days=1), decision="identified",
                               predicted_label="brown_planthopper", confidence=0.9, model_version="v", response={},
                               lang="vi", status="approved", final_label="brown_planthopper"))  # fmt: skip
    ids = [item["id"] for item in client.get("/v1/review/queue", headers=tokens["chi"]).json()]
    # unsure answers first (rare blast before the already-approved hopper), then the rare snail, then the common hopper
    assert ids == ["s3", "s1", "s2", "s0"]
    by_district = client.get("/v1/review/queue", params={"district": "Châu Đốc"}, headers=tokens["chi"]).json()
    assert [i["id"] for i in by_district] == ["s2"]
    # the Phú Tân officer's queue holds Phú Tân's submissions only (tests/security/test_districts.py has the rest)
    assert [i["id"] for i in client.get("/v1/review/queue", headers=tokens["an"]).json()] == ["s3", "s1", "s0"]
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    assert client.get("/v1/review/queue", params={"since": tomorrow}, headers=tokens["an"]).json() == []
    assert [
        i["id"] for i in client.get("/v1/review/queue", params={"species": "rice_blast"}, headers=tokens["an"]).json()
    ] == ["s3"]


def test_two_agreeing_officers_approve_and_disagreement_goes_to_a_senior(review_app):
    client, tokens = review_app(required=2)
    agreed, disputed = _submit(client, district="Phú Tân"), _submit(client, district="Phú Tân", commune="Tân Hòa")
    first = client.post(f"/v1/review/{agreed}", json={"action": "relabel", "label": "rice_bug"}, headers=tokens["an"])
    assert first.json()["status"] == "pending_review"
    second = client.post(
        f"/v1/review/{agreed}", json={"action": "relabel", "label": "rice_bug"}, headers=tokens["binh"]
    )
    assert second.json()["status"] == "approved" and second.json()["final_label"] == "rice_bug"
    client.post(f"/v1/review/{disputed}", json={"action": "relabel", "label": "rice_bug"}, headers=tokens["an"])
    split = client.post(f"/v1/review/{disputed}", json={"action": "reject", "reason": "blurry"}, headers=tokens["binh"])
    assert split.json()["status"] == "disputed"
    assert [
        i["id"] for i in client.get("/v1/review/queue", params={"status": "disputed"}, headers=tokens["chi"]).json()
    ] == [disputed]
    assert client.post(f"/v1/review/{disputed}", json={"action": "confirm"}, headers=tokens["an"]).status_code == 403
    settled = client.post(
        f"/v1/review/{disputed}", json={"action": "relabel", "label": "rice_bug"}, headers=tokens["chi"]
    )
    assert settled.json()["status"] == "approved"


def test_undo_restores_the_state_and_everything_is_audited(review_app):
    client, tokens = review_app()
    sub = _submit(client)
    done = client.post(
        f"/v1/review/{sub}", json={"action": "reject", "reason": "not_rice"}, headers=tokens["an"]
    ).json()
    assert done["status"] == "rejected"
    assert client.post(f"/v1/review/undo/{done['audit_id']}", headers=tokens["binh"]).status_code == 403  # not hers
    undone = client.post(f"/v1/review/undo/{done['audit_id']}", headers=tokens["an"])
    assert undone.json()["status"] == "pending_review"
    assert client.post(f"/v1/review/undo/{done['audit_id']}", headers=tokens["an"]).status_code == 409
    log = client.get("/v1/audit", params={"submission_id": sub}, headers=tokens["chi"]).json()
    assert [e["action"] for e in log] == ["undo", "reject"]
    assert log[1]["before"]["status"] == "pending_review" and log[1]["after"]["status"] == "rejected"
    assert log[0]["user_id"] is not None and log[0]["at"]


def test_bad_verdicts_are_refused(review_app):
    client, tokens = review_app()
    sub = _submit(client)
    assert (
        client.post(
            f"/v1/review/{sub}", json={"action": "relabel", "label": "dragon"}, headers=tokens["an"]
        ).status_code
        == 422
    )
    assert client.post(f"/v1/review/{sub}", json={"action": "reject"}, headers=tokens["an"]).status_code == 422
    assert client.post("/v1/review/nope", json={"action": "confirm"}, headers=tokens["an"]).status_code == 404


def test_outbreak_counts_by_place_and_week_with_csv(review_app):
    client, tokens = review_app()
    for commune in ("Tân Hòa", "Tân Hòa", "Phú Lâm"):
        sub = _submit(client, district="Phú Tân", commune=commune, date="2026-11-16")
        client.post(f"/v1/review/{sub}", json={"action": "relabel", "label": "brown_planthopper"}, headers=tokens["an"])
    rows = client.get("/v1/outbreaks", headers=tokens["an"]).json()
    assert rows == [
        {
            "week": "2026-W47",
            "district": "Phú Tân",
            "species": "brown_planthopper",
            "name_vi": "Rầy nâu",
            "name_en": "brown planthopper",
            "scientific": "Nilaparvata lugens",
            "reports": 3,
            "rising": False,
        }
    ]
    by_commune = client.get("/v1/outbreaks", params={"by": "commune"}, headers=tokens["an"]).json()
    assert {r["commune"]: r["reports"] for r in by_commune} == {"Phú Lâm": 1, "Tân Hòa": 2}
    csv_text = client.get("/v1/outbreaks.csv", headers=tokens["an"]).text
    assert csv_text.splitlines() == [
        "week,district,species,name_vi,name_en,scientific,reports,rising",
        "2026-W47,Phú Tân,brown_planthopper,Rầy nâu,brown planthopper,Nilaparvata lugens,3,False",
    ]


def test_cli_adds_and_disables_users(tmp_path):
    from pestid.cli import app

    url = f"sqlite:///{tmp_path / 'users.db'}"
    runner = CliRunner()
    added = runner.invoke(
        app, ["users", "add", "lan", "--role", "senior", "--db", url], env={"PESTID_NEW_PASSWORD": PASSWORD}
    )
    assert added.exit_code == 0, added.output
    again = runner.invoke(app, ["users", "add", "lan", "--db", url], env={"PESTID_NEW_PASSWORD": PASSWORD})
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    assert runner.invoke(app, ["users", "disable", "lan", "--db", url]).exit_code == 0
    # typed at the prompt, twice: asked in both languages, and no "[]" default shown
    typed = runner.invoke(app, ["users", "add", "mai", "--db", url], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert typed.exit_code == 0, typed.output
    assert typed.output.startswith("Mật khẩu / Password: \nNhập lại / Repeat it: \n") and "[]" not in typed.output


def test_outbreaks_flag_a_rise_and_filter_by_group_district_and_weeks():
    """Unit-level: 1 report a week for 4 weeks, then 6 (≥ 5 and ≥ 2 × the mean of 1): rising; a rice blast
    report is outside the planthopper group; the weeks filter keeps only the recent ones."""
    from datetime import date

    from sqlalchemy import create_engine

    from pestid.serving.db import Base, Submission, session_factory
    from pestid.serving.outbreaks import outbreak_counts

    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    weekly = {
        date(2026, 10, 19): 1,
        date(2026, 10, 26): 1,
        date(2026, 11, 2): 1,
        date(2026, 11, 9): 1,
        date(2026, 11, 16): 6,
    }

    def approved(label: str, district: str, day: date) -> Submission:
        return Submission(decision="identified", predicted_label=label, confidence=0.9, model_version="m",
                          response={}, status="approved", district=district, final_label=label, observed_on=day)  # fmt: skip

    with sessions() as session, session.begin():
        session.add_all(approved("brown_planthopper", "Phú Tân", day) for day, n in weekly.items() for _ in range(n))
        session.add(approved("rice_blast", "Chợ Mới", date(2026, 11, 16)))
    with sessions() as session:
        rows = outbreak_counts(session, group="planthoppers")
        assert [(r["week"], r["reports"], r["rising"]) for r in rows] == [
            ("2026-W43", 1, False),
            ("2026-W44", 1, False),
            ("2026-W45", 1, False),
            ("2026-W46", 1, False),
            ("2026-W47", 6, True),
        ]
        assert {r["species"] for r in outbreak_counts(session, district="Chợ Mới")} == {"rice_blast"}
        recent = outbreak_counts(session, weeks=2, today=date(2026, 11, 22))
        assert {r["week"] for r in recent} == {"2026-W46", "2026-W47"}


def test_the_farmer_reads_the_verdict_back_with_the_receipt_only(review_app):
    client, tokens = review_app()
    sent = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(3), "image/jpeg"))],
                       data={"district": "Phú Tân"}, headers={"Idempotency-Key": "obs-1"})  # fmt: skip
    body = sent.json()
    sub, receipt = body["submission_id"], body["receipt"]
    assert len(receipt) >= 40 and receipt not in str(client.app.state.sessions().get(Submission, sub).response)
    replay = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(3), "image/jpeg"))],
                         data={"district": "Phú Tân"}, headers={"Idempotency-Key": "obs-1"})  # fmt: skip
    assert replay.status_code == 200 and replay.json()["receipt"] == receipt  # a cut connection loses nothing

    state = client.get(f"/v1/submissions/{sub}", headers={"Receipt": receipt})
    assert state.status_code == 200 and state.json()["status"] == "pending_review" and state.json()["verdict"] is None
    for wrong in ({}, {"Receipt": receipt[:-2] + "xx"}, {"Receipt": _submit(client)}):
        refused = client.get(f"/v1/submissions/{sub}", headers=wrong)
        assert refused.status_code == 404 and refused.json()["code"] == "submission_not_found"
    other = client.post("/v1/identify", files=[("photos", ("b.jpg", jpeg(4), "image/jpeg"))]).json()
    assert client.get(f"/v1/submissions/{sub}", headers={"Receipt": other["receipt"]}).status_code == 404

    client.post(f"/v1/review/{sub}", json={"action": "relabel", "label": "rice_bug"}, headers=tokens["an"])
    vi = client.get(f"/v1/submissions/{sub}", headers={"Receipt": receipt}).json()
    en = client.get(f"/v1/submissions/{sub}?lang=en", headers={"Receipt": receipt}).json()
    assert vi["status"] == "approved" and vi["verdict"]["species"]["name"] == "Bọ xít hôi"
    assert vi["verdict"]["corrected"] is True and vi["verdict"]["species"]["advice"].startswith("Gây hại")
    assert en["verdict"]["species"]["name"] == load_catalogue().get("rice_bug").name_en

    rejected = client.post("/v1/identify", files=[("photos", ("c.jpg", jpeg(5), "image/jpeg"))],
                           data={"district": "Phú Tân"}).json()  # fmt: skip
    client.post(f"/v1/review/{rejected['submission_id']}", json={"action": "reject", "reason": "blurry"},
                headers=tokens["an"])  # fmt: skip
    verdict = client.get(f"/v1/submissions/{rejected['submission_id']}", headers={"Receipt": rejected["receipt"]})
    assert verdict.json()["status"] == "rejected" and "mờ" in verdict.json()["verdict"]["rejected"]


def _sent(client, data: bytes, **fields) -> str:
    response = client.post("/v1/identify", files=[("photos", ("p.jpg", data, "image/jpeg"))], data=fields)
    assert response.status_code == 201, response.text
    return response.json()["submission_id"]


def test_the_same_photo_twice_is_one_report_and_the_officer_sees_both(review_app):
    """A byte-identical photo (sha256) and a re-saved one (perceptual hash) repeat the first submission: both
    stay in the queue, marked, and the outbreak table counts the three approvals once. Another photo is new, and
    so is a repeat that officers approve as another organism (a shared photo beside new ones)."""
    client, tokens = review_app()
    original = jpeg(11)
    first = _sent(client, original, district="Phú Tân")
    again = _sent(client, original, district="Phú Tân", note="gửi lại")  # another key, the same bytes
    resaved = _sent(client, jpeg_bytes(Image.open(io.BytesIO(original)), quality=60), district="Phú Tân")
    other = _sent(client, jpeg(12), district="Phú Tân")
    mirrored = _sent(client, jpeg_bytes(Image.open(io.BytesIO(original)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                     district="Phú Tân")  # fmt: skip
    elsewhere = _sent(client, jpeg_bytes(Image.open(io.BytesIO(original)), quality=70), district="Chợ Mới")
    queue = {item["id"]: item for item in client.get("/v1/review/queue", headers=tokens["chi"]).json()}
    assert [queue[s]["duplicate_of"] for s in (first, again, resaved, other, mirrored)] == [None, first, first,
                                                                                             None, first]  # fmt: skip
    assert queue[elsewhere]["duplicate_of"] is None  # near-identical is looked for within a district only
    assert all(item["photo_count"] == 1 for item in queue.values())

    for sub in (first, again, resaved, other):
        client.post(f"/v1/review/{sub}", json={"action": "relabel", "label": "brown_planthopper"}, headers=tokens["an"])
    rows = client.get("/v1/outbreaks", params={"district": "Phú Tân"}, headers=tokens["an"]).json()
    assert [(r["species"], r["reports"]) for r in rows] == [("brown_planthopper", 2)]  # the photo once, the other once

    client.post(f"/v1/review/{again}", json={"action": "relabel", "label": "rice_blast"}, headers=tokens["an"])
    rows = client.get("/v1/outbreaks", params={"district": "Phú Tân"}, headers=tokens["an"]).json()
    assert sorted((r["species"], r["reports"]) for r in rows) == [("brown_planthopper", 2), ("rice_blast", 1)]
    client.post(f"/v1/review/{again}", json={"action": "relabel", "label": "brown_planthopper"}, headers=tokens["an"])

    client.post(f"/v1/review/{first}", json={"action": "reject", "reason": "blurry"}, headers=tokens["an"])
    rows = client.get("/v1/outbreaks", params={"district": "Phú Tân"}, headers=tokens["an"]).json()
    assert [r["reports"] for r in rows] == [3]  # the first set aside: its repeats count (once each, as sent)


@pytest.mark.parametrize("group", ["planthoppers", "Các loài rầy", "cac loai ray", "CÁC LOÀI RẦY", "rầy", "ray"])
def test_outbreaks_filter_by_a_group_named_in_either_language(review_app, group):
    client, tokens = review_app()
    for seed, label in ((21, "brown_planthopper"), (22, "whitebacked_planthopper"), (23, "rice_blast")):
        sub = _sent(client, jpeg(seed), district="Phú Tân")
        client.post(f"/v1/review/{sub}", json={"action": "relabel", "label": label}, headers=tokens["an"])
    rows = client.get("/v1/outbreaks", params={"group": group}, headers=tokens["an"]).json()
    assert sorted(r["species"] for r in rows) == ["brown_planthopper", "whitebacked_planthopper"]
    typo = client.get("/v1/outbreaks", params={"group": "xyz"}, headers=tokens["an"])
    assert typo.status_code == 422 and typo.json()["code"] == "unknown_group"  # a typo is not "no outbreaks"


def test_times_carry_their_offset_and_a_correction_is_told_as_one(review_app):
    """ISO 8601 with an offset everywhere a page shows a time, so no page shows UTC as local time; the farmer
    hears "corrected" with the named organism's advice when the officer named another organism."""
    client, tokens = review_app()
    sent = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(31), "image/jpeg"))],
                       data={"district": "Phú Tân"}).json()  # fmt: skip
    item = client.get("/v1/review/queue", headers=tokens["an"]).json()[0]
    assert datetime.fromisoformat(item["created_at"]).utcoffset() == timedelta(0)
    client.post(f"/v1/review/{sent['submission_id']}", json={"action": "relabel", "label": "lady_beetle"},
                headers=tokens["an"])  # fmt: skip
    state = client.get(f"/v1/submissions/{sent['submission_id']}?lang=en", headers={"Receipt": sent["receipt"]}).json()
    assert datetime.fromisoformat(state["created_at"]).utcoffset() == timedelta(0)
    assert datetime.fromisoformat(state["verdict"]["decided_at"]).utcoffset() == timedelta(0)
    verdict = state["verdict"]
    assert verdict["corrected"] is True and verdict["species"]["id"] == "lady_beetle"
    assert verdict["species"]["advice"] == load_catalogue().get("lady_beetle").advice_en
    assert verdict["species"]["natural_enemy"] is True
    audit = client.get("/v1/audit", headers=tokens["chi"]).json()
    assert all(datetime.fromisoformat(e["at"]).utcoffset() == timedelta(0) for e in audit)
