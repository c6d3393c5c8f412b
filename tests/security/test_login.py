"""Sign-in throttling per account and per address, with lockout and back-off, answered before any password is
hashed; and a password policy that refuses short, common and name-based passwords."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from pestid.serving import accounts
from pestid.serving.accounts import AccountError, add_user, check_password, reserve, settle
from pestid.serving.app import create_app
from tests.conftest import REPO, pestid_serve
from tests.serving.conftest import make_settings, running

PASSWORD = "correct horse battery"


@pytest.fixture
def service(tiny_model, tmp_path):
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with TestClient(app) as client:
        with app.state.sessions() as session, session.begin():
            add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
            add_user(session, "minh", PASSWORD, "admin")
        yield client


def count_hashing(monkeypatch) -> list[int]:
    """Counts argon2 work from now on: one entry per password hashed or verified."""
    hashed: list[int] = []
    real = accounts._hasher

    class Counting:
        def hash(self, password: str) -> str:
            hashed.append(1)
            return real.hash(password)

        def verify(self, digest: str, password: str) -> bool:
            hashed.append(1)
            return real.verify(digest, password)

    monkeypatch.setattr(accounts, "_hasher", Counting())
    return hashed


def _login(client: TestClient, name: str, password: str):
    return client.post("/v1/auth/login", json={"username": name, "password": password})


def test_an_account_is_locked_after_five_failures_even_for_the_right_password(service, monkeypatch):
    hashed = count_hashing(monkeypatch)
    assert [_login(service, "lan", f"wrong {k}").status_code for k in range(5)] == [401] * 5
    locked = _login(service, "lan", PASSWORD)
    assert locked.status_code == 429 and locked.json()["code"] == "too_many_attempts"
    assert 0 < int(locked.headers["retry-after"]) <= 30 and locked.json()["detail_vi"].startswith("Đăng nhập sai")
    assert len(hashed) == 5  # the locked attempt hashed nothing
    assert _login(service, "minh", PASSWORD).status_code == 200  # other accounts are unaffected


def test_back_off_doubles_and_a_success_clears_it(service):
    sessions = service.app.state.sessions
    start = datetime.now(UTC)
    for _ in range(7):
        with sessions() as session, session.begin():
            reserve(session, "lan", "10.0.0.1", now=start)  # the sixth and seventh wait; settled as failures anyway
            settle(session, "lan", "10.0.0.1", success=False, now=start)
    with sessions() as session, session.begin():
        assert reserve(session, "lan", "10.0.0.1", now=start) == pytest.approx(120)  # 30 s × 2²
        assert reserve(session, "lan", "10.0.0.1", now=start + timedelta(seconds=121)) == 0
        settle(session, "lan", "10.0.0.1", success=True, now=start)
    with sessions() as session, session.begin():
        assert reserve(session, "lan", "10.0.0.1", now=start) == 0


def test_the_officers_own_address_signs_in_while_another_is_locked(service):
    """OWASP: never lock an account for everyone. Guesses from one address lock that address's attempts at the
    account, not the officer's phone at another address."""
    assert [_login(service, "lan", f"wrong {k}").status_code for k in range(6)] == [401] * 5 + [429]
    own = TestClient(service.app, client=("10.20.30.40", 50000))  # the officer's office; the app is running
    assert own.post("/v1/auth/login", json={"username": "lan", "password": PASSWORD}).status_code == 200
    assert _login(service, "lan", PASSWORD).status_code == 429  # the guessing address stays throttled


def test_a_hundred_concurrent_guesses_hash_at_most_five(tiny_model, tmp_path, monkeypatch):
    """99 wrong passwords and the right one sent at once from one address: the count is taken atomically before
    hashing (it used to hash 77–84 of them, and let the right one in). The officer's known device still signs in."""
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with running(app) as url:
        with app.state.sessions() as session, session.begin():
            add_user(session, "lan", PASSWORD, "officer", "Phú Tân")
        hashed = count_hashing(monkeypatch)
        passwords = [f"wrong guess {k}" for k in range(99)]
        passwords.insert(50, PASSWORD)
        with httpx.Client(base_url=url, timeout=60) as client, ThreadPoolExecutor(max_workers=100) as pool:
            statuses = list(pool.map(lambda p: client.post("/v1/auth/login", json={"username": "lan", "password": p})
                                     .status_code, passwords))  # fmt: skip
        assert len(hashed) <= 5 and statuses.count(401) == len(hashed) - statuses.count(200)
        assert statuses.count(429) >= 95 and statuses.count(200) <= 1 and not any(s >= 500 for s in statuses)
        known = TestClient(app, client=("10.20.30.40", 50000))
        assert known.post("/v1/auth/login", json={"username": "lan", "password": PASSWORD}).status_code == 200


