"""The model contract: everything a predictor needs, stored in the ONNX file as JSON."""

from __future__ import annotations

from typing import Any, Literal

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
    threshold: float = Field(0.0, ge=0, le=1)  # below it: "not recognised"
    target_precision: float | None = None
    dataset_version: str = ""
    code_revision: str = ""
    metrics: dict[str, Any] = {}
    created: str = ""

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        return cls.model_validate_json(text)
