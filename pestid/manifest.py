"""Dataset manifests: one CSV row per image plus a JSON sidecar.

``NAME.csv`` holds path, label, group, split, sha256, phash, width, height,
source and where the row came from. ``NAME.meta.json`` beside it holds the
image root, the frozen label order and the dataset version. The version is a
hash of the rows' content, so two manifests with the same images, labels,
groups and splits have the same version wherever they were made.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pestid.errors import DatasetError

SPLITS = ("train", "val", "test")
COLUMNS = (
    "path", "label", "group", "split", "sha256", "phash",
    "width", "height", "source", "source_label", "source_name",
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    path: str
    label: str
    sha256: str
    phash: str
    width: int
    height: int
    source: str
    group: str = ""
    split: str = ""
    source_label: str = ""
    source_name: str = ""

    def replace(self, **changes: Any) -> Row:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Manifest:
    rows: tuple[Row, ...]
    root: Path
    labels: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return dataset_version(self.rows, self.labels)

    def with_rows(self, rows: Iterable[Row], **meta: Any) -> Manifest:
        return Manifest(tuple(rows), self.root, self.labels, {**self.meta, **meta})

    def image_path(self, row: Row) -> Path:
        return self.root / row.path

    def split(self, name: str) -> list[Row]:
        if name == "all":
            return list(self.rows)
        return [r for r in self.rows if r.split == name]


def dataset_version(rows: Iterable[Row], labels: Iterable[str]) -> str:
    """A short content hash of the rows (order-independent) and the label order."""
    digest = hashlib.sha256("\x1f".join(labels).encode())
    for line in sorted(f"{r.path}\x1f{r.sha256}\x1f{r.label}\x1f{r.group}\x1f{r.split}" for r in rows):
        digest.update(line.encode())
        digest.update(b"\n")
    return "ds-" + digest.hexdigest()[:12]


def meta_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".meta.json")


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write the CSV and its sidecar; the root is stored relative to the CSV when it can be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in manifest.rows:
            writer.writerow(dataclasses.asdict(row))
    os.replace(tmp, path)
    try:
        root = os.path.relpath(manifest.root.resolve(), path.parent.resolve())
    except ValueError:  # another drive on Windows
        root = str(manifest.root.resolve())
    meta = {**manifest.meta, "version": manifest.version, "labels": list(manifest.labels), "root": root}
    meta["images"] = len(manifest.rows)
    meta_path(path).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"Không tìm thấy manifest {path}: hãy chạy 'pestid data import' trước.",
            f"Manifest {path} not found: run 'pestid data import' first.",
        )
    sidecar = meta_path(path)
    meta: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label", "sha256"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(
                f"Manifest {path} thiếu cột {', '.join(sorted(missing))}.",
                f"Manifest {path} lacks the column(s) {', '.join(sorted(missing))}.",
            )
        rows = tuple(_parse_row(raw) for raw in reader)
    root = (path.parent / meta.get("root", ".")).resolve()
    labels = tuple(meta.get("labels") or sorted({r.label for r in rows}))
    meta.pop("version", None)
    return Manifest(rows, root, labels, meta)


def _parse_row(raw: dict[str, str]) -> Row:
    values: dict[str, Any] = {k: raw.get(k) or "" for k in COLUMNS}
    values["width"] = int(values["width"] or 0)
    values["height"] = int(values["height"] or 0)
    return Row(**values)
