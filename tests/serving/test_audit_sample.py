"""Issue 24, field truth: the audit sample (its share and stratification), blindness through the API, the precision
estimate with its Wilson interval, and the alert when audits contradict a class's promise."""

import itertools
import logging
import random
import secrets
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from pestid.catalogue import load_catalogue
from pestid.serving import field_truth
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.audits import AuditPlan
from pestid.serving.db import Submission
from pestid.serving.estimates import weighted_precision, wilson
from pestid.serving.observability import metrics_text
from tests.conftest import new_database
from tests.onnx_models import linear_model
from tests.serving.conftest import jpeg, make_settings

PASSWORD = "correct horse battery"
SEEDS = itertools.count(3000)


@pytest.fixture(scope="module")
def promising_model(tmp_path_factory):
    """The tiny model, promising 95 % precision for every identified answer (its contract's target)."""
    return linear_model(tmp_path_factory.mktemp("promise") / "model.onnx", target_precision=0.95)


@pytest.fixture
def audit_app(promising_model, tmp_path):
    """An app auditing every identified answer (share 1), with officers in Phú Tân, a senior and their tokens."""
    clients = []

    def build(**settings):
        app = create_app(make_settings(promising_model, tmp_path / f"data{len(clients)}",
                                       **{"audit_share": 1.0, "field_refresh_s": 0, **settings}))  # fmt: skip
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        with app.state.sessions() as session, session.begin():
            for name, role, district in (("an", "officer", "Phú Tân"), ("binh", "officer", "Phú Tân"),
                                         ("chi", "senior", None)):  # fmt: skip
                add_user(session, name, PASSWORD, role, district)
        tokens = {name: {"Authorization": "Bearer " + client.post("/v1/auth/login", json={
            "username": name, "password": PASSWORD}).json()["token"]} for name in ("an", "binh", "chi")}  # fmt: skip
        return client, tokens

    yield build
    for client in clients:
        client.__exit__(None, None, None)


Cell = tuple[str, str]  # (class, district)


def _simulate(plan: AuditPlan, cells: dict[Cell, int], rng: random.Random) -> dict[Cell, list[float]]:
    """Identified answers arriving in random order within one 30-day window; the rates of those drawn, per cell."""
    stream = [cell for cell, n in cells.items() for _ in range(n)]
    rng.shuffle(stream)
    drawn: dict[Cell, list[float]] = {cell: [] for cell in cells}
    for cell in stream:
        rate = plan.choose(secrets.token_hex(16), len(drawn[cell]))
        if rate is not None:
            drawn[cell].append(rate)
    return drawn


def test_audit_sample_share_and_stratification_on_many_synthetic_answers():
    """60,000 identified answers over 10 common and 200 rare (class, district) cells: the common cells are audited
    at the share (5 %), every rare cell gets audits at the boosted rate until it holds 3, and the draw is fixed by
    the key and the id but unrelated between keys."""
    rng = random.Random(24)
    plan = AuditPlan(key=b"k" * 32, share=0.05, min_per_cell=3, boost=0.5)
    common = {(f"class{c}", f"district{d}"): 5_800 for c in range(2) for d in range(5)}
    rare = {(f"rare{c}", f"district{d}"): 10 for c in range(20) for d in range(10)}
    drawn = _simulate(plan, {**common, **rare}, rng)

    common_answers = sum(common.values())
    beyond_floor = sum(len(drawn[c]) - 3 for c in common)  # past each cell's first 3, the share alone draws
    share = beyond_floor / (common_answers - sum(6 for _ in common))  # ~6 answers each to reach the first 3
    assert abs(share - 0.05) < 4 * (0.05 * 0.95 / common_answers) ** 0.5 + 0.002, share
    assert all(len(drawn[c]) >= 3 for c in common)
    # a rare cell of 10 answers expects about 3.3 audits (half of its answers until it holds 3, then 5 %)
    per_rare = [len(drawn[c]) for c in rare]
    assert sum(1 for n in per_rare if n > 0) / len(per_rare) >= 0.98
    assert 2.9 < sum(per_rare) / len(per_rare) < 3.6, sum(per_rare) / len(per_rare)
    # overall far less than auditing rare cells at 50 % forever, and far more for rare cells than 5 % would give
    assert sum(per_rare) / sum(rare.values()) > 0.25 and beyond_floor / common_answers < 0.06

    ids = [secrets.token_hex(16) for _ in range(4000)]
    again = AuditPlan(key=b"k" * 32, share=0.05, min_per_cell=3, boost=0.5)
    assert [plan.choose(i, 10) for i in ids] == [again.choose(i, 10) for i in ids]  # deterministic
    other = AuditPlan(key=b"x" * 32, share=0.5, min_per_cell=3, boost=0.5)
    same = AuditPlan(key=b"k" * 32, share=0.5, min_per_cell=3, boost=0.5)
    agree = Counter((same.choose(i, 10) is None, other.choose(i, 10) is None) for i in ids)
    assert abs(agree[(True, True)] / len(ids) - 0.25) < 0.04  # another key: independent draws (unpredictable)
    assert AuditPlan(key=b"k" * 32, share=0.0).choose(ids[0], 0) is None  # share 0: audits off


