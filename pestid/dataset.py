"""The data steps as functions over files: what ``pestid data …`` calls.

Each reads its inputs, calls the pure core (importers, grouping, splits,
leaks, stats) and writes its outputs; progress bars go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

from pestid.definitions import load_definition
from pestid.grouping import DEFAULT_THRESHOLD, GroupingConfig, GroupingReport
from pestid.importers import ImportReport, import_dataset
from pestid.leaks import LeakReport, check_leaks
from pestid.manifest import read_manifest, write_manifest
from pestid.progress import progress_bar
from pestid.splits import extend_frozen, group_and_split
from pestid.stats import DatasetStats, compute_stats, plot_stats


def import_to_manifest(
    source: str | Path, out: str | Path, *, root: str | Path | None = None, workers: int | None = None
) -> ImportReport:
    """Import a dataset definition's source into ``out``; the report is saved beside it as JSON."""
    source, out = Path(source), Path(out)
    definition = load_definition(source)
    image_root = definition.resolve_root(source, root)
    with progress_bar(f"Giải mã / decoding {definition.name}") as update:
        manifest, report = import_dataset(definition, image_root, workers=workers, progress=update)
    write_manifest(manifest, out)
    report_path = out.with_suffix(".import.json")
    report_path.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def split_manifest(
    manifest_path: str | Path,
    out: str | Path,
    *,
    threshold: int | None = None,
    max_group_size: int | None = None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> GroupingReport:
    manifest = read_manifest(manifest_path)
    config = GroupingConfig(
        threshold=threshold
        if threshold is not None
        else manifest.meta.get("near_duplicate_threshold", DEFAULT_THRESHOLD),
        max_group_size=max_group_size,
        token_pattern=manifest.meta.get("token_pattern"),
    )
    fractions = {"train": 1.0 - val - test, "val": val, "test": test}
    with progress_bar("Tìm ảnh gần trùng / near-duplicate search") as update:
        result, report = group_and_split(manifest, config=config, fractions=fractions, seed=seed, progress=update)
    write_manifest(result.with_rows(result.rows, grouping=report.__dict__), out)
    return report


def check_manifest(manifest_path: str | Path, *, threshold: int | None = None) -> LeakReport:
    manifest = read_manifest(manifest_path)
    if threshold is None:
        threshold = manifest.meta.get("near_duplicate_threshold", DEFAULT_THRESHOLD)
    with progress_bar("Kiểm tra rò rỉ / leak check") as update:
        return check_leaks(manifest.rows, threshold=threshold, token_pattern=manifest.meta.get("token_pattern"),
                           progress=update)  # fmt: skip


def stats_manifest(manifest_path: str | Path, *, plot: str | Path | None = None) -> tuple[DatasetStats, Path]:
    manifest_path = Path(manifest_path)
    stats = compute_stats(read_manifest(manifest_path).rows)
    png = plot_stats(stats, plot or manifest_path.with_suffix(".stats.png"))
    return stats, png


def manifest_from_reviews(
    database_url: str, photo_dir: str | Path, out: str | Path, *, base: str | Path | None = None,
    threshold: int | None = None, seed: int = 0,
) -> dict[str, int]:  # fmt: skip
    """Approved review photos as a dataset version, merged into ``base`` with its test split frozen."""
    from pestid.manifest import Manifest
    from serving.review_export import TOKEN_PATTERN, approved_rows

    base_manifest = read_manifest(base) if base else None
    root = base_manifest.root if base_manifest else Path(photo_dir)
    new_rows, skipped = approved_rows(database_url, Path(photo_dir), root=root)
    if base_manifest is None:
        base_manifest = Manifest((), root, (), {"near_duplicate_threshold": DEFAULT_THRESHOLD})
    patterns = [p for p in (base_manifest.meta.get("token_pattern"), TOKEN_PATTERN) if p]
    config = GroupingConfig(
        threshold=threshold
        if threshold is not None
        else base_manifest.meta.get("near_duplicate_threshold", DEFAULT_THRESHOLD),
        token_pattern="|".join(f"(?:{p})" for p in patterns),
    )
    if base:
        result, report = extend_frozen(base_manifest, new_rows, config=config, seed=seed)
    else:
        result, _ = group_and_split(base_manifest.with_rows(new_rows), config=config, seed=seed)
        report = {"base": 0, "new": len(new_rows), "added": len(new_rows), "left_out_near_test": 0}
    report["unreadable"] = len(skipped)
    write_manifest(result.with_rows(result.rows, token_pattern=config.token_pattern), out)
    return report
