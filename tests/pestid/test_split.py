import random
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pestid.cli import app
from pestid.definitions import Definition
from pestid.grouping import GroupingConfig, assign_groups
from pestid.importers import import_dataset
from pestid.leaks import check_leaks
from pestid.manifest import Manifest, Row, read_manifest, write_manifest
from pestid.sample import write_sample
from pestid.splits import group_and_split, split_groups


@pytest.fixture(scope="module")
def sample_manifest(tmp_path_factory) -> Manifest:
    root = tmp_path_factory.mktemp("sample")
    write_sample(root, originals=8, copies=3, size=96, seed=1)
    manifest, _ = import_dataset(Definition(name="sample", format="folder", root="."), root, workers=1)
    return manifest


def _original(row: Row) -> str:
    return row.path.rsplit("-", 1)[0]  # label/label-007-2.jpg -> label/label-007


def test_augmented_copies_of_one_original_share_a_group(sample_manifest):
    groups, report = assign_groups(sample_manifest.rows, GroupingConfig(threshold=8))
    by_original = defaultdict(set)
    for row, group in zip(sample_manifest.rows, groups, strict=True):
        by_original[_original(row)].add(group)
    together = sum(len(g) == 1 for g in by_original.values())
    assert together / len(by_original) >= 0.9
    assert report.groups < len(sample_manifest.rows) / 2


def test_split_is_stratified_and_keeps_groups_whole(sample_manifest):
    result, _ = group_and_split(sample_manifest, config=GroupingConfig(threshold=8), seed=3)
    split_of_group = defaultdict(set)
    for row in result.rows:
        split_of_group[row.group].add(row.split)
    assert all(len(s) == 1 for s in split_of_group.values())
    for label in result.labels:
        assert {r.split for r in result.rows if r.label == label} == {"train", "val", "test"}
    train_share = sum(r.split == "train" for r in result.rows) / len(result.rows)
    assert 0.55 < train_share < 0.85


def test_same_seed_same_split_and_version(sample_manifest):
    a, _ = group_and_split(sample_manifest, config=GroupingConfig(threshold=8), seed=5)
    b, _ = group_and_split(sample_manifest, config=GroupingConfig(threshold=8), seed=5)
    assert a.rows == b.rows and a.version == b.version


def test_naive_split_leaks_and_pestid_split_does_not(sample_manifest):
    rng = random.Random(0)
    naive = [r.replace(split=rng.choice(["train", "train", "val", "test"])) for r in sample_manifest.rows]
    leaky = check_leaks(naive, threshold=8)
    assert leaky.leaks and leaky.crossing_pairs > 10
    result, _ = group_and_split(sample_manifest, config=GroupingConfig(threshold=8))
    clean = check_leaks(result.rows, threshold=8)
    assert clean.near_duplicate_pairs > 0 and not clean.leaks and clean.crossing_pairs == 0


def _row(i: int, phash: int, label: str = "brown_planthopper", name: str = "") -> Row:
    return Row(path=f"{i}.jpg", label=label, sha256=f"{i:064x}", phash=f"{phash:016x}", width=1, height=1,
               source="t", source_name=name)  # fmt: skip


def test_chain_of_lookalikes_is_capped_and_refusals_are_counted():
    # a chain: each hash one bit away from the next, 40 links long
    value, rows = 0, []
    for i in range(40):
        value ^= 1 << (i % 63 + 1)
        rows.append(_row(i, value))
    groups, report = assign_groups(rows, GroupingConfig(threshold=1, max_group_size=10, dihedral=False))
    sizes = defaultdict(int)
    for g in groups:
        sizes[g] += 1
    assert max(sizes.values()) <= 10 and report.refused_joins > 0


def test_name_tokens_join_copies_the_pixels_cannot():
    rows = [_row(0, 0x0F0F0F0F0F0F0F0F, name="a_original_bug-7-jpg_x"), _row(1, 0x70F0F0F0F0F0F0F0, name="a_original_bug-7-jpg_y"),
            _row(2, 0x123456789ABCDEF0, name="a_original_bug-8-jpg_z")]  # fmt: skip
    groups, report = assign_groups(rows, GroupingConfig(threshold=2, token_pattern=r"_original_(?P<token>.+?)-jpg_"))
    assert groups[0] == groups[1] != groups[2] and report.joins["name_token"] == 1


def test_groups_with_different_labels_are_reported_for_an_officer():
    rows = [_row(0, 0xFF00FF00FF00FF00), _row(1, 0xFF00FF00FF00FF01, label="weevils")]
    _, report = assign_groups(rows, GroupingConfig(threshold=2))
    assert report.mixed_label_groups[0]["labels"] == {"brown_planthopper": 1, "weevils": 1}


def test_rare_class_with_three_groups_reaches_every_split():
    rows = [_row(i, i * 0x1111111111111111) for i in range(3)]
    rows += [_row(10 + i, (i + 1) * 0x0101010101010101 << 4, label="weevils") for i in range(30)]
    assignment = split_groups(rows, [r.path for r in rows])
    assert {assignment[r.path] for r in rows[:3]} == {"train", "val", "test"}


def test_version_changes_with_content_not_order(tmp_path, sample_manifest):
    path = write_manifest(sample_manifest, tmp_path / "m.csv")
    again = read_manifest(path)
    assert again.version == sample_manifest.version and again.labels == sample_manifest.labels
    reordered = sample_manifest.with_rows(reversed(sample_manifest.rows))
    assert reordered.version == sample_manifest.version
    relabelled = sample_manifest.with_rows(
        [sample_manifest.rows[0].replace(label="weevils"), *sample_manifest.rows[1:]]
    )
    assert relabelled.version != sample_manifest.version


def test_cli_split_then_check_exits_zero_and_check_of_a_leaky_split_exits_one(tmp_path, sample_manifest):
    source = write_manifest(sample_manifest.with_rows(
        [r.replace(split=random.Random(i).choice(["train", "val", "test"])) for i, r in enumerate(sample_manifest.rows)],
        near_duplicate_threshold=8,
    ), tmp_path / "naive.csv")  # fmt: skip
    runner = CliRunner()
    leaky = runner.invoke(app, ["data", "check", str(source)])
    assert leaky.exit_code == 1 and "LEAK" in leaky.stdout
    out = tmp_path / "split.csv"
    assert runner.invoke(app, ["data", "split", str(source), "--out", str(out)]).exit_code == 0
    clean = runner.invoke(app, ["data", "check", str(out), "--json"])
    assert clean.exit_code == 0 and '"crossing_pairs": 0' in clean.stdout
    assert read_manifest(out).meta["grouped"] is True


def test_stats_counts_per_class_and_split_and_draws_a_chart(tmp_path, sample_manifest):
    result, _ = group_and_split(sample_manifest, config=GroupingConfig(threshold=8))
    path = write_manifest(result, tmp_path / "m.csv")
    run = CliRunner().invoke(app, ["data", "stats", str(path), "--json"])
    assert run.exit_code == 0
    import json

    stats = json.loads(run.stdout)
    per_class = stats["per_class"]["golden_apple_snail"]
    assert per_class["all"]["images"] == 32
    assert sum(per_class[s]["images"] for s in ("train", "val", "test")) == 32
    assert Path(stats["plot"]).read_bytes()[:4] == b"\x89PNG"


def test_stats_warn_about_imbalance():
    from pestid.stats import compute_stats

    rows = [_row(i, i) for i in range(30)] + [_row(100, 1, label="weevils")]
    assert any("Imbalanced" in w for w in compute_stats(rows).warnings)