def test_audit_sample_weights_keep_a_class_estimate_unbiased():
    """Rare cells are audited more often; weighing each audit by 1 / its rate gives the precision over all answers."""
    rng = random.Random(7)
    plan = AuditPlan(key=b"w" * 32, share=0.05, min_per_cell=3, boost=0.5)
    cells = {("snail", "common"): 20_000, **{("snail", f"rare{d}"): 8 for d in range(300)}}
    precision = {("snail", "common"): 0.95, **{c: 0.5 for c in cells if c[1] != "common"}}
    drawn = _simulate(plan, cells, rng)
    cases = [(rng.random() < precision[c], 1 / rate) for c, rates in drawn.items() for rate in rates]
    truth = sum(n * precision[c] for c, n in cells.items()) / sum(cells.values())  # 0.902
    weighted = weighted_precision(cases)
    unweighted = sum(ok for ok, _ in cases) / len(cases)
    assert weighted is not None and weighted.low <= truth <= weighted.high
    assert abs(weighted.precision - truth) < 0.02 and unweighted < truth - 0.1  # the rare cells' audits would tilt it


def test_audit_sample_wilson_interval_on_known_cases():
    """Newcombe (1998), Table I: the Wilson score intervals of 81/263, 15/148, 0/20 and 1/29."""
    for (k, n), (low, high) in {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                                (1, 29): (0.0061, 0.1718)}.items():  # fmt: skip
        got = wilson(k, n)
        assert got == pytest.approx((low, high), abs=5e-5), (k, n, got)
    equal = weighted_precision([(True, 20.0)] * 81 + [(False, 20.0)] * 182)  # one rate: the plain interval
    assert equal is not None and (equal.low, equal.high) == pytest.approx(wilson(81, 263))
    assert equal.effective == pytest.approx(263)


def _identify(client, district="Phú Tân") -> dict:
    sent = client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(next(SEEDS)), "image/jpeg"))],
                       data={"district": district})  # fmt: skip
    assert sent.status_code == 201, sent.text
    return sent.json()


