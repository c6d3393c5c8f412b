from pathlib import Path

import pytest

from pestid.training.config import TrainConfig, resolve_config


def tiny_config(manifest: Path, out: Path, *extra: str, mlflow_uri: str | None = None) -> TrainConfig:
    overrides = [
        "model.name=test_efficientnet", "model.pretrained=false", "model.image_size=48", "model.crop_pct=1.0",
        "epochs=1", "data.batch_size=16", "data.workers=0", "data.augment=light", "optim.warmup_epochs=0.2",
        "optim.freeze_backbone_epochs=0", f"data.manifest={manifest}", f"out={out}",
        f"data.image_cache={out.parent / 'image-cache'}",
    ]  # fmt: skip
    if mlflow_uri is None:
        overrides.append("mlflow.enabled=false")
    else:
        overrides += [f"mlflow.tracking_uri={mlflow_uri}", f"mlflow.artifact_location={out.parent / 'artifacts'}"]
    return resolve_config(None, [*overrides, *extra])


@pytest.fixture(scope="session")
def trained_tiny_model(sample_split, tmp_path_factory) -> Path:
    """A real one-epoch model exported to ONNX with its contract (run folder beside it)."""
    from pestid.training.train import train

    out = tmp_path_factory.mktemp("trained-model") / "run"
    return train(tiny_config(sample_split, out)).onnx_path
