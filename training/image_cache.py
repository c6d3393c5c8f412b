"""Decode once: a split's photos as pre-resized uint8 arrays in one memory-mapped file.

Fine-tuning used to decode and resize every JPEG again in every epoch. The cache holds
each photo once, as it enters the transforms. For training, that is the decoded photo with
its shorter side cut to ``train_side`` (never enlarged), aspect kept, so that random crops
and turns see what they saw before. For evaluation it is the model's exact
``resize_and_crop`` (``size``×``size``), so the val figures do not change.

On disk, ``pixels.u8`` holds every array back to back, and ``index.npy`` holds each photo's
(offset, height, width). The folder is named by a key over the dataset version, the rows,
and how the photos were prepared. It is built on first use, with a progress bar, in a
temporary folder that is renamed only when complete, so an interrupted build is never
read. A second run on the same data opens it at once. Loader workers each map the file
once, and the page cache shares it between them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pestid.imaging import read_image
from pestid.manifest import Manifest, Row
from pestid.preprocess import PreprocessSpec, resize_and_crop, resized_size

FORMAT = 1


def train_side(spec: PreprocessSpec, min_crop_area: float) -> int:
    """The shorter side a training photo is kept at: the smallest random crop (``min_crop_area`` of the photo)
    still has ``spec.size`` pixels across, so no crop is enlarged more than it would be from the original."""
    return math.ceil(spec.size / math.sqrt(min_crop_area))


def shrink(image: Image.Image, side: int) -> np.ndarray:
    """The photo's pixels, its shorter side cut to ``side`` (bilinear, as preprocessing), never enlarged."""
    if min(image.size) > side:
        image = image.resize(resized_size(*image.size, side), Image.Resampling.BILINEAR)
    return np.asarray(image)


def train_preparation(side: int) -> tuple[str, Callable[[Image.Image], np.ndarray]]:
    return f"train-side{side}", lambda image: shrink(image, side)


def eval_preparation(spec: PreprocessSpec) -> tuple[str, Callable[[Image.Image], np.ndarray]]:
    return "eval-" + spec.model_dump_json(), lambda image: np.asarray(resize_and_crop(image, spec))


class ImageCache:
    """The arrays of one built cache, mapped lazily (so each loader worker maps the file itself)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = np.load(folder / "index.npy")
        self._pixels: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r")
        offset, height, width = (int(v) for v in self.index[i])
        return self._pixels[offset : offset + height * width * 3].reshape(height, width, 3)

    def __getstate__(self) -> dict[str, object]:  # workers get the index, not a mapping
        return {**self.__dict__, "_pixels": None}

    @property
    def nbytes(self) -> int:
        return int((self.folder / "pixels.u8").stat().st_size)


def cache_key(manifest: Manifest, rows: Sequence[Row], preparation: str) -> str:
    digest = hashlib.sha256(f"{FORMAT}\n{manifest.version}\n{preparation}\n".encode())
    for row in rows:
        digest.update(f"{row.path}\n".encode())
    return digest.hexdigest()[:16]


def image_cache(
    manifest: Manifest, rows: Sequence[Row], preparation: tuple[str, Callable[[Image.Image], np.ndarray]],
    root: str | Path, *, threads: int = 2, label: str = "",
) -> ImageCache:  # fmt: skip
    """The cache of ``rows`` prepared by ``preparation`` (``train_preparation``/``eval_preparation``) under
    ``root``: opened when it exists, else built now."""
    name, prepare = preparation
    folder = Path(root) / cache_key(manifest, rows, name)
    if (folder / "index.npy").is_file():
        return ImageCache(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    building.mkdir()
    try:
        index = np.zeros((len(rows), 3), dtype=np.int64)
        offset = 0
        with (building / "pixels.u8").open("wb") as out, ThreadPoolExecutor(max(1, threads)) as pool:
            arrays = pool.map(lambda row: prepare(read_image(manifest.image_path(row))), rows)
            bar = tqdm(arrays, total=len(rows), desc=f"bộ đệm ảnh / image cache {label}".rstrip(), unit="ảnh",
                       leave=False)  # fmt: skip
            for i, pixels in enumerate(bar):
                pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
                out.write(pixels.tobytes())
                index[i] = (offset, pixels.shape[0], pixels.shape[1])
                offset += pixels.nbytes
            out.flush()
            os.fsync(out.fileno())
        np.save(building / "index.npy", index)
        (building / "meta.json").write_text(json.dumps({"preparation": name, "rows": len(rows), "bytes": offset,
                                                        "dataset_version": manifest.version}) + "\n")  # fmt: skip
        try:
            building.rename(folder)
        except OSError:  # another process finished the same cache first: theirs is identical
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ImageCache(folder)
