"""Group images that are the same original photo, so that a split cannot leak.

Three kinds of evidence join two images, strongest first: identical bytes
(sha256), the same original-name token from the source (for example
Roboflow's ``bhopper-100`` in ``..._original_bhopper-100-jpg_<uuid>_jpg.rf..``),
and perceptual near-duplicates under flips and 90° rotations. Joins are applied
strongest and closest first; a near-duplicate join that would grow a group
past ``max_group_size`` is refused and counted, so a chain of look-alike field
photos cannot swallow the dataset.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pestid.hashing import from_hex
from pestid.manifest import Row
from pestid.neighbours import near_duplicate_pairs

DEFAULT_THRESHOLD = 6


@dataclass(frozen=True)
class GroupingConfig:
    threshold: int = DEFAULT_THRESHOLD
    max_group_size: int | None = None  # default: max(100, 2% of the images)
    token_pattern: str | None = None  # regex over source_name; its first named group that matched is the token
    dihedral: bool = True

    def cap(self, n: int) -> int:
        return self.max_group_size or max(100, int(0.02 * n))


def threshold_for(meta: dict[str, Any], override: int | None = None) -> int:
    """The near-duplicate threshold: the caller's, else the one the manifest was grouped with, else the default."""
    return override if override is not None else int(meta.get("near_duplicate_threshold", DEFAULT_THRESHOLD))


@dataclass
class GroupingReport:
    groups: int = 0
    largest_group: int = 0
    joins: dict[str, int] = field(default_factory=dict)
    refused_joins: int = 0
    mixed_label_groups: list[dict[str, Any]] = field(default_factory=list)


class UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(self, a: int, b: int, cap: int | None = None) -> bool | None:
        """Join; ``None`` if already together, ``False`` if the cap refused it."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return None
        if cap is not None and self.size[ra] + self.size[rb] > cap:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True


def name_tokens(rows: Sequence[Row], pattern: str | None) -> list[str | None]:
    """The original-name token of each row, scoped by source and source label, or None."""
    if not pattern:
        return [None] * len(rows)
    regex = re.compile(pattern)
    out: list[str | None] = []
    for row in rows:
        match = regex.search(row.source_name or row.path)
        token = next((v for v in match.groupdict().values() if v), None) if match else None
        out.append(f"{row.source}:{row.source_label}:{token}" if token else None)
    return out


def _same_value_edges(values: Sequence[str | None]) -> np.ndarray:
    by_value: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(values):
        if value:
            by_value[value].append(i)
    edges = [(members[0], m) for members in by_value.values() for m in members[1:]]
    return np.array(edges, dtype=np.int64).reshape(-1, 2)


def assign_groups(
    rows: Sequence[Row],
    config: GroupingConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[str], GroupingReport]:
    """A group id per row, and a report of the joins made and refused."""
    n = len(rows)
    uf = UnionFind(n)
    report = GroupingReport()
    for kind, edges in (
        ("exact", _same_value_edges([r.sha256 for r in rows])),
        ("name_token", _same_value_edges(name_tokens(rows, config.token_pattern))),
    ):
        report.joins[kind] = sum(1 for a, b in edges if uf.union(int(a), int(b)))
    i, j, dist = near_duplicate_pairs(
        from_hex([r.phash for r in rows]), threshold=config.threshold,
        dihedral=config.dihedral, progress=progress,
    )  # fmt: skip
    cap = config.cap(n)
    joined = 0
    for k in np.argsort(dist, kind="stable"):
        outcome = uf.union(int(i[k]), int(j[k]), cap)
        joined += outcome is True
        report.refused_joins += outcome is False
    report.joins["near_duplicate"] = joined
    roots = [uf.find(k) for k in range(n)]
    group_ids = stable_group_ids(rows, roots)
    _summarise(rows, group_ids, report)
    return group_ids, report


def stable_group_ids(rows: Sequence[Row], roots: list[int]) -> list[str]:
    """Name each group by its smallest member hash, so ids survive re-runs and reordering."""
    smallest: dict[int, str] = {}
    for row, root in zip(rows, roots, strict=True):
        if root not in smallest or row.sha256 < smallest[root]:
            smallest[root] = row.sha256
    names = {root: "g-" + hashlib.sha256(s.encode()).hexdigest()[:10] for root, s in smallest.items()}
    return [names[root] for root in roots]


def _summarise(rows: Sequence[Row], group_ids: list[str], report: GroupingReport) -> None:
    members: dict[str, list[Row]] = defaultdict(list)
    for row, gid in zip(rows, group_ids, strict=True):
        members[gid].append(row)
    report.groups = len(members)
    report.largest_group = max((len(m) for m in members.values()), default=0)
    for gid, rs in members.items():
        labels = Counter(r.label for r in rs)
        if len(labels) > 1:
            report.mixed_label_groups.append(
                {"group": gid, "labels": dict(labels.most_common()), "examples": [r.path for r in rs[:4]]}
            )
