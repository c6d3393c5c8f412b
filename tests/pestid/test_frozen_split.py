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
           *[_row(20 + k, (k + 1) * 0x1111111111111111 ^ 0xA5A5, label="weevils") for k in range(8)]]  # fmt: skip
    result, report = extend_frozen(base, new, config=GroupingConfig(threshold=3, dihedral=False))
    splits = {r.path: r.split for r in result.rows}
    assert splits["1.jpg"] == "test" and "10.jpg" not in splits  # left out, not trained on
    assert splits["11.jpg"] == "train"  # joins its base group's split
    assert {splits[f"{20 + k}.jpg"] for k in range(8)} <= {"train", "val"}
    assert [r.path for r in result.rows if r.split == "test"] == ["1.jpg"]
    assert report == {"base": 3, "new": 10, "added": 9, "left_out_near_test": 1}
    assert result.labels == ("brown_planthopper", "weevils")