def test_audit_sample_item_is_blind_until_the_officers_verdict(audit_app):
    client, tokens = audit_app(approvals_required=2)
    answer = _identify(client)
    assert answer["decision"] == "identified" and answer["status"] == "answered"  # the farmer's answer is unchanged
    species = answer["species"]["id"]
    org = load_catalogue().get(species)
    listed = client.get("/v1/review/queue", headers=tokens["an"])
    item = next(i for i in listed.json() if i["id"] == answer["submission_id"])
    assert item["audit"] == {"blind": True, "answer": None}
    assert item["predicted_label"] is item["predicted"] is item["confidence"] is None and item["top"] == []
    for leak in (species, org.name_vi, org.name_en, org.scientific, str(answer["species"]["probability"])):
        assert leak not in listed.text, leak  # nothing of the model's answer in the whole reply
    by_species = client.get("/v1/review/queue", params={"species": species}, headers=tokens["an"]).json()
    assert answer["submission_id"] not in [i["id"] for i in by_species]  # a filter by the answer would tell it
    assert [i["id"] for i in client.get("/v1/review/queue", params={"audit": "true"}, headers=tokens["an"]).json()] == [
        answer["submission_id"]
    ]
    refused = client.post(f"/v1/review/{answer['submission_id']}", json={"action": "confirm"}, headers=tokens["an"])
    assert refused.status_code == 422 and refused.json()["code"] == "audit_needs_species"

    judged = client.post(f"/v1/review/{answer['submission_id']}", json={"action": "relabel", "label": species},
                         headers=tokens["an"]).json()  # fmt: skip
    assert judged["audit"]["blind"] is False and judged["audit"]["answer"]["id"] == species  # revealed after
    assert judged["audit"]["agreed"] is True and judged["predicted_label"] == species
    # the second officer (two approvals required) is still blind: the first one's verdict does not unblind them
    second = client.get("/v1/review/queue", headers=tokens["binh"]).json()
    assert next(i for i in second if i["id"] == answer["submission_id"])["audit"]["blind"] is True
    mine = client.get("/v1/review/queue", headers=tokens["an"]).json()
    assert next(i for i in mine if i["id"] == answer["submission_id"])["audit"]["answer"]["id"] == species
    other = client.post(f"/v1/review/{answer['submission_id']}", json={"action": "relabel", "label": "brown_planthopper"},
                        headers=tokens["binh"]).json()  # fmt: skip
    assert other["audit"]["agreed"] is False and other["status"] == "disputed"


def _audits(app, answer: str, rights: list[bool], *, district="Phú Tân", version: str, rate=0.05) -> list[str]:
    """Audit items for ``answer`` stored as identify would; returns their ids."""
    ids = []
    with app.state.sessions() as session, session.begin():
        for k, _ in enumerate(rights):
            sid = f"{answer[:8]}{district[:3]}{k:04d}{next(SEEDS)}"
            session.add(Submission(id=sid, created_at=datetime.now(UTC) - timedelta(hours=k), decision="identified",
                                   predicted_label=answer, answer=answer, audit_rate=rate, confidence=0.97,
                                   model_version=version, response={}, district=district, lang="vi",
                                   status="pending_review"))  # fmt: skip
            ids.append(sid)
    return ids


def _judged(client, token, answer, rights, *, wrong_label="brown_planthopper", **where) -> None:
    """Audit items for ``answer`` judged by the officer with ``token``: right where ``rights`` says, else named
    ``wrong_label``."""
    for sid, right in zip(_audits(client.app, answer, rights, **where), rights, strict=True):
        body = {"action": "relabel", "label": answer if right else wrong_label}
        assert client.post(f"/v1/review/{sid}", json=body, headers=token).status_code == 200


