"""Training augmentation: each step draws for itself, flips and turns keep their distribution, and the batch's
light and colour match albumentations' uint8 steps."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from albumentations.augmentations.pixel import functional as albumentations_pixel

from pestid.preprocess import PreprocessSpec
from pestid.training.augment import field_augmentation, field_colour, seed_steps, shift_hue, train_pixels

QUADRANTS = np.array([[10, 60], [120, 200]], dtype=np.uint8)  # top-left, top-right, bottom-left, bottom-right


def test_each_step_draws_for_itself_and_a_seed_repeats_them():
    augment = field_augmentation(32, "field")
    firsts = []
    for seed in (7, 7):
        seed_steps(augment, seed)
        firsts.append([step.py_random.random() for step in augment.transforms])
    # one seed per step made every step draw the same number, so all applied together or none did
    assert len(set(firsts[0])) == len(firsts[0])
    assert firsts[0] == firsts[1]


def _expected_corners() -> Counter[bytes]:
    """HorizontalFlip(0.5), VerticalFlip(0.5), RandomRotate90(0.5): the share of each of the 8 symmetries."""
    shares: Counter[bytes] = Counter()
    for hflip, vflip, turns in itertools.product((False, True), (False, True), (None, 0, 1, 2, 3)):
        corners = np.fliplr(QUADRANTS) if hflip else QUADRANTS
        corners = np.flipud(corners) if vflip else corners
        corners = np.rot90(corners, turns or 0)
        shares[np.ascontiguousarray(corners).tobytes()] += 0.25 * (0.5 if turns is None else 0.5 / 4)
    return shares


def test_flips_and_turns_draw_independently_with_the_three_steps_distribution():
    # Crops of at least 70 % of the area ("light") always hold the centre, so each output corner shows
    # one quadrant, and the four corners tell which of the 8 symmetries was applied.
    image = np.kron(QUADRANTS, np.ones((48, 48), dtype=np.uint8))[..., None].repeat(3, axis=2)
    augment = train_pixels(PreprocessSpec(size=32, crop_pct=1.0), "light")
    torch.manual_seed(0)
    draws = 1600
    seen: Counter[bytes] = Counter()
    for _ in range(draws):
        out = augment(image)[..., 0]
        seen[np.array([[out[0, 0], out[0, -1]], [out[-1, 0], out[-1, -1]]], dtype=np.uint8).tobytes()] += 1
    expected = _expected_corners()
    assert set(seen) == set(expected) and len(expected) == 8
    for corners, share in expected.items():
        # 3/16 for the identity, both flips and the half turn, 1/16 for the rest; sd about 0.01 at 1,600 draws.
        # Steps that drew the same number (one seed each) never showed a single flip: 0 instead of 3/16.
        assert abs(seen[corners] / draws - share) < 0.035, (corners, seen[corners] / draws, share)


def _photo(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (6, 6, 3)).astype(np.float32)
    return np.kron(smooth, np.ones((8, 8, 1))).astype(np.uint8)  # flat colour patches, as leaves and insects


def test_hue_shift_matches_albumentations_uint8_hue():
    image = _photo()
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    for factor in (-0.03, -0.01, 0.02, 0.03, 0.5):
        ours = (shift_hue(x, torch.tensor([factor]))[0].permute(1, 2, 0).numpy() * 255).round()
        theirs = albumentations_pixel.adjust_hue_torchvision(image.copy(), factor).astype(np.float32)
        gap = np.abs(ours - theirs)
        # OpenCV's uint8 HSV rounds hue to 2 degrees and saturation to 1/255; the float version rounds nothing
        assert gap.mean() < 1.5 and np.percentile(gap, 99) <= 8, (factor, gap.mean(), gap.max())
    assert torch.allclose(shift_hue(x, torch.tensor([1.0])), x, atol=1e-5)  # a full turn changes nothing


def test_field_colour_draws_per_photo_with_albumentations_ranges():
    torch.manual_seed(0)
    grey = torch.full((4000, 3, 2, 2), 0.5)
    out = field_colour(grey)
    changed = (out != grey).flatten(1).any(dim=1)
    # grey has no colour, so only brightness and contrast (p=0.6) change it: 0.5 * [0.75, 1.25] + [-0.25, 0.25]
    assert abs(changed.float().mean().item() - 0.6) < 0.03
    assert out.min() >= 0.5 * 0.75 - 0.25 - 1e-6 and out.max() <= 0.5 * 1.25 + 0.25 + 1e-6
    assert len(torch.unique(out[changed][:, 0, 0, 0])) > 2000  # each photo its own draw, not one per batch
    torch.manual_seed(0)
    assert torch.equal(field_colour(grey), out)  # torch's generator repeats it (a resumed run)
    colourful = torch.from_numpy(_photo(1)).permute(2, 0, 1)[None].float().div(255).repeat(2000, 1, 1, 1)
    torch.manual_seed(1)
    moved = (field_colour(colourful) - colourful).abs().flatten(1).amax(dim=1) > 1e-6
    assert abs(moved.float().mean().item() - (1 - 0.4 * 0.6)) < 0.03  # either step: 1 - P(neither)
    assert torch.equal(field_colour(colourful, "light"), colourful)  # light and colour belong to "field" only


def test_model_input_gives_a_gpu_batch_its_light_and_colour_and_refuses_normalised_input():
    from pestid.training.loop import model_input

    spec = PreprocessSpec(size=8, crop_pct=1.0)
    pixels = torch.from_numpy(np.stack([_photo(k)[:8, :8] for k in range(64)]))
    plain = model_input(pixels, spec, torch.device("cpu"))
    torch.manual_seed(3)
    coloured = model_input(pixels, spec, torch.device("cpu"), colour="field")
    changed = (coloured != plain).flatten(1).any(dim=1).float().mean().item()
    assert 0.5 < changed < 0.95  # 1 - 0.4 * 0.6 = 0.76 expected
    with pytest.raises(ValueError, match="uint8"):
        model_input(plain, spec, torch.device("cpu"), colour="field")
