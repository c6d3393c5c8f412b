"""Several sources, one dataset version: ``pestid data merge``.

The merged manifest takes the union of the labels and keeps every row's source
and its own group. Near-duplicates are then joined across sources, so one
original re-uploaded to two repositories is one group, not a leak. Splits that
were already made stay as they are; a group that now spans splits goes to the
strictest of them (test, then val, then train), and rows of a manifest whose
test split is frozen never move. New, unsplit groups get a stratified split.

Two conflicts stop the merge with both sides named: the same source label
meaning two organisms in two sources, and a label that is a group of another
label (``stem_borers`` beside ``striped_stem_borer``), which a classifier could
not tell apart. The second is resolved with ``collapse=True``: the species
rows take the group's label, and ``source_label`` keeps what the source said.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pestid.catalogue import Catalogue, load_catalogue
from pestid.errors import DatasetError
from pestid.grouping import GroupingConfig, UnionFind, assign_groups, stable_group_ids, threshold_for
from pestid.hashing import from_hex
from pestid.manifest import Manifest, Row
from pestid.neighbours import near_duplicate_pairs
from pestid.splits import DEFAULT_FRACTIONS, split_groups

STRICTNESS = {"test": 0, "val": 1, "train": 2, "": 3}


@dataclass
class MergeReport:
    sources: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    collapsed: dict[str, str] = field(default_factory=dict)
    cross_source_joins: int = 0
    cross_source_groups: int = 0
    moved_rows: dict[str, int] = field(default_factory=dict)  # "train->test": n
    left_out_near_frozen_test: int = 0
    newly_split_groups: int = 0


def _label_key(label: str) -> str:
    return re.sub(r"[^a-z0-9]", "", label.casefold())


def check_label_conflicts(manifests: Sequence[Manifest]) -> None:
    """The same source label (ignoring case and separators) must mean one organism everywhere."""
    meaning: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)  # key -> catalogue id -> (source, label)
    for manifest in manifests:
        for row in manifest.rows:
            if row.source_label:
                meaning[_label_key(row.source_label)].setdefault(row.label, (row.source, row.source_label))
    problems = []
    for ids in meaning.values():
        if len(ids) > 1:
            problems.append(
                " vs ".join(f"'{label}' in {source} → {oid}" for oid, (source, label) in sorted(ids.items()))
            )
    if problems:
        listed = "; ".join(problems)
        raise DatasetError(
            f"Hai nguồn dùng cùng một nhãn cho hai loài khác nhau: {listed}. Sửa mục labels của một định nghĩa.",
            f"Two sources use one label for different organisms: {listed}. Fix 'labels' in one of the definitions.",
            code="label_conflict",
        )


def hierarchy_conflicts(labels: set[str], catalogue: Catalogue) -> dict[str, str]:
    """label -> the nearest ancestor that is also a label."""
    out = {}
    for label in sorted(labels):
        parent = catalogue.parent_of(label) if label in catalogue else None
        while parent is not None:
            if parent.id in labels:
                out[label] = parent.id
                break
            parent = catalogue.parent_of(parent.id)
    return out


def _common_root(manifests: Sequence[Manifest]) -> Path:
    return Path(os.path.commonpath([str(m.root.resolve()) for m in manifests]))


def _rebased(manifest: Manifest, root: Path, index: int) -> list[Row]:
    """Rows with paths relative to the merged root and groups scoped by their manifest."""
    if not manifest.meta.get("grouped"):
        config = GroupingConfig(
            threshold=threshold_for(manifest.meta), token_pattern=manifest.meta.get("token_pattern")
        )
        groups, _ = assign_groups(manifest.rows, config)
    else:
        groups = [r.group or f"row-{k}" for k, r in enumerate(manifest.rows)]
    rows = []
    for row, group in zip(manifest.rows, groups, strict=True):
        path = Path(os.path.relpath(manifest.image_path(row).resolve(), root)).as_posix()
        rows.append(row.replace(path=path, group=f"{index}:{group}", source=row.source or f"manifest{index}"))
    return rows


def merge_manifests(
    manifests: Sequence[Manifest], *, collapse: bool = False, threshold: int | None = None, seed: int = 0,
    fractions: dict[str, float] | None = None, catalogue: Catalogue | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Manifest, MergeReport]:  # fmt: skip
    """One manifest from several; see the module docstring for the rules."""
    if len(manifests) < 2:
        raise DatasetError("Cần ít nhất hai manifest để gộp.", "Merging needs at least two manifests.")
    catalogue = catalogue or load_catalogue()
    check_label_conflicts(manifests)
    nested = hierarchy_conflicts({r.label for m in manifests for r in m.rows}, catalogue)
    if nested and not collapse:
        listed = "; ".join(f"'{child}' is one of '{parent}'" for child, parent in nested.items())
        raise DatasetError(
            f"Nhãn lồng nhau: {listed}. Mô hình không thể phân biệt chúng; dùng --collapse để gộp vào nhóm.",
            f"Nested labels: {listed}. A model cannot tell them apart; pass --collapse to merge them into the group.",
            code="nested_labels",
        )
    root = _common_root(manifests)
    rows: list[Row] = []
    frozen: list[bool] = []
    for index, manifest in enumerate(manifests):
        rebased = _rebased(manifest, root, index)
        rows += [r.replace(label=nested.get(r.label, r.label)) for r in rebased]
        frozen += [bool(manifest.meta.get("frozen_test"))] * len(rebased)
    group_ids, joins = _join_across_sources(rows, threshold, manifests, progress)
    report = MergeReport(collapsed=nested, cross_source_joins=joins)
    rows, report = _settle_splits(rows, group_ids, frozen, report, seed=seed, fractions=fractions)
    report.sources = dict(sorted(Counter(r.source for r in rows).items()))
    report.labels = dict(sorted(Counter(r.label for r in rows).items()))
    labels = tuple(dict.fromkeys(nested.get(lab, lab) for m in manifests for lab in m.labels))
    meta = {"definition": "+".join(str(m.meta.get("definition", "?")) for m in manifests), "grouped": True,
            "near_duplicate_threshold": _threshold(threshold, manifests), "merged_from": [
                {"definition": m.meta.get("definition"), "version": m.version, "images": len(m.rows)} for m in manifests],
            "collapsed": nested, "frozen_test": any(frozen)}  # fmt: skip
    return Manifest(tuple(rows), root, labels, meta), report


def _threshold(override: int | None, manifests: Sequence[Manifest]) -> int:
    """Across sources, the strictest of their thresholds: a loose one chains look-alikes."""
    return override if override is not None else min(threshold_for(m.meta) for m in manifests)


def _join_across_sources(
    rows: list[Row], threshold: int | None, manifests: Sequence[Manifest], progress: Callable[[int, int], None] | None
) -> tuple[list[str], int]:
    """Union each row's own group with near-duplicates (and identical bytes) in other manifests."""
    index = {g: k for k, g in enumerate(dict.fromkeys(r.group for r in rows))}
    uf = UnionFind(len(index))
    owner = [r.group.split(":", 1)[0] for r in rows]
    i, j, _ = near_duplicate_pairs(from_hex([r.phash for r in rows]), threshold=_threshold(threshold, manifests),
                                   progress=progress)  # fmt: skip
    pairs = list(zip(i.tolist(), j.tolist(), strict=True))
    by_hash: dict[str, int] = {}
    for k, row in enumerate(rows):
        pairs.append((by_hash.setdefault(row.sha256, k), k))
    joins = 0
    for a, b in pairs:
        if owner[a] != owner[b] and uf.union(index[rows[a].group], index[rows[b].group]):
            joins += 1
    return stable_group_ids(rows, [uf.find(index[r.group]) for r in rows]), joins


