"""The database's own copy tools, for ``pestid backup`` and ``pestid restore``: SQLite's online backup API and
PostgreSQL's ``pg_dump``/``pg_restore``.

Each dump is one consistent moment, and what else a backup records of that moment (the rows counted, the photos
listed) is read from that same moment: SQLite's copy is read after it is made; on PostgreSQL the counting
transaction exports its snapshot and ``pg_dump --snapshot`` dumps exactly what it sees, while writers go on.
``contents`` reads a copy's schema and photo rows back without restoring it, so a restore can check them first.
"""

from __future__ import annotations

import glob
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from itertools import takewhile
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from pestid.errors import PestidError
from pestid.serving.db import MIGRATIONS, Base, Photo

T = TypeVar("T")
SQLITE_FILE, POSTGRESQL_FILE = "database.sqlite", "database.pgdump"
DUMP_FILES = (SQLITE_FILE, POSTGRESQL_FILE)
# Tables whose rows are the service's data: a database holding any of them is not empty (a fresh start's receipt
# key, sign-in counters and schema are not data).
DATA_TABLES = ("submissions", "photos", "users", "reviews", "audit_log")


class BackupError(PestidError):
    code = "backup"


def kind(database_url: str) -> str:
    """``sqlite`` or ``postgresql``; anything else cannot be backed up with its own tools here."""
    name = make_url(database_url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"Chưa sao lưu được cơ sở dữ liệu {name}.",
                          f"Backups cover SQLite and PostgreSQL, not {name}: use its own tools.")  # fmt: skip
    return name


def counts(connection: Connection) -> dict[str, int]:
    """Rows per table, every table pestid knows and finds (the schema's version included)."""
    present = set(inspect(connection).get_table_names())
    names = [t.name for t in Base.metadata.sorted_tables if t.name in present]
    names += ["alembic_version"] if "alembic_version" in present else []
    return {name: int(connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()) for name in names}


def revision(connection: Connection) -> str | None:
    """The schema's Alembic revision."""
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def photo_rows(connection: Connection) -> list[tuple[str, str, int]]:
    """(path, sha256, bytes) of every stored photo, in a stable order."""
    query = select(Photo.path, Photo.sha256, Photo.size_bytes).order_by(Photo.path)
    return [(path, digest, int(size)) for path, digest, size in connection.execute(query)]


def moment(connection: Connection) -> tuple[dict[str, int], list[tuple[str, str, int]], str | None]:
    """What a backup records of the moment it copies: rows per table, the photos' rows and the schema."""
    return counts(connection), photo_rows(connection), revision(connection)


def _sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise BackupError("Cơ sở dữ liệu SQLite trong bộ nhớ không sao lưu được.",
                          "An in-memory SQLite database cannot be backed up.")  # fmt: skip
    return Path(database)


def _tool(name: str) -> str:
    """``pg_dump`` or ``pg_restore``: on the PATH (Debian's wrapper picks the newest), else Debian's newest."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise BackupError(f"Không tìm thấy {name} (gói postgresql-client).",
                          f"{name} is not installed: install PostgreSQL's client tools (postgresql-client).")  # fmt: skip
    return found


def _libpq(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL as libpq reads it, and the environment carrying its password (never on a command line)."""
    url = make_url(database_url)
    env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    plain = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return plain, env


def _run(command: list[str], env: dict[str, str], what: str) -> str:
    """What ``command`` printed; a refusal with its last words where it failed."""
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(
            f"{what} thất bại: {done.stderr.strip()[-500:]}", f"{what} failed: {done.stderr.strip()[-500:]}"
        )
    return done.stdout


