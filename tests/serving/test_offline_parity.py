"""The farmer page's offline predictor (serving/static/offline.js) against the Python one, in real Chromium.

What the offline twin promises, and the test that holds each promise:
- **The model's input, bit for bit**: the page decodes (EXIF turn included), resamples, crops, normalises and
  mirrors a photo exactly as ``pestid.imaging.decode_image`` and ``pestid.preprocess.preprocess`` do, on
  photos this test makes (JPEG, PNG, turned, smaller and larger than the crop, two specs). Exact equality, so
  a one-pixel slip in the port fails here, whatever the CPU.
- **Decisions**: the same fused probabilities give the same decision, ranking, group, flags and words as
  ``pestid.decision.decide``, over hundreds of probability vectors that reach every rule. Exact.
- **INT8 answers on real photos**: the same decision, organism and group as the server on every photo whose
  confidence is not within the copy's cross-runtime tolerance of a rule's boundary, and probabilities within
  that tolerance (``training.quantize.kernel_envelope``). The tolerance is derived from the copy's
  quantization, not from one machine's run: onnxruntime picks its integer kernels by CPU (the server's on AVX2
  gave the browser's numbers to 5.6e-16, with VNNI/AMX they differed by 3.7e-3), and each runtime rounds the
  requantized activations its own way inside the envelope that separates the integer kernels from the
  copy's arithmetic definition (the QDQ graph in float), measured here in the same run.
"""

from __future__ import annotations

import base64
import io
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pestid.catalogue import load_catalogue
from pestid.decision import Outcome, decide, group_masses
from pestid.imaging import decode_image
from pestid.predictor import Predictor
from pestid.preprocess import TF_LITE_MEAN, TF_LITE_STD, PreprocessSpec, preprocess, tta_views
from pestid.serving.app import create_app
from tests.conftest import jpeg_bytes
from tests.onnx_models import linear_model
from tests.serving.conftest import make_settings, running, until

pytestmark = [pytest.mark.browser, pytest.mark.server]
# The default model's classes: species, two groups answered as classes, natural enemies and not_rice.
LABELS = ["brown_planthopper", "green_leafhopper", "rice_leaffolder", "stem_borers", "weevils", "whorl_maggot",
          "bacterial_leaf_blight", "brown_spot", "rice_blast", "tungro", "dragonfly", "gall_midge",
          "green_rice_caterpillar", "lady_beetle", "rice_stem_fly", "small_brown_planthopper", "spiders",
          "whitebacked_planthopper", "not_rice"]  # fmt: skip
PARITY_PHOTOS = 50
# 19 ImageNet classes (leafhopper, cicada, lacewing, leaf beetle, weevil, fly, …) answered under the labels above:
# real photos then get confident, unsure and out-of-scope answers, so the page's rules meet real probabilities.
IMAGENET_CLASSES = [317, 316, 318, 304, 307, 308, 998, 987, 958, 985, 319, 309, 326, 301, 310, 312, 77, 311, 113]
PAGE_INPUT = """async ([b64, spec]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const { pixels, width, height } = await Offline.pixelsOf(new Blob([bytes]));
  const views = Offline.preprocess(pixels, width, height, spec, true);
  const out = new Uint8Array(views.length * views[0].length * 4);
  views.forEach((v, i) => out.set(new Uint8Array(v.buffer), i * v.length * 4));
  let text = "";
  for (let i = 0; i < out.length; i += 0x8000) text += String.fromCharCode(...out.subarray(i, i + 0x8000));
  return btoa(text);
}"""


def _page_with_offline(browser, url: str):
    page = browser.new_page()
    page.goto(url + "/")
    until(page, "() => typeof Offline !== 'undefined' && typeof ort !== 'undefined'")
    return page


