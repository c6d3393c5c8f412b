"""The security suite runs against the same tiny ONNX model as the serving tests (no torch)."""

from tests.serving.conftest import tiny_model  # noqa: F401 - the fixture, shared