def test_audit_sample_precision_per_class_district_and_version_with_wilson_intervals(audit_app):
    client, tokens = audit_app()
    version = client.get("/v1/model").json()["version"]
    _judged(client, tokens["chi"], "golden_apple_snail", [True] * 18 + [False] * 2, version=version)
    _judged(client, tokens["chi"], "golden_apple_snail", [True] * 4, district="Châu Đốc", version=version)
    _judged(client, tokens["chi"], "golden_apple_snail", [True, False], version="pestid@sha256:older")
    report = client.get("/v1/precision", headers=tokens["chi"]).json()
    assert report["model_version"] == version and report["promised"] == 0.95
    (snail,) = report["classes"]
    assert snail["id"] == "golden_apple_snail" and snail["name_vi"] == "Ốc bươu vàng"
    assert (snail["audits"], snail["correct"]) == (24, 22)
    assert (snail["low"], snail["high"]) == pytest.approx(wilson(22, 24), abs=1e-4)
    districts = {row["district"]: row for row in report["districts"]}
    assert districts["Phú Tân"]["precision"] == 0.9
    assert (districts["Phú Tân"]["low"], districts["Phú Tân"]["high"]) == pytest.approx(wilson(18, 20), abs=1e-4)
    assert districts["Châu Đốc"]["audits"] == 4
    versions = {row["model_version"]: row for row in report["versions"]}
    assert versions["pestid@sha256:older"]["audits"] == 2 and versions[version]["audits"] == 24
    # the Phú Tân officer's figures are Phú Tân's only (and the unlocated), never another district's
    mine = client.get("/v1/precision", headers=tokens["an"]).json()
    assert [row["district"] for row in mine["districts"]] == ["Phú Tân"] and mine["classes"][0]["audits"] == 20
    # a blurry photo says nothing of the answer; "not a harmful organism" says it was wrong
    (blurry, not_harmful) = _audits(client.app, "golden_apple_snail", [False, False], version=version)
    client.post(f"/v1/review/{blurry}", json={"action": "reject", "reason": "blurry"}, headers=tokens["chi"])
    client.post(f"/v1/review/{not_harmful}", json={"action": "reject", "reason": "not_harmful"}, headers=tokens["chi"])
    after = client.get("/v1/precision", headers=tokens["chi"]).json()["classes"][0]
    assert (after["audits"], after["correct"]) == (25, 22)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_audit_sample_alert_fires_when_audits_contradict_a_class(audit_app):
    """Blind audits find the snail answers wrong 6 times in 12: the interval's upper end (0.75) lies below the 0.95
    promise. The API marks the class, /metrics says so, and the alert is logged; the planthopper, right every time,
    raises nothing."""
    client, tokens = audit_app()
    version = client.get("/v1/model").json()["version"]
    _judged(client, tokens["chi"], "golden_apple_snail", [True, False] * 6, version=version)
    _judged(client, tokens["chi"], "brown_planthopper", [True] * 12, version=version, wrong_label="golden_apple_snail")
    report = client.get("/v1/precision", headers=tokens["chi"]).json()
    assert report["alerts"] == ["golden_apple_snail"]
    rows = {row["id"]: row for row in report["classes"]}
    assert rows["golden_apple_snail"]["alert"] and rows["golden_apple_snail"]["high"] < 0.95
    assert not rows["brown_planthopper"]["alert"]

    lines = _Lines()
    logging.getLogger("pestid.serving").addHandler(lines)
    field_truth._last_alert.clear()
    try:
        field_truth.refresh(client.app)
    finally:
        logging.getLogger("pestid.serving").removeHandler(lines)
    alerts = [r for r in lines.records if r.getMessage() == "precision_below_promise"]
    assert [r.fields["label"] for r in alerts] == ["golden_apple_snail"]  # type: ignore[attr-defined]
    assert alerts[0].fields["promised"] == 0.95 and alerts[0].fields["high"] < 0.95  # type: ignore[attr-defined]
    text = metrics_text().decode()
    assert 'pestid_precision_below_promise{label="golden_apple_snail"} 1.0' in text
    assert 'pestid_precision_below_promise{label="brown_planthopper"} 0.0' in text
    assert 'pestid_audit_precision{bound="high",by="class",key="golden_apple_snail"}' in text


@contextmanager
def _upgraded(database, revision: str):
    """A connection to the SQLite file ``database`` in one transaction, its schema first migrated to ``revision``."""
    from alembic import command
    from alembic.config import Config

    from pestid.serving.db import MIGRATIONS, make_engine

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with make_engine(f"sqlite:///{database}").begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        yield connection


