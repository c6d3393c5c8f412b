"""The typer application, its command groups, and the output helpers every command uses."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

app = typer.Typer(help="pestid: nhận diện sâu bệnh hại lúa / rice pest and disease identification.",
                  no_args_is_help=True, pretty_exceptions_enable=False)  # fmt: skip
catalogue_app = typer.Typer(help="Danh mục loài / the species catalogue.", no_args_is_help=True)
data_app = typer.Typer(help="Dữ liệu / datasets: import, split, check, stats.", no_args_is_help=True)
users_app = typer.Typer(help="Tài khoản cán bộ / officer and admin accounts.", no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(data_app, name="data")
review_app = typer.Typer(help="Hàng duyệt / the officers' review queue.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(review_app, name="review")
out = Console(soft_wrap=True)  # stdout, for results; progress and messages go to stderr


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))
