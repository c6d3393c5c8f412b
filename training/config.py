"""One typed config per run. Precedence: defaults, then the YAML file, then
``key=value`` flags (dotted keys reach nested sections). Unknown keys are an
error that suggests the near miss. The resolved config is saved with the run."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pestid.errors import PestidError


class ConfigError(PestidError):
    code = "config"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Section):
    name: str = "efficientnet_lite0"  # any timm name; efficientnet_lite0/1/2 start from ImageNet weights
    pretrained: bool = True
    drop_rate: float = 0.2
    image_size: int = 224
    crop_pct: float = 0.875
    frozen_blocks: int = 5  # partial_finetune: the stem and blocks[:frozen_blocks] stay frozen, the rest learns


class OptimConfig(_Section):
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3  # backbone learns slower than the new head
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    freeze_backbone_epochs: int = 1  # staged unfreezing: head only for this many epochs
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of inputs (fine-tune) or features (linear probe); 0 = off


class DataConfig(_Section):
    manifest: str = "data/manifests/sample.csv"
    batch_size: int = 32
    workers: int = 2
    # groups: each original counts once and each class weighs the same (a sampler when fine-tuning,
    # sample weights for a linear probe); sources (partial fine-tunes): groups, and within a class each source
    # weighs the same; sampler / loss_weights balance classes by image count only
    balance: Literal["none", "sampler", "loss_weights", "groups", "sources"] = "loss_weights"
    augment: Literal["field", "light", "none"] = "field"
    augment_views: int = 0  # linear probe: augmented views of each training image, besides the plain one
    feature_cache: str = "data/features"  # linear probe: backbone features, keyed by model and dataset version
    # Fine-tuning: photos decoded once into memory-mapped uint8 arrays, keyed by dataset version (training.image_cache);
    # "" decodes every photo again in every epoch
    image_cache: str = "data/image-cache"


class MlflowConfig(_Section):
    enabled: bool = True
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlruns"
    experiment: str = "pestid"
    registered_model: str = "pestid"
    register_model: bool = True


class EvalConfig(_Section):
    target_precision: float = 0.95  # the rejection threshold is chosen on val for this precision
    split: Literal["val", "test"] = "test"
    # Where temperature and threshold are fitted: val, or group k-fold out-of-fold predictions over train and val,
    # which score every original with a model that never saw it (a partial fine-tune trains its blocks per fold).
    calibration: Literal["val", "out_of_fold"] = "val"
    calibration_folds: int = Field(default=5, ge=2)  # out_of_fold: how many group folds
    # One threshold per class (a class named by too few calibration originals keeps the overall one), so the
    # target precision holds for each species' answers, not just on average over all of them.
    per_class_threshold: bool = True
    tta: list[Literal["hflip"]] = []  # test-time views, declared in the ONNX contract and applied by every predictor
    # The open-set score (training.novelty, partial fine-tunes only): the exported model gains a second output,
    # novelty, and a photo above the threshold that keeps this share of val's answered photos is "not one I
    # know". 0 leaves it out.
    novelty_keep: float = Field(default=0.0, ge=0.0, le=1.0)
    # Where a species answer must keep the promise. val: on the training sources' own val. held_out_sources
    # (partial fine-tunes): also on a source the model never saw. The top is trained again without each source
    # that shares classes with another and answers that source's photos; a class whose species answers there
    # fall short of the target, where its group's answers do better, is answered at its group's level only
    # ("a hopper", never "brown planthopper"). About one more training per such source.
    species_level: Literal["val", "held_out_sources"] = "val"


class ExportConfig(_Section):
    # Also write model.int8.onnx, the farmer page's offline model: static INT8, kept only when its per-original
    # macro-F1 on the evaluation split is within int8_tolerance of the FP32 model's (training.quantize).
    int8: bool = False
    int8_tolerance: float = 0.01  # the most per-original macro-F1 the copy may lose
    # A linear probe's copy learns its head again on its own INT8 features (training.quantize.refit_head): one more
    # feature pass (about 15 minutes on 2 cores for the merged data).
    int8_refit: bool = True
    calibration_photos: int = 128  # distinct training originals; min/max calibration keeps every activation in memory
    # The stem and this many first blocks stay FP32 in the copy: most of the quantization error starts there (a
    # first partial fine-tune's copy lost 1.8 points of macro-F1 all INT8, 0.1 with blocks[:3] FP32, for 0.1 MB
    # more; the shipped model's 0.3). Every node of those blocks, residual additions too. EfficientNets only.
    int8_fp32_blocks: int = Field(default=0, ge=0)


class GateConfig(_Section):
    """When a challenger may replace the champion, both measured per original on the same frozen test split."""

    macro_f1_tolerance: float = (
        0.02  # the largest loss of per-original macro-F1 the low end of the paired interval may show
    )
    recall_tolerance: float = 0.05  # the largest allowed drop in any class's recall, beyond the test set's noise
    # Pests that matter most: their own limit, held to the point figure (a drop past it refuses, noise or not).
    class_recall_tolerance: dict[str, float] = {}
    # No class may lose more than this (recall; F1 on a grown label set), however few its test originals: the
    # noise rule cannot tell a loss of 3 originals of 6 from bad luck, and a farmer would meet it.
    class_drop_limit: float = Field(default=0.2, ge=0)
    min_support: float = 5  # classes with fewer test originals are reported but not gated
    # A challenger whose label set grew (officers taught it a class): each class both models know may lose at most
    # this much F1 per original on the old test split (the champion's classes), besides the checks above; and each
    # new class needs F1 per original of at least new_class_f1 on its own test originals (at least min_support).
    class_f1_tolerance: float = 0.05
    new_class_f1: float = 0.5


class ReviewsConfig(_Section):
    """How ``pestid retrain`` turns approved reviews into a dataset version (``pestid.splits.extend_frozen``)."""

    # A label the model lacks becomes a class once officers approved this many of its originals; until then its
    # photos are left out, listed as waiting in the manifest and the retrain report.
    new_class_originals: int = Field(default=20, ge=1)
    new_class_test: float = Field(default=0.25, gt=0, lt=1)  # a new class's originals kept for its own test split


class TrainConfig(_Section):
    # finetune: the whole network learns from images. linear_probe: the ImageNet backbone stays frozen,
    # its features are computed once with onnxruntime (cached), and only the head learns; minutes on a CPU.
    # partial_finetune: the stem and the first blocks stay frozen and run once in onnxruntime (cached activations);
    # the last blocks, the head convolution and the classifier learn from them, in minutes per epoch on a CPU.
    method: Literal["finetune", "linear_probe", "partial_finetune"] = "finetune"
    seed: int = 0
    epochs: int = 10
    patience: int = 4  # early stopping on validation macro-F1
    out: str = "runs/latest"
    resume: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # bf16 autocast on GPU; ignored on CPU
    channels_last: bool = True
    max_steps_per_epoch: int | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    reviews: ReviewsConfig = Field(default_factory=ReviewsConfig)

    @model_validator(mode="after")
    def _sources_balance_needs_partial(self) -> TrainConfig:
        if self.data.balance == "sources" and self.method != "partial_finetune":
            raise ValueError(f"data.balance=sources is built for method=partial_finetune only, not {self.method}")
        if self.eval.species_level == "held_out_sources" and self.method != "partial_finetune":
            raise ValueError(f"eval.species_level=held_out_sources is built for method=partial_finetune only, "
                             f"not {self.method}")  # fmt: skip
        return self


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _sections() -> set[str]:
    return {name for name, info in TrainConfig.model_fields.items() if isinstance(info.annotation, type)
            and issubclass(info.annotation, BaseModel)}  # fmt: skip


def _flatten(data: dict[str, Any]) -> dict[str, Any]:
    """{'model': {'name': x}} -> {'model.name': x}; other keys stay as they are."""
    flat: dict[str, Any] = {}
    sections = _sections()
    for key, value in data.items():
        if key in sections and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def resolve_config(path: str | Path | None = None, overrides: list[str] | None = None, **flags: Any) -> TrainConfig:
    """defaults < YAML file < key=value overrides < explicit flags (e.g. data.manifest)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Không tìm thấy cấu hình {path}.", f"Config file {path} not found.")
        values.update(_flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"'{item}' phải có dạng khóa=giá_trị.", f"'{item}' must look like key=value.")
        values[key.strip()] = yaml.safe_load(raw)
    values.update({k: v for k, v in flags.items() if v is not None})
    known = _known_keys(TrainConfig)
    for key in values:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(
                f"Khóa cấu hình không tồn tại: '{key}'.{hint}", f"Unknown config key '{key}'.{hint}", code="unknown_key"
            )
    tree: dict[str, Any] = {}
    for key, value in values.items():
        _set(tree, key, value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"Giá trị cấu hình sai ở '{where}': {first['msg']}.", f"Bad config value at '{where}': {first['msg']}."
        ) from None


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
