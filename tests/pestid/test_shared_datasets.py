"""The real photo datasets in ../shared: skipped with a reason where absent."""

import pytest
from typer.testing import CliRunner

from pestid.cli import app
from tests.conftest import REPO

pytestmark = pytest.mark.shared


def test_ricepest6_source_split_leaks_and_pestid_split_does_not(shared_datasets, tmp_path):
    runner = CliRunner()
    source = tmp_path / "ricepest6.csv"
    result = runner.invoke(app, ["data", "import", str(REPO / "datasets/ricepest6.yaml"), "--out", str(source)])
    assert result.exit_code == 0, result.output
    leaky = runner.invoke(app, ["data", "check", str(source), "--json"])
    assert leaky.exit_code == 1 and '"leaks": true' in leaky.stdout
    split = tmp_path / "split.csv"
    assert runner.invoke(app, ["data", "split", str(source), "--out", str(split)]).exit_code == 0
    clean = runner.invoke(app, ["data", "check", str(split), "--json"])
    assert clean.exit_code == 0 and '"crossing_pairs": 0' in clean.stdout


def test_ricedisease4_imports_every_file_with_catalogue_labels(shared_datasets, tmp_path):
    out = tmp_path / "ricedisease4.csv"
    result = CliRunner().invoke(app, ["data", "import", str(REPO / "datasets/ricedisease4.yaml"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    from pestid.manifest import read_manifest

    manifest = read_manifest(out)
    assert len(manifest.rows) == 2941
    assert set(manifest.labels) == {"bacterial_leaf_blight", "brown_spot", "rice_blast", "tungro"}


def test_the_four_shared_sources_merge_into_one_leak_free_version(shared_datasets, tmp_path):
    """Every label of ricepest-extra and nonrice maps to the catalogue; nested labels need --collapse."""
    from pestid.manifest import read_manifest

    runner = CliRunner()
    names = ("ricepest6", "ricedisease4", "ricepest-extra", "nonrice")
    for name in names:
        source, split = tmp_path / f"{name}-source.csv", tmp_path / f"{name}.csv"
        result = runner.invoke(app, ["data", "import", str(REPO / f"datasets/{name}.yaml"), "--out", str(source)])
        assert result.exit_code == 0, result.output
        assert runner.invoke(app, ["data", "split", str(source), "--out", str(split)]).exit_code == 0
    parts = [str(tmp_path / f"{name}.csv") for name in names]
    merged = tmp_path / "merged.csv"
    nested = runner.invoke(app, ["data", "merge", *parts, "--out", str(merged)])
    assert nested.exit_code != 0 and getattr(nested.exception, "code", "") == "nested_labels"
    assert "'striped_stem_borer' is one of 'stem_borers'" in str(nested.exception)
    result = runner.invoke(app, ["data", "merge", *parts, "--collapse", "--out", str(merged)])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(merged)
    assert len(manifest.rows) == 5179 + 2941 + 2738 + 1371
    assert {"not_rice", "dragonfly", "spiders", "lady_beetle", "rice_stem_fly"} <= set(manifest.labels)
    assert "striped_stem_borer" not in manifest.labels
    assert {r.source for r in manifest.rows if r.label == "not_rice"} == {"nonrice"}
    assert all(manifest.image_path(r).is_file() for r in manifest.rows[::500])
    assert runner.invoke(app, ["data", "check", str(merged)]).exit_code == 0
