"""Issue 24, drift: per district and ISO week, the share of "not sure" answers against the model's test split and the
classes answered against the district's weeks before, on synthetic submissions with a known shift and with none."""

import itertools
import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient

from pestid.serving import field_truth
from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.db import Submission
from pestid.serving.drift import Reference, Tally, judge_week
from pestid.serving.observability import metrics_text
from pestid.serving.outbreaks import iso_week, monday_of
from tests.onnx_models import linear_model
from tests.serving.conftest import make_settings

PASSWORD = "correct horse battery"
IDS = itertools.count()
TODAY = datetime.now(UTC).date()
REFERENCE = Reference(not_sure=0.2, cases=400)  # the test split: 80 % of 400 originals answered


@pytest.fixture
def drift_app(tmp_path):
    """A model whose contract records its test split's coverage (80 % answered, 400 originals), and a senior."""
    model = linear_model(tmp_path / "model.onnx", metrics={"useful_coverage": 0.8, "originals": 400})
    app = create_app(make_settings(model, tmp_path / "data", field_refresh_s=0))
    with TestClient(app) as client:
        with app.state.sessions() as session, session.begin():
            add_user(session, "chi", PASSWORD, "senior", None)
            add_user(session, "an", PASSWORD, "officer", "Châu Đốc")
        tokens = {name: {"Authorization": "Bearer " + client.post("/v1/auth/login", json={
            "username": name, "password": PASSWORD}).json()["token"]} for name in ("chi", "an")}  # fmt: skip
        yield client, tokens


def _answers(app, district: str, day: date, answers: list[str | None]) -> None:
    """Stored answers: a class id for an identified answer, None for a not-sure one."""
    with app.state.sessions() as session, session.begin():
        for answer in answers:
            session.add(Submission(id=f"d{next(IDS)}", created_at=datetime.combine(day, time(9), UTC),
                                   decision="identified" if answer else "uncertain", answer=answer,
                                   predicted_label=answer or "brown_planthopper", confidence=0.9 if answer else 0.5,
                                   model_version="v", response={}, district=district, lang="vi"))  # fmt: skip


def _mix(n_not_sure: int, **classes: int) -> list[str | None]:
    return [None] * n_not_sure + [label for label, n in classes.items() for _ in range(n)]


def test_drift_flags_the_district_whose_not_sure_share_rose_against_the_test_split(drift_app):
    client, tokens = drift_app
    _answers(client.app, "Phú Tân", TODAY, _mix(36, brown_planthopper=44))  # 45 % not sure against 20 %
    _answers(client.app, "Châu Đốc", TODAY, _mix(17, brown_planthopper=63))  # 21 %: as tested
    _answers(client.app, "Tân Châu", TODAY, _mix(10))  # all unsure, but 10 answers: too few to say
    body = client.get("/v1/drift", headers=tokens["chi"]).json()
    assert body["reference"] == {"not_sure": pytest.approx(0.2), "originals": 400.0, "class_shares": "baseline"}
    rows = {r["district"]: r for r in body["rows"] if r["week"] == iso_week(monday_of(TODAY))}
    assert rows["Phú Tân"]["flagged"] and rows["Phú Tân"]["not_sure_moved"] and rows["Phú Tân"]["not_sure_z"] > 3.29
    assert rows["Phú Tân"]["not_sure_share"] == 0.45 and rows["Phú Tân"]["not_sure_source"] == "contract"
    assert not rows["Châu Đốc"]["flagged"] and not rows["Tân Châu"]["flagged"]
    assert body["rows"][0]["district"] == "Phú Tân"  # flagged first within the week
    # the Châu Đốc officer sees Châu Đốc's rows only
    assert {r["district"] for r in client.get("/v1/drift", headers=tokens["an"]).json()["rows"]} == {"Châu Đốc"}
    field_truth.refresh(client.app)
    text = metrics_text().decode()
    assert 'pestid_drift_flagged{district="Phú Tân"} 1.0' in text
    assert 'pestid_drift_flagged{district="Châu Đốc"} 0.0' in text
    assert 'pestid_drift_not_sure_share{district="Phú Tân"} 0.45' in text
    # no class history before this week: the distance is not measured (NaN), never "no shift" (0)
    assert 'pestid_drift_class_distance{district="Phú Tân"} NaN' in text


