"""Stratified group splits: every group lands in exactly one split.

Groups are taken class by class (the group's majority label), largest first
after a seeded shuffle, and each goes to the split that is furthest below its
target share of that class's images. Classes with at least three groups get
at least one group in every split.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

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
    base: Manifest, new_rows: Sequence[Row], *, config: GroupingConfig, seed: int = 0, val: float = 0.15,
    new_class_originals: int = 20, new_class_test: float = 0.25,
) -> tuple[Manifest, dict[str, Any]]:  # fmt: skip
    """Add new photos to a dataset whose test split is a frozen benchmark.

    Base rows keep their splits. New photos of the base's classes never enter
    test, and a new photo that shares a group with any test image is left out
    altogether, so no near-duplicate of the benchmark reaches training. Groups
    of new photos only are split between train and val.

    A label the base does not have becomes a class once ``new_class_originals``
    of its originals (groups) are among the new photos: ``new_class_test`` of
    them (at least one) form its own test originals, since a class must be
    judged on originals it never trained on; the base's test rows stay as they
    were. Below that count its photos are left out and reported as ``waiting``.
    """
    rows = [*base.rows, *new_rows]
    group_ids, _ = assign_groups(rows, config)
    n_base = len(base.rows)
    frozen = {g for r, g in zip(base.rows, group_ids, strict=False) if r.split == "test"}
    base_split = {g: r.split for r, g in zip(base.rows, group_ids, strict=False) if r.split}
    fresh = [(r, g) for r, g in zip(new_rows, group_ids[n_base:], strict=True)]
    grown, waiting = new_classes(base.labels, [(r, g) for r, g in fresh if g not in frozen], new_class_originals)
    unassigned = [(r, g) for r, g in fresh if g not in frozen and g not in base_split and r.label not in waiting]
    assignment = _split_new(unassigned, grown, val=val, test=new_class_test, seed=seed)
    out = [r.replace(group=g) for r, g in zip(base.rows, group_ids, strict=False)]
    report: dict[str, Any] = {"base": n_base, "new": len(new_rows), "added": 0, "left_out_near_test": 0}
    for row, group in fresh:
        if group in frozen:
            report["left_out_near_test"] += 1
        elif row.label not in waiting:
            out.append(row.replace(group=group, split=base_split.get(group) or assignment[group]))
            report["added"] += 1
    report["waiting"] = {label: n for label, n in sorted(waiting.items())}
    report["left_out_waiting"] = sum(1 for r, g in fresh if g not in frozen and r.label in waiting)
    report["new_classes"] = grown
    labels = tuple(dict.fromkeys([*base.labels, *sorted(grown)]))
    meta = {**base.meta, "frozen_test": True, "from_reviews": report}
    return Manifest(tuple(out), base.root, labels, meta), report


def new_classes(
    known: Sequence[str], fresh: Sequence[tuple[Row, str]], needed: int
) -> tuple[dict[str, int], dict[str, int]]:
    """Labels ``known`` lacks, with their originals (distinct groups) among ``fresh`` (row, group) pairs: those
    with at least ``needed`` become classes (the first dict), the others wait for more (the second)."""
    originals: dict[str, set[str]] = defaultdict(set)
    for row, group in fresh:
        if row.label not in known:
            originals[row.label].add(group)
    counts = {label: len(groups) for label, groups in sorted(originals.items())}
    return {k: n for k, n in counts.items() if n >= needed}, {k: n for k, n in counts.items() if n < needed}


def _split_new(
    pairs: Sequence[tuple[Row, str]], grown: dict[str, int], *, val: float, test: float, seed: int
) -> dict[str, str]:
    """Splits for new photos' groups: a new class's groups take their ``test`` share (at least one, drawn with
    ``seed``) first; every other group goes to train or val."""
    assignment: dict[str, str] = {}
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for row, group in pairs:
        votes[group][row.label] += 1
    rng = random.Random(seed)
    for label in sorted(grown):
        mine = sorted(g for g, counter in votes.items() if counter.most_common(1)[0][0] == label)
        rng.shuffle(mine)
        assignment.update({g: "test" for g in mine[: max(1, math.ceil(test * len(mine)))]})
    rest = [(r, g) for r, g in pairs if g not in assignment]
    assignment.update(split_groups([r for r, _ in rest], [g for _, g in rest],
                                   fractions={"train": 1 - val, "val": val}, seed=seed))  # fmt: skip
    return assignment
