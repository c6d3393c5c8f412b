from pathlib import Path

import pytest

from pestid.definitions import Definition
from pestid.grouping import GroupingConfig
from pestid.importers import import_dataset
from pestid.manifest import write_manifest
from pestid.sample import write_sample
from pestid.splits import group_and_split
from training.config import TrainConfig, resolve_config


@pytest.fixture(scope="session")
def sample_split(tmp_path_factory) -> Path:
    """pestid's own sample photos, imported, grouped and split: a manifest path."""
    root = tmp_path_factory.mktemp("sample")
    write_sample(root / "images", originals=6, copies=3, size=64, seed=7)
    manifest, _ = import_dataset(Definition(name="sample", format="folder", root="."), root / "images", workers=1)
    split, _ = group_and_split(manifest, config=GroupingConfig(threshold=8), seed=0)
    return write_manifest(split, root / "sample.csv")


def tiny_config(manifest: Path, out: Path, *extra: str, mlflow_uri: str | None = None) -> TrainConfig:
    overrides = [
        "model.name=test_efficientnet", "model.pretrained=false", "model.image_size=48", "model.crop_pct=1.0",
        "epochs=1", "data.batch_size=16", "data.workers=0", "data.augment=light", "optim.warmup_epochs=0.2",
        "optim.freeze_backbone_epochs=0", f"data.manifest={manifest}", f"out={out}",
    ]  # fmt: skip
    if mlflow_uri is None:
        overrides.append("mlflow.enabled=false")
    else:
        overrides += [f"mlflow.tracking_uri={mlflow_uri}", f"mlflow.artifact_location={out.parent / 'artifacts'}"]
    return resolve_config(None, [*overrides, *extra])
