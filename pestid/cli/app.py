"""The typer application, its command groups, and the output helpers every command uses."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from pestid.serving.photos import PhotoStorage

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


PHOTOS_HELP = "Photo store: a folder or s3://BUCKET/PREFIX (default: PESTID_PHOTO_STORE, else the serving folder)."
DOWNLOAD_HELP = "Where photos from a bucket are kept for training (default: MANIFEST.photos/ beside the manifest)."


def serving_stores(db: str | None, photos: str | None) -> tuple[str, PhotoStorage]:
    """The serving database's URL and its photo store, as ``pestid serve`` would open them, each overridable."""
    from pestid.serving.app import open_photo_store
    from pestid.serving.settings import get_settings

    settings = get_settings()
    if photos is not None:
        settings = settings.model_copy(update={"photo_store": photos})
    return db or settings.resolved_database_url, open_photo_store(settings)


def new_classes_line(report: dict[str, Any], needed: int) -> None:
    """What officers' labels did to the label set: the classes they added, and those still waiting."""

    def approved(n: int) -> str:
        return f"{n} approved original{'' if n == 1 else 's'}"

    for label, originals in report.get("new_classes", {}).items():
        out.print(f"lớp mới / new class {label}: {approved(originals)} (at least {needed})")
    for label, originals in report.get("waiting", {}).items():
        out.print(f"chờ thêm ảnh / waiting {label}: {approved(originals)} of {needed}; its photos are left out until "
                  "then")  # fmt: skip
