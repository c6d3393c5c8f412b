"""Officer and admin accounts: argon2 password hashes, a password policy, sign-in throttling, bearer tokens, roles.

Throttling lives in the database (``LoginCounter``), so every worker sees the same counts, and each attempt is
counted before any password is hashed by one atomic statement (an upsert with RETURNING: ``reserve``), so a
hundred attempts at once cannot all slip past the count. Following OWASP's advice on lockout, an account is
never locked for everyone:
- an (account, address) pair that fails ``PAIR_FAILURES`` times in a row waits ``LOCK_BASE``, doubling with each
  further failure up to ``LOCK_MAX``; a success clears it. The officer's own phone or office, a different
  address, keeps signing in while someone else guesses;
- an address with ``ADDRESS_FAILURES`` failures within ``ADDRESS_WINDOW`` waits until the window ends, whatever
  names it tries.
A throttled attempt is answered before any password is hashed, so a flood costs no argon2 work. Passwords are
scored by zxcvbn (Dropbox's estimator of guesses) and must reach ``MIN_SCORE``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, case, delete, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from zxcvbn import zxcvbn

from pestid.errors import PestidError
from pestid.serving.db import AuthToken, LoginAttempt, LoginCounter, Submission, User
from pestid.serving.districts import canonical_district
from pestid.vocabulary import Role

ROLES = tuple(Role)
TOKEN_TTL = timedelta(hours=12)
_hasher = PasswordHasher()
MIN_PASSWORD = 12  # OWASP ASVS 2.1.1; no composition rules
MIN_SCORE = 3  # zxcvbn's "safely unguessable": about 10^8 guesses or more
# Words an attacker would try first here, given to zxcvbn beside the user name.
LOCAL_WORDS = ["pestid", "matkhau", "anhyeuem", "baovethucvat", "bvtv", "canbo", "nongnghiep", "vietnam", "saigon",
               "hanoi", "angiang", "officer", "admin", "lua", "ruong"]  # fmt: skip
PAIR_FAILURES = 5
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(minutes=15)
ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=10)
FORGET_AFTER = timedelta(days=1)  # a counter this quiet is deleted (prune_counters): an account's back-off restarts
STALE_RESERVATION = timedelta(minutes=2)  # a reservation its worker never settled (killed mid-hash) expires


class AccountError(PestidError):
    code = "account"


def add_user(session: Session, username: str, password: str, role: str, district: str | None = None) -> User:
    if role not in ROLES:
        raise AccountError(
            f"Vai trò '{role}' không hợp lệ ({', '.join(ROLES)}).", f"Role '{role}' is not one of {', '.join(ROLES)}."
        )
    check_password(password, username)
    if district is not None:
        listed = canonical_district(district)
        if listed is None:
            raise AccountError(
                f"Huyện '{district}' không có trong danh sách huyện.", f"'{district}' is not a listed district."
            )
        district = listed
    if session.scalars(select(User).where(User.username == username)).first():
        raise AccountError(f"Tài khoản '{username}' đã tồn tại.", f"User '{username}' already exists.")
    user = User(username=username, password_hash=_hasher.hash(password), role=role, district=district, active=True)
    session.add(user)
    session.flush()
    return user


def check_password(password: str, username: str) -> None:
    """Raise ``AccountError`` for a password that is short, built from the user name, or easy to guess."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Mật khẩu cần ít nhất {MIN_PASSWORD} ký tự (một câu ngắn dễ nhớ là tốt nhất).",
                           f"The password needs at least {MIN_PASSWORD} characters (a short sentence is best).")  # fmt: skip
    weak = (
        username.casefold() in password.casefold()
        or zxcvbn(password[:100], [username, *LOCAL_WORDS])["score"] < MIN_SCORE
    )
    if weak:
        raise AccountError("Mật khẩu quá dễ đoán (từ phổ biến, dãy số, lặp ký tự hoặc chứa tên đăng nhập); hãy dùng "
                           "một câu ngắn dễ nhớ.", "The password is too easy to guess (common words, sequences, "
                           "repeats or the user name); use a short sentence.")  # fmt: skip


def _keys(username: str, address: str) -> tuple[str, str]:
    return f"pair:{username[:64]}\n{address[:64]}", f"address:{address[:64]}"


