"""A tiny real run: train one epoch at 48 px → export → reload → predict, with parity."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from pestid.cli import app
from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.predictor import Predictor, softmax
from pestid.training.augment import eval_transform
from pestid.training.mlflow_callback import MLflowCallback
from pestid.training.models import create_model, preprocess_spec
from pestid.training.train import train
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(sample_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    config = tiny_config(sample_split, out, mlflow_uri=f"sqlite:///{out.parent / 'mlflow.db'}")
    callback = MLflowCallback(config.mlflow)
    result = train(config, callbacks=[callback])
    return config, result, callback


def test_run_writes_model_contract_card_and_reports(tiny_run):
    config, result, _ = tiny_run
    assert result.onnx_path.is_file() and result.onnx_path.with_suffix(".md").is_file()
    contract = Predictor(result.onnx_path).contract
    manifest = read_manifest(config.data.manifest)
    assert contract.labels == list(manifest.labels)
    assert contract.dataset_version == manifest.version
    assert contract.preprocess.size == 48 and contract.temperature > 0
    assert set(contract.metrics) >= {"macro_f1", "top1", "ece", "coverage"}
    assert (result.run_dir / "evaluation" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_one_image_gets_the_same_probabilities_in_training_eval_and_onnx(tiny_run):
    config, result, _ = tiny_run
    manifest = read_manifest(config.data.manifest)
    image = read_image(manifest.image_path(manifest.split("test")[0]))
    model = create_model(config.model, len(manifest.labels))
    model.load_state_dict(torch.load(result.run_dir / "checkpoints" / "best.pt", weights_only=True))
    model.eval()
    predictor = Predictor(result.onnx_path)
    with torch.no_grad():
        logits = model(torch.from_numpy(eval_transform(preprocess_spec(config.model))(image))[None]).numpy()
    training_probs = softmax(logits, predictor.contract.temperature)
    assert np.abs(training_probs - predictor.probabilities([image])).max() <= 1e-4


def test_cli_predict_and_evaluate_json(tiny_run, tmp_path):
    config, result, _ = tiny_run
    manifest = read_manifest(config.data.manifest)
    photo = manifest.image_path(manifest.split("test")[0])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    runner = CliRunner()
    predicted = runner.invoke(app, ["predict", "--model", str(result.onnx_path), "--json", str(photo), str(bad)])
    assert predicted.exit_code == 0, predicted.output
    first, second = json.loads(predicted.stdout)
    assert first["top"][0]["id"] in manifest.labels and "name_vi" in first["top"][0]
    assert first["decision"] in {"identified", "uncertain", "not_recognised"} and first["message_vi"]
    assert second["code"] == "empty"
    evaluated = runner.invoke(app, ["evaluate", "--model", str(result.onnx_path), "--data", config.data.manifest,
                                    "--split", "test", "--json"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert {"macro_f1", "top1", "top5", "ece", "coverage"} <= set(report)
    assert report["images"] == len(manifest.split("test"))


def test_mlflow_run_holds_config_dataset_metrics_artifacts_and_challenger(tiny_run):
    config, _, callback = tiny_run
    mlflow.set_tracking_uri(config.mlflow.tracking_uri)
    run = mlflow.get_run(callback.run_id)
    assert run.data.params["model.name"] == "test_efficientnet"
    assert run.data.tags["pestid.dataset_version"] == read_manifest(config.data.manifest).version
    assert len(run.data.tags["pestid.manifest_sha256"]) == 64
    assert "train_loss" in run.data.metrics and "test_macro_f1" in run.data.metrics
    artifacts = {a.path for a in MlflowClient().list_artifacts(callback.run_id)}
    assert {"config.yaml", "evaluation", "plots"} <= artifacts
    version = MlflowClient().get_model_version_by_alias(config.mlflow.registered_model, "challenger")
    assert str(version.version) == callback.model_version


def test_export_of_a_folder_that_is_not_a_run_says_so(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "pestid train" in str(result.exception)


def test_notebook_executes_on_the_tiny_run(tiny_run, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    config, _, callback = tiny_run
    monkeypatch.setenv("PESTID_MLFLOW_URI", config.mlflow.tracking_uri)
    monkeypatch.setenv("PESTID_RUN_ID", callback.run_id)
    notebook = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / "error_analysis.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
    assert any("macro_f1" in str(o.get("data", {}).get("text/plain", "")) for o in outputs)
