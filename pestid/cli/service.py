"""pestid serve, pestid users …, pestid backup and pestid restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pestid.cli.app import PHOTOS_HELP, app, review_app, serving_stores, users_app
from pestid.progress import console

NAMED = 20  # missing photos named on the terminal; manifest.json names them all


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="MODEL.onnx or models:/NAME@ALIAS from the MLflow registry.")],
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes; the cores are shared among them.")] = 1,
) -> None:
    """Phục vụ / run the identification API and the farmer's page (data folder: PESTID_DATA_DIR)."""
    from pestid.serving.run import serve as run_server

    console.print(f"pestid serving {model} on http://{host}:{port} ({workers} worker(s))")
    run_server(model=model, host=host, port=port, workers=workers)


# ---- users ------------------------------------------------------------------------------


def _user_sessions(db: str | None) -> Any:
    from pestid.serving.db import open_database
    from pestid.serving.settings import get_settings

    return open_database(db or get_settings().resolved_database_url)


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="officer, senior or admin.")] = "officer",
    district: Annotated[str | None, typer.Option(help="The officer's district.")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the serving database).")] = None,
    password: Annotated[str, typer.Option(prompt="Mật khẩu / Password", hide_input=True, show_default=False,
                                          confirmation_prompt="Nhập lại / Repeat it",
                                          envvar="PESTID_NEW_PASSWORD")] = "",
) -> None:  # fmt: skip
    """Thêm tài khoản / add an officer, senior officer or admin."""
    from pestid.serving.accounts import add_user

    with _user_sessions(db)() as session, session.begin():
        user = add_user(session, username, password, role, district)
        console.print(f"đã thêm / added {user.username} ({user.role})")


@users_app.command("disable")
def users_disable(username: str, db: Annotated[str | None, typer.Option(help="SQLAlchemy URL.")] = None) -> None:
    """Khóa tài khoản / disable an account and end its sessions."""
    from pestid.serving.accounts import set_active

    with _user_sessions(db)() as session, session.begin():
        set_active(session, username, False)
    console.print(f"đã khóa / disabled {username}")


# ---- review queue -----------------------------------------------------------------------


@review_app.command("load-suspects")
def review_load_suspects(
    suspects: Annotated[str, typer.Argument(help="CSV written by 'pestid data suspects'.")],
    limit: Annotated[int | None, typer.Option(help="Only the worst N.")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the serving database).")] = None,
) -> None:
    """Đưa nhãn nghi sai vào hàng duyệt / queue suspect labels for officers to confirm or correct."""
    from pestid.serving.app import open_photo_store
    from pestid.serving.settings import get_settings
    from pestid.serving.suspects_import import load_suspects

    counts = load_suspects(suspects, _user_sessions(db), open_photo_store(get_settings()), limit=limit)
    console.print(f"đã đưa vào hàng duyệt / queued {counts['queued']}, already queued {counts['already_queued']}, "
                  f"unreadable {counts['unreadable']}")  # fmt: skip


# ---- backups ------------------------------------------------------------------------------


@app.command()
def backup(
    out_dir: Annotated[Path, typer.Option("--out", help="A new folder for the backup.")],
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the serving database).")] = None,
    photos: Annotated[str | None, typer.Option(help=PHOTOS_HELP)] = None,
    previous: Annotated[Path | None, typer.Option(help="An earlier backup: the photos it holds are linked from it, "
                                                       "not read from the store again.")] = None,
) -> None:  # fmt: skip
    """Sao lưu / back up the database and its photos, with a manifest of counts and checksums."""
    from pestid.progress import progress_bar
    from pestid.serving.backup import backup as run_backup

    database_url, store = serving_stores(db, photos)
    with progress_bar("sao lưu ảnh / photos") as update:
        manifest = run_backup(database_url, store, out_dir, previous=previous, progress=update)
    rows, kept = manifest["rows"], manifest["photos"]
    console.print(f"đã sao lưu / backed up {rows.get('submissions', 0)} submissions, {kept['count']} photos "
                  f"({kept['bytes'] / 1e6:.1f} MB), {rows.get('reviews', 0)} reviews, {rows.get('audit_log', 0)} "
                  f"audit entries ({kept['linked']} photos linked from the previous backup) → {out_dir}")  # fmt: skip
    if kept["not_linked"]:
        console.print(f"[yellow]{kept['copied']} photos copied from the previous backup, not hard-linked "
                      f"({kept['not_linked']}): keep backups on one file system to store each photo once.[/]")  # fmt: skip
    _missing_photos(kept["missing"], "this backup does not hold them; everything else is backed up and restorable. "
                    "Find out what removed them from the photo store.")  # fmt: skip


def _missing_photos(missing: list[dict[str, Any]], then: str) -> None:
    """Name the photos a backup could not hold, and exit 1 where there are any."""
    if not missing:
        return
    console.print(f"[red]thiếu ảnh / {len(missing)} photo(s) missing[/] (manifest.json, photos.missing): {then}")
    for photo in missing[:NAMED]:
        console.print(f"  {photo['path']}: {photo['problem']}")
    if len(missing) > NAMED:
        console.print(f"  … and {len(missing) - NAMED} more")
    raise typer.Exit(1)


@app.command()
def restore(
    folder: Annotated[Path, typer.Argument(help="A folder written by 'pestid backup'.")],
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the serving database).")] = None,
    photos: Annotated[str | None, typer.Option(help=PHOTOS_HELP)] = None,
    force: Annotated[bool, typer.Option(help="Restore over a database and photo store that hold data.")] = False,
) -> None:
    """Khôi phục / restore a backup into an empty database and photo store (stop the service first)."""
    from pestid.progress import progress_bar
    from pestid.serving.backup import restore as run_restore
    from pestid.serving.settings import get_settings

    database_url, store = serving_stores(db, photos)
    with progress_bar("khôi phục ảnh / photos") as update:
        report = run_restore(folder, database_url, store, force=force, progress=update,
                             max_photo_bytes=get_settings().max_upload_bytes)  # fmt: skip
    rows = report["rows"]
    console.print(f"đã khôi phục / restored {rows.get('submissions', 0)} submissions, {report['photos']} photos, "
                  f"{rows.get('reviews', 0)} reviews, {rows.get('audit_log', 0)} audit entries; counts match "
                  "the backup's manifest")  # fmt: skip
    _missing_photos(report["missing"], "they were already missing when the backup was made: their rows are "
                    "restored, the photos are not, and the service cannot show them.")  # fmt: skip
