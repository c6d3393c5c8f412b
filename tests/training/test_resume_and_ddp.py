import os
import subprocess
import sys

import pytest
import torch

from pestid.training.callbacks import Callback
from pestid.training.train import train
from tests.conftest import REPO, free_port
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow


class _Crash(Callback):
    def on_epoch_end(self, *, epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash after epoch 1")


def test_interrupted_run_resumes_from_its_last_checkpoint_and_ends_as_an_uninterrupted_one(sample_split, tmp_path):
    whole = train(tiny_config(sample_split, tmp_path / "whole", "epochs=2", "patience=5"), export=False)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(sample_split, tmp_path / "cut", "epochs=2", "patience=5"), callbacks=[_Crash()], export=False)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)["state"]["epoch"] == 1
    resumed = train(tiny_config(sample_split, tmp_path / "cut", "epochs=2", "patience=5"), export=False)
    assert [h["epoch"] for h in resumed.fit.history] == [1, 2]
    assert resumed.fit.history[-1]["train_loss"] == pytest.approx(whole.fit.history[-1]["train_loss"], rel=1e-5)
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_two_cpu_processes_train_with_ddp_over_gloo(sample_split, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           f"--master_port={free_port()}", "--master_addr=127.0.0.1", "-m", "pestid.cli", "train",
           "--config", str(REPO / "training/configs/smoke.yaml"), "--data", str(sample_split), "--out", str(out),
           "mlflow.enabled=false", "model.image_size=48", "data.workers=0", "device=cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "model.onnx").is_file()
    assert done.stdout.count("epoch 1:") == 1  # rank 0 alone reports
