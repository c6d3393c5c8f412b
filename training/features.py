"""What the frozen part of the network makes of each photo, computed once with onnxruntime and cached.

On a CPU the frozen ImageNet backbone runs about seven times faster in
onnxruntime than in PyTorch eager, so every image is put through it once per
view (plain, mirrored, or an augmented copy) and the result is kept as ``.npy``
files keyed by the model, its input size, the dataset version, the split and the
view. A second run on the same dataset version reads them back.

Two frozen parts: the whole backbone, whose pooled features the linear probe
learns from (``backbone_onnx``), and the trunk of a partial fine-tune, the stem
and the first blocks, whose activation maps the last blocks learn from
(``trunk_cache``, kept as float16).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from pestid.imaging import read_image
from pestid.manifest import Manifest, Row
from pestid.preprocess import PreprocessSpec, normalise, preprocess
from pestid.training.augment import AUGMENTATION, train_transform
from pestid.training.config import TrainConfig
from pestid.training.models import create_model, preprocess_spec

BATCH = 64
log = logging.getLogger(__name__)


def backbone_onnx(config: TrainConfig, path: Path) -> Path:
    """The model without its head, as ONNX: images in, pooled features out."""
    if path.is_file():
        return path
    model = create_model(config.model, num_classes=1)
    model.reset_classifier(0)  # type: ignore[operator]
    return _export_frozen(model, config, path)


def trunk(model: nn.Module, blocks: int) -> nn.Sequential:
    """The stem and the first ``blocks`` blocks of a timm EfficientNet: what a partial fine-tune leaves frozen."""
    return nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:blocks])  # type: ignore[index,arg-type]


def trunk_cache(config: TrainConfig, manifest: Manifest, model: nn.Module) -> FeatureCache:
    """The float16 maps of ``model``'s own trunk (``trunk``, up to ``config.model.frozen_blocks``), cached under a
    digest of its weights: the maps a partial fine-tune learns from are always those of the model it exports."""
    frozen = trunk(model, config.model.frozen_blocks)
    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in frozen.state_dict().values()))
    m = config.model
    key = f"{m.name}-{m.image_size}-{m.crop_pct}-trunk{m.frozen_blocks}-{digest.hexdigest()[:12]}"
    path = Path(config.data.feature_cache) / key / "trunk.onnx"
    if not path.is_file():
        _export_frozen(frozen, config, path)
    return FeatureCache(config, manifest, backbone=path, key=key, dtype=np.float16)


def _export_frozen(model: nn.Module, config: TrainConfig, path: Path) -> Path:
    model.eval()
    size = config.model.image_size

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(tmp), input_names=["input"],
                              output_names=["features"], dynamic_axes={"input": {0: "batch"}}, opset_version=17,
                              dynamo=False)  # fmt: skip

    return publish(path, write, suffix=".onnx")


def _view_transform(view: str, spec: PreprocessSpec, augment: str) -> Callable[[Image.Image], np.ndarray]:
    if view == "plain":
        return lambda image: preprocess(image, spec)
    if view == "hflip":
        return lambda image: np.ascontiguousarray(preprocess(image, spec)[..., ::-1])
    if view.startswith("aug"):
        pixels = train_transform(spec, augment)
        return lambda image: normalise(pixels(image), spec)
    raise ValueError(f"unknown view {view!r}")


def extract(
    session: object, manifest: Manifest, rows: Sequence[Row], spec: PreprocessSpec, *, view: str, augment: str = "field",
    seed: int = 0, desc: str = "", dtype: type = np.float32,
) -> np.ndarray:  # fmt: skip
    """(N, ...) features of ``rows`` seen through ``view``, as ``dtype``; images are decoded on two threads."""
    transform = _view_transform(view, spec, augment)
    torch.manual_seed(seed)  # augmented views draw their seeds from torch's generator
    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    out = []

    def load(row: Row) -> Image.Image:
        return read_image(manifest.image_path(row))

    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in tqdm(range(0, len(rows), BATCH), desc=desc or f"features {view}", leave=False):
            images = list(pool.map(load, rows[start : start + BATCH]))
            batch = np.stack([transform(image) for image in images])
            out.append(session.run(None, {name: batch})[0].astype(dtype))  # type: ignore[attr-defined]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=dtype)


class FeatureCache:
    """Features per (split, view) for one frozen part and one dataset version: the config's ImageNet backbone, or
    ``backbone`` (an ONNX file whose first output is the features, such as an INT8 copy's or a trunk's) under
    ``key``, kept as ``dtype``."""

    def __init__(
        self, config: TrainConfig, manifest: Manifest, backbone: Path | None = None, key: str | None = None,
        dtype: type = np.float32,
    ) -> None:  # fmt: skip
        import onnxruntime as ort

        self.config, self.manifest, self.dtype = config, manifest, dtype
        self.spec = preprocess_spec(config.model)
        m = config.model
        key = key or f"{m.name}-{m.image_size}-{m.crop_pct}-{'in1k' if m.pretrained else 'scratch'}"
        self.dir = Path(config.data.feature_cache) / key
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        onnx_path = backbone or backbone_onnx(config, self.dir / "backbone.onnx")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def _path(self, rows: Sequence[Row], view: str) -> Path:
        digest = hashlib.sha256("\n".join(f"{r.path}\x1f{r.sha256}" for r in rows).encode()).hexdigest()[:16]
        # an augmented view is drawn with the run's seed: another seed draws other photos
        augmented = f"{self.config.data.augment}-a{AUGMENTATION}-s{self.config.seed}" if view.startswith("aug") else ""
        return self.dir / f"{digest}-{view}-{augmented}.npy"

    def get(self, rows: Sequence[Row], view: str, *, desc: str = "") -> np.ndarray:
        """``rows`` seen through ``view``: read back when a whole, well-formed copy is cached, else computed and
        cached. A cached file with the wrong row count or type, or cut short, is computed again."""
        path = self._path(rows, view)
        if path.is_file():
            try:
                cached = np.load(path)
            except (ValueError, OSError, EOFError):
                cached = None
            if cached is not None and len(cached) == len(rows) and cached.dtype == self.dtype:
                return cached
            log.warning("features %s: unreadable or not %d rows of %s; computing them again", path, len(rows),
                        np.dtype(self.dtype).name)  # fmt: skip
        seed = self.config.seed * 1000 + (int(view[3:]) if view.startswith("aug") else 0)
        features = extract(self.session, self.manifest, rows, self.spec, view=view,
                           augment=self.config.data.augment, seed=seed, desc=desc, dtype=self.dtype)  # fmt: skip
        publish(path, lambda tmp: np.save(tmp, features), suffix=".npy")
        return features


def publish(path: Path, write: Callable[[Path], object], suffix: str = "") -> Path:
    """Write ``path`` through a temporary file of this process's own, renamed into place when complete: a reader
    never sees half a file, and two runs writing the same cache at once each publish a whole one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
