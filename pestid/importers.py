"""Importers: read a source as a dataset definition describes it, decode and hash
every image, and return manifest rows plus a report of every file skipped.

One bad file never aborts an import: it is listed with its reason.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pestid.catalogue import Catalogue, load_catalogue
from pestid.definitions import Definition
from pestid.errors import DatasetError, ImageDecodeError
from pestid.hashing import phash, sha256_bytes, to_hex
from pestid.imaging import DEFAULT_MAX_PIXELS, decode_image
from pestid.manifest import Manifest, Row

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp", ".tif", ".tiff"}
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Candidate:
    path: str  # relative to the root
    source_label: str | None
    source_name: str
    skip_reason: tuple[str, str] | None = None  # (code, reason) known before decoding


@dataclass
class ImportReport:
    definition: str
    root: str
    candidates: int = 0
    imported: int = 0
    per_label: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "skipped_count": len(self.skipped)}


def import_dataset(
    definition: Definition,
    root: Path,
    *,
    catalogue: Catalogue | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[Manifest, ImportReport]:
    catalogue = catalogue or load_catalogue()
    candidates = list(_READERS[definition.format](definition, root))
    definition.check_labels({c.source_label for c in candidates if c.source_label}, catalogue)
    report = ImportReport(definition=definition.name, root=str(root), candidates=len(candidates))
    to_decode: list[Candidate] = []
    for cand in candidates:
        label = definition.catalogue_id(cand.source_label) if cand.source_label else None
        if cand.skip_reason:
            _skip(report, cand, *cand.skip_reason)
        elif label is None:
            _skip(report, cand, "excluded_label", f"label '{cand.source_label}' is excluded by the definition")
        else:
            to_decode.append(cand)
    rows: list[Row] = []
    for cand, result in zip(to_decode, _decode_all(root, to_decode, max_pixels, workers, progress), strict=True):
        if isinstance(result, tuple):
            _skip(report, cand, *result)
            continue
        label = definition.catalogue_id(cand.source_label or "")
        assert label is not None
        rows.append(Row(path=cand.path, label=label, source=definition.name, split=_source_split(definition, cand),
                        source_label=cand.source_label or "", source_name=cand.source_name, **result))  # fmt: skip
    rows.sort(key=lambda r: r.path)
    report.imported = len(rows)
    report.per_label = dict(sorted(Counter(r.label for r in rows).items()))
    labels = tuple(sorted({r.label for r in rows}))
    meta = {"definition": definition.name, "token_pattern": definition.token_pattern,
            "near_duplicate_threshold": definition.near_duplicate_threshold, "grouped": False}  # fmt: skip
    return Manifest(tuple(rows), root, labels, meta), report


def _skip(report: ImportReport, cand: Candidate, code: str, reason: str) -> None:
    report.skipped.append({"path": cand.path, "code": code, "reason": reason})


def _source_split(definition: Definition, cand: Candidate) -> str:
    if not definition.split_pattern:
        return ""
    match = re.search(definition.split_pattern, cand.source_name)
    if not match:
        return ""
    split = match.group("split")
    return definition.split_names.get(split, split)


# ---- decoding, in parallel ------------------------------------------------------


def describe_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """sha256, perceptual hash and size of image bytes (raises ImageDecodeError)."""
    image = decode_image(data, max_pixels=max_pixels)
    return {"sha256": sha256_bytes(data), "phash": to_hex(phash(image)), "width": image.width, "height": image.height}


def _describe_file(args: tuple[str, int]) -> dict[str, Any] | tuple[str, str]:
    path, max_pixels = args
    try:
        return describe_image(Path(path).read_bytes(), max_pixels)
    except ImageDecodeError as exc:
        return exc.code, exc.message_en
    except OSError as exc:
        return "unreadable", f"cannot read the file: {exc.strerror}"


def _decode_all(
    root: Path, cands: list[Candidate], max_pixels: int, workers: int | None, progress: Progress | None
) -> Iterator[dict[str, Any] | tuple[str, str]]:
    jobs = [(str(root / c.path), max_pixels) for c in cands]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(jobs) < 64:
        results: Iterator[Any] = map(_describe_file, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers)
        results = pool.map(_describe_file, jobs, chunksize=32)
    try:
        for done, result in enumerate(results, 1):
            if progress:
                progress(done, len(jobs))
            yield result
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


# ---- readers: one per source format ---------------------------------------------


def _read_folder(definition: Definition, root: Path) -> Iterator[Candidate]:
    """One sub-folder per class; files directly in the root have no class."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        if len(parts) < 2:
            yield Candidate(rel, None, rel, ("no_class", "the file is not inside a class folder"))
            continue
        yield Candidate(rel, parts[0], rel)


def _read_manifest(definition: Definition, root: Path) -> Iterator[Candidate]:
    path = root / definition.manifest
    if not path.is_file():
        raise DatasetError(f"Không tìm thấy {path}.", f"Source manifest {path} not found.")
    cols = definition.columns
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for needed in (cols.path, cols.label):
            if needed not in (reader.fieldnames or ()):
                raise DatasetError(
                    f"{path} thiếu cột '{needed}'.",
                    f"{path} has no column '{needed}' (columns: {', '.join(reader.fieldnames or ())}).",
                )
        for raw in reader:
            rel = raw[cols.path]
            name = raw.get(cols.name or "", "") or rel
            if not (root / rel).is_file():
                yield Candidate(rel, raw[cols.label], name, ("missing", "the manifest lists it but the file is absent"))
            else:
                yield Candidate(rel, raw[cols.label], name)


def _yolo_names(root: Path) -> dict[int, str]:
    data_yaml = root / "data.yaml"
    if not data_yaml.is_file():
        raise DatasetError(f"Không tìm thấy {data_yaml}.", f"YOLO export {root} has no data.yaml.")
    names = (yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}).get("names")
    if isinstance(names, list):
        return dict(enumerate(str(n) for n in names))
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    raise DatasetError(f"{data_yaml} thiếu mục 'names'.", f"{data_yaml} has no 'names' list.")


def _read_yolo(definition: Definition, root: Path) -> Iterator[Candidate]:
    """A YOLO detection export: each image takes the single class of its boxes."""
    names = _yolo_names(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "images" in p.relative_to(root).parts):
        rel = path.relative_to(root).as_posix()
        parts = list(path.relative_to(root).parts)
        parts[len(parts) - 1 - parts[::-1].index("images")] = "labels"
        label_file = (root / Path(*parts)).with_suffix(".txt")
        classes = _yolo_classes(label_file)
        if not classes:
            yield Candidate(rel, None, rel, ("no_box", "the image has no labelled box"))
        elif len(classes) > 1:
            listed = ", ".join(names.get(c, str(c)) for c in sorted(classes))
            yield Candidate(rel, None, rel, ("several_classes", f"the boxes carry several classes ({listed})"))
        elif (cls := classes.pop()) not in names:
            yield Candidate(rel, None, rel, ("unknown_class", f"class id {cls} is not in data.yaml"))
        else:
            yield Candidate(rel, names[cls], rel)


def _yolo_classes(label_file: Path) -> set[int]:
    if not label_file.is_file():
        return set()
    classes = set()
    for line in label_file.read_text(encoding="utf-8", errors="replace").splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if first.isdigit():
            classes.add(int(first))
    return classes


_READERS: dict[str, Callable[[Definition, Path], Iterator[Candidate]]] = {
    "folder": _read_folder,
    "manifest": _read_manifest,
    "yolo": _read_yolo,
}
