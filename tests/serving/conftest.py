from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from tests.conftest import jpeg_bytes, photo
from tests.training.conftest import sample_split, tiny_config

__all__ = ["sample_split"]


@pytest.fixture(scope="session")
def tiny_model(sample_split, tmp_path_factory) -> Path:
    """A real one-epoch model exported to ONNX with its contract."""
    from training.train import train

    out = tmp_path_factory.mktemp("serving-model") / "run"
    return train(tiny_config(sample_split, out)).onnx_path


def make_settings(model: Path, data_dir: Path, **extra: object) -> Settings:
    return Settings(model=str(model), data_dir=data_dir, log_json=False, **extra)


@pytest.fixture
def client(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data"))) as test_client:
        yield test_client


def jpeg(seed: int = 0, label: str = "golden_apple_snail") -> bytes:
    return jpeg_bytes(photo(label, seed, size=96))
