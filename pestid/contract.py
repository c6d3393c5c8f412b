"""The model contract: everything a predictor needs, stored in the ONNX file as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pestid.preprocess import PreprocessSpec

METADATA_KEY = "pestid"
CONTRACT_VERSION = 1


class ModelContract(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    contract_version: int = CONTRACT_VERSION
    model_name: str
    architecture: str
    labels: list[str]  # catalogue ids, in the model's output order
    preprocess: PreprocessSpec
    tta: list[Literal["hflip"]] = []  # test-time views whose logits every predictor averages
    temperature: float = Field(1.0, gt=0)
    threshold: float = Field(0.0, ge=0, le=1)  # below it: not "identified" (the class's own, where it has one)
    class_thresholds: dict[str, float] = {}  # per label: the target precision held for each answer a farmer gets
    group_thresholds: dict[str, float] = {}  # per catalogue group: the same, for answers at the group's level
    # The model's second output, ``novelty``, is how far a photo's features lie from every class it was taught
    # (training.novelty); above this, the photo is "not one I know" and is not recognised. None: no such output.
    novelty_threshold: float | None = None
    target_precision: float | None = None  # what each class's "identified" answers are held to
    expected_precision: float | None = None  # overall, at these thresholds, on the originals they were chosen on
    dataset_version: str = ""
    quantization: str = ""  # how an INT8 copy was made (training.quantize); empty for the model as trained
    code_revision: str = ""
    metrics: dict[str, Any] = {}
    created: str = ""

    def macro_f1_drop(self) -> float | None:
        """For an INT8 copy, the per-original macro-F1 it lost against its FP32 model, as measured when it was
        made (``training.quantize``); None for a model as trained, or a copy made without the measurement."""
        fp32, own = self.metrics.get("fp32_macro_f1_per_original"), self.metrics.get("macro_f1_per_original")
        if not self.quantization or fp32 is None or own is None:
            return None
        return float(fp32) - float(own)

    def threshold_for(self, label: str) -> float:
        return self.class_thresholds.get(label, self.threshold)

    def thresholds(self) -> np.ndarray:
        """The rejection threshold of each label, in the model's output order."""
        return np.array([self.threshold_for(label) for label in self.labels], dtype=np.float64)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        return cls.model_validate_json(text)


def int8_path(model_path: Path) -> Path:
    """Where the INT8 (offline) copy of ``model.onnx`` lives: ``model.int8.onnx`` beside it. Training writes it
    there (``pestid export --int8``) and serving looks for it there."""
    return model_path.with_suffix(".int8.onnx")
