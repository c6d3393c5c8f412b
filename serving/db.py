"""The submissions database: SQLAlchemy models, engine, and Alembic migrations.

Any SQLAlchemy URL works; SQLite in the data folder is the default.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

from pestid.vocabulary import ReviewStatus

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x70657374  # "pest": the PostgreSQL advisory lock replicas take turns on while migrating
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A moment stored in UTC and read back with its offset on every database: SQLite keeps no time zone, so
    without this an API would send "2026-12-03T02:00:00" and a page would show UTC as local time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Submission(Base):
    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_status_created_at", "status", "created_at"),)  # the queue (0007)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))  # what the key was first used with
    status: Mapped[str] = mapped_column(String(32), default=ReviewStatus.pending_review.value, index=True)
    decision: Mapped[str] = mapped_column(String(32))
    predicted_label: Mapped[str] = mapped_column(String(64), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(128))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    commune: Mapped[str | None] = mapped_column(String(128), index=True)
    district: Mapped[str | None] = mapped_column(String(128), index=True)
    observed_on: Mapped[date | None] = mapped_column(Date)
    crop_stage: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(2), default="vi")
    final_label: Mapped[str | None] = mapped_column(String(64), index=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # the earliest submission with the same or a near-identical photo (submissions.find_duplicate): one report
    duplicate_of: Mapped[str | None] = mapped_column(String(32), index=True)
    # what an identified answer named (a species or a group; null otherwise), and, for an answer drawn for a blind
    # audit, the chance it had of being drawn (null: not an audit item). Migration 0009; see serving/audits.py.
    answer: Mapped[str | None] = mapped_column(String(64), index=True)
    audit_rate: Mapped[float | None] = mapped_column(Float)
    # when it was first approved or rejected, kept through undos: an audit item once decided has had its answer
    # shown (replies, /v1/precision, the audit log), so no later verdict on it is blind (migration 0011)
    first_decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    photos: Mapped[list[Photo]] = relationship(back_populates="submission", cascade="all, delete-orphan",
                                               order_by="Photo.position")  # fmt: skip


class Photo(Base):
    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(256))  # relative to the photo folder
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    phash: Mapped[str | None] = mapped_column(String(16), index=True)  # pestid.hashing.phash, hex
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    submission: Mapped[Submission] = relationship(back_populates="photos")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))  # officer | senior | admin
    district: Mapped[str | None] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)


class AuthToken(Base):
    __tablename__ = "auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    success: Mapped[bool] = mapped_column()


class LoginCounter(Base):
    """Sign-in throttling state for one key, changed only by single atomic statements (``accounts.reserve``)."""

    __tablename__ = "login_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # "pair:<account>\n<address>" or "address:…"
    in_flight: Mapped[int] = mapped_column(Integer)  # attempts reserved and being hashed now
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer)  # in a row (pair), or in the window (address)
    first_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ServiceSecret(Base):
    """A secret the service keeps in its database, so every worker and host shares it (migration 0005)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))  # label | reject
    label: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now)
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # given on an audit item while its answer was hidden from this officer: what the estimate counts (never changed;
    # an undo marks ``undone_at`` only, see serving/audits.py)
    blind: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=_now, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    submission_id: Mapped[str | None] = mapped_column(String(32), index=True)
    review_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")  # between workers; threads queue in one_writer
            cursor.close()

    return engine


def migrate(engine: Engine, *, lock: Path | None = None) -> None:
    """Bring the schema to the newest Alembic revision.

    With ``lock``, workers starting together take turns (an exclusive file lock),
    so only the first one migrates and the others find the schema at head. A file lock
    holds on one host only: on PostgreSQL, replicas on several hosts take turns on an
    advisory lock held until the migration commits (without it, replicas started together
    on an empty database failed on each other's CREATE TABLE).
    """
    import fcntl
    from contextlib import nullcontext

    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if lock is not None:
        lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") if lock is not None else nullcontext() as handle:
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


_SQLITE_WRITER = threading.Lock()
LOCKED_RETRIES = 4


def is_locked(exc: OperationalError) -> bool:
    return "locked" in str(exc.orig).lower() or "busy" in str(exc.orig).lower()


@contextmanager
def one_writer(sessions: sessionmaker) -> Iterator[None]:
    """On SQLite, this process's writers queue on a lock instead of polling the database file's lock.

    SQLite allows one writer at a time and its busy handler polls with growing sleeps, so under
    load some writers lose every race until the busy timeout ("database is locked"). Queued here,
    only the workers (processes) contend for the file. Other databases lock rows, not files: no-op.
    """
    if sessions.kw["bind"].dialect.name != "sqlite":
        yield
        return
    with _SQLITE_WRITER:
        yield


@contextmanager
def writing(sessions: sessionmaker) -> Iterator[Session]:
    """A write transaction: a session, begun, committed on success, with ``one_writer``'s queue on SQLite."""
    with one_writer(sessions), sessions() as session, session.begin():
        yield session


def retry_locked(attempt: Callable[[], T], *, retries: int = LOCKED_RETRIES) -> T:
    """Run a write transaction, again after a short jittered wait when SQLite still says it is locked.

    ``attempt`` must leave nothing behind when it raises (the caller's transaction rolls back).
    """
    for tries in range(retries + 1):
        try:
            return attempt()
        except OperationalError as exc:
            if not is_locked(exc) or tries == retries:
                raise
            time.sleep(random.uniform(0.05, 0.2) * 2**tries)
    raise AssertionError("unreachable")


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)


def open_database(url: str, *, migrate_schema: bool = True) -> sessionmaker:
    """Engine, migrations to head (unless only reading), and a session factory: what a command-line tool needs."""
    engine = make_engine(url)
    if migrate_schema:
        migrate(engine)
    return session_factory(engine)