def test_audit_sample_migration_names_the_answers_already_stored(tmp_path):
    """Migration 0009 reads the answer each stored identified submission was told (a species or a group) from its
    stored response; not-sure answers have none, and nothing stored before is an audit item."""
    from sqlalchemy import text

    database = tmp_path / "old.db"
    with _upgraded(database, "0008") as connection:
        for sid, decision, species in (("a", "identified", "planthoppers"), ("b", "uncertain", None),
                                       ("c", "identified", "golden_apple_snail")):  # fmt: skip
            response = '{"species": ' + (f'{{"id": "{species}"}}' if species else "null") + "}"
            connection.execute(text("insert into submissions (id, created_at, status, decision, predicted_label, "
                                    "confidence, model_version, response, lang) values (:id, '2026-11-02 09:00:00', "
                                    "'pending_review', :decision, 'brown_planthopper', 0.9, 'v', :response, 'vi')"),
                               {"id": sid, "decision": decision, "response": response})  # fmt: skip
    with _upgraded(database, "head") as connection:
        rows = connection.execute(text("select id, answer, audit_rate from submissions order by id")).all()
    assert [tuple(r) for r in rows] == [
        ("a", "planthoppers", None),
        ("b", None, None),
        ("c", "golden_apple_snail", None),
    ]


def test_audit_sample_migration_marks_blind_only_first_answers_given_while_the_item_was_open(tmp_path):
    """Migration 0010 on reviews stored by the old rules: an officer's first review counts as blind only where the
    audit log shows the item open just before it (a first review of an item already decided saw its answer)."""
    from sqlalchemy import text

    database = tmp_path / "old.db"
    at = "'2026-11-02 09:00:00'"
    with _upgraded(database, "0009") as connection:
        connection.execute(text(f"insert into submissions (id, created_at, status, decision, predicted_label, "
                                f"confidence, model_version, response, lang, answer, audit_rate, reviewed_at) values "
                                f"('s', {at}, 'approved', 'identified', 'rice_bug', 0.9, 'v', '{{}}', 'vi', "
                                f"'rice_bug', 0.05, {at})"))  # fmt: skip
        for uid, name in ((1, "an"), (2, "chi")):
            connection.execute(text(f"insert into users values ({uid}, '{name}', 'x', 'officer', null, 1, {at})"))
        for rid, uid, before in ((1, 1, "pending_review"), (2, 2, "approved")):  # an blind, then chi after it
            connection.execute(text(f"insert into reviews (id, submission_id, user_id, verdict, label, created_at) "
                                    f"values ({rid}, 's', {uid}, 'label', 'rice_bug', {at})"))  # fmt: skip
            connection.execute(text(f"insert into audit_log (at, user_id, action, submission_id, review_id, before) "
                                    f"values ({at}, {uid}, 'relabel', 's', {rid}, '{{\"status\": \"{before}\"}}')"))  # fmt: skip
    with _upgraded(database, "head") as connection:
        blind = connection.execute(text("select id, blind from reviews order by id")).all()
        decided = connection.execute(text("select first_decided_at from submissions")).scalar()
    assert [tuple(r) for r in blind] == [(1, True), (2, False)] and decided is not None


