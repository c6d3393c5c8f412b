"""Benchmark: training loader images/s per worker, the decode-once image cache against decoding every epoch.

One loader worker is one process running the dataset and collation, so both loaders run here in this
process (``num_workers=0``) over the same training photos with the same "field" augmentation:
- the baseline, as before the cache: read and decode each JPEG, augment, normalise to float32;
- the cache: uint8 arrays from the memory-mapped cache, augmented; normalising happens on the device, so its
  cost there is printed beside it (on this CPU).
The cache's one-off build (about one epoch of decoding) is timed apart.

    .venv/bin/python benchmarks/loader.py [--manifest data/manifests/merged.csv] [--images 2000]

Without the manifest (``scripts/main.sh`` writes it from ../shared), pestid's own sample photos are used.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pestid.manifest import read_manifest
from pestid.preprocess import PreprocessSpec
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

    baseline, n = images_per_s(ManifestDataset(manifest, rows, train_transform(spec, strength)), args.batch)
    cached, _ = images_per_s(CachedImages(cache, targets, train_pixels(spec, strength)), args.batch)
    batch = torch.randint(0, 256, (args.batch, spec.size, spec.size, 3), dtype=torch.uint8)
    start = time.perf_counter()
    for _ in range(10):
        model_input(batch, spec, torch.device("cpu"))
    normalise_ms = (time.perf_counter() - start) / 10 / args.batch * 1000

    print(f"{n} training photos of {args.manifest.name if args.manifest.is_file() else 'pestid sample'}, "
          f"224 px, 'field' augmentation, batches of {args.batch}, 1 worker (1 thread)")  # fmt: skip
    print("| loader | images/s per worker | vs baseline |")
    print("| --- | --- | --- |")
    print(f"| decode every epoch (baseline) | {baseline:.0f} | 1.00× |")
    print(f"| decode-once cache | {cached:.0f} | **{cached / baseline:.2f}×** |")
    print(f"cache: {cache.nbytes / 1e6:.0f} MB for {len(cache)} photos, built once in {build_s:.1f} s "
          f"({len(cache) / build_s:.0f} photos/s, 1 thread)")  # fmt: skip
    print(f"normalising on the device instead (here the CPU, 1 thread): {normalise_ms:.3f} ms per image")


if __name__ == "__main__":
    main()
