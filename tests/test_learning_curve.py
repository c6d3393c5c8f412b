"""The learning-curve benchmark (benchmarks/learning_curve.py) on a tiny case: two sample sources, the second (three
classes, photographed by another camera) the province. The whole loop runs as on the real data: a tiny model
trained without the province and promoted, the province sent through the API, 25 and 50 % of it confirmed through
the review API, ``pestid retrain`` and the gate each time, the service reloading, the unconfirmed originals and the
old test split scored with intervals; a second run finds every step done and prints the same table."""

import importlib.util
import itertools
import json
import time

import pytest
from PIL import Image, ImageEnhance

from pestid.training.config import save_config
from tests.conftest import REPO
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow

PROVINCE = ("brown_planthopper", "green_leafhopper", "golden_apple_snail")


def _benchmark():
    spec = importlib.util.spec_from_file_location("learning_curve", REPO / "benchmarks" / "learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _source(folder, name, **sample):
    from pestid.definitions import Definition
    from pestid.grouping import GroupingConfig
    from pestid.importers import import_dataset
    from pestid.sample import write_sample
    from pestid.splits import group_and_split

    for path in write_sample(folder, size=64, **sample):
        if name == "province":  # another camera: washed-out colours, darker
            image = ImageEnhance.Brightness(ImageEnhance.Color(Image.open(path)).enhance(0.4)).enhance(0.75)
            image.save(path, format="JPEG", quality=90)
    manifest, _ = import_dataset(Definition(name=name, format="folder", root="."), folder, workers=1)
    return group_and_split(manifest, config=GroupingConfig(threshold=8), seed=0)[0]


@pytest.fixture
def two_sources(tmp_path):
    from pestid.manifest import write_manifest
    from pestid.merge import merge_manifests

    home = _source(tmp_path / "images" / "home", "home", originals=10, copies=3, seed=3)
    province = _source(tmp_path / "images" / "province", "province", classes=PROVINCE, originals=12, copies=1, seed=11)
    merged, _ = merge_manifests([home, province])
    return write_manifest(merged, tmp_path / "merged.csv")


def test_learning_curve_runs_the_loop_end_to_end_and_resumes(two_sources, tmp_path, capsys):
    config = tiny_config(two_sources, tmp_path / "unused", "optim.lr=0.01", "epochs=4", "model.image_size=64",
                         mlflow_uri=f"sqlite:///{tmp_path / 'unused.db'}")  # fmt: skip
    save_config(config, tmp_path / "tiny.yaml")
    common = ["--manifest", str(two_sources), "--held-out", "province", "--config", str(tmp_path / "tiny.yaml"),
              "--work", str(tmp_path / "work"), "--set", "gate.recall_tolerance=0.6"]  # fmt: skip
    benchmark = _benchmark()
    first = benchmark.main([*common, "--shares", "0", "25", "--set", "gate.macro_f1_tolerance=0.5"])
    # resumed with one more point, under a gate no model can pass: the service keeps its champion
    strict = [*common, "--shares", "0", "25", "50", "--set", "gate.macro_f1_tolerance=-1"]
    points = json.loads(json.dumps(benchmark.main(strict)))
    out = capsys.readouterr().out
    with capsys.disabled():
        print(out)  # the tables, for whoever runs the test with -s

    assert json.loads(json.dumps(first)) == points[:2] and out.count("$ pestid retrain") == 2
    assert [p["share"] for p in points] == [0, 25, 50]
    assert [p["confirmed"] for p in points] == [0, 9, 18]  # 3 and 6 of each class's 12 originals
    assert points[0]["served"] == "pestid/1" and points[0]["gate"] == "—"
    assert points[1]["gate"] == "passed" and points[1]["served"] == points[1]["version"] == "pestid/2"
    assert points[2]["gate"] == "refused" and points[2]["served"] == "pestid/2" and points[2]["version"] == "pestid/3"
    assert any("too large" in r for r in points[2]["reasons"]) and "refused" in points[2]
    for before, point in itertools.pairwise(points):
        assert sum(point["verdicts"].values()) == point["confirmed"] - before["confirmed"]
    for point in [*points, points[2]["refused"]]:
        assert point["province"]["originals"] == 18  # each class's 6 originals never confirmed, the same each time
        for part, key in [*(("province", k) for k in benchmark.MEASURES), ("old_test", "macro_f1")]:
            value, (lo, hi) = point[part][key]["value"], point[part][key]["ci"]
            assert lo <= value <= hi or value != value  # NaN: no answer identified at all
    assert "| 50 % | 18 | refused | pestid/2 |" in out and "| ↳ refused | 18 | refused | pestid/3 (not served) |" in out
    assert "(1.00×)" in out and "Learning curve on province" in out

    started = time.monotonic()
    assert json.loads(json.dumps(benchmark.main(strict))) == points  # every step done: nothing runs again
    assert time.monotonic() - started < 60 and "$ pestid" not in capsys.readouterr().out
