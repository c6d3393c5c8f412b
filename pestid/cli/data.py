"""pestid data …: import, split, merge, check, stats, sample, from-reviews, suspects."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pestid.cli.app import DOWNLOAD_HELP, PHOTOS_HELP, data_app, new_classes_line, out, print_json, serving_stores
from pestid.progress import console


@data_app.command("sample")
def data_sample(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the class folders into.")],
    originals: int = 12,
    copies: int = 3,
    size: int = 128,
    seed: int = 0,
) -> None:
    """Tạo dữ liệu mẫu tổng hợp / write pestid's own synthetic sample photos."""
    from pestid.sample import write_sample

    files = write_sample(out_dir, originals=originals, copies=copies, size=size, seed=seed)
    console.print(f"Đã ghi / wrote {len(files)} ảnh / images to {out_dir}")


@data_app.command("import")
def data_import(
    source: Annotated[Path, typer.Argument(help="A dataset definition, e.g. datasets/ricepest6.yaml.")],
    manifest: Annotated[Path, typer.Option("--out", help="Manifest CSV to write.")],
    root: Annotated[Path | None, typer.Option(help="Read the same layout from another folder.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decoding processes (default: all cores).")] = None,
) -> None:
    """Nhập dữ liệu / import a source into a manifest, with a report of every skipped file."""
    from pestid.dataset import import_to_manifest

    report = import_to_manifest(source, manifest, root=root, workers=workers)
    table = Table(title=f"Nhập / import: {report.definition}")
    table.add_column("nhãn / label")
    table.add_column("ảnh / images", justify="right")
    for label, count in report.per_label.items():
        table.add_row(label, str(count))
    out.print(table)
    if report.skipped:
        skipped = Table(title=f"Bỏ qua / skipped: {len(report.skipped)}")
        for column in ("path", "code", "reason"):
            skipped.add_column(column)
        for item in report.skipped[:50]:
            skipped.add_row(item["path"], item["code"], item["reason"])
        out.print(skipped)
    console.print(f"{report.imported} imported, {len(report.skipped)} skipped → {manifest}")


