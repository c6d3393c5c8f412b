"""pestid serve and pestid users …."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pestid.cli.app import app, review_app, users_app
from pestid.progress import console


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
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
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
