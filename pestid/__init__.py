"""pestid core: species catalogue, image decoding, dataset manifests and the
ONNX predictor. Depends on neither torch nor FastAPI."""

__version__ = "0.1.0"
