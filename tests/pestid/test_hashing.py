import numpy as np
import pytest
from PIL import Image, ImageOps

from pestid.hashing import dihedral_variants, hamming, phash
from pestid.neighbours import near_duplicate_pairs
from tests.conftest import photo

TRANSFORMS = [
    lambda im: ImageOps.mirror(im),
    lambda im: ImageOps.flip(im),
    lambda im: im.transpose(Image.Transpose.ROTATE_90),
    lambda im: im.transpose(Image.Transpose.ROTATE_180),
    lambda im: im.transpose(Image.Transpose.ROTATE_270),
    lambda im: im.transpose(Image.Transpose.TRANSPOSE),
]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_flipped_or_rotated_copy_hash_is_one_of_the_variants(transform):
    image = photo("golden_apple_snail", seed=3, size=128)
    original = np.array([phash(image)], dtype=np.uint64)
    turned = np.uint64(phash(transform(image)))
    distances = hamming(dihedral_variants(original)[:, 0], turned)
    assert distances.min() <= 2  # exact up to resampling noise near zero coefficients


def test_different_photos_are_far_apart():
    a, b = phash(photo("golden_apple_snail", 1)), phash(photo("brown_planthopper", 2))
    assert hamming(np.array([a], dtype=np.uint64), np.array([b], dtype=np.uint64))[0] > 10


def _brute_force(hashes: np.ndarray, threshold: int) -> set[tuple[int, int]]:
    variants = dihedral_variants(hashes)
    found = set()
    for i in range(len(hashes)):
        d = hamming(variants[:, i][:, None], hashes[None, :]).min(axis=0)
        found |= {(min(i, j), max(i, j)) for j in np.flatnonzero(d <= threshold) if j != i}
    return found


@pytest.mark.parametrize("threshold", [0, 4, 7, 9])
def test_indexed_search_finds_exactly_what_a_pairwise_scan_finds(threshold):
    rng = np.random.default_rng(threshold)
    base = rng.integers(0, 2**63, size=150, dtype=np.uint64)
    flips = rng.integers(0, 64, size=(150, 6))
    noisy = base.copy()
    for k in range(150):  # a near copy of each, 0–6 bits away, some also flipped
        for bit in flips[k, : k % 7]:
            noisy[k] ^= np.uint64(1) << np.uint64(bit)
    noisy[::3] = dihedral_variants(noisy[::3])[1]
    hashes = np.concatenate([base, noisy])
    i, j, dist = near_duplicate_pairs(hashes, threshold=threshold)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == _brute_force(hashes, threshold)
    assert (dist <= threshold).all()
