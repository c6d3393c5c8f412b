"""The one CLI. Each command calls one public function with the same arguments."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pestid.catalogue import load_catalogue
from pestid.errors import PestidError
from pestid.progress import console

app = typer.Typer(help="pestid: nhận diện sâu bệnh hại lúa / rice pest and disease identification.",
                  no_args_is_help=True, pretty_exceptions_enable=False)  # fmt: skip
catalogue_app = typer.Typer(help="Danh mục loài / the species catalogue.", no_args_is_help=True)
data_app = typer.Typer(help="Dữ liệu / datasets: import, split, check, stats.", no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(data_app, name="data")
users_app = typer.Typer(help="Tài khoản cán bộ / officer and admin accounts.", no_args_is_help=True)
app.add_typer(users_app, name="users")
out = Console(soft_wrap=True)  # stdout, for results; progress and messages go to stderr


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


# ---- catalogue ------------------------------------------------------------------


@catalogue_app.command("list")
def catalogue_list(
    category: Annotated[str | None, typer.Option(help="Only this category, e.g. insect.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mỗi dòng một loài / one organism per line: id, Vietnamese, English, scientific name."""
    organisms = [o for o in load_catalogue() if category is None or o.category.value == category]
    if as_json:
        _print_json([o.model_dump(mode="json") for o in organisms])
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
        ("khuyến cáo", o.advice_vi), ("advice", o.advice_en),
    ):  # fmt: skip
        table.add_row(key, value)
    out.print(table)


# ---- data ------------------------------------------------------------------------


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


@data_app.command("from-reviews")
def data_from_reviews(
    out_path: Annotated[Path, typer.Option("--out", help="Manifest CSV to write.")],
    base: Annotated[Path | None, typer.Option(help="A base manifest whose test split stays frozen.")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: the serving database).")] = None,
    photos: Annotated[Path | None, typer.Option(help="Photo folder (default: the serving photo folder).")] = None,
    threshold: Annotated[int | None, typer.Option(help="Near-duplicate Hamming threshold.")] = None,
    seed: int = 0,
) -> None:
    """Tạo dữ liệu từ ảnh đã duyệt / a dataset version from approved submissions."""
    from pestid.dataset import manifest_from_reviews
    from serving.settings import get_settings

    settings = get_settings()
    report = manifest_from_reviews(db or settings.resolved_database_url, photos or settings.photo_dir, out_path,
                                   base=base, threshold=threshold, seed=seed)  # fmt: skip
    console.print(f"{report['added']} ảnh duyệt được thêm / approved photos added, "
                  f"{report['left_out_near_test']} left out (near-duplicates of the frozen test split), "
                  f"{report['unreadable']} unreadable → {out_path}")  # fmt: skip


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
        _print_json({**asdict(report), "leaks": report.leaks})
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
        _print_json({**asdict(stats), "plot": str(png)})
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


# ---- models: train, evaluate, export, predict ----------------------------------------


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    config: Annotated[Path, typer.Option(help="Training config, e.g. training/configs/default.yaml.")],
    data: Annotated[str | None, typer.Option(help="Manifest CSV (overrides data.manifest).")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Run folder (overrides out).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. epochs=3.")] = None,
) -> None:
    """Huấn luyện / train, calibrate, export and evaluate; tracked in MLflow."""
    from training.train import run

    result = run(config, data=data, out=out_dir, overrides=overrides)
    console.print(f"best val macro-F1 {result.fit.best_macro_f1:.4f} (epoch {result.fit.best_epoch}); "
                  f"temperature {result.calibration.get('temperature', 1):.3f}; run → {result.run_dir}")  # fmt: skip
    if result.evaluation:
        e = result.evaluation
        console.print(f"{e['split']}: macro-F1 {e['macro_f1']:.4f}  top-1 {e['top1']:.4f}  ECE {e['ece']:.4f}  "
                      f"coverage {e['coverage']:.3f}  → {result.onnx_path}")  # fmt: skip


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option(help="An exported MODEL.onnx.")],
    data: Annotated[Path, typer.Option(help="Manifest CSV.")],
    split: Annotated[str, typer.Option(help="train, val, test or all.")] = "test",
    report_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for JSON/Markdown reports and plots.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Đánh giá / evaluate an ONNX model on a manifest split."""
    from training.evaluate import evaluate_model

    if split not in ("train", "val", "test", "all"):
        raise typer.BadParameter("split must be one of train, val, test, all")
    report, files = evaluate_model(model, data, split=split, out_dir=report_dir)
    if as_json:
        _print_json({k: v for k, v in report.items() if k not in ("reliability",)})
        return
    for key in ("images", "macro_f1", "top1", "top5", "group_top1", "ece", "threshold", "coverage",
                "accuracy_at_threshold", "ood_auroc"):  # fmt: skip
        out.print(f"{key:>22}: {report[key]:.4f}" if isinstance(report[key], float) else f"{key:>22}: {report[key]}")
    for path in files:
        out.print(f"  → {path}")


@app.command()
def export(
    run_dir: Path,
    out_path: Annotated[Path, typer.Option("--out", help="MODEL.onnx to write.")],
) -> None:
    """Xuất / export a run to ONNX with its contract, parity-checked, with a model card."""
    from training.export import export_run

    result = export_run(run_dir, out_path)
    console.print(f"{result.onnx_path} (parity max |Δp| {result.parity_max_abs_diff:.1e}); card {result.card_path}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Photos to identify.")],
    model: Annotated[Path, typer.Option(help="An exported MODEL.onnx.")],
    top: Annotated[int, typer.Option(help="How many species to list.")] = 3,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Nhận diện / identify photos with an ONNX model (no torch needed)."""
    from pestid.identify import identify_files

    results = identify_files(model, images, top=top)
    if as_json:
        _print_json(results)
        return
    for item in results:
        if "error" in item:
            out.print(f"{item['image']}: [red]{item['error']}[/]")
        elif not item["recognised"]:
            out.print(f"{item['image']}: không nhận ra / not recognised (best guess {item['top'][0]['id']})")
        else:
            best = item["top"][0]
            out.print(f"{item['image']}: {best['name_vi']} / {best['name_en']} ({best['scientific']}) "
                      f"{best['probability']:.2f}")  # fmt: skip


