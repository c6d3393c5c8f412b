"""pestid catalogue …: the species catalogue."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from pestid.catalogue import load_catalogue
from pestid.cli.app import catalogue_app, out, print_json


@catalogue_app.command("list")
def catalogue_list(
    category: Annotated[str | None, typer.Option(help="Only this category, e.g. insect.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mỗi dòng một loài / one organism per line: id, Vietnamese, English, scientific name."""
    organisms = [o for o in load_catalogue() if category is None or o.category.value == category]
    if as_json:
        print_json([o.model_dump(mode="json") for o in organisms])
        return
    for o in organisms:
        print(f"{o.id}\t{o.name_vi}\t{o.name_en}\t{o.scientific}")


@catalogue_app.command("show")
def catalogue_show(organism_id: str) -> None:
    """Chi tiết một loài / one organism in full."""
    cat = load_catalogue()
    o = cat.get(organism_id)
    parent = cat.parent_of(o.id)
    table = Table(show_header=False, title=f"{o.name_vi} / {o.name_en}")
    for key, value in (
        ("id", o.id), ("khoa học / scientific", o.scientific), ("nhóm / category", o.category.value),
        ("nhóm cha / parent", f"{parent.name_vi} / {parent.name_en}" if parent else "—"),
        ("truyền bệnh / vector of", ", ".join(o.vector_of) or "—"),
        ("dấu hiệu", o.signs_vi), ("signs", o.signs_en),
        ("khuyến cáo", o.advice_vi), ("advice", o.advice_en),
        ("đã kiểm chứng / vouched", "có / yes" if o.advice_vouched else "không: hỏi cán bộ xã / no: ask the commune"),
        ("nguồn / source", o.source + (f" ({o.source_url})" if o.source_url else "")),
    ):  # fmt: skip
        table.add_row(key, value)
    out.print(table)


@catalogue_app.command("stats")
def catalogue_stats(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Số mục theo loại / entries by category: organisms, groups, both, and a total."""
    counts = load_catalogue().counts_by_category()
    if as_json:
        print_json({c.value: {"organisms": o, "groups": g, "entries": o + g} for c, (o, g) in counts.items()})
        return
    print("loại / category\tloài / organisms\tnhóm / groups\tcộng / entries")
    for category, (organisms, groups) in counts.items():
        print(f"{category.value}\t{organisms}\t{groups}\t{organisms + groups}")
    organisms, groups = (sum(column) for column in zip(*counts.values(), strict=True))
    print(f"total\t{organisms}\t{groups}\t{organisms + groups}")