def _reserve_one(session: Session, key: str, now: datetime) -> tuple[int, int, datetime | None, datetime | None]:
    """Count one attempt in flight on ``key``, atomically; (in flight, failures, first and last failure) after."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # reserved_at is when the oldest attempt still in flight began: a worker killed mid-hash leaves its count, which
    # expires STALE_RESERVATION after that, however many later attempts keep arriving (and are refused).
    fresh = or_(LoginCounter.reserved_at < now - STALE_RESERVATION, LoginCounter.in_flight <= 0)
    statement = (insert(LoginCounter).values(key=key, in_flight=1, reserved_at=now, failures=0)
                 .on_conflict_do_update(index_elements=[LoginCounter.key],
                                        set_={"in_flight": case((fresh, 1), else_=LoginCounter.in_flight + 1),
                                              "reserved_at": case((fresh, now), else_=LoginCounter.reserved_at)})
                 .returning(LoginCounter.in_flight, LoginCounter.failures, LoginCounter.first_failure_at, LoginCounter.last_failure_at))  # fmt: skip
    in_flight, failures, first, last = session.execute(statement).one()
    return in_flight, failures, _aware(first) if first else None, _aware(last) if last else None


def reserve(session: Session, username: str, address: str, now: datetime | None = None) -> float:
    """Seconds this attempt must wait (0: it may hash, and it is counted as in flight until ``settle``)."""
    now = now or datetime.now(UTC)
    pair, place = _keys(username, address)
    counter = session.get(LoginCounter, place)  # a plain read first: an address already refused adds no row for
    if counter is not None:  # each name it tries (a flood of names grew the table)
        first_failure = _aware(counter.first_failure_at) if counter.first_failure_at else None
        refused = _address_lock(counter.failures, first_failure, now)
        if refused > timedelta(0):
            return refused.total_seconds()
    in_flight, failures, _, last = _reserve_one(session, pair, now)
    wait = timedelta(0)
    if failures >= PAIR_FAILURES:
        lock = min(LOCK_MAX, LOCK_BASE * 2 ** (failures - PAIR_FAILURES))
        wait = last + lock - now if last else lock
        if wait <= timedelta(0) and in_flight > 1:  # after the lock, one attempt at a time
            wait = LOCK_BASE
    elif failures + in_flight > PAIR_FAILURES:  # so many at once that they would pass the count together
        wait = LOCK_BASE
    in_flight, failures, first, _ = _reserve_one(session, place, now)
    locked = _address_lock(failures, first, now)
    if locked > timedelta(0):
        wait = max(wait, locked)
    elif _in_window(failures, first, now) + in_flight > ADDRESS_FAILURES:
        wait = max(wait, LOCK_BASE)
    if wait > timedelta(0):
        _release(session, (pair, place))
    return max(0.0, wait.total_seconds())


def _in_window(failures: int, first: datetime | None, now: datetime) -> int:
    """An address's failures that still count: those of a window begun less than ``ADDRESS_WINDOW`` ago."""
    return failures if first is not None and first > now - ADDRESS_WINDOW else 0


def _address_lock(failures: int, first: datetime | None, now: datetime) -> timedelta:
    """How long an address that has used up its failures in the window must wait (0: it may try)."""
    if first is None or _in_window(failures, first, now) < ADDRESS_FAILURES:
        return timedelta(0)
    return first + ADDRESS_WINDOW - now


def prune_counters(session: Session, now: datetime | None = None) -> int:
    """Delete counters that no longer hold anything back: none in flight and no failure within ``FORGET_AFTER``
    (far past the longest lock and the address window), so a name tried once does not stay a row forever."""
    cutoff = (now or datetime.now(UTC)) - FORGET_AFTER
    quiet = or_(LoginCounter.last_failure_at.is_(None), LoginCounter.last_failure_at < cutoff)
    done = session.execute(
        delete(LoginCounter).where(LoginCounter.in_flight <= 0, LoginCounter.reserved_at < cutoff, quiet)
    )
    return int(done.rowcount or 0)  # type: ignore[attr-defined]


def _release(session: Session, keys: tuple[str, ...]) -> None:
    session.execute(update(LoginCounter).where(LoginCounter.key.in_(keys))
                    .values(in_flight=case((LoginCounter.in_flight > 0, LoginCounter.in_flight - 1), else_=0)))  # fmt: skip


def settle(session: Session, username: str, address: str, success: bool, now: datetime | None = None) -> None:
    """The attempt ``reserve`` let through is over: count its outcome, atomically, and keep it in the log."""
    now = now or datetime.now(UTC)
    pair, place = _keys(username, address)
    _release(session, (pair, place))
    if success:
        session.execute(update(LoginCounter).where(LoginCounter.key == pair).values(failures=0, last_failure_at=None))
    else:
        session.execute(update(LoginCounter).where(LoginCounter.key == pair)
                        .values(failures=LoginCounter.failures + 1, last_failure_at=now))  # fmt: skip
        expired = or_(LoginCounter.first_failure_at.is_(None), LoginCounter.first_failure_at <= now - ADDRESS_WINDOW)
        session.execute(update(LoginCounter).where(LoginCounter.key == place).values(
            failures=case((expired, 1), else_=LoginCounter.failures + 1),
            first_failure_at=case((expired, now), else_=LoginCounter.first_failure_at), last_failure_at=now))  # fmt: skip
    session.add(LoginAttempt(username=username[:64], address=address[:64], success=success, at=now))
    prune_counters(session, now)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def set_active(session: Session, username: str, active: bool) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise AccountError(f"Không có tài khoản '{username}'.", f"No user '{username}'.")
    user.active = active
    if not active:
        session.execute(delete(AuthToken).where(AuthToken.user_id == user.id))
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(session: Session, username: str, password: str) -> str | None:
    """A new bearer token, or None when the name, password or account is not valid."""
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None or not user.active:
        _hasher.hash(password)  # same cost either way: no user enumeration by timing
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    token = secrets.token_urlsafe(32)
    session.add(AuthToken(token_hash=_digest(token), user_id=user.id, expires_at=datetime.now(UTC) + TOKEN_TTL))
    return token


def logout(session: Session, token: str) -> None:
    session.execute(delete(AuthToken).where(AuthToken.token_hash == _digest(token)))


def user_for_token(session: Session, token: str) -> User | None:
    row = session.get(AuthToken, _digest(token))
    if row is None:
        return None
    if _aware(row.expires_at) < datetime.now(UTC):
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None


def district_scope(user: User) -> ColumnElement[bool]:
    """The submissions ``user`` may read and act on. An officer works in one district: its submissions and the
    ones that name no district (someone must see those). Senior officers and admins span every district."""
    if user.role != Role.officer:
        return true()
    unlocated = Submission.district.is_(None)
    return unlocated if user.district is None else or_(Submission.district == user.district, unlocated)
