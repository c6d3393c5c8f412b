"""pestid train / evaluate / export / predict / promote / retrain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pestid.cli.app import DOWNLOAD_HELP, PHOTOS_HELP, app, new_classes_line, out, print_json, serving_stores
from pestid.progress import console

if TYPE_CHECKING:
    from pestid.training.quantize import Int8Result
    from pestid.training.report import EvaluationReport
    from pestid.training.train import TrainResult


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    config: Annotated[Path, typer.Option(help="Training config, e.g. training/configs/default.yaml.")],
    data: Annotated[str | None, typer.Option(help="Manifest CSV (overrides data.manifest).")] = None,
    out_dir: Annotated[str | None, typer.Option("--out", help="Run folder (overrides out).")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. epochs=3.")] = None,
) -> None:
    """Huấn luyện / train, calibrate, export and evaluate; tracked in MLflow."""
    from pestid.training.train import run

    result = run(config, data=data, out=out_dir, overrides=overrides)
    console.print(f"best val macro-F1 {result.fit.best_macro_f1:.4f} (epoch {result.fit.best_epoch}); "
                  f"temperature {result.calibration.get('temperature', 1):.3f}; run → {result.run_dir}")  # fmt: skip
    if result.evaluation:
        headline(result.evaluation)
        console.print(f"→ {result.onnx_path}")
    offline_line(result)


def offline_line(result: TrainResult) -> None:
    """The offline copy's line: written (with its figures), or why it was not."""
    if result.int8:
        int8_line(result.int8)
    elif result.int8_refused:
        refused = result.int8_refused
        console.print(f"[yellow]⚠ {refused.message_vi} Mô hình FP32 vẫn được đăng ký; bản ngoại tuyến trên điện thoại "
                      f"không được làm mới. / {refused.message_en} The FP32 model is registered all the same; the "
                      f"phones' offline copy is not refreshed. To write it after weighing the loss: pestid export "
                      f"{result.run_dir} --int8 --tolerance T; to lose less, export.int8_fp32_blocks keeps more "
                      f"early blocks FP32.[/]")  # fmt: skip


def headline(report: EvaluationReport) -> None:
    """Per-original figures first (each original counted once), with their intervals."""
    o, p = report.per_original, report.precision_promise
    nan = (float("nan"), float("nan"))
    ci, d = o.macro_f1_ci or nan, p.delivered_ci or nan
    out.print(f"{report.split}: {report.images} images, {o.groups} originals")
    out.print(f"  macro-F1 per original {o.macro_f1 or float('nan'):.4f} [95 % {ci[0]:.4f}, {ci[1]:.4f}]  "
              f"top-1 per original {o.top1 or float('nan'):.4f}")  # fmt: skip
    expected = "—" if p.expected is None else f"{p.expected:.4f}"
    out.print(f"  precision promised {p.promised} per class, expected {expected} overall / delivered "
              f"{p.delivered:.4f} [95 % {d[0]:.4f}, {d[1]:.4f}]; in-scope coverage {_pct(report.in_scope_coverage)}; "
              f"out-of-scope identified {_pct(report.out_of_scope_identified)}; disease identified as another kind "
              f"{_pct(report.disease_identified_as_other)}")  # fmt: skip
    out.print(f"  useful answers (species or group) {_pct(report.useful_coverage)} of in-scope originals, "
              f"{_pct(report.group_coverage)} at a group's level; precision per level: species "
              f"{_pct(report.species_precision)}, group {_pct(report.group_precision)}")  # fmt: skip
    for source, m in report.per_source.items():
        s = m.macro_f1_ci or nan
        out.print(
            f"  {source}: macro-F1 {m.macro_f1 or float('nan'):.4f} [{s[0]:.4f}, {s[1]:.4f}], {m.groups} originals"
        )
    out.print(f"  per file: macro-F1 {report.macro_f1:.4f}  top-1 {report.top1:.4f}  ECE {report.ece:.4f}")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


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
    from pestid.training.evaluate import evaluate_model

    if split not in ("train", "val", "test", "all"):
        raise typer.BadParameter("split must be one of train, val, test, all")
    report, files = evaluate_model(model, data, split=split, out_dir=report_dir)
    if as_json:
        print_json(report.model_dump(mode="json", exclude={"reliability", "rows"}))
        return
    headline(report)
    for path in files:
        out.print(f"  → {path}")


