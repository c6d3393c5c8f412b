"""The serving benchmark's baseline: the same model in PyTorch eager behind a minimal FastAPI endpoint.

python benchmarks/torch_baseline_server.py RUN_DIR --port 8001
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, UploadFile

from pestid.imaging import decode_image
from pestid.preprocess import PreprocessSpec, preprocess
from pestid.training.config import resolve_config
from pestid.training.models import create_model


def build(run_dir: Path) -> FastAPI:
    config = resolve_config(run_dir / "config.yaml")
    info = json.loads((run_dir / "run.json").read_text())
    model = create_model(config.model.model_copy(update={"pretrained": False}), len(info["labels"]))
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True))
    model.eval()
    spec = PreprocessSpec.model_validate(info["preprocess"])
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def predict(photo: UploadFile) -> dict[str, float]:
        x = torch.from_numpy(preprocess(decode_image(photo.file.read()), spec))[None]
        with torch.no_grad():
            probs = model(x).softmax(-1)[0]
        return {label: float(p) for label, p in zip(info["labels"], probs, strict=True)}

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(build(args.run_dir), host="127.0.0.1", port=args.port, log_level="warning")
