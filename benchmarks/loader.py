"""Benchmark: training loader images/s per worker, today's loader against the loader before issue 13.

One loader worker is one process running the dataset and collation, so the loaders run here in this
process (``num_workers=0``) over the same training photos with the "field" augmentation:
- the baseline, the loader before: read and decode each JPEG, then every augmentation step in the worker
  (albumentations, each step seeded apart as it was), then normalise to float32;
- decoding every epoch still (``data.image_cache: ""``), with today's worker steps as on a GPU: light, colour
  and normalising move to the device (``training.loop.model_input``);
- today's loader: uint8 arrays from the memory-mapped decode-once cache, with today's worker steps, as on a
  GPU and as on a CPU (where light and colour stay in the worker: torch's float version costs ~9 ms a photo there).
What moves to a GPU is timed apart on this CPU (an upper bound), as is the cache's one-off build.

    .venv/bin/python benchmarks/loader.py [--manifest data/manifests/merged.csv] [--images 2000]

Without the manifest (``scripts/main.sh`` writes it from ../shared), pestid's own sample photos are used.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pestid.manifest import read_manifest
from pestid.preprocess import PreprocessSpec, normalise
from pestid.training.augment import MIN_CROP_AREA, train_pixels, train_transform
from pestid.training.data import CachedImages, ManifestDataset, targets_of
from pestid.training.image_cache import image_cache, train_preparation, train_side
from pestid.training.loop import model_input

REPO = Path(__file__).resolve().parents[1]


def sample_manifest(work: Path) -> Path:
    from pestid.definitions import Definition
    from pestid.grouping import GroupingConfig
    from pestid.importers import import_dataset
    from pestid.manifest import write_manifest
    from pestid.sample import write_sample
    from pestid.splits import group_and_split

    write_sample(work / "images", originals=60, copies=10, size=320, seed=0)
    manifest, _ = import_dataset(Definition(name="sample", format="folder", root="."), work / "images", workers=2)
    split, _ = group_and_split(manifest, config=GroupingConfig(threshold=8), seed=0)
    return write_manifest(split, work / "sample.csv")


def loader_before(size: int) -> Callable[[Image.Image], np.ndarray]:
    """The worker's steps before issue 13, as they were: every "field" step on the CPU, each seeded apart."""
    augment = A.Compose([
        A.RandomResizedCrop(size=(size, size), scale=(MIN_CROP_AREA["field"], 1.0)),
        A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5),
        A.Rotate(limit=20, border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.3),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.6),
        A.ColorJitter(brightness=0, contrast=0, saturation=(0.7, 1.3), hue=(-0.03, 0.03), p=0.4),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.25),
        A.ImageCompression(quality_range=(40, 95), p=0.4),
    ])  # fmt: skip
    spec = PreprocessSpec(size=size, crop_pct=0.875)

    def apply(image: Image.Image) -> np.ndarray:
        augment.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        return normalise(np.asarray(augment(image=np.asarray(image))["image"]), spec)

    return apply


def images_per_s(dataset: torch.utils.data.Dataset, batch: int) -> tuple[float, int]:
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0)
    seen, start = 0, time.perf_counter()
    for images, _ in loader:
        seen += len(images)
    return seen / (time.perf_counter() - start), seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "data/manifests/merged.csv")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one worker, one core
    work = Path(tempfile.mkdtemp(prefix="pestid-loader-"))
    manifest = read_manifest(args.manifest if args.manifest.is_file() else sample_manifest(work))
    rows = manifest.split("train")
    rows = random.Random(0).sample(rows, min(args.images, len(rows)))
    spec, strength = PreprocessSpec(size=224, crop_pct=0.875), "field"
    targets = targets_of(manifest, rows)

    start = time.perf_counter()
    cache = image_cache(manifest, rows, train_preparation(train_side(spec, MIN_CROP_AREA[strength])), work / "cache",
                        threads=1)  # fmt: skip
    build_s = time.perf_counter() - start

    baseline, n = images_per_s(ManifestDataset(manifest, rows, loader_before(spec.size)), args.batch)
    decoding, _ = images_per_s(ManifestDataset(manifest, rows, train_transform(spec, strength, False)), args.batch)
    cached, _ = images_per_s(CachedImages(cache, targets, train_pixels(spec, strength, False)), args.batch)
    cached_cpu, _ = images_per_s(CachedImages(cache, targets, train_pixels(spec, strength)), args.batch)
    batch = torch.randint(0, 256, (args.batch, spec.size, spec.size, 3), dtype=torch.uint8)
    start = time.perf_counter()
    for _ in range(10):
        model_input(batch, spec, torch.device("cpu"), colour=strength)
    device_ms = (time.perf_counter() - start) / 10 / args.batch * 1000

    print(f"{n} training photos of {args.manifest.name if args.manifest.is_file() else 'pestid sample'}, "
          f"224 px, 'field' augmentation, batches of {args.batch}, 1 worker (1 thread)")  # fmt: skip
    print("| loader | images/s per worker | vs baseline |")
    print("| --- | --- | --- |")
    print(f"| before: decode every epoch, every step in the worker (baseline) | {baseline:.0f} | 1.00× |")
    print(f"| decode every epoch, light and colour on a GPU | {decoding:.0f} | {decoding / baseline:.2f}× |")
    print(
        f"| today on a GPU: decode-once cache, light and colour there | {cached:.0f} | **{cached / baseline:.2f}×** |"
    )
    print(f"| today on a CPU: decode-once cache, light and colour in the worker | {cached_cpu:.0f} | "
          f"{cached_cpu / baseline:.2f}× |")  # fmt: skip
    print(f"cache: {cache.nbytes / 1e6:.0f} MB for {len(cache)} photos, built once in {build_s:.1f} s "
          f"({len(cache) / build_s:.0f} photos/s, 1 thread)")  # fmt: skip
    print(f"light, colour and normalising as a GPU does them, here on the CPU (1 thread): {device_ms:.3f} ms per image")


if __name__ == "__main__":
    main()
