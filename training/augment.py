"""Training augmentation for field photos (albumentations 2.x on uint8 pixels, seeded from torch's generator).

Crops, flips and turns, small rotations, light and colour, blur and JPEG artefacts. Loader workers apply
them to each photo, and ``training.loop.model_input`` normalises the batch on the training device. On a GPU,
light and colour move there too (``field_colour``, the same draws per photo in torch): a GPU does them for
nothing and each worker saves about 0.45 ms a photo. On a CPU they stay in the worker, where OpenCV's uint8
steps cost a twentieth of torch's float ones.

Only training uses this. Evaluation goes through ``pestid.preprocess``, the one
preprocessing contract; both end in the same normalisation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from pestid.preprocess import PreprocessSpec, preprocess

# What an augmented photo holds, in the linear probe's feature cache key: bumped when augmentation changes, so
# features cached under an older recipe are not reused (2: each step draws for itself).
AUGMENTATION = 2

# Light and colour, "field" only (albumentations' RandomBrightnessContrast and ColorJitter; ``field_colour``).
BRIGHTNESS, CONTRAST, LIGHT_P = 0.25, 0.25, 0.6
SATURATION, HUE, COLOUR_P = (0.7, 1.3), (-0.03, 0.03), 0.4

# The smallest random crop, as a share of the photo's area (the image cache keeps enough pixels for it).
MIN_CROP_AREA = {"field": 0.35, "light": 0.7, "none": 1.0}


# np.rot90's turns (counter-clockwise) as OpenCV's rotations, which write contiguous pixels in one pass.
_TURNS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}


class FlipsAndTurns(A.ImageOnlyTransform):
    """``HorizontalFlip(p=0.5)``, ``VerticalFlip(p=0.5)`` then ``RandomRotate90(p=0.5)`` as one step with the same
    distribution: at most two OpenCV calls (about 0.03 ms at 224 px) instead of three steps, one of them a
    strided numpy copy (about 0.5 ms when it turns)."""

    def __init__(self) -> None:
        super().__init__(p=1.0)

    def get_params(self) -> dict[str, Any]:
        draw = self.py_random
        hflip, vflip = draw.random() < 0.5, draw.random() < 0.5
        return {"hflip": hflip, "vflip": vflip, "turns": draw.randint(0, 3) if draw.random() < 0.5 else 0}

    def apply(self, img: np.ndarray, hflip: bool, vflip: bool, turns: int, **params: Any) -> np.ndarray:
        if hflip or vflip:
            img = cv2.flip(img, -1 if hflip and vflip else int(hflip))  # -1: both, 1: horizontal, 0: vertical
        return cv2.rotate(img, _TURNS[turns]) if turns else img


def colour_on_device(device: torch.device) -> bool:
    """Whether light and colour run per batch on ``device`` (a GPU) rather than per photo in the workers."""
    return device.type == "cuda"


def colour_steps() -> list[A.BasicTransform]:
    """Light and colour on uint8 pixels, in the worker (on a GPU, ``field_colour`` does them per batch)."""
    return [
        A.RandomBrightnessContrast(brightness_limit=BRIGHTNESS, contrast_limit=CONTRAST, p=LIGHT_P),
        A.ColorJitter(brightness=0, contrast=0, saturation=SATURATION, hue=HUE, p=COLOUR_P),
    ]


def field_augmentation(size: int, strength: str = "field", colour: bool = True) -> A.Compose:
    """Crops, flips, turns, light and colour (unless ``colour`` is False: the device does them), blur and JPEG
    artefacts, as phones in a field produce."""
    if strength == "none":
        return A.Compose([A.SmallestMaxSize(max_size=size), A.CenterCrop(height=size, width=size)])
    ops: list[A.BasicTransform] = [
        A.RandomResizedCrop(size=(size, size), scale=(MIN_CROP_AREA[strength], 1.0)),
        FlipsAndTurns(),
    ]
    if strength == "field":
        ops += [
            A.Rotate(limit=20, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.3),
            *(colour_steps() if colour else []),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.25),
            A.ImageCompression(quality_range=(40, 95), p=0.4),
        ]
    return A.Compose(ops)


def seed_steps(augment: A.Compose, seed: int) -> None:
    """One generator, seeded with ``seed``, for every step of ``augment``. (``Compose.set_random_seed`` gives each
    step its own generator from the same seed, so every step draws the same number when deciding whether it
    applies: all of them together or none. It also cost about 1 ms a photo.)"""
    augment.set_random_state(np.random.default_rng(seed), random.Random(seed))


def train_pixels(
    spec: PreprocessSpec, strength: str = "field", colour: bool = True
) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 HWC pixels -> an augmented ``size``×``size`` uint8 view of them (normalised later, on the device;
    without ``colour``, light and colour are left to it too)."""
    augment = field_augmentation(spec.size, strength, colour)

    def apply(pixels: np.ndarray) -> np.ndarray:
        # Seeded from torch's generator (reseeded per epoch, and per worker by the DataLoader),
        # so augmentation repeats exactly when a run is resumed.
        seed_steps(augment, int(torch.randint(0, 2**31 - 1, ()).item()))
        return np.asarray(augment(image=pixels)["image"])

    return apply