def test_the_page_decides_as_python_does(browser, tmp_path):
    thresholds = {"brown_planthopper": 0.55, "rice_blast": 0.8, "lady_beetle": 0.7}
    groups = {"planthoppers": 0.7, "caterpillars": 0.8}  # the others are held to the overall 0.6
    model = linear_model(tmp_path / "model.onnx", LABELS, threshold=0.6, class_thresholds=thresholds,
                         group_thresholds=groups, novelty_threshold=2.0)  # fmt: skip
    app = create_app(make_settings(model, tmp_path / "data", offline_model=str(model)))
    rng = np.random.default_rng(0)
    vectors = [rng.dirichlet(np.full(len(LABELS), alpha)) for alpha in (0.05, 0.2, 1.0, 5.0) for _ in range(75)]
    members = {"planthoppers": ["brown_planthopper", "small_brown_planthopper", "whitebacked_planthopper",
                                "green_leafhopper"],
               "caterpillars": ["rice_leaffolder", "stem_borers", "green_rice_caterpillar"],
               "flies": ["whorl_maggot", "gall_midge", "rice_stem_fly"],
               "natural_enemies": ["dragonfly", "lady_beetle", "spiders"]}  # fmt: skip
    for names in members.values():  # no species sure, but a group may be: every group rule, both sides of it
        for _ in range(25):
            p = rng.dirichlet(np.ones(len(LABELS))) * rng.uniform(0.05, 0.4)
            p[[LABELS.index(x) for x in names]] += (1 - p.sum()) / len(names)
            vectors.append(p / p.sum())
    # Novelty from the model's second output: below the contract's 2.0 for most, above it (unfamiliar) for some,
    # exactly at it for one (not above: answered as usual); None as a model without the output gives.
    novelty = [None if k % 7 == 0 else 2.0 if k == 1 else float(rng.uniform(0, 2.6)) for k in range(len(vectors))]
    catalogue = load_catalogue()
    with running(app) as url:
        page = _page_with_offline(browser, url)
        manifest = page.evaluate("fetch('/v1/offline/manifest').then(r => r.json())")
        assert manifest["contract"]["labels"] == LABELS and manifest["contract"]["class_thresholds"] == thresholds
        assert manifest["contract"]["group_thresholds"] == groups and "caterpillars" in manifest["catalogue"]
        assert manifest["contract"]["novelty_threshold"] == 2.0 and "unfamiliar" in manifest["messages"]
        js = page.evaluate("([m, vs, ns]) => vs.map((v, i) => Offline.decide(m, v, ns[i]))",
                           [manifest, [v.tolist() for v in vectors], novelty])  # fmt: skip
    reached, unfamiliar = set(), 0
    for probs, mine, n in zip(vectors, js, novelty, strict=True):
        ours = decide(probs, LABELS, threshold=0.6, class_thresholds=thresholds, group_thresholds=groups,
                      catalogue=catalogue, uncertain_floor=manifest["uncertain_floor"], novelty=n,
                      novelty_threshold=2.0)  # fmt: skip
        reached.add((ours.decision, ours.level, ours.nearest_group.id if ours.nearest_group else None,
                     ours.do_not_spray))  # fmt: skip
        unfamiliar += ours.unfamiliar
        assert mine["unfamiliar"] == ours.unfamiliar
        assert mine["decision"] == ours.decision and mine["level"] == ours.level
        assert [r["id"] for r in mine["ranked"]] == [r.id for r in ours.ranked]
        assert [r["probability"] for r in mine["ranked"]] == pytest.approx([r.probability for r in ours.ranked])
        assert (mine["nearest_group"] or {}).get("id") == (ours.nearest_group.id if ours.nearest_group else None)
        if ours.nearest_group:
            assert mine["nearest_group"]["probability"] == ours.nearest_group.probability  # summed in the same order
        assert mine["needs_review"] == ours.needs_review and mine["do_not_spray"] == ours.do_not_spray
        assert mine["messages"] == ours.messages
    assert {("identified", "species", None, False), ("identified", "species", None, True),
            ("identified", "group", "planthoppers", False), ("identified", "group", "caterpillars", False),
            ("identified", "group", "flies", False), ("identified", "group", "natural_enemies", True),
            ("uncertain", None, None, False), ("not_recognised", None, None, False)} <= reached, reached  # fmt: skip
    assert 50 <= unfamiliar <= 150  # about a fifth of the vectors, each answered "not recognised" on both sides


