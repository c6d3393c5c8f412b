"""What the capacity benchmarks (cost_per_answer.py, season.py) share: the model they serve, the photos they send,
and the CPU time a server's processes spent.

The model: ``--model`` if given, else runs/default/model.onnx where it exists (the default model, trained by
`pestid train --config training/configs/default.yaml --out runs/default`), else a **stand-in** made once under
data/benchmarks/stand-in/: the default model's network (EfficientNet-Lite0 with its shipped ImageNet weights, 224 px,
both test-time views, 19 classes) with an untrained head, exported by `pestid export`'s own code, and its INT8
copy made as training makes it (the stem and blocks[:3] FP32, calibrated on 32 real photos where ../shared is
present). Speed does not depend on what the head learnt. Its INT8 copy records, in place of per-original
macro-F1 on a test split (which an untrained head has none of), its agreement with its own FP32 model, so the
servers are told to let it answer (``INT8_FORCED``), as benchmarks/serving.py's "INT8 copy forced" row does. It
lacks the default model's second output (novelty: one 1280-wide Mahalanobis distance, a negligible cost).

The stand-in measures speed only. Its thresholds are 0, so a server running it answers "identified", with that
organism's advice, on any guess: never serve it to farmers. To try the multi-replica shape without training, serve
it with ``PESTID_INT8_TOLERANCE=1`` (else the servers refuse its INT8 copy and answer with FP32), knowing that.
"""

from __future__ import annotations

import io
import json
import random
import struct
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "runs" / "default" / "model.onnx"
STAND_IN = REPO / "data" / "benchmarks" / "stand-in"
# The default model's labels (data/manifests/merged.meta.json), so that answers name the same organisms.
LABELS = ["bacterial_leaf_blight", "brown_planthopper", "brown_spot", "dragonfly", "gall_midge", "green_leafhopper",
          "green_rice_caterpillar", "lady_beetle", "not_rice", "rice_blast", "rice_leaffolder", "rice_stem_fly",
          "small_brown_planthopper", "spiders", "stem_borers", "tungro", "weevils", "whitebacked_planthopper",
          "whorl_maggot"]  # fmt: skip
INT8_FORCED = {"PESTID_INT8_TOLERANCE": "1"}  # the stand-in's copy has no accuracy figures to pass the gate with
PHONE = (4032, 3024)  # a 12 MP phone photo
FARMER_SIDE, FARMER_QUALITY = 1280, 82  # serving/static/app.js: LONG_SIDE, JPEG_QUALITY (0.82)


def choose_model(given: Path | None) -> tuple[Path, dict[str, str], str]:
    """(the model to serve, what its servers' environment needs, which model it is, in words)."""
    if given is not None:
        return given, {}, str(given)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, {}, f"{DEFAULT_MODEL.relative_to(REPO)} (the default model)"
    return stand_in_model(), INT8_FORCED, "stand-in: EfficientNet-Lite0, ImageNet weights, untrained 19-class head"


def real_photos(count: int) -> list[Image.Image]:
    """``count`` real photos (../shared's ricepest6, ≤ 320 px), else photos pestid draws."""
    from pestid.imaging import decode_image
    from pestid.sample import SAMPLE_CLASSES, make_original

    shared = REPO.parent / "shared" / "datasets" / "ricepest6" / "images"
    files = sorted(shared.rglob("*.jpg")) if shared.is_dir() else []
    if files:
        return [decode_image(p.read_bytes()) for p in random.Random(0).sample(files, min(count, len(files)))]
    return [make_original(SAMPLE_CLASSES[k % len(SAMPLE_CLASSES)], random.Random(k), 224) for k in range(count)]


