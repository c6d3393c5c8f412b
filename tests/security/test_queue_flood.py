"""A flood of uploads does not hide a real report: the queue is sorted and paged by the database, located
reports first. The queue used to read at most 5,000 rows before sorting, so after 5,100 junk uploads (no
district, 64×64 noise) a real Phú Tân photo sent afterwards was on none of its officer's pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from pestid.serving.accounts import add_user
from pestid.serving.app import create_app
from pestid.serving.db import Submission, _id
from tests.serving.conftest import jpeg, make_settings

PASSWORD = "ruộng lúa xanh mướt 2026"


def test_a_real_report_is_on_the_first_page_after_a_flood_of_5100_junk_uploads(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data"))) as client:
        sessions = client.app.state.sessions  # type: ignore[attr-defined]
        start = datetime.now(UTC) - timedelta(hours=1)
        with sessions() as session, session.begin():
            add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
            session.add_all(Submission(id=_id(), created_at=start + timedelta(milliseconds=k), decision="uncertain",
                                       predicted_label="brown_planthopper", confidence=0.3, model_version="m",
                                       response={}, status="pending_review") for k in range(5100))  # fmt: skip
        real = client.post("/v1/identify", files=[("photos", ("p.jpg", jpeg(3), "image/jpeg"))],
                           data={"district": "Phú Tân"}).json()["submission_id"]  # fmt: skip
        token = client.post("/v1/auth/login", json={"username": "lan", "password": PASSWORD}).json()["token"]
        first = client.get("/v1/review/queue", params={"limit": 50}, headers={"Authorization": f"Bearer {token}"})
        assert first.headers["x-total-count"] == "5101"  # the junk is still there to be seen, counted whole
        assert first.json()[0]["id"] == real
        last = client.get("/v1/review/queue", params={"limit": 50, "offset": 5100},
                          headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert len(last.json()) == 1 and last.json()[0]["district"] is None  # every row is on some page