def test_an_address_guessing_many_names_is_slowed(service):
    for k in range(20):  # one address, twenty different names: no single account reaches its lockout
        assert _login(service, f"nobody{k}", "wrong password").status_code == 401
    refused = _login(service, "minh", PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 500


def test_a_flood_of_names_from_a_refused_address_adds_no_rows_and_old_counters_go(service):
    """3,000 sign-ins with random names from one address grew the counters by 3,000 rows in 25 s."""
    for k in range(300):
        _login(service, f"name{k}", "wrong password")
    with service.app.state.sessions() as session:  # type: ignore[attr-defined]
        assert session.query(accounts.LoginCounter).count() <= accounts.ADDRESS_FAILURES + 2  # the pairs + the address
    later = datetime.now(UTC) + accounts.FORGET_AFTER + timedelta(minutes=1)
    with service.app.state.sessions() as session, session.begin():  # type: ignore[attr-defined]
        assert accounts.prune_counters(session, later) >= accounts.ADDRESS_FAILURES
        assert session.query(accounts.LoginCounter).count() == 0


@pytest.mark.parametrize(
    "password",
    ["12345678", "short pass", "matkhau123", "aaaaaaaaaaaaaaaa", "lan-the-officer",
     # what the tester found accepted by the old 40-word list
     "password1234", "Password123!", "qwertyuiop12", "matkhau12345", "anhyeuem1234", "baovethucvat1"],
)  # fmt: skip
def test_weak_passwords_are_refused(password):
    with pytest.raises(AccountError):
        check_password(password, "lan")


def test_a_passphrase_is_accepted():
    check_password(PASSWORD, "lan")
    check_password("mật khẩu dài", "lan")


@pytest.mark.server
@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_a_forged_forwarded_for_does_not_reset_the_address_count(tiny_model, tmp_path, trusted):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default, so a local client could claim a new address
    with each guess. `pestid serve` believes it only from PESTID_TRUSTED_PROXIES (the nginx in front)."""
    command = [str(REPO / ".venv/bin/pestid"), "serve", "--model", str(tiny_model)]
    with pestid_serve(command, tmp_path / "data", cwd=tmp_path, env={"PESTID_TRUSTED_PROXIES": trusted}) as url:
        answers = [httpx.post(f"{url}/v1/auth/login", json={"username": f"nobody{k}", "password": "wrong guess"},
                              headers={"X-Forwarded-For": f"203.0.113.{k}"}).status_code for k in range(21)]  # fmt: skip
    if trusted:  # behind a trusted proxy each forwarded address is its own client: 21 addresses, 1 failure each
        assert answers == [401] * 21
    else:  # one real address, whatever it claims: the 21st waits
        assert answers == [401] * 20 + [429]


def test_attempts_left_in_flight_by_a_killed_worker_expire_however_many_are_refused(service):
    """A worker killed while hashing leaves its attempts counted; each refused retry used to refresh their age, so
    the address stayed throttled for as long as the officer kept trying."""
    sessions = service.app.state.sessions
    start = datetime.now(UTC)
    with sessions() as session, session.begin():
        for _ in range(5):  # five sign-ins hashing when the worker died: reserved, never settled
            assert reserve(session, "lan", "10.0.0.7", now=start) == 0
    for minute in (0.5, 1.0, 1.5):  # the officer keeps trying, as told
        with sessions() as session, session.begin():
            assert reserve(session, "lan", "10.0.0.7", now=start + timedelta(minutes=minute)) > 0
    with sessions() as session, session.begin():
        assert reserve(session, "lan", "10.0.0.7", now=start + accounts.STALE_RESERVATION + timedelta(seconds=1)) == 0