@pytest.mark.server
def test_audit_sample_blind_review_precision_and_drift_on_postgresql(promising_model, tmp_path, postgres_url):
    """The same path on PostgreSQL: migration 0009, an audit drawn at identify, blind in the queue, revealed after
    the verdict, counted in /v1/precision, /v1/drift and the refresh behind /metrics."""
    # A database of its own on the session's server: other tests' users and submissions would be in its queue.
    settings = make_settings(promising_model, tmp_path / "data", database_url=new_database(postgres_url),
                             audit_share=1.0, field_refresh_s=0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        with client.app.state.sessions() as session, session.begin():
            add_user(session, "pg", PASSWORD, "officer", "Chợ Mới")
        token = {"Authorization": "Bearer " + client.post("/v1/auth/login", json={
            "username": "pg", "password": PASSWORD}).json()["token"]}  # fmt: skip
        sent = _identify(client, district="Chợ Mới")
        (item,) = client.get("/v1/review/queue", headers=token).json()
        assert item["audit"] == {"blind": True, "answer": None} and item["predicted_label"] is None
        judged = client.post(f"/v1/review/{sent['submission_id']}", json={"action": "relabel", "label": "rice_bug"},
                             headers=token).json()  # fmt: skip
        assert judged["audit"]["answer"]["id"] == sent["species"]["id"] and judged["audit"]["agreed"] is False
        (row,) = client.get("/v1/precision", headers=token).json()["classes"]
        assert (row["id"], row["audits"], row["correct"]) == (sent["species"]["id"], 1, 0)
        assert client.get("/v1/drift", headers=token).json()["rows"][0]["answers"] == 1
        report, _ = field_truth.refresh(client.app)
        assert report["classes"][0]["audits"] == 1


@pytest.mark.server
def test_audit_sample_one_officers_concurrent_verdicts_are_judged_in_turn_on_postgresql(
    promising_model, tmp_path, postgres_url
):
    """Two identical verdicts sent at once by one officer, two approvals required: both stayed active on PostgreSQL
    (4 times in 6), and once the officer alone approved the item. The submission's row is now locked per verdict."""
    import httpx

    from pestid.serving.db import Review
    from tests.serving.conftest import running

    settings = make_settings(promising_model, tmp_path / "data", database_url=new_database(postgres_url),
                             audit_share=0.0, approvals_required=2)  # fmt: skip
    app = create_app(settings)
    with running(app) as url:
        with app.state.sessions() as session, session.begin():
            add_user(session, "pg", PASSWORD, "officer", "Chợ Mới")
        token = {"Authorization": "Bearer " + httpx.post(f"{url}/v1/auth/login", json={
            "username": "pg", "password": PASSWORD}).json()["token"]}  # fmt: skip
        for _ in range(4):
            sid = httpx.post(f"{url}/v1/identify", files=[("photos", ("a.jpg", jpeg(next(SEEDS)), "image/jpeg"))],
                             data={"district": "Chợ Mới"}).json()["submission_id"]  # fmt: skip

            def relabel(_: int, sid: str = sid) -> int:
                return httpx.post(f"{url}/v1/review/{sid}", json={"action": "relabel", "label": "rice_bug"},
                                  headers=token).status_code  # fmt: skip

            with ThreadPoolExecutor(2) as pool:
                assert set(pool.map(relabel, range(2))) == {200}
            with app.state.sessions() as session:
                active = session.query(Review).filter(Review.submission_id == sid, Review.undone_at.is_(None)).count()
                assert active == 1 and session.get(Submission, sid).status == "pending_review"


def _precision_of(client, token, answer: str) -> tuple[int, int]:
    rows = {r["id"]: r for r in client.get("/v1/precision", headers=token).json()["classes"]}
    row = rows.get(answer)
    return (row["audits"], row["correct"]) if row else (0, 0)


def test_audit_sample_counts_only_the_blind_answer_not_changes_after_the_reveal(audit_app):
    """An officer who named the wrong species blind cannot turn the audit right once the answer is shown: not by
    confirming, not by undoing and naming the revealed answer, not by rejecting as blurry; nor can a second officer
    by a verdict on the decided audit. The photo's label still follows the latest verdict (for training)."""
    client, tokens = audit_app()
    answer = _identify(client)
    sid, species = answer["submission_id"], answer["species"]["id"]
    wrong = "rice_bug" if species != "rice_bug" else "brown_planthopper"
    judged = client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": wrong}, headers=tokens["an"])
    assert judged.json()["audit"]["agreed"] is False and judged.json()["audit"]["counted"] is True
    assert _precision_of(client, tokens["chi"], species) == (1, 0)

    confirmed = client.post(f"/v1/review/{sid}", json={"action": "confirm"}, headers=tokens["an"])
    assert confirmed.status_code == 200 and confirmed.json()["final_label"] == species  # the label may be mended
    assert confirmed.json()["audit"]["counted"] is False
    assert _precision_of(client, tokens["chi"], species) == (1, 0)

    undone = client.post(f"/v1/review/undo/{confirmed.json()['audit_id']}", headers=tokens["an"]).json()
    assert undone["audit"]["blind"] is False  # the reply already showed the answer: not blind again
    client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": species}, headers=tokens["an"])
    assert _precision_of(client, tokens["chi"], species) == (1, 0)
    client.post(f"/v1/review/{sid}", json={"action": "reject", "reason": "blurry"}, headers=tokens["an"])
    assert _precision_of(client, tokens["chi"], species) == (1, 0)
    late = client.post(f"/v1/review/{sid}", json={"action": "confirm"}, headers=tokens["binh"])
    assert late.status_code == 200 and late.json()["audit"]["counted"] is False  # decided: binh could see it
    assert _precision_of(client, tokens["chi"], species) == (1, 0)


def test_audit_sample_undone_blind_answer_stands_and_the_officer_stays_unblinded(audit_app):
    """Undoing a blind answer takes back the label, not the answer: the item is open again, but the officer who saw
    the reveal is no longer blind (confirm works) and the estimate keeps their first answer."""
    client, tokens = audit_app(approvals_required=2)
    answer = _identify(client)
    sid, species = answer["submission_id"], answer["species"]["id"]
    wrong = "rice_bug" if species != "rice_bug" else "brown_planthopper"
    first = client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": wrong}, headers=tokens["an"]).json()
    client.post(f"/v1/review/undo/{first['audit_id']}", headers=tokens["an"])
    item = next(i for i in client.get("/v1/review/queue", headers=tokens["an"]).json() if i["id"] == sid)
    assert item["audit"]["blind"] is False and item["predicted_label"] == species
    again = client.post(f"/v1/review/{sid}", json={"action": "confirm"}, headers=tokens["an"]).json()
    assert again["audit"]["counted"] is False
    # binh, still blind, names the answer: the blind answers disagree (an's wrong, binh's right): no verdict yet
    client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": species}, headers=tokens["binh"])
    assert _precision_of(client, tokens["chi"], species) == (0, 0)


def test_audit_sample_resent_photo_does_not_reveal_the_blind_answer(audit_app):
    """The same photo sent again (a new idempotency key) is not drawn, but it carries the same answer: while the
    audit item is blind to an officer, the repeat is masked in the queue, left out of a filter by species, and its
    verdict reply tells nothing; once the officer has judged the audit item, both show the answer."""
    client, tokens = audit_app()
    photo = jpeg(next(SEEDS))
    sent = [client.post("/v1/identify", files=[("photos", ("a.jpg", photo, "image/jpeg"))],
                        data={"district": "Phú Tân"}, headers={"Idempotency-Key": key}).json() for key in ("k1", "k2")]  # fmt: skip
    audit_id, repeat_id = (s["submission_id"] for s in sent)
    species = sent[0]["species"]["id"]
    org = load_catalogue().get(species)
    listed = client.get("/v1/review/queue", headers=tokens["an"])
    repeat = next(i for i in listed.json() if i["id"] == repeat_id)
    assert repeat["duplicate_of"] == audit_id and repeat["audit"] == {"blind": True, "answer": None}
    assert repeat["predicted_label"] is None and repeat["confidence"] is None and repeat["top"] == []
    for leak in (species, org.name_vi, org.name_en, org.scientific):
        assert leak not in listed.text, leak
    by_species = client.get("/v1/review/queue", params={"species": species}, headers=tokens["an"])
    assert by_species.json() == [] and by_species.headers["X-Total-Count"] == "0"
    # nor does the order tell it: it ranked by how many approved reports its hidden class had
    other = "rice_blast" if species != "rice_blast" else "brown_spot"
    _reports(client, "plain", other, "pending_review", 1)  # an identified answer, not audited
    _reports(client, "other", other, "approved", 3)
    for approvals in (0, 5):
        _reports(client, f"hidden{approvals}", species, "approved", approvals)
        order = [i["id"] for i in client.get("/v1/review/queue", headers=tokens["an"]).json()]
        assert order.index(repeat_id) < order.index("plain0"), approvals
    refused = client.post(f"/v1/review/{repeat_id}", json={"action": "confirm"}, headers=tokens["an"])
    assert refused.status_code == 422
    client.post(f"/v1/review/{audit_id}", json={"action": "relabel", "label": species}, headers=tokens["an"])
    audit_log = client.get("/v1/audit", params={"submission_id": audit_id}, headers=tokens["chi"]).json()
    assert audit_log[0]["action"] == "relabel"  # what the officer did, not "confirm" (which would tell the answer)
    shown = client.get("/v1/review/queue", headers=tokens["an"]).json()
    assert next(i for i in shown if i["id"] == repeat_id)["predicted_label"] == species


def _reports(client, prefix: str, label: str, status: str, n: int) -> None:
    """``n`` identified answers of ``label`` from Phú Tân, stored directly (not audited), with that status."""
    with client.app.state.sessions() as session, session.begin():
        for k in range(n):
            session.add(Submission(id=f"{prefix}{k}", created_at=datetime.now(UTC) - timedelta(days=1),
                                   decision="identified", answer=label, predicted_label=label, confidence=0.99,
                                   model_version="v", response={}, district="Phú Tân", lang="vi", status=status,
                                   final_label=label if status == "approved" else None))  # fmt: skip


def test_audit_sample_audit_log_tells_no_prediction_to_a_reader_still_blind(audit_app):
    """With two approvals, the senior has not judged the item: a later confirm by the first officer (after the
    reveal) reads as a relabel in the senior's log, so the log does not tell which label was the model's."""
    client, tokens = audit_app(approvals_required=2)
    answer = _identify(client)
    sid, species = answer["submission_id"], answer["species"]["id"]
    client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": species}, headers=tokens["an"])
    client.post(f"/v1/review/{sid}", json={"action": "confirm"}, headers=tokens["an"])
    log = client.get("/v1/audit", params={"submission_id": sid}, headers=tokens["chi"]).json()
    assert [e["action"] for e in log] == ["relabel", "relabel"]
    client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": species}, headers=tokens["chi"])
    log = client.get("/v1/audit", params={"submission_id": sid}, headers=tokens["chi"]).json()
    assert [e["action"] for e in log] == ["relabel", "confirm", "relabel"]  # judged: nothing left to hide


def test_audit_sample_rejections_that_disagree_on_the_answer_are_a_dispute(audit_app):
    """Two approvals: one officer rejects as not rice (the answer was wrong), the other as blurry (says nothing).
    The photo is rejected, but the audit is neither dropped nor counted wrong, in either order: it is a dispute."""
    client, tokens = audit_app(approvals_required=2)
    for first, second in (("not_rice", "blurry"), ("blurry", "not_rice")):
        answer = _identify(client)
        sid, species = answer["submission_id"], answer["species"]["id"]
        for who, reason in (("an", first), ("binh", second)):
            client.post(f"/v1/review/{sid}", json={"action": "reject", "reason": reason}, headers=tokens[who])
        assert _precision_of(client, tokens["chi"], species) == (0, 0)
    both = _identify(client)
    for who in ("an", "binh"):
        client.post(f"/v1/review/{both['submission_id']}", json={"action": "reject", "reason": "not_rice"},
                    headers=tokens[who])  # fmt: skip
    assert _precision_of(client, tokens["chi"], both["species"]["id"])[0] == 1


def test_audit_sample_item_reopened_after_its_decision_is_blind_to_no_one(audit_app):
    """Once decided, an audit's answer was on show (/v1/precision named its class): a senior who then undid the
    officer's verdict was blind again by the queue's rule, and their answer settled the audit right."""
    client, tokens = audit_app()
    answer = _identify(client)
    sid, species = answer["submission_id"], answer["species"]["id"]
    wrong = "rice_bug" if species != "rice_bug" else "brown_planthopper"
    judged = client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": wrong}, headers=tokens["an"]).json()
    assert judged["status"] == "approved" and _precision_of(client, tokens["chi"], species) == (1, 0)
    client.post(f"/v1/review/undo/{judged['audit_id']}", headers=tokens["chi"])  # a senior may undo another's
    item = next(i for i in client.get("/v1/review/queue", headers=tokens["chi"]).json() if i["id"] == sid)
    assert item["audit"]["blind"] is False and item["predicted_label"] == species
    late = client.post(f"/v1/review/{sid}", json={"action": "relabel", "label": species}, headers=tokens["chi"])
    assert late.json()["audit"]["counted"] is False
    assert _precision_of(client, tokens["chi"], species) == (1, 0)
