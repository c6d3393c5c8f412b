"""Officer and admin accounts: argon2 password hashes, a password policy, sign-in throttling, bearer tokens, roles.

Throttling is kept in the database, so every worker sees the same counts:
- an account that fails ``ACCOUNT_FAILURES`` times in a row is locked, for ``LOCK_BASE`` doubling with each
  further failure up to ``LOCK_MAX``; a success clears it;
- an address with ``ADDRESS_FAILURES`` failures within ``ADDRESS_WINDOW`` waits until the oldest leaves it.
A throttled attempt is answered before any password is hashed, so a flood costs no argon2 work.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, or_, select, true
from sqlalchemy.orm import Session

from pestid.errors import PestidError
from pestid.serving.db import AuthToken, LoginAttempt, Submission, User
from pestid.vocabulary import Role

ROLES = tuple(Role)
TOKEN_TTL = timedelta(hours=12)
_hasher = PasswordHasher()
MIN_PASSWORD = 12  # OWASP ASVS 2.1.1; no composition rules, a list of common choices instead
COMMON_PASSWORDS = frozenset(
    [
        "12345678",
        "123456789",
        "1234567890",
        "123456789012",
        "12345678910",
        "password",
        "password1",
        "password123",
        "passw0rd",
        "qwerty123",
        "qwertyuiop",
        "11111111",
        "00000000",
        "88888888",
        "66666666",
        "iloveyou",
        "abc12345",
        "admin123",
        "administrator",
        "matkhau",
        "matkhau123",
        "123456abc",
        "abcd1234",
        "1q2w3e4r",
        "1qaz2wsx",
        "zaq12wsx",
        "asdfghjkl",
        "anhyeuem",
        "anhyeuem123",
        "vietnam",
        "vietnam123",
        "saigon123",
        "hanoi123",
        "caobac",
        "nongnghiep",
        "baovethucvat",
        "pestid",
        "pestid123",
        "officer123",
        "canbo123",
    ]
)
ACCOUNT_FAILURES = 5
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(minutes=15)
ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=10)


class AccountError(PestidError):
    code = "account"


def add_user(session: Session, username: str, password: str, role: str, district: str | None = None) -> User:
    if role not in ROLES:
        raise AccountError(
            f"Vai trò '{role}' không hợp lệ ({', '.join(ROLES)}).", f"Role '{role}' is not one of {', '.join(ROLES)}."
        )
    check_password(password, username)
    if session.scalars(select(User).where(User.username == username)).first():
        raise AccountError(f"Tài khoản '{username}' đã tồn tại.", f"User '{username}' already exists.")
    user = User(username=username, password_hash=_hasher.hash(password), role=role, district=district, active=True)
    session.add(user)
    session.flush()
    return user


def check_password(password: str, username: str) -> None:
    """Raise ``AccountError`` for a password that is short, common, or built from the user name."""
    folded = password.casefold()
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"Mật khẩu cần ít nhất {MIN_PASSWORD} ký tự (một câu ngắn dễ nhớ là tốt nhất).",
                           f"The password needs at least {MIN_PASSWORD} characters (a short sentence is best).")  # fmt: skip
    if folded in COMMON_PASSWORDS or len(set(folded)) < 4 or username.casefold() in folded:
        raise AccountError("Mật khẩu quá dễ đoán (phổ biến, lặp ký tự hoặc chứa tên đăng nhập).",
                           "The password is too easy to guess (common, repetitive, or containing the user name).")  # fmt: skip


def login_wait(session: Session, username: str, address: str, now: datetime | None = None) -> float:
    """Seconds this attempt must wait (0: it may go ahead), by the account's and the address's recent failures."""
    now = now or datetime.now(UTC)
    recent = session.scalars(select(LoginAttempt).where(LoginAttempt.username == username)
                             .order_by(LoginAttempt.id.desc()).limit(ACCOUNT_FAILURES + 16)).all()  # fmt: skip
    streak = 0
    for attempt in recent:
        if attempt.success:
            break
        streak += 1
    wait = timedelta(0)
    if streak >= ACCOUNT_FAILURES:
        lock = min(LOCK_MAX, LOCK_BASE * 2 ** (streak - ACCOUNT_FAILURES))
        wait = max(wait, _aware(recent[0].at) + lock - now)
    failures = session.scalars(select(LoginAttempt.at).where(
        LoginAttempt.address == address, LoginAttempt.success.is_(False), LoginAttempt.at > now - ADDRESS_WINDOW,
    ).order_by(LoginAttempt.at.desc()).limit(ADDRESS_FAILURES)).all()  # fmt: skip
    if len(failures) >= ADDRESS_FAILURES:
        wait = max(wait, _aware(failures[-1]) + ADDRESS_WINDOW - now)
    return max(0.0, wait.total_seconds())


def record_attempt(session: Session, username: str, address: str, success: bool) -> None:
    session.add(LoginAttempt(username=username[:64], address=address[:64], success=success))


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