def _settle_splits(
    rows: list[Row], group_ids: list[str], frozen: list[bool], report: MergeReport, *, seed: int,
    fractions: dict[str, float] | None,
) -> tuple[list[Row], MergeReport]:  # fmt: skip
    members: dict[str, list[int]] = defaultdict(list)
    for k, gid in enumerate(group_ids):
        members[gid].append(k)
    report.cross_source_groups = sum(1 for idx in members.values() if len({rows[k].source for k in idx}) > 1)
    unsplit = [gid for gid, idx in members.items() if all(not rows[k].split for k in idx)]
    assignment = split_groups([rows[members[g][0]] for g in unsplit], unsplit, fractions=fractions or DEFAULT_FRACTIONS,
                              seed=seed) if unsplit else {}  # fmt: skip
    report.newly_split_groups = len(unsplit)
    out: list[Row] = []
    moved: Counter[str] = Counter()
    for gid, idx in members.items():
        split = assignment.get(gid) or min((rows[k].split for k in idx if rows[k].split), key=STRICTNESS.__getitem__)
        frozen_test = split == "test" and any(frozen[k] and rows[k].split == "test" for k in idx)
        for k in idx:
            row = rows[k]
            if frozen_test and not (frozen[k] and row.split == "test"):
                report.left_out_near_frozen_test += 1  # a frozen benchmark takes no new rows
                continue
            if row.split and row.split != split:
                moved[f"{row.split}->{split}"] += 1
            out.append(row.replace(group=gid, split=split))
    report.moved_rows = dict(moved)
    out.sort(key=lambda r: (r.source, r.path))
    return out, report
