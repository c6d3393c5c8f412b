"""The data steps as functions over files: what ``pestid data …`` calls.

Each reads its inputs, calls the pure core (importers, grouping, splits,
leaks, stats) and writes its outputs; progress bars go to stderr.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from pestid.definitions import load_definition
from pestid.grouping import GroupingConfig, GroupingReport, threshold_for
from pestid.importers import ImportReport, import_dataset
from pestid.leaks import LeakReport, check_leaks
from pestid.manifest import read_manifest, write_manifest
from pestid.merge import MergeReport, merge_manifests
from pestid.progress import progress_bar
from pestid.splits import group_and_split
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
        threshold=threshold_for(manifest.meta, threshold),
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
    with progress_bar("Kiểm tra rò rỉ / leak check") as update:
        return check_leaks(manifest.rows, threshold=threshold_for(manifest.meta, threshold), token_pattern=manifest.meta.get("token_pattern"),
                           progress=update)  # fmt: skip


def stats_manifest(manifest_path: str | Path, *, plot: str | Path | None = None) -> tuple[DatasetStats, Path]:
    manifest_path = Path(manifest_path)
    stats = compute_stats(read_manifest(manifest_path).rows)
    png = plot_stats(stats, plot or manifest_path.with_suffix(".stats.png"))
    return stats, png


def merge_to_manifest(
    sources: list[str | Path], out: str | Path, *, collapse: bool = False, threshold: int | None = None, seed: int = 0,
    val: float = 0.15, test: float = 0.15,
) -> MergeReport:  # fmt: skip
    """Merge manifests into ``out``; the report is saved beside it as ``NAME.merge.json``."""
    manifests = [read_manifest(s) for s in sources]
    fractions = {"train": 1.0 - val - test, "val": val, "test": test}
    with progress_bar("Gộp nguồn, tìm ảnh gần trùng / merging, cross-source near-duplicates") as update:
        merged, report = merge_manifests(manifests, collapse=collapse, threshold=threshold, seed=seed,
                                         fractions=fractions, progress=update)  # fmt: skip
    out = Path(out)
    write_manifest(merged.with_rows(merged.rows, merge=asdict(report)), out)
    out.with_suffix(".merge.json").write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report
