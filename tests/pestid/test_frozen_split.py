import hashlib
from pathlib import Path

from pestid.grouping import GroupingConfig
from pestid.manifest import Manifest, Row
from pestid.splits import extend_frozen


def _row(i, phash, split="", label="brown_planthopper"):
    return Row(path=f"{i}.jpg", label=label, sha256=f"{i:064x}", phash=f"{phash:016x}", width=1, height=1,
               source="t", split=split)  # fmt: skip


def test_new_photos_never_enter_the_frozen_test_split_nor_train_near_it():
    base = Manifest((_row(1, 0x0F0F0F0F0F0F0F0F, "test"), _row(2, 0x123456789ABCDEF0, "train"),
                     _row(3, 0x0FF00FF00FF00FF0, "val")), root=__import__("pathlib").Path("."), labels=("brown_planthopper",))  # fmt: skip
    new = [_row(10, 0x0F0F0F0F0F0F0F0E),  # near-duplicate of the test image
           _row(11, 0x123456789ABCDEF1),  # near-duplicate of a train image
           *[_row(20 + k, (k + 1) * 0x1111111111111111 ^ 0xA5A5) for k in range(8)]]  # fmt: skip
    result, report = extend_frozen(base, new, config=GroupingConfig(threshold=3, dihedral=False))
    splits = {r.path: r.split for r in result.rows}
    assert splits["1.jpg"] == "test" and "10.jpg" not in splits  # left out, not trained on
    assert splits["11.jpg"] == "train"  # joins its base group's split
    assert {splits[f"{20 + k}.jpg"] for k in range(8)} <= {"train", "val"}
    assert [r.path for r in result.rows if r.split == "test"] == ["1.jpg"]
    assert report == {"base": 3, "new": 10, "added": 9, "left_out_near_test": 1, "waiting": {},
                      "left_out_waiting": 0, "new_classes": {}}  # fmt: skip
    assert result.labels == ("brown_planthopper",)


def _base():
    return Manifest((_row(1, 0x0F0F0F0F0F0F0F0F, "test"), _row(2, 0x123456789ABCDEF0, "train")),
                    root=Path("."), labels=("brown_planthopper",))  # fmt: skip


def _distinct(start, count, label):
    """``count`` photos that are no near-duplicates of one another (nor of the base's)."""
    return [_row(start + k, int.from_bytes(hashlib.sha256(f"{start + k}".encode()).digest()[:8]), label=label)
            for k in range(count)]  # fmt: skip


def test_new_class_waits_until_it_has_enough_originals():
    new = [*_distinct(100, 19, "rice_bug"), *_distinct(200, 4, "brown_planthopper")]
    result, report = extend_frozen(_base(), new, config=GroupingConfig(threshold=3, dihedral=False))
    assert result.labels == ("brown_planthopper",) and not any(r.label == "rice_bug" for r in result.rows)
    assert report["waiting"] == {"rice_bug": 19} and report["left_out_waiting"] == 19 and report["added"] == 4
    assert result.meta["from_reviews"]["waiting"] == {"rice_bug": 19}  # the manifest says what waits


def test_new_class_joins_the_labels_with_test_originals_of_its_own_once_it_has_enough():
    new = [*_distinct(100, 20, "rice_bug"), *_distinct(200, 4, "brown_planthopper")]
    result, report = extend_frozen(_base(), new, config=GroupingConfig(threshold=3, dihedral=False))
    assert result.labels == ("brown_planthopper", "rice_bug") and report["new_classes"] == {"rice_bug": 20}
    test = [r for r in result.rows if r.split == "test"]
    assert [r.path for r in test if r.label == "brown_planthopper"] == ["1.jpg"]  # the old test split, frozen
    assert len([r for r in test if r.label == "rice_bug"]) == 5  # a quarter of its originals, never trained on
    assert {r.split for r in result.rows if r.label == "rice_bug"} == {"train", "val", "test"}
    fewer, _ = extend_frozen(_base(), new, config=GroupingConfig(threshold=3, dihedral=False), new_class_originals=30)
    assert fewer.labels == (
        "brown_planthopper",
    )  # the count is a setting (training config: reviews.new_class_originals)
