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
