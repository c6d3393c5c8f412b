"""``pestid serve``: uvicorn with N workers, each loading the model once."""

from __future__ import annotations

import os
import tempfile


def serve(*, model: str, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    import uvicorn

    os.environ["PESTID_MODEL"] = model
    os.environ["PESTID_WORKERS"] = str(workers)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pestid-metrics-")
    uvicorn.run("serving.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)  # fmt: skip
