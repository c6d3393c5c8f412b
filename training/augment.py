"""Training augmentation for field photos (albumentations 2.x).

Only training uses this. Evaluation goes through ``pestid.preprocess``, the one
preprocessing contract; both end in the same ``pestid.preprocess.normalise``.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from pestid.preprocess import PreprocessSpec, normalise, preprocess

# The smallest random crop, as a share of the photo's area (the image cache keeps enough pixels for it).
MIN_CROP_AREA = {"field": 0.35, "light": 0.7, "none": 1.0}


def field_augmentation(size: int, strength: str = "field") -> A.Compose:
    """Crops, flips, turns, light and colour, blur and JPEG artefacts, as phones in a field produce."""
    if strength == "none":
        return A.Compose([A.SmallestMaxSize(max_size=size), A.CenterCrop(height=size, width=size)])
    ops: list[A.BasicTransform] = [
        A.RandomResizedCrop(size=(size, size), scale=(MIN_CROP_AREA[strength], 1.0)),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
    ]
    if strength == "field":
        ops += [
            A.Rotate(limit=20, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.3),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.6),
            A.ColorJitter(brightness=0, contrast=0, saturation=(0.7, 1.3), hue=(-0.03, 0.03), p=0.4),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.25),
            A.ImageCompression(quality_range=(40, 95), p=0.4),
        ]
    return A.Compose(ops)


def train_pixels(spec: PreprocessSpec, strength: str = "field") -> Callable[[np.ndarray], np.ndarray]:
    """uint8 HWC pixels -> an augmented ``size``×``size`` uint8 view of them (normalised later, on the device)."""
    augment = field_augmentation(spec.size, strength)

    def apply(pixels: np.ndarray) -> np.ndarray:
        # Seeded from torch's generator (reseeded per epoch, and per worker by the DataLoader),
        # so augmentation repeats exactly when a run is resumed.
        augment.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        return np.asarray(augment(image=pixels)["image"])

    return apply


def train_transform(spec: PreprocessSpec, strength: str = "field") -> Callable[[Image.Image], np.ndarray]:
    """A decoded photo -> an augmented, normalised (3, size, size) input."""
    pixels = train_pixels(spec, strength)
    return lambda image: normalise(pixels(np.asarray(image)), spec)


def eval_transform(spec: PreprocessSpec) -> Callable[[Image.Image], np.ndarray]:
    return lambda image: preprocess(image, spec)