@app.command()
def export(
    run_dir: Path,
    out_path: Annotated[Path, typer.Option("--out", help="MODEL.onnx to write.")],
    int8: Annotated[bool, typer.Option("--int8", help="Also write MODEL.int8.onnx (the offline model), gated.")] = False,
    data: Annotated[Path | None, typer.Option(help="Manifest to calibrate and judge the INT8 copy on "
                                                   "(default: the run's).")] = None,
    tolerance: Annotated[float | None, typer.Option(help="Largest per-original macro-F1 loss allowed "
                                                         "(default: the run's export.int8_tolerance).")] = None,
) -> None:  # fmt: skip
    """Xuất / export a run to ONNX with its contract, parity-checked, with a model card."""
    from pestid.training.export import export_run

    result = export_run(run_dir, out_path)
    console.print(f"{result.onnx_path} (parity max |Δp| {result.parity_max_abs_diff:.1e}); card {result.card_path}")
    if int8:
        from pestid.training.config import resolve_config
        from pestid.training.quantize import quantize_int8, refit_recipe

        config = resolve_config(run_dir / "config.yaml")
        copy = quantize_int8(result.onnx_path, data or config.data.manifest, split=config.eval.split,
                             tolerance=config.export.int8_tolerance if tolerance is None else tolerance,
                             photos=config.export.calibration_photos,
                             refit=refit_recipe(config), fp32_blocks=config.export.int8_fp32_blocks)  # fmt: skip
        int8_line(copy)


def int8_line(copy: Int8Result) -> None:
    from pestid.predictor import integer_kernels

    console.print(f"{copy.path}: {copy.size_bytes / 1e6:.1f} MB (FP32 {copy.fp32_size_bytes / 1e6:.1f} MB); "
                  f"macro-F1 per original {copy.int8['macro_f1_per_original']:.3f} "
                  f"(FP32 {copy.fp32['macro_f1_per_original']:.3f}, {-copy.drop * 100 + 0.0:+.1f} points, measured on "
                  f"{integer_kernels()}); cross-runtime tolerance ±{copy.envelope:.1e} in probability (how far its answers "
                  f"may move on another CPU or in the browser, estimated on the {copy.calibration_photos} calibration "
                  f"photos)")  # fmt: skip


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
        print_json(results)
        return
    for item in results:
        if "error" in item:
            out.print(f"{item['image']}: [red]{item['error']}[/]")
        else:
            out.print(f"{item['image']}: [bold]{item['decision']}[/] — {item['message_vi']} / {item['message_en']}")
            answer = item["answer"]  # a species or a group; None when not identified: only candidates, no answer
            if answer:
                out.print(f"  {answer['name_vi']} / {answer['name_en']} ({answer['scientific']}) "
                          f"{answer['probability']:.2f}, mức / level: {item['level']}")  # fmt: skip
            candidates = ", ".join(f"{c['name_vi']} / {c['name_en']} {c['probability']:.2f}" for c in item["top"])
            out.print(f"  {'các khả năng / candidates' if answer else 'chưa chắc / not sure'}: {candidates}")


@app.command()
def promote(
    data: Annotated[Path, typer.Option(help="Manifest whose test split both models are judged on.")],
    config: Annotated[Path | None, typer.Option(help="Training config holding the gate and MLflow settings.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value overrides, e.g. gate.recall_tolerance=0.02.")
    ] = None,
) -> None:
    """Thăng hạng / gate @challenger against @champion and move @champion if it passes."""
    from pestid.training.config import resolve_config
    from pestid.training.promote import promote as run_gate

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
    photos: Annotated[str | None, typer.Option(help=PHOTOS_HELP)] = None,
    download_to: Annotated[Path | None, typer.Option(help=DOWNLOAD_HELP)] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides.")] = None,
) -> None:
    """Huấn luyện lại / approved reviews → dataset → train → challenger → gate → champion."""
    from pestid.serving.review_export import manifest_from_reviews
    from pestid.training.config import resolve_config
    from pestid.training.retrain import retrain as run_retrain

    reviews = resolve_config(config, overrides).reviews
    database_url, store = serving_stores(db, photos)
    report = manifest_from_reviews(database_url, store, out_manifest, base=base, folder=download_to,
                                   new_class_originals=reviews.new_class_originals,
                                   new_class_test=reviews.new_class_test)  # fmt: skip
    console.print(f"dataset {out_manifest}: {report}")
    new_classes_line(report, reviews.new_class_originals)
    result = run_retrain(config, out_manifest, overrides=overrides)
    offline_line(result.train)
    out.print(result.decision.summary())
    if not result.decision.passed:
        raise typer.Exit(1)
