"""Sign-in throttling per account and per address, with lockout and back-off, answered before any password is
hashed; and a password policy that refuses short, common and name-based passwords."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from pestid.serving import accounts
from pestid.serving.accounts import AccountError, add_user, check_password, login_wait
from pestid.serving.app import create_app
from pestid.serving.db import LoginAttempt
from tests.serving.conftest import make_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def service(tiny_model, tmp_path):
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with TestClient(app) as client:
        with app.state.sessions() as session, session.begin():
            add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
            add_user(session, "minh", PASSWORD, "admin")
        yield client


def _login(client: TestClient, name: str, password: str):
    return client.post("/v1/auth/login", json={"username": name, "password": password})


def test_an_account_is_locked_after_five_failures_even_for_the_right_password(service, monkeypatch):
    hashed = []
    real = accounts._hasher

    class Counting:  # counts argon2 work
        def hash(self, password: str) -> str:
            hashed.append(1)
            return real.hash(password)

        def verify(self, digest: str, password: str) -> bool:
            hashed.append(1)
            return real.verify(digest, password)

    monkeypatch.setattr(accounts, "_hasher", Counting())
    assert [_login(service, "lan", f"wrong {k}").status_code for k in range(5)] == [401] * 5
    locked = _login(service, "lan", PASSWORD)
    assert locked.status_code == 429 and locked.json()["code"] == "too_many_attempts"
    assert 0 < int(locked.headers["retry-after"]) <= 30 and locked.json()["detail_vi"].startswith("Đăng nhập sai")
    assert len(hashed) == 5  # the locked attempt hashed nothing
    assert _login(service, "minh", PASSWORD).status_code == 200  # other accounts are unaffected


def test_back_off_doubles_and_a_success_clears_it(service):
    sessions = service.app.state.sessions
    start = datetime.now(UTC)
    with sessions() as session, session.begin():
        session.add_all(LoginAttempt(username="lan", address="10.0.0.9", success=False, at=start) for _ in range(7))
    with sessions() as session:
        assert login_wait(session, "lan", "10.0.0.1", now=start) == pytest.approx(120)  # 30 s × 2²
        assert login_wait(session, "lan", "10.0.0.1", now=start + timedelta(seconds=121)) == 0
    with sessions() as session, session.begin():
        session.add(LoginAttempt(username="lan", address="10.0.0.9", success=True, at=start))
    with sessions() as session:
        assert login_wait(session, "lan", "10.0.0.1", now=start) == 0


def test_an_address_guessing_many_names_is_slowed(service):
    for k in range(20):  # one address, twenty different names: no single account reaches its lockout
        assert _login(service, f"nobody{k}", "wrong password").status_code == 401
    refused = _login(service, "minh", PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 500


@pytest.mark.parametrize("password", ["12345678", "short pass", "matkhau123", "aaaaaaaaaaaaaaaa", "lan-the-officer"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(AccountError):
        check_password(password, "lan")


def test_a_passphrase_is_accepted():
    check_password(PASSWORD, "lan")
    check_password("mật khẩu dài", "lan")
