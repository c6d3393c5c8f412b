"""Officer and admin accounts: argon2 password hashes, bearer tokens, roles."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, or_, select, true
from sqlalchemy.orm import Session

from pestid.errors import PestidError
from pestid.serving.db import AuthToken, Submission, User
from pestid.vocabulary import Role

ROLES = tuple(Role)
TOKEN_TTL = timedelta(hours=12)
_hasher = PasswordHasher()


class AccountError(PestidError):
    code = "account"


def add_user(session: Session, username: str, password: str, role: str, district: str | None = None) -> User:
    if role not in ROLES:
        raise AccountError(
            f"Vai trò '{role}' không hợp lệ ({', '.join(ROLES)}).", f"Role '{role}' is not one of {', '.join(ROLES)}."
        )
    if len(password) < 8:
        raise AccountError("Mật khẩu cần ít nhất 8 ký tự.", "The password needs at least 8 characters.")
    if session.scalars(select(User).where(User.username == username)).first():
        raise AccountError(f"Tài khoản '{username}' đã tồn tại.", f"User '{username}' already exists.")
    user = User(username=username, password_hash=_hasher.hash(password), role=role, district=district, active=True)
    session.add(user)
    session.flush()
    return user


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


def user_for_token(session: Session, token: str) -> User | None:
    row = session.get(AuthToken, _digest(token))
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires < datetime.now(UTC):
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
