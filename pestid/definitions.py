"""Dataset definitions: ``datasets/<name>.yaml`` says where a source lives,
how to read it, and which catalogue id each source label means."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from pestid.catalogue import Catalogue
from pestid.errors import DatasetError
from pestid.grouping import DEFAULT_THRESHOLD


class Columns(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "path"
    label: str = "label"
    name: str | None = None  # the source's own file name, for tokens and splits


class Definition(BaseModel):
    """One dataset source. ``root`` is relative to the definition file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    format: Literal["folder", "yolo", "manifest"]
    root: str
    manifest: str = "manifest.csv"
    columns: Columns = Columns()
    labels: dict[str, str | None] = {}  # source label -> catalogue id; null excludes it
    split_pattern: str | None = None  # regex with a 'split' group over the source name
    split_names: dict[str, str] = {"valid": "val", "validation": "val"}
    token_pattern: str | None = None  # regex with a 'token' group over the source name
    near_duplicate_threshold: int = DEFAULT_THRESHOLD

    @field_validator("split_pattern", "token_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value

    def resolve_root(self, definition_path: Path, override: str | Path | None = None) -> Path:
        root = Path(override) if override else (definition_path.parent / self.root)
        root = root.resolve()
        if not root.is_dir():
            raise DatasetError(
                f"Không tìm thấy thư mục dữ liệu {root} cho '{self.name}': hãy đặt dữ liệu ở đó hoặc dùng --root DIR.",
                f"Dataset folder {root} for '{self.name}' not found: put the data there or pass --root DIR.",
                code="missing_dataset",
            )
        return root

    def catalogue_id(self, source_label: str) -> str | None:
        return self.labels.get(source_label, source_label) if self.labels else source_label

    def check_labels(self, source_labels: set[str], catalogue: Catalogue) -> None:
        """Every source label must map to a catalogue id (or be excluded with null)."""
        problems = []
        for label in sorted(source_labels):
            target = self.catalogue_id(label)
            if target is None or target in catalogue:
                continue
            near = ", ".join(catalogue.closest(target)) or "—"
            problems.append(f"'{label}' (→ {target}; closest: {near})")
        if problems:
            listed = "; ".join(problems)
            raise DatasetError(
                f"Nhãn chưa ánh xạ sang danh mục trong '{self.name}': {listed}. Thêm vào mục labels của định nghĩa.",
                f"Labels in '{self.name}' that map to no catalogue id: {listed}. Add them under 'labels' in the definition.",
                code="unmapped_label",
            )


def load_definition(path: str | Path) -> Definition:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"Không tìm thấy định nghĩa dữ liệu {path}.",
            f"Dataset definition {path} not found (see datasets/*.yaml).",
        )
    try:
        return Definition.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (ValidationError, yaml.YAMLError, re.error) as exc:
        first = str(exc).splitlines()[0:3]
        raise DatasetError(
            f"Định nghĩa dữ liệu {path} không hợp lệ: {' '.join(first)}",
            f"Dataset definition {path} is invalid: {' '.join(first)}",
        ) from None
