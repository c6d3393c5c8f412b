"""pestid data merge: union of labels, groups across sources, frozen splits, named conflicts."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pestid.errors import DatasetError
from pestid.importers import describe_image
from pestid.manifest import Manifest, Row, read_manifest, write_manifest
from pestid.merge import merge_manifests
from pestid.sample import make_original
from tests.conftest import jpeg_bytes


def _source(root: Path, name: str, items: list[tuple[str, str, str, int, str, str]], **meta) -> Manifest:
    """items: (file, catalogue id, source label, photo seed, group, split); photos are written under root/name."""
    rows = []
    for file, label, source_label, seed, group, split in items:
        data = jpeg_bytes(make_original("brown_planthopper", random.Random(seed), 96))
        path = root / name / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(Row(path=file, label=label, source=name, group=group, split=split, source_label=source_label,
                        **describe_image(data)))  # fmt: skip
    labels = tuple(sorted({r.label for r in rows}))
    return Manifest(tuple(rows), root / name, labels, {"definition": name, "grouped": True, **meta})


def test_a_label_meaning_two_organisms_in_two_sources_is_an_error_naming_both(tmp_path):
    a = _source(tmp_path, "a", [("1.jpg", "weevils", "rice-bug", 1, "g1", "train")])
    b = _source(tmp_path, "b", [("1.jpg", "rice_bug", "Rice_Bug", 2, "g1", "train")])
    with pytest.raises(DatasetError) as err:
        merge_manifests([a, b])
    assert err.value.code == "label_conflict"
    assert "'rice-bug' in a → weevils" in err.value.message_en and "'Rice_Bug' in b → rice_bug" in err.value.message_en


def test_a_species_beside_its_group_is_refused_unless_collapsed(tmp_path):
    a = _source(tmp_path, "a", [("1.jpg", "stem_borers", "stem-borer", 1, "g1", "train"),
                                ("2.jpg", "brown_planthopper", "bph", 3, "g2", "val")])  # fmt: skip
    b = _source(tmp_path, "b", [("1.jpg", "striped_stem_borer", "asiatic-rice-borer", 2, "g1", "test")])
    with pytest.raises(DatasetError) as err:
        merge_manifests([a, b])
    assert err.value.code == "nested_labels" and "'striped_stem_borer' is one of 'stem_borers'" in err.value.message_en
    merged, report = merge_manifests([a, b], collapse=True)
    assert report.collapsed == {"striped_stem_borer": "stem_borers"}
    assert set(merged.labels) == {"stem_borers", "brown_planthopper"}
    borer = next(r for r in merged.rows if r.source == "b")
    assert borer.label == "stem_borers" and borer.source_label == "asiatic-rice-borer"


def test_the_same_original_in_two_sources_becomes_one_group_in_the_strictest_split(tmp_path):
    a = _source(tmp_path, "a", [("x.jpg", "brown_planthopper", "bph", 7, "g1", "train"),
                                ("y.jpg", "brown_planthopper", "bph", 8, "g2", "train")])  # fmt: skip
    b = _source(tmp_path, "b", [("copy.jpg", "brown_planthopper", "brown-plant-hopper", 7, "g9", "test"),
                                ("z.jpg", "brown_planthopper", "brown-plant-hopper", 9, "g8", "val")])  # fmt: skip
    merged, report = merge_manifests([a, b])
    by_path = {r.path: r for r in merged.rows}
    assert by_path["a/x.jpg"].group == by_path["b/copy.jpg"].group != by_path["a/y.jpg"].group
    assert by_path["a/x.jpg"].split == by_path["b/copy.jpg"].split == "test"
    assert by_path["b/z.jpg"].split == "val" and by_path["a/y.jpg"].split == "train"
    assert report.cross_source_groups == 1 and report.moved_rows == {"train->test": 1}
    assert all(merged.image_path(r).is_file() for r in merged.rows)  # paths rebased onto the common root
    written = read_manifest(write_manifest(merged, tmp_path / "out" / "merged.csv"))
    assert written.version == merged.version and all(written.image_path(r).is_file() for r in written.rows)


def test_a_frozen_test_split_takes_no_new_rows(tmp_path):
    base = _source(tmp_path, "base", [("t.jpg", "brown_planthopper", "bph", 7, "g1", "test"),
                                      ("u.jpg", "brown_planthopper", "bph", 5, "g2", "train")], frozen_test=True)  # fmt: skip
    new = _source(tmp_path, "new", [("dup.jpg", "brown_planthopper", "bph", 7, "n1", "train"),
                                    ("ok.jpg", "brown_planthopper", "bph", 6, "n2", "train")])  # fmt: skip
    merged, report = merge_manifests([base, new])
    assert report.left_out_near_frozen_test == 1
    assert {r.path: r.split for r in merged.rows} == {
        "base/t.jpg": "test",
        "base/u.jpg": "train",
        "new/ok.jpg": "train",
    }


def test_unsplit_sources_are_grouped_and_split_on_merge(tmp_path):
    items = [(f"{k}.jpg", "brown_planthopper", "bph", k, "", "") for k in range(12)]
    a = _source(tmp_path, "a", items[:6], grouped=False)
    b = _source(tmp_path, "b", items[6:], grouped=False)
    merged, report = merge_manifests([a, b], seed=1)
    assert report.newly_split_groups == 12
    assert {r.split for r in merged.rows} == {"train", "val", "test"}
