"""The decode-once training cache: the same pixels as decoding each time, built once, never half-read."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pestid.imaging import read_image
from pestid.manifest import read_manifest
from pestid.preprocess import PreprocessSpec, preprocess, resize_and_crop
from pestid.training import image_cache as cache_module
from pestid.training.augment import train_pixels, train_transform
from pestid.training.data import CachedImages
from pestid.training.image_cache import eval_preparation, image_cache, shrink, train_preparation, train_side
from pestid.training.loop import model_input


def test_resize_and_crop_resamples_only_the_crop_yet_matches_resizing_all_then_cropping():
    rng = np.random.default_rng(0)
    spec = PreprocessSpec(size=224, crop_pct=0.875)
    for width, height in ((320, 320), (1000, 750), (375, 500), (801, 603), (224, 224)):
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        scale = 256 / min(width, height)
        full = image.resize(
            (max(256, round(width * scale)), max(256, round(height * scale))), Image.Resampling.BILINEAR
        )
        left, top = (full.width - 224) // 2, (full.height - 224) // 2
        expected = np.asarray(full.crop((left, top, left + 224, top + 224)), dtype=int)
        got = np.asarray(resize_and_crop(image, spec), dtype=int)
        assert got.shape == expected.shape == (224, 224, 3)
        assert np.abs(got - expected).max() <= 1  # float rounding only
        assert (got != expected).mean() < 0.01


def test_the_cache_holds_each_photo_as_the_transforms_would_see_it(sample_split, tmp_path):
    manifest = read_manifest(sample_split)
    rows = manifest.split("train")[:12]
    side = 40
    cache = image_cache(manifest, rows, train_preparation(side), tmp_path)
    assert len(cache) == len(rows)
    for i, row in enumerate(rows):
        decoded = read_image(manifest.image_path(row))
        np.testing.assert_array_equal(cache[i], shrink(decoded, side))
        assert min(cache[i].shape[:2]) == min(side, *decoded.size)
    spec = PreprocessSpec(size=32, crop_pct=0.875)
    evaluation = image_cache(manifest, rows, eval_preparation(spec), tmp_path)
    assert evaluation.folder != cache.folder  # keyed by how the photos were prepared
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(
            evaluation[i], np.asarray(resize_and_crop(read_image(manifest.image_path(row)), spec))
        )


def test_a_second_run_opens_the_cache_without_decoding(sample_split, tmp_path, monkeypatch):
    manifest = read_manifest(sample_split)
    rows = manifest.split("val")
    first = image_cache(manifest, rows, train_preparation(64), tmp_path)
    monkeypatch.setattr(cache_module, "read_image", lambda path: pytest.fail("decoded again"))
    again = image_cache(manifest, rows, train_preparation(64), tmp_path)
    assert again.folder == first.folder
    np.testing.assert_array_equal(again[len(rows) - 1], first[len(rows) - 1])
    with pytest.raises(BaseException, match="decoded again"):  # other rows: another key, so a new build
        image_cache(manifest, rows[:-1], train_preparation(64), tmp_path)


def test_an_interrupted_build_leaves_nothing_to_read(sample_split, tmp_path, monkeypatch):
    manifest = read_manifest(sample_split)
    rows = manifest.split("train")[:6]
    calls = {"n": 0}
    real = cache_module.read_image

    def failing(path):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(cache_module, "read_image", failing)
    with pytest.raises(KeyboardInterrupt):
        image_cache(manifest, rows, train_preparation(64), tmp_path, threads=1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(cache_module, "read_image", real)
    assert len(image_cache(manifest, rows, train_preparation(64), tmp_path)) == 6


def test_cached_loader_batches_become_exactly_the_inputs_preprocessing_makes(sample_split, tmp_path):
    manifest = read_manifest(sample_split)
    rows = manifest.split("val")[:8]
    spec = PreprocessSpec(size=32, crop_pct=0.875)
    dataset = CachedImages(image_cache(manifest, rows, eval_preparation(spec), tmp_path), list(range(len(rows))))
    pixels, target = dataset[3]
    assert pixels.dtype == torch.uint8 and pixels.shape == (32, 32, 3) and target == 3
    batch = torch.stack([dataset[i][0] for i in range(len(rows))])
    inputs = model_input(batch, spec, torch.device("cpu"))
    expected = np.stack([preprocess(read_image(manifest.image_path(r)), spec) for r in rows])
    assert inputs.shape == (len(rows), 3, 32, 32) and inputs.is_contiguous()
    np.testing.assert_array_equal(inputs.numpy(), expected)  # the same float32 arithmetic, bit for bit


def test_augmenting_cached_arrays_gives_what_augmenting_the_photo_gave(sample_split, tmp_path):
    manifest = read_manifest(sample_split)
    rows = manifest.split("train")[:4]
    spec = PreprocessSpec(size=32, crop_pct=1.0)
    side = train_side(spec, 0.7)
    cache = image_cache(manifest, rows, train_preparation(side), tmp_path)
    for i, row in enumerate(rows):
        image = read_image(manifest.image_path(row))
        assert min(cache[i].shape[:2]) == side < min(image.size)
        torch.manual_seed(i)
        from_cache = train_pixels(spec, "light")(cache[i])
        torch.manual_seed(i)
        from_photo = train_transform(spec, "light")(Image.fromarray(shrink(image, side)))
        assert from_cache.shape == (32, 32, 3) and from_cache.dtype == np.uint8
        np.testing.assert_array_equal(from_cache, from_photo)