@contextmanager
def _snapshot(database_url: str) -> Iterator[tuple[Connection, str | None]]:
    """A read-only connection at one moment, and PostgreSQL's name for that moment (for ``pg_dump --snapshot``)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name != "postgresql":
                yield connection, None
                return
            connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            yield connection, str(connection.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            connection.rollback()
    finally:
        engine.dispose()


def dump(database_url: str, folder: Path, read: Callable[[Connection], T]) -> tuple[str, T]:
    """Copy the database into ``folder`` with its own tools; returns the copy's file name and what ``read`` found
    in the very moment copied."""
    if kind(database_url) == "sqlite":
        source = _sqlite_path(database_url)
        if not source.is_file():
            raise BackupError(f"Không có cơ sở dữ liệu {source}.", f"There is no database at {source}.")
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(folder / SQLITE_FILE)) as copy:
            live.backup(copy)  # online: writers wait only while each batch of pages is copied
        engine = create_engine(f"sqlite:///{folder / SQLITE_FILE}")
        try:
            with engine.connect() as connection:
                return SQLITE_FILE, read(connection)
        finally:
            engine.dispose()
    plain, env = _libpq(database_url)
    with _snapshot(database_url) as (connection, snapshot):
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
              f"--file={folder / POSTGRESQL_FILE}", f"--dbname={plain}"], env, "pg_dump")  # fmt: skip
        return POSTGRESQL_FILE, read(connection)


def holds_data(database_url: str) -> bool:
    """Whether the database has rows in any of the service's data tables (a missing database holds none)."""
    if kind(database_url) == "sqlite" and not _sqlite_path(database_url).is_file():
        return False
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return any(connection.execute(text(f'SELECT 1 FROM "{t}" LIMIT 1')).first() for t in DATA_TABLES
                       if t in present)  # fmt: skip
    finally:
        engine.dispose()


def load(database_url: str, copy: Path) -> dict[str, int]:
    """Replace the database's contents with ``copy`` (made by ``dump``); returns its rows per table."""
    if kind(database_url) == "sqlite":
        target = _sqlite_path(database_url)
        target.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(copy)) as source, closing(sqlite3.connect(target)) as restored:
            source.backup(restored)  # page by page, the WAL included: whatever the file held before is gone
    else:
        plain, env = _libpq(database_url)
        _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
              "--exit-on-error", f"--dbname={plain}", str(copy)], env, "pg_restore")  # fmt: skip
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return counts(connection)
    finally:
        engine.dispose()


def contents(copy: Path) -> tuple[str | None, dict[str, str]]:
    """What a copy made by ``dump`` holds, read without restoring it: its schema's Alembic revision, and the sha256
    of each photo its rows name (by path)."""
    if copy.name == SQLITE_FILE:
        uri = f"{copy.resolve().as_uri()}?mode=ro&immutable=1"  # reads only: not even a journal beside it
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
        try:
            with engine.connect() as connection:
                return revision(connection), {path: digest for path, digest, _ in photo_rows(connection)}
        finally:
            engine.dispose()
    script = _run([_tool("pg_restore"), "--data-only", "--table=alembic_version", "--table=photos", "--file=-",
                   str(copy)], dict(os.environ), f"pg_restore --data-only {copy}")  # fmt: skip
    versions = _copied(script, "alembic_version")
    photos = {row["path"]: row["sha256"] for row in _copied(script, "photos")}
    return (versions[0]["version_num"] if versions else None), photos


def _copied(script: str, table: str) -> list[dict[str, str]]:
    """The rows of ``table`` in a plain-text dump's ``COPY`` block, each value as ``COPY`` writes it (a photo's
    path or digest needs no unescaping; one that would is not a photo's and is refused as such)."""
    lines = iter(script.splitlines())
    start, end = f"COPY public.{table} (", ") FROM stdin;"
    for line in lines:
        if line.startswith(start) and line.endswith(end):
            columns = line.removeprefix(start).removesuffix(end).split(", ")
            rows = takewhile(lambda row: row != "\\.", lines)  # the block ends at a line holding only \.
            return [dict(zip(columns, row.split("\t"), strict=False)) for row in rows]
    return []


def known_schemas() -> list[str]:
    """The Alembic revisions this code can migrate from, its newest (head) first."""
    from alembic.script import ScriptDirectory

    return [script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()]