def test_drift_flags_the_classes_that_moved_against_the_districts_weeks_before(drift_app):
    client, tokens = drift_app
    this_week = monday_of(TODAY)
    before = _mix(6, brown_planthopper=12, golden_apple_snail=12)
    for k in range(1, 5):  # four weeks of half hoppers, half snails in both districts
        for district in ("Phú Tân", "Châu Đốc"):
            _answers(client.app, district, this_week - timedelta(weeks=k), before)
    _answers(client.app, "Phú Tân", TODAY, _mix(8, brown_planthopper=4, golden_apple_snail=28))  # snails: 88 %
    _answers(client.app, "Châu Đốc", TODAY, _mix(8, brown_planthopper=15, golden_apple_snail=17))
    rows = {r["district"]: r for r in client.get("/v1/drift", headers=tokens["chi"]).json()["rows"]
            if r["week"] == iso_week(this_week)}  # fmt: skip
    moved, steady = rows["Phú Tân"], rows["Châu Đốc"]
    assert moved["classes_moved"] and moved["class_source"] == "baseline" and moved["p_value"] < 0.001
    assert moved["class_distance"] == pytest.approx(0.875 - 0.5, abs=0.02)
    assert [(r["id"], r["name_vi"]) for r in moved["rising"]] == [("golden_apple_snail", "Ốc bươu vàng")]
    assert [r["id"] for r in moved["falling"]] == ["brown_planthopper"]
    assert not moved["not_sure_moved"]  # 20 % unsure, as tested
    assert not steady["flagged"] and steady["p_value"] > 0.01


def _draw(rng: random.Random, n: int, not_sure: float, shares: dict[str, float]) -> Tally:
    tally = Tally()
    labels, weights = list(shares), list(shares.values())
    for _ in range(n):
        tally.answers += 1
        if rng.random() < not_sure:
            tally.not_sure += 1
        else:
            tally.classes[rng.choices(labels, weights)[0]] += 1
    return tally


def test_drift_statistics_on_synthetic_district_weeks_with_a_known_shift_and_with_none():
    """District-weeks of 200 answers. 1,000 drawn as the reference says: the rules' false-flag rate is about 0.1 %
    (|z| ≥ 3.29), so at most 5 are flagged (1 expected; more than 5 happens about once in 1,700 runs). 200 with the
    not-sure share moved from 20 % to 45 %, and 200 with a class mix moved (hoppers 60 → 20 %), are all flagged."""
    rng = random.Random(2024)
    shares = {"brown_planthopper": 0.6, "golden_apple_snail": 0.3, "rice_blast": 0.1}
    moved_mix = {"brown_planthopper": 0.2, "golden_apple_snail": 0.6, "rice_blast": 0.2}

    def judged(not_sure: float, mix: dict[str, float], weeks: int = 200) -> Counter[str]:
        flags: Counter[str] = Counter()
        for _ in range(weeks):
            baseline = _draw(rng, 4 * 150, 0.2, shares)  # the district's 4 weeks before
            row = judge_week(_draw(rng, 200, not_sure, mix), baseline, REFERENCE)
            flags.update(k for k in ("not_sure_moved", "classes_moved", "flagged") if row[k])
        return flags

    steady = judged(0.2, shares, weeks=1000)
    assert steady["flagged"] <= 5 and steady["classes_moved"] == 0, steady
    assert judged(0.45, shares) == Counter({"not_sure_moved": 200, "flagged": 200})
    assert judged(0.2, moved_mix) == Counter({"classes_moved": 200, "flagged": 200})


def test_drift_without_a_contract_figure_uses_the_districts_weeks_before():
    """A model whose contract records no coverage: the not-sure share is compared with the district's own 4 weeks
    before; with no weeks before, nothing is said."""
    baseline = Tally(answers=200, not_sure=40)
    now = judge_week(Tally(answers=100, not_sure=50, classes=Counter(brown_planthopper=50)), baseline, Reference())
    assert now["not_sure_source"] == "baseline" and now["not_sure_reference"] == 0.2 and now["not_sure_moved"]
    alone = judge_week(Tally(answers=100, not_sure=50, classes=Counter(brown_planthopper=50)), Tally(), Reference())
    assert alone["not_sure_source"] is None and not alone["flagged"]


def test_drift_counts_an_open_audit_item_only_once_it_is_decided(drift_app):
    """Polled before and after a blind item arrived, the district's figures told its confidence (and its class)."""
    client, tokens = drift_app
    app = client.app
    _answers(app, "Châu Đốc", TODAY, _mix(5, brown_planthopper=5))
    with app.state.sessions() as session, session.begin():
        session.add(Submission(id="blind-1", created_at=datetime.combine(TODAY, time(10), UTC), decision="identified",
                               answer="golden_apple_snail", predicted_label="golden_apple_snail", confidence=0.7731,
                               model_version="v", response={}, district="Châu Đốc", lang="vi", audit_rate=0.05))  # fmt: skip

    def week():
        field_truth.refresh(app)
        rows = client.get("/v1/drift?weeks=1", headers=tokens["an"]).json()["rows"]
        return next(r for r in rows if r["district"] == "Châu Đốc")

    assert week()["answers"] == 10  # the open audit item is not in the figures
    with app.state.sessions() as session, session.begin():
        session.get(Submission, "blind-1").status = "approved"
    assert week()["answers"] == 11  # decided: counted
