"""The shipped EfficientNet-Lite weights map onto timm's models: known photos get sensible ImageNet classes."""

import numpy as np
import pytest
import torch
from PIL import Image

from pestid.imaging import read_image
from pestid.preprocess import preprocess
from pestid.training.config import ModelConfig
from pestid.training.models import create_model, imagenet_state_dict, preprocess_spec

BUILDINGS = {"bell cote, bell cot", "palace", "church, church building", "monastery", "boathouse", "stupa, tope",
             "mosque", "dome", "castle", "pedestal, plinth, footstall", "triumphal arch"}  # fmt: skip


def _imagenet_top(name: str, image: Image.Image, k: int = 5) -> list[str]:
    import timm
    from timm.data import ImageNetInfo

    model = timm.create_model(name, pretrained=False)
    model.load_state_dict(imagenet_state_dict(name, model))
    model.eval()
    spec = preprocess_spec(ModelConfig(name=name))
    with torch.no_grad():
        probs = model(torch.from_numpy(preprocess(image, spec))[None]).softmax(-1)[0]
    info = ImageNetInfo()
    return [info.index_to_description(int(i)) for i in probs.topk(k).indices]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_known_photo_gets_a_sensible_imagenet_class(name):
    from sklearn.datasets import load_sample_image

    temple = Image.fromarray(load_sample_image("china.jpg"))  # a Chinese temple, shipped with scikit-learn
    assert BUILDINGS & set(_imagenet_top(name, temple)), _imagenet_top(name, temple)


@pytest.mark.shared
def test_ricepest6_rice_bug_photos_are_mostly_imagenet_weevils(shared_datasets):
    """The dataset README says its 'rice-bug' photos are mostly weevils; ImageNet agrees (23 of 42 measured)."""
    from collections import Counter

    folder = shared_datasets / "ricepest6" / "images" / "rice-bug"
    tops = [_imagenet_top("efficientnet_lite0", read_image(p), 3) for p in sorted(folder.iterdir())[::25]]
    assert sum("weevil" in top for top in tops) >= len(tops) // 3
    assert Counter(top[0] for top in tops).most_common(1)[0][0] == "weevil"


def test_fine_tuning_model_keeps_the_backbone_and_gets_a_new_head():
    model = create_model(ModelConfig(name="efficientnet_lite0"), num_classes=6)
    assert model.get_classifier().out_features == 6
    reference = imagenet_state_dict(
        "efficientnet_lite0", create_model(ModelConfig(name="efficientnet_lite0", pretrained=False), 1000)
    )
    assert torch.equal(model.state_dict()["conv_stem.weight"], reference["conv_stem.weight"])
    assert np.allclose(preprocess_spec(ModelConfig(name="efficientnet_lite0")).mean, 0.5)
