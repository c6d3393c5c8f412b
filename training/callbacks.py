"""Training callbacks. Integrations (MLflow) are callbacks; the loop imports none of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pestid.training.report import EvaluationReport


class Callback:
    """Every hook is optional; each receives keyword arguments only."""

    def on_train_start(self, *, config: Any, run_dir: Path, info: dict[str, Any]) -> None: ...

    def on_epoch_end(self, *, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, *, run_dir: Path, result: dict[str, Any]) -> None: ...

    def on_evaluation(self, *, split: str, report: EvaluationReport, files: list[Path]) -> None: ...

    def on_export(self, *, onnx_path: Path, files: list[Path], contract: Any) -> None: ...

    def on_int8(self, *, path: Path, figures: dict[str, float]) -> None: ...

    def on_int8_refused(self, *, error: Exception) -> None: ...

    def on_finish(self, *, status: str) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: list[Callback] | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def _each(self, hook: str, **kwargs: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(**kwargs)

    def on_train_start(self, **kwargs: Any) -> None:
        self._each("on_train_start", **kwargs)

    def on_epoch_end(self, **kwargs: Any) -> None:
        self._each("on_epoch_end", **kwargs)

    def on_train_end(self, **kwargs: Any) -> None:
        self._each("on_train_end", **kwargs)

    def on_evaluation(self, **kwargs: Any) -> None:
        self._each("on_evaluation", **kwargs)

    def on_export(self, **kwargs: Any) -> None:
        self._each("on_export", **kwargs)

    def on_int8(self, **kwargs: Any) -> None:
        self._each("on_int8", **kwargs)

    def on_int8_refused(self, **kwargs: Any) -> None:
        self._each("on_int8_refused", **kwargs)

    def on_finish(self, **kwargs: Any) -> None:
        self._each("on_finish", **kwargs)