def made_photos() -> dict[str, bytes]:
    """Photos with fine detail (noise on a smooth field), in the shapes and formats a phone sends."""
    rng = np.random.default_rng(7)

    def field(width: int, height: int) -> Image.Image:
        y, x = np.mgrid[0:height, 0:width]
        smooth = np.stack([120 + 80 * np.sin(x / 17.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], axis=-1)
        noise = rng.normal(0, 25, (height, width, 3))
        return Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))

    def turned(image: Image.Image, orientation: int) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = orientation
        return jpeg_bytes(image, exif=exif.tobytes())

    png = io.BytesIO()
    field(301, 233).save(png, format="PNG")
    return {
        "landscape 320x240 JPEG": jpeg_bytes(field(320, 240)),
        "portrait 240x320 JPEG": jpeg_bytes(field(240, 320)),
        "odd 257x191 JPEG": jpeg_bytes(field(257, 191)),
        "square 224 JPEG": jpeg_bytes(field(224, 224)),
        "small 97x61 JPEG (enlarged)": jpeg_bytes(field(97, 61)),
        "phone-like 1280x960 JPEG": jpeg_bytes(field(1280, 960)),
        "301x233 PNG": png.getvalue(),
        "EXIF turned 90° JPEG": turned(field(200, 300), 6),
        "EXIF turned 180° JPEG": turned(field(310, 230), 3),
    }


@pytest.mark.parametrize(
    "spec",
    [PreprocessSpec(mean=TF_LITE_MEAN, std=TF_LITE_STD), PreprocessSpec(size=288, crop_pct=1.0)],
    ids=["224 of 256, EfficientNet-Lite", "288 whole photo, ImageNet"],
)
def test_the_page_makes_the_model_input_bit_for_bit(browser, tiny_model, tmp_path, spec):
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with running(app) as url:
        page = _page_with_offline(browser, url)
        for name, data in made_photos().items():
            b64 = page.evaluate(PAGE_INPUT, [base64.b64encode(data).decode(), spec.model_dump()])
            page_views = np.frombuffer(base64.b64decode(b64), dtype=np.float32).reshape(2, 3, spec.size, spec.size)
            ours = np.stack(tta_views(preprocess(decode_image(data), spec)[None], ["hflip"]))[:, 0]
            differing = int((page_views != ours).sum())
            assert differing == 0, f"{name}: {differing} of {ours.size} input values differ from Python's"


def near_a_boundary(probs: np.ndarray, labels: list[str], contract_thresholds: np.ndarray, *, floor: float,
                    threshold: float, tolerance: float) -> bool:  # fmt: skip
    """Whether moving every probability by up to ``tolerance`` could change what ``decide`` answers: the top two
    could swap, the top could cross its threshold or the floor, or a group's summed probability its threshold."""
    order = np.argsort(-probs)
    top = float(probs[order[0]])
    if top - float(probs[order[1]]) <= 2 * tolerance:
        return True
    if min(abs(top - contract_thresholds[order[0]]), abs(top - floor)) <= tolerance:
        return True
    masses = group_masses(probs, labels, load_catalogue())
    return any(abs(mass - threshold) <= tolerance * size for mass, size, _ in masses.values())


def same_answer(page: dict, ours: Outcome) -> bool:
    return (page["decision"] == ours.decision and page["level"] == ours.level and page["ranked"][0]["id"] == ours.ranked[0].id
            and (page["nearest_group"] or {}).get("id") == (ours.nearest_group.id if ours.nearest_group else None))  # fmt: skip