def train_transform(
    spec: PreprocessSpec, strength: str = "field", colour: bool = True
) -> Callable[[Image.Image], np.ndarray]:
    """A decoded photo -> its augmented uint8 pixels, as ``train_pixels``."""
    pixels = train_pixels(spec, strength, colour)
    return lambda image: pixels(np.asarray(image))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's RGB to grey weights, as albumentations' saturation uses."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def shift_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1], each photo's hue moved by its share of a full turn (HSV, as OpenCV's)."""
    value, _ = x.max(dim=1)
    delta = value - x.min(dim=1).values
    saturation = torch.where(value > 0, delta / value.clamp_min(1e-12), 0.0)
    red, green, blue = (value.unsqueeze(1) - x).div_(delta.clamp_min(1e-12).unsqueeze(1)).unbind(1)
    sector = torch.where(x[:, 0] == value, blue - green,
                         torch.where(x[:, 1] == value, 2.0 + red - blue, 4.0 + green - red))  # fmt: skip
    hue = torch.where(delta > 0, sector / 6.0, 0.0)
    hue = torch.remainder(hue + turns.view(-1, 1, 1), 1.0) * 6.0
    index = hue.floor()
    f = hue - index
    index = index.long().remainder(6).unsqueeze(1)
    p, q, t = value * (1 - saturation), value * (1 - saturation * f), value * (1 - saturation * (1 - f))
    corners = (value, q, p, p, t, value), (t, value, value, q, p, p), (p, p, t, value, value, q)
    return torch.cat([torch.stack(c, dim=1).gather(1, index) for c in corners], dim=1)


def field_colour(x: torch.Tensor, strength: str = "field") -> torch.Tensor:
    """``colour_steps`` for a training batch on the device ((N, 3, H, W) in [0, 1]), each photo with its own draws,
    saturation and hue in a random order as ``ColorJitter``. Draws come from torch's generator on the CPU, so a
    resumed run repeats them; unlike the uint8 steps, nothing is rounded between steps."""
    n = len(x)
    if strength != "field" or n == 0:
        return x

    def chosen(p: float) -> torch.Tensor:
        return (torch.rand(n) < p).nonzero().flatten().to(x.device)

    def uniform(k: int, low_high: tuple[float, float]) -> torch.Tensor:
        return torch.empty(k).uniform_(*low_high).to(x.device).view(-1, 1, 1, 1)

    picked = chosen(LIGHT_P)
    alpha, beta = uniform(len(picked), (1 - CONTRAST, 1 + CONTRAST)), uniform(len(picked), (-BRIGHTNESS, BRIGHTNESS))
    x = x.index_copy(0, picked, (x[picked] * alpha + beta).clamp_(0, 1))
    picked = chosen(COLOUR_P)
    factor, turns = uniform(len(picked), SATURATION), uniform(len(picked), HUE).flatten()
    hue_first = torch.rand(len(picked)) < 0.5
    part = x[picked]

    def saturate(y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return (y * f + _grey(y) * (1 - f)).clamp_(0, 1)

    for first in (True, False):
        these = (hue_first == first).nonzero().flatten().to(x.device)
        y, f, t = part[these], factor[these], turns[these]
        y = saturate(shift_hue(y, t), f) if first else shift_hue(saturate(y, f), t)
        part = part.index_copy(0, these, y)
    return x.index_copy(0, picked, part)


def eval_transform(spec: PreprocessSpec) -> Callable[[Image.Image], np.ndarray]:
    return lambda image: preprocess(image, spec)