def stand_in_model(folder: Path = STAND_IN) -> Path:
    """The stand-in (see the module's text), made once: its FP32 model's path, with its INT8 copy beside it."""
    from pestid.contract import int8_path

    model = folder / "model.onnx"
    if model.is_file() and int8_path(model).is_file():
        return model
    import torch

    from pestid.preprocess import preprocess
    from pestid.training.config import resolve_config, save_config
    from pestid.training.export import export_run
    from pestid.training.models import create_model, preprocess_spec
    from pestid.training.quantize import write_int8

    print(f"making the stand-in model in {folder} (once)", flush=True)
    run = folder / "run"
    config = resolve_config(REPO / "training" / "configs" / "default.yaml", [f"out={run}"])
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(create_model(config.model, len(LABELS)).state_dict(), run / "checkpoints" / "best.pt")
    save_config(config, run / "config.yaml")
    info = {"labels": LABELS, "dataset_version": "stand-in", "code_revision": "benchmark",
            "preprocess": preprocess_spec(config.model).model_dump(mode="json")}  # fmt: skip
    (run / "run.json").write_text(json.dumps(info))
    result = export_run(run, model, card=False)
    photos = [preprocess(image, result.contract.preprocess)[None] for image in real_photos(64)]
    copy = int8_path(model)
    contract = write_int8(model, copy, photos[:32], result.contract, config.export.int8_fp32_blocks)
    _record_agreement(model, copy, contract, photos[32:])
    return model


def _record_agreement(model: Path, copy: Path, contract, inputs: list) -> None:  # type: ignore[no-untyped-def]
    """Write into the copy's contract how it agrees with its FP32 model on ``inputs`` (top-1 and macro-F1 against
    FP32's own answers): the only figures an untrained head has."""
    import numpy as np

    from pestid.hashing import sha256_bytes
    from pestid.predictor import Predictor, integer_kernels
    from pestid.training.export import write_contract

    fp32, int8 = Predictor(model), Predictor(copy)
    ours = np.array([int(fp32.logits_of(x).argmax()) for x in inputs])
    theirs = np.array([int(int8.logits_of(x).argmax()) for x in inputs])
    f1s = []
    for label in sorted(set(ours) | set(theirs)):
        tp = int(((ours == label) & (theirs == label)).sum())
        f1s.append(2 * tp / max(1, int((ours == label).sum()) + int((theirs == label).sum())))
    metrics = {"stand_in": "speed only: an untrained head; figures are agreement with its FP32 model",
               "fp32_macro_f1_per_original": 1.0, "macro_f1_per_original": float(np.mean(f1s)),
               "top1_agreement": float((ours == theirs).mean()), "agreement_photos": len(inputs),
               "int8_measured_on": integer_kernels(), "fp32_sha256": sha256_bytes(model.read_bytes())}  # fmt: skip
    write_contract(copy, contract.model_copy(update={"metrics": metrics}))


def phone_original(seed: int = 0, label: str = "brown_planthopper", size: tuple[int, int] = PHONE) -> Image.Image:
    """A synthetic field photo (pestid.sample) at a phone camera's size: leaves, noise and insects, so that it
    compresses as a real one does (a 12 MP JPEG at quality 90 is about 4.5 MB, as phones' are)."""
    from pestid.sample import make_original

    side = max(size)
    square = make_original(label, random.Random(seed), side)
    top = (side - size[1]) // 2
    return square.crop((0, top, size[0], top + size[1]))


def fitted(size: tuple[int, int]) -> tuple[int, int]:
    """The size the farmer page gives a photo of ``size``: its longer side at most 1,280 px."""
    scale = min(1.0, FARMER_SIDE / max(size))
    return round(size[0] * scale), round(size[1] * scale)


def farmer_jpeg(original: Image.Image) -> bytes:
    """What the farmer page sends for ``original``: its longer side at most 1,280 px, JPEG quality 82."""
    return encode(original.resize(fitted(original.size), Image.Resampling.LANCZOS), "JPEG", quality=FARMER_QUALITY)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    if fmt == "HEIF":
        import pestid.imaging  # noqa: F401 - registers the HEIC writer

    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def phone_heic(original: Image.Image) -> bytes:
    """A phone's HEIC of ``original``: x265 at quality 40, about 2.5 MB at 12 MP as phones' are (the "ultrafast"
    preset: the encoder is slow here)."""
    return encode(original, "HEIF", quality=40, enc_params={"preset": "ultrafast"})


def unique(jpeg: bytes, tag: str) -> bytes:
    """The same JPEG with a comment segment naming ``tag``: other bytes (another sha256, as every farmer's photo
    has), the same pixels. Anything else is returned as it is."""
    if not jpeg.startswith(b"\xff\xd8"):
        return jpeg
    text = tag.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def tree_cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of these processes and all their descendants, as /proc reports them now."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in family:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
    return total
