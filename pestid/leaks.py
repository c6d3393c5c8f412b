"""Leak check: near-duplicate and same-original pairs that cross splits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pestid.grouping import name_tokens
from pestid.hashing import from_hex
from pestid.manifest import Row
from pestid.neighbours import near_duplicate_pairs


@dataclass
class LeakReport:
    threshold: int
    images: int
    near_duplicate_pairs: int = 0
    crossing_pairs: int = 0
    crossing_by_splits: dict[str, int] = field(default_factory=dict)
    crossing_name_token_pairs: int = 0
    images_with_twin_elsewhere: dict[str, int] = field(default_factory=dict)
    worst: list[dict[str, object]] = field(default_factory=list)
    unsplit_images: int = 0

    @property
    def leaks(self) -> bool:
        return self.crossing_pairs > 0 or self.crossing_name_token_pairs > 0


def check_leaks(
    rows: Sequence[Row],
    *,
    threshold: int,
    token_pattern: str | None = None,
    worst: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> LeakReport:
    report = LeakReport(threshold=threshold, images=len(rows))
    report.unsplit_images = sum(1 for r in rows if not r.split)
    i, j, dist = near_duplicate_pairs(from_hex([r.phash for r in rows]), threshold=threshold, progress=progress)
    report.near_duplicate_pairs = len(i)
    splits = [r.split for r in rows]
    cross = [k for k in range(len(i)) if splits[i[k]] != splits[j[k]]]
    report.crossing_pairs = len(cross)
    report.crossing_by_splits = dict(Counter("–".join(sorted((splits[i[k]], splits[j[k]]))) for k in cross))
    twins: dict[str, set[int]] = defaultdict(set)
    for k in cross:
        for a in (int(i[k]), int(j[k])):
            if splits[a] in ("val", "test"):
                twins[splits[a]].add(a)
    report.images_with_twin_elsewhere = {s: len(v) for s, v in sorted(twins.items())}
    for k in sorted(cross, key=lambda k: int(dist[k]))[:worst]:
        ra, rb = rows[int(i[k])], rows[int(j[k])]
        report.worst.append(
            {"distance": int(dist[k]), "a": ra.path, "a_split": ra.split, "b": rb.path, "b_split": rb.split}
        )
    report.crossing_name_token_pairs = _crossing_same_value_pairs(name_tokens(rows, token_pattern), splits)
    return report


def _crossing_same_value_pairs(values: Sequence[str | None], splits: Sequence[str]) -> int:
    """Pairs sharing a value but not a split, counted without listing them."""
    per_value: dict[str, Counter[str]] = defaultdict(Counter)
    for value, split in zip(values, splits, strict=True):
        if value:
            per_value[value][split] += 1
    total = 0
    for counts in per_value.values():
        n = sum(counts.values())
        total += (n * n - sum(c * c for c in counts.values())) // 2
    return total
