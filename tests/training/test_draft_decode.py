"""A reduced decode (a JPEG's DCT scaling, other formats' block averaging, down to twice the resize target) gives
the model what a full decode gives it: checked on real photos enlarged to a 12 MP phone photo's size, with the
ImageNet EfficientNet-Lite0."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pestid.imaging import decode_image
from pestid.preprocess import draft_side, preprocess
from pestid.training.config import ModelConfig
from pestid.training.models import imagenet_state_dict, preprocess_spec

pytestmark = pytest.mark.shared
TOP1_AGREEMENT = 0.96  # the stated tolerance: top-1 of 1,000 ImageNet classes, and probabilities within 0.08
MAX_PROBABILITY_GAP = 0.08


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])  # TIFF: a format without reduced decoding, as HEIC, quick to write
def test_a_reduced_decode_predicts_as_the_full_decode(shared_datasets, fmt):
    import timm

    files = sorted((shared_datasets / "ricepest6").rglob("*.jpg"))
    files = random.Random(0).sample(files, min(50, len(files)))
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    model.load_state_dict(imagenet_state_dict("efficientnet_lite0", model))
    model.eval()
    spec = preprocess_spec(ModelConfig(name="efficientnet_lite0"))
    agree, gaps = 0, []
    for path in files:
        phone = Image.open(path).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        phone.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        full = decode_image(buffer.getvalue())
        reduced = decode_image(buffer.getvalue(), min_side=draft_side(spec))
        assert reduced.size == (1000, 750) and reduced.info["full_size"] == full.size == (4000, 3000)
        with torch.no_grad():
            probs = model(torch.from_numpy(np.stack([preprocess(full, spec), preprocess(reduced, spec)])))
        p = probs.softmax(-1).numpy()
        agree += int(p[0].argmax() == p[1].argmax())
        gaps.append(float(np.abs(p[0] - p[1]).max()))
    assert agree >= TOP1_AGREEMENT * len(files), (agree, len(files))
    assert max(gaps) <= MAX_PROBABILITY_GAP, max(gaps)


def test_orientation_and_other_formats_are_untouched():
    """EXIF orientation is applied after the reduced decode; PNG has no reduced decode: blocks are averaged."""
    from tests.conftest import exif_rotated_jpeg

    upright = decode_image(exif_rotated_jpeg(), min_side=8)  # stored 30×60 sideways, upright 60×30
    assert upright.size == (30, 15) and upright.info["full_size"] == (60, 30)  # decoded at 1/2, then turned
    big = Image.new("RGB", (2400, 1200), (90, 140, 60))
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    big.save(rotated, "JPEG", quality=90, exif=exif.tobytes())
    reduced = decode_image(rotated.getvalue(), min_side=300)
    assert reduced.size == (300, 600) and reduced.info["full_size"] == (1200, 2400)
    png = io.BytesIO()
    big.save(png, "PNG")
    averaged = decode_image(png.getvalue(), min_side=300)
    assert averaged.size == (600, 300) and averaged.format == "PNG" and averaged.info["full_size"] == (2400, 1200)
    assert averaged.getpixel((10, 10)) == (90, 140, 60)
    assert decode_image(png.getvalue(), min_side=700).size == (2400, 1200)  # 1200 < 2 × 700: nothing to average
