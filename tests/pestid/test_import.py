import json

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from pestid.cli import app
from pestid.definitions import Definition
from pestid.errors import DatasetError
from pestid.importers import import_dataset
from pestid.manifest import read_manifest
from tests.conftest import jpeg_bytes, photo, write_messy_folder


def _folder_definition(**extra) -> Definition:
    return Definition(name="test", format="folder", root=".", **extra)


def test_messy_folder_imports_the_good_files_and_reports_every_bad_one(tmp_path):
    expected = write_messy_folder(tmp_path)
    manifest, report = import_dataset(_folder_definition(), tmp_path, workers=1)
    imported = {r.path for r in manifest.rows}
    assert imported == {p for p, code in expected.items() if code == "ok"}
    skipped = {item["path"]: item["code"] for item in report.skipped}
    assert skipped == {p: code for p, code in expected.items() if code != "ok"}
    assert all(item["reason"] for item in report.skipped)
    rotated = next(r for r in manifest.rows if r.path.endswith("rotated.jpg"))
    assert (rotated.width, rotated.height) == (60, 30)
    assert report.candidates == len(expected) and report.imported == 4


def test_rows_carry_hashes_sizes_and_source(tmp_path):
    write_messy_folder(tmp_path)
    manifest, _ = import_dataset(_folder_definition(), tmp_path, workers=1)
    row = next(r for r in manifest.rows if r.path.endswith("good.jpg"))
    assert len(row.sha256) == 64 and len(row.phash) == 16
    assert (row.width, row.height, row.source, row.label) == (96, 96, "test", "brown_planthopper")


def test_unmapped_label_is_an_error_listing_it_with_closest_ids(tmp_path):
    (tmp_path / "brown-planthoper").mkdir()
    (tmp_path / "brown-planthoper" / "a.jpg").write_bytes(jpeg_bytes(photo()))
    with pytest.raises(DatasetError) as info:
        import_dataset(_folder_definition(), tmp_path)
    assert "brown-planthoper" in info.value.message_en and "brown_planthopper" in info.value.message_en


def test_labels_map_source_names_to_catalogue_ids_and_null_excludes(tmp_path):
    for name in ("rice-bug", "junk"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.jpg").write_bytes(jpeg_bytes(photo(seed=len(name))))
    manifest, report = import_dataset(_folder_definition(labels={"rice-bug": "weevils", "junk": None}), tmp_path)
    assert [(r.label, r.source_label) for r in manifest.rows] == [("weevils", "rice-bug")]
    assert report.skipped[0]["code"] == "excluded_label"


def _write_yolo(root, boxes: dict[str, list[int] | None]) -> None:
    (root / "data.yaml").write_text(yaml.safe_dump({"names": ["brown-planthopper", "green-leafhopper"]}))
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
    for k, (rel, classes) in enumerate(boxes.items()):
        split, name = rel.split("/")
        Image.open(__import__("io").BytesIO(jpeg_bytes(photo(seed=k)))).save(root / split / "images" / name)
        if classes is not None:
            lines = [f"{c} 0.5 0.5 0.2 0.2" for c in classes]
            (root / split / "labels" / name.replace(".jpg", ".txt")).write_text("\n".join(lines))


def test_yolo_export_takes_the_class_of_its_boxes_and_skips_empty_or_mixed(tmp_path):
    _write_yolo(tmp_path, {"train/a.jpg": [0, 0], "train/b.jpg": [1], "valid/c.jpg": [], "valid/d.jpg": [0, 1],
                           "valid/e.jpg": None, "valid/f.jpg": [7]})  # fmt: skip
    definition = Definition(name="y", format="yolo", root=".", split_pattern=r"^(?P<split>train|valid)/",
                            labels={"brown-planthopper": "brown_planthopper", "green-leafhopper": "green_leafhopper"})  # fmt: skip
    manifest, report = import_dataset(definition, tmp_path)
    assert {(r.path, r.label, r.split) for r in manifest.rows} == {
        ("train/images/a.jpg", "brown_planthopper", "train"),
        ("train/images/b.jpg", "green_leafhopper", "train"),
    }
    assert {i["path"]: i["code"] for i in report.skipped} == {
        "valid/images/c.jpg": "no_box", "valid/images/d.jpg": "several_classes",
        "valid/images/e.jpg": "no_box", "valid/images/f.jpg": "unknown_class",
    }  # fmt: skip


def test_manifest_source_reads_paths_labels_and_names(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.jpg").write_bytes(jpeg_bytes(photo()))
    (tmp_path / "manifest.csv").write_text(
        "path,label,source_path\nimg/x.jpg,bph,data/test/x.jpg\nimg/gone.jpg,bph,data/train/gone.jpg\n"
    )
    definition = Definition(name="m", format="manifest", root=".", columns={"name": "source_path"},
                            labels={"bph": "brown_planthopper"}, split_pattern="data/(?P<split>train|test)/")  # fmt: skip
    manifest, report = import_dataset(definition, tmp_path)
    assert [(r.path, r.split, r.source_name) for r in manifest.rows] == [("img/x.jpg", "test", "data/test/x.jpg")]
    assert report.skipped == [{"path": "img/gone.jpg", "code": "missing", "reason": report.skipped[0]["reason"]}]


def test_cli_import_writes_manifest_sidecar_and_report(tmp_path):
    source = tmp_path / "src"
    write_messy_folder(source)
    definition = tmp_path / "def.yaml"
    definition.write_text("name: messy\nformat: folder\nroot: src\n")
    out = tmp_path / "out" / "messy.csv"
    result = CliRunner().invoke(app, ["data", "import", str(definition), "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert len(manifest.rows) == 4 and manifest.root == source.resolve()
    assert manifest.labels == ("brown_planthopper", "golden_apple_snail")
    report = json.loads(out.with_suffix(".import.json").read_text())
    assert report["skipped_count"] == 6
    assert "bomb.png" in result.stdout and "too_many_pixels" in result.stdout


def test_cli_missing_dataset_root_says_what_to_do(tmp_path):
    definition = tmp_path / "def.yaml"
    definition.write_text("name: gone\nformat: folder\nroot: nowhere\n")
    result = CliRunner().invoke(app, ["data", "import", str(definition), "--out", str(tmp_path / "m.csv")])
    assert result.exit_code != 0
    assert isinstance(result.exception, DatasetError) and "--root" in str(result.exception)


def test_unknown_key_in_definition_is_an_error(tmp_path):
    from pestid.definitions import load_definition

    path = tmp_path / "d.yaml"
    path.write_text("name: x\nformat: folder\nroot: .\nlabelz: {}\n")
    with pytest.raises(DatasetError, match="labelz"):
        load_definition(path)