@app.command()
def promote(
    data: Annotated[Path, typer.Option(help="Manifest whose test split both models are judged on.")],
    config: Annotated[Path | None, typer.Option(help="Training config holding the gate and MLflow settings.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. gate.recall_tolerance=0.02.")
    ] = None,
) -> None:
    """Thăng hạng / gate @challenger against @champion and move @champion if it passes."""
    from training.config import resolve_config
    from training.promote import promote as run_gate

    cfg = resolve_config(config, overrides)
    decision = run_gate(model_name=cfg.mlflow.registered_model, manifest=data, tracking_uri=cfg.mlflow.tracking_uri,
                        gate=cfg.gate)  # fmt: skip
    out.print(decision.summary())
    if not decision.passed:
        raise typer.Exit(1)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def retrain(
    config: Annotated[Path, typer.Option(help="Training config (model, MLflow, gate).")],
    out_manifest: Annotated[Path, typer.Option("--out", help="The new dataset version's manifest.")],
    base: Annotated[Path | None, typer.Option(help="Base manifest; its test split stays frozen.")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the serving database.")] = None,
    photos: Annotated[Path | None, typer.Option(help="The serving photo folder.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
) -> None:
    """Huấn luyện lại / approved reviews → dataset → train → challenger → gate → champion."""
    from serving.settings import get_settings
    from training.retrain import retrain as run_retrain

    settings = get_settings()
    result = run_retrain(config, base=base, out_manifest=out_manifest, database_url=db or settings.resolved_database_url,
                         photo_dir=photos or settings.photo_dir, overrides=overrides)  # fmt: skip
    console.print(f"dataset {out_manifest}: {result.dataset_report}")
    out.print(result.decision.summary())
    if not result.decision.passed:
        raise typer.Exit(1)


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="MODEL.onnx or models:/NAME@ALIAS from the MLflow registry.")],
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes; the cores are shared among them.")] = 1,
) -> None:
    """Phục vụ / run the identification API and the farmer's page (data folder: PESTID_DATA_DIR)."""
    from serving.run import serve as run_server

    console.print(f"pestid serving {model} on http://{host}:{port} ({workers} worker(s))")
    run_server(model=model, host=host, port=port, workers=workers)


# ---- users ------------------------------------------------------------------------------


def _user_sessions(db: str | None) -> Any:
    from serving.db import open_database
    from serving.settings import get_settings

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
    from serving.accounts import add_user

    with _user_sessions(db)() as session, session.begin():
        user = add_user(session, username, password, role, district)
        console.print(f"đã thêm / added {user.username} ({user.role})")


@users_app.command("disable")
def users_disable(username: str, db: Annotated[str | None, typer.Option(help="SQLAlchemy URL.")] = None) -> None:
    """Khóa tài khoản / disable an account and end its sessions."""
    from serving.accounts import set_active

    with _user_sessions(db)() as session, session.begin():
        set_active(session, username, False)
    console.print(f"đã khóa / disabled {username}")


def main() -> None:
    try:
        app()
    except PestidError as exc:
        console.print(f"[red]Lỗi:[/] {exc.message_vi}\n[red]Error:[/] {exc.message_en}")
        sys.exit(2)


if __name__ == "__main__":
    main()
