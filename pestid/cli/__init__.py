"""The one CLI. Each command calls one public function with the same arguments.

Commands live by subject: ``catalogue.py``, ``data.py``, ``models.py`` (train, evaluate, export,
predict, promote, retrain) and ``service.py`` (serve, users, review, backup, restore).
"""

from __future__ import annotations

import sys

from pestid.cli import catalogue, data, models, service  # noqa: F401 - registers the commands
from pestid.cli.app import app
from pestid.errors import PestidError
from pestid.progress import console

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except PestidError as exc:
        console.print(f"[red]Lỗi:[/] {exc.message_vi}\n[red]Error:[/] {exc.message_en}")
        sys.exit(2)
