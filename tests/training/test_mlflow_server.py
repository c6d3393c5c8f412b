"""Against a real `mlflow server` on 127.0.0.1: train, log and register."""

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pestid.training.mlflow_callback import MLflowCallback
from pestid.training.train import train
from tests.conftest import free_port
from tests.training.conftest import tiny_config

pytestmark = [pytest.mark.server, pytest.mark.slow]


@pytest.fixture
def mlflow_server(tmp_path):
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists() and shutil.which("mlflow") is None:
        pytest.skip("the mlflow command is not installed")
    port = free_port()
    process = subprocess.Popen(
        [str(mlflow_bin if mlflow_bin.exists() else "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("mlflow server did not become healthy in 120 s")
    yield url, tmp_path / "server-artifacts"
    process.terminate()
    process.wait(timeout=30)


def test_training_logs_and_registers_against_a_tracking_server(sample_split, tmp_path, mlflow_server):
    url, artifact_root = mlflow_server
    config = tiny_config(sample_split, tmp_path / "run", "mlflow.experiment=server-test", mlflow_uri=url)
    callback = MLflowCallback(config.mlflow)
    train(config, callbacks=[callback])
    mlflow.set_tracking_uri(url)
    run = mlflow.get_run(callback.run_id)
    assert run.data.metrics["test_macro_f1"] >= 0 and run.info.status == "FINISHED"
    version = MlflowClient(url).get_model_version_by_alias("pestid", "challenger")
    assert str(version.version) == callback.model_version
    assert any(artifact_root.rglob("model.onnx"))  # the server stored the artifacts