def imagenet_int8(tmp_path, calibration_paths) -> tuple:
    """EfficientNet-Lite0 with ImageNet weights, its classifier cut to IMAGENET_CLASSES under LABELS, exported and
    quantized by ``training.quantize.write_int8`` exactly as a trained model's offline copy is."""
    import timm
    import torch

    from pestid.contract import ModelContract
    from pestid.training.config import ModelConfig, resolve_config
    from pestid.training.export import write_contract
    from pestid.training.models import imagenet_state_dict, preprocess_spec
    from pestid.training.quantize import write_int8

    network = timm.create_model("efficientnet_lite0", pretrained=False)
    network.load_state_dict(imagenet_state_dict("efficientnet_lite0", network))
    head = torch.nn.Linear(network.classifier.in_features, len(LABELS))
    head.weight.data, head.bias.data = (network.classifier.weight.data[IMAGENET_CLASSES].clone(),
                                        network.classifier.bias.data[IMAGENET_CLASSES].clone())  # fmt: skip
    network.classifier = head
    network.eval()
    spec = preprocess_spec(ModelConfig(name="efficientnet_lite0"))
    fp32 = tmp_path / "imagenet.onnx"
    torch.onnx.export(network, (torch.zeros(1, 3, spec.size, spec.size),), str(fp32), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)  # fmt: skip
    contract = ModelContract(model_name="imagenet-parity", architecture="efficientnet_lite0", labels=LABELS,
                             preprocess=spec, tta=["hflip"], threshold=0.6,
                             class_thresholds={"brown_planthopper": 0.5, "lady_beetle": 0.7})  # fmt: skip
    write_contract(fp32, contract)
    calibration = [preprocess(decode_image(p.read_bytes()), spec)[None] for p in calibration_paths]
    int8 = tmp_path / "imagenet.int8.onnx"
    shipped = resolve_config(Path(__file__).resolve().parents[2] / "training/configs/default.yaml").export
    return int8, write_int8(fp32, int8, calibration, contract, shipped.int8_fp32_blocks)  # as the default's copy


@pytest.mark.shared
def test_int8_in_the_browser_answers_as_the_server_within_the_quantization_envelope(browser, shared_datasets, tmp_path):
    from pestid.training.quantize import kernel_envelope

    photos = sorted((shared_datasets / "ricepest6").rglob("*.jpg"))
    chosen = random.Random(0).sample(photos, PARITY_PHOTOS + 32)
    int8, contract = imagenet_int8(tmp_path, chosen[PARITY_PHOTOS:])
    python = Predictor(int8)
    images = {path: path.read_bytes() for path in chosen[:PARITY_PHOTOS]}
    tolerance = kernel_envelope(int8, [python.prepare(decode_image(data))[None] for data in images.values()])
    app = create_app(make_settings(int8, tmp_path / "data", offline_model=str(int8)))
    gaps, near, thresholds, decisions = [], 0, contract.thresholds(), Counter()
    with running(app) as url:
        page = _page_with_offline(browser, url)
        manifest = page.evaluate("fetch('/v1/offline/manifest').then(r => r.json())")
        floor = manifest["uncertain_floor"]
        for path, data in images.items():
            js = page.evaluate(
                """async ([b64, m]) => Offline.identify(m, [new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))],
                                                                   {type: "image/jpeg"})])""",
                [base64.b64encode(data).decode(), manifest],
            )  # fmt: skip
            probs = python.probabilities([decode_image(data)])[0]
            ours = decide(probs, LABELS, threshold=contract.threshold, class_thresholds=contract.class_thresholds,
                          catalogue=load_catalogue(), uncertain_floor=floor)  # fmt: skip
            decisions[ours.decision.value] += 1
            gap = float(np.abs(np.asarray(js["probabilities"]) - probs).max())
            gaps.append(gap)
            # A different answer is allowed only where the two sets of probabilities straddle a boundary.
            assert same_answer(js, ours) or near_a_boundary(probs, LABELS, thresholds, floor=floor,
                                                            threshold=contract.threshold, tolerance=gap), path.name  # fmt: skip
            near += near_a_boundary(probs, LABELS, thresholds, floor=floor, threshold=contract.threshold,
                                    tolerance=tolerance)  # fmt: skip
    print(
        f"INT8 browser vs Python on {PARITY_PHOTOS} ricepest6 photos: max |Δp| {max(gaps):.2e}, within the "
        f"cross-runtime tolerance {tolerance:.2e}; the same answer wherever the two do not straddle a boundary. "
        f"{near} of {PARITY_PHOTOS} photos lie within the tolerance of one (their answer may differ on another CPU); "
        f"answers {dict(decisions)}"
    )
    assert len(decisions) >= 2, decisions  # the rules met real probabilities on both sides of a threshold
    assert max(gaps) <= tolerance, (max(gaps), tolerance)