@data_app.command("split")
def data_split(
    manifest: Path,
    out_path: Annotated[Path, typer.Option("--out", help="Manifest CSV to write.")],
    threshold: Annotated[int | None, typer.Option(help="Near-duplicate Hamming threshold (64-bit phash).")] = None,
    max_group_size: Annotated[int | None, typer.Option(help="Refuse near-duplicate joins past this size.")] = None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> None:
    """Nhóm ảnh trùng và chia tập / group near-duplicates, then a stratified group split."""
    from pestid.dataset import split_manifest

    report = split_manifest(manifest, out_path, threshold=threshold, max_group_size=max_group_size,
                            val=val, test=test, seed=seed)  # fmt: skip
    console.print(
        f"{report.groups} nhóm / groups (largest {report.largest_group}); joins {report.joins}; "
        f"refused by the size cap: {report.refused_joins}"
    )
    if report.mixed_label_groups:
        console.print(f"[yellow]{len(report.mixed_label_groups)} nhóm có nhãn khác nhau / groups with mixed labels "
                      f"(an officer should resolve them):[/]")  # fmt: skip
        for item in report.mixed_label_groups[:20]:
            console.print(f"  {item['group']}: {item['labels']} e.g. {item['examples'][0]}")
    console.print(f"→ {out_path}")


@data_app.command("merge")
def data_merge(
    manifests: Annotated[list[Path], typer.Argument(help="Two or more manifests (imported or split).")],
    out_path: Annotated[Path, typer.Option("--out", help="Merged manifest CSV to write.")],
    collapse: Annotated[bool, typer.Option(help="Merge species rows into a group that is also a label.")] = False,
    threshold: Annotated[int | None, typer.Option(help="Cross-source near-duplicate threshold.")] = None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> None:
    """Gộp nhiều nguồn / several sources into one dataset version, near-duplicates grouped across them."""
    from pestid.dataset import merge_to_manifest

    report = merge_to_manifest(list(manifests), out_path, collapse=collapse, threshold=threshold, seed=seed,
                               val=val, test=test)  # fmt: skip
    table = Table(title="Gộp / merge")
    table.add_column("label")
    table.add_column("images", justify="right")
    for label, count in report.labels.items():
        table.add_row(label, str(count))
    out.print(table)
    for child, parent in report.collapsed.items():
        console.print(f"  {child} → {parent} (gộp vào nhóm / collapsed into the group)")
    console.print(f"sources {report.sources}; cross-source joins {report.cross_source_joins} "
                  f"({report.cross_source_groups} groups span sources); rows moved {report.moved_rows}; "
                  f"left out near a frozen test split {report.left_out_near_frozen_test} → {out_path}")  # fmt: skip


@data_app.command("from-reviews")
def data_from_reviews(
    out_path: Annotated[Path, typer.Option("--out", help="Manifest CSV to write.")],
    base: Annotated[Path | None, typer.Option(help="A base manifest whose test split stays frozen.")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the serving database).")] = None,
    photos: Annotated[str | None, typer.Option(help=PHOTOS_HELP)] = None,
    download_to: Annotated[Path | None, typer.Option(help=DOWNLOAD_HELP)] = None,
    threshold: Annotated[int | None, typer.Option(help="Near-duplicate Hamming threshold.")] = None,
    seed: int = 0,
    new_class_originals: Annotated[int, typer.Option(help="Approved originals a label the base lacks needs to "
                                                          "become a class; below it, its photos wait.")] = 20,
) -> None:  # fmt: skip
    """Tạo dữ liệu từ ảnh đã duyệt / a dataset version from approved submissions."""
    from pestid.serving.review_export import manifest_from_reviews

    database_url, store = serving_stores(db, photos)
    report = manifest_from_reviews(database_url, store, out_path, base=base, folder=download_to, threshold=threshold,
                                   seed=seed, new_class_originals=new_class_originals)  # fmt: skip
    console.print(f"{report['added']} ảnh duyệt được thêm / approved photos added, "
                  f"{report['left_out_near_test']} left out (near-duplicates of the frozen test split), "
                  f"{report['unreadable']} unreadable → {out_path}")  # fmt: skip
    new_classes_line(report, new_class_originals)


@data_app.command("check")
def data_check(
    manifest: Path,
    threshold: Annotated[int | None, typer.Option(help="Near-duplicate Hamming threshold.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Kiểm tra rò rỉ / count near-duplicate pairs that cross splits; exit 1 if any."""
    from pestid.dataset import check_manifest

    report = check_manifest(manifest, threshold=threshold)
    if as_json:
        print_json({**asdict(report), "leaks": report.leaks})
    else:
        out.print(f"ảnh / images: {report.images}   threshold: {report.threshold}")
        if report.unsplit_images:
            out.print(f"[yellow]{report.unsplit_images} images have no split yet: run 'pestid data split'.[/]")
        out.print(f"near-duplicate pairs: {report.near_duplicate_pairs}")
        out.print(f"pairs crossing splits: {report.crossing_pairs} {report.crossing_by_splits}")
        out.print(f"same-original (name token) pairs crossing splits: {report.crossing_name_token_pairs}")
        out.print(f"val/test images with a near-duplicate in another split: {report.images_with_twin_elsewhere}")
        for item in report.worst:
            out.print(f"  d={item['distance']}  {item['a_split']}:{item['a']}  ~  {item['b_split']}:{item['b']}")
        verdict = "[red]RÒ RỈ / LEAK[/]" if report.leaks else "[green]không rò rỉ / no leak[/]"
        out.print(verdict)
    if report.leaks:
        raise typer.Exit(1)


@data_app.command("stats")
def data_stats(
    manifest: Path,
    plot: Annotated[Path | None, typer.Option(help="Bar chart PNG (default: beside the manifest).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Thống kê / counts per class and split, image sizes, imbalance, bar chart."""
    from pestid.dataset import stats_manifest

    stats, png = stats_manifest(manifest, plot=plot)
    if as_json:
        print_json({**asdict(stats), "plot": str(png)})
        return
    table = Table(title=f"{stats.images} ảnh / images, {stats.classes} lớp / classes, {stats.groups} nhóm / groups")
    present = {split for per_split in stats.per_class.values() for split in per_split}
    columns = [c for c in ("all", "train", "val", "test", "unsplit") if c in present]
    table.add_column("label", no_wrap=True)
    for column in columns:
        table.add_column(f"{column} img/grp", justify="right")
    for label, per_split in stats.per_class.items():
        cells = [f"{per_split[c]['images']}/{per_split[c]['groups']}" if c in per_split else "—" for c in columns]
        table.add_row(label, *cells)
    out.print(table)
    out.print(f"width {stats.sizes['width']}  height {stats.sizes['height']}  imbalance ×{stats.imbalance_ratio}")
    for warning in stats.warnings:
        out.print(f"[yellow]⚠ {warning}[/]")
    out.print(f"biểu đồ / chart: {png}")


@data_app.command("suspects")
def data_suspects(
    manifest: Path,
    out_path: Annotated[Path, typer.Option("--out", help="CSV of suspect labels, worst first.")],
    config: Annotated[Path, typer.Option(help="Config naming the backbone.")] = Path("training/configs/probe.yaml"),
    folds: int = 5,
    show: int = 20,
) -> None:
    """Nhãn nghi sai / photos whose label the out-of-fold predictions contradict (cleanlab)."""
    from pestid.training.config import resolve_config
    from pestid.training.suspects import find_suspects, write_suspects

    suspects = find_suspects(resolve_config(config), manifest, folds=folds)
    write_suspects(suspects, out_path)
    table = Table(title=f"{len(suspects)} nhãn nghi sai / suspect labels")
    for column in ("path", "label", "suggested", "p(label)"):
        table.add_column(column)
    for s in suspects[:show]:
        table.add_row(Path(s.path).name, s.label, s.suggested, f"{s.label_probability:.3f}")
    out.print(table)
    console.print(f"→ {out_path}  (load into the review queue: pestid review load-suspects {out_path})")
