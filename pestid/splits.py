"""Stratified group splits: every group lands in exactly one split.

Groups are taken class by class (the group's majority label), largest first
after a seeded shuffle, and each goes to the split that is furthest below its
target share of that class's images. Classes with at least three groups get
at least one group in every split.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from pestid.grouping import GroupingConfig, GroupingReport, assign_groups
from pestid.manifest import SPLITS, Manifest, Row

DEFAULT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def split_groups(
    rows: Sequence[Row],
    group_ids: Sequence[str],
    *,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """Map each group id to a split name."""
    fractions = fractions or DEFAULT_FRACTIONS
    total = sum(fractions.values())
    shares = {s: fractions.get(s, 0.0) / total for s in SPLITS}
    sizes: Counter[str] = Counter(group_ids)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for row, gid in zip(rows, group_ids, strict=True):
        votes[gid][row.label] += 1
    by_class: dict[str, list[str]] = defaultdict(list)
    for gid, counter in votes.items():
        by_class[counter.most_common(1)[0][0]].append(gid)
    rng = random.Random(seed)
    assignment: dict[str, str] = {}
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        rng.shuffle(groups)
        groups.sort(key=lambda g: -sizes[g])  # stable: ties keep the seeded order
        class_total = sum(sizes[g] for g in groups)
        filled: Counter[str] = Counter()
        wanted = [s for s in SPLITS if shares[s] > 0]
        # Seed the small splits first so that rare classes appear in val and test.
        if len(groups) >= len(wanted):
            for split, gid in zip(sorted(wanted, key=lambda s: shares[s]), reversed(groups), strict=False):
                assignment[gid] = split
                filled[split] += sizes[gid]
        for gid in groups:
            if gid in assignment:
                continue
            split = max(wanted, key=lambda s: (shares[s] * class_total - filled[s]) / shares[s])
            assignment[gid] = split
            filled[split] += sizes[gid]
    return assignment


def group_and_split(
    manifest: Manifest,
    *,
    config: GroupingConfig,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Manifest, GroupingReport]:
    """Group near-duplicates, then give every group one split. Returns the new manifest."""
    group_ids, report = assign_groups(manifest.rows, config, progress=progress)
    assignment = split_groups(manifest.rows, group_ids, fractions=fractions, seed=seed)
    rows = [r.replace(group=g, split=assignment[g]) for r, g in zip(manifest.rows, group_ids, strict=True)]
    meta = {
        "grouped": True,
        "near_duplicate_threshold": config.threshold,
        "token_pattern": config.token_pattern,
        "split": {"seed": seed, "fractions": fractions or DEFAULT_FRACTIONS},
    }
    return manifest.with_rows(rows, **meta), report


def extend_frozen(
    base: Manifest, new_rows: Sequence[Row], *, config: GroupingConfig, seed: int = 0, val: float = 0.15
) -> tuple[Manifest, dict[str, int]]:
    """Add new photos to a dataset whose test split is a frozen benchmark.

    Base rows keep their splits. New photos never enter test, and a new photo
    that shares a group with any test image is left out altogether, so no
    near-duplicate of the benchmark reaches training. Groups of new photos only
    are split between train and val.
    """
    rows = [*base.rows, *new_rows]
    group_ids, _ = assign_groups(rows, config)
    n_base = len(base.rows)
    frozen = {g for r, g in zip(base.rows, group_ids, strict=False) if r.split == "test"}
    base_split = {g: r.split for r, g in zip(base.rows, group_ids, strict=False) if r.split}
    fresh = [(r, g) for r, g in zip(new_rows, group_ids[n_base:], strict=True)]
    unassigned = [(r, g) for r, g in fresh if g not in frozen and g not in base_split]
    assignment = split_groups([r for r, _ in unassigned], [g for _, g in unassigned],
                              fractions={"train": 1 - val, "val": val}, seed=seed)  # fmt: skip
    out = [r.replace(group=g) for r, g in zip(base.rows, group_ids, strict=False)]
    report = {"base": n_base, "new": len(new_rows), "added": 0, "left_out_near_test": 0}
    for row, group in fresh:
        if group in frozen:
            report["left_out_near_test"] += 1
            continue
        out.append(row.replace(group=group, split=base_split.get(group) or assignment[group]))
        report["added"] += 1
    labels = tuple(dict.fromkeys([*base.labels, *sorted({r.label for r in new_rows} - set(base.labels))]))
    meta = {**base.meta, "frozen_test": True, "from_reviews": report}
    return Manifest(tuple(out), base.root, labels, meta), report
