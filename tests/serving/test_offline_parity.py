"""The farmer page's offline predictor (serving/static/offline.js) against the Python one, in real Chromium.

- Decisions: the same fused probabilities give the same decision, ranking, group, flags and words as
  ``pestid.decision.decide``, over hundreds of probability vectors that reach every rule.
- Probabilities: an INT8 EfficientNet-Lite0 (ImageNet weights, quantized by ``training.quantize``) run by
  onnxruntime-web on real photos gives Python's top-1 and probabilities within 1e-3.
"""

from __future__ import annotations

import base64
import random

import numpy as np
import pytest

from pestid.catalogue import load_catalogue
from pestid.decision import decide
from pestid.imaging import decode_image
from pestid.predictor import Predictor
from pestid.serving.app import create_app
from tests.onnx_models import linear_model
from tests.serving.conftest import make_settings, running, until

pytestmark = [pytest.mark.browser, pytest.mark.server]
# The default model's classes: species, two groups answered as classes, natural enemies and not_rice.
LABELS = ["brown_planthopper", "green_leafhopper", "rice_leaffolder", "stem_borers", "weevils", "whorl_maggot",
          "bacterial_leaf_blight", "brown_spot", "rice_blast", "tungro", "dragonfly", "gall_midge",
          "green_rice_caterpillar", "lady_beetle", "rice_stem_fly", "small_brown_planthopper", "spiders",
          "whitebacked_planthopper", "not_rice"]  # fmt: skip
PARITY_PHOTOS = 50
PROBABILITY_TOLERANCE = 1e-3


def _page_with_offline(browser, url: str):
    page = browser.new_page()
    page.goto(url + "/")
    until(page, "() => typeof Offline !== 'undefined' && typeof ort !== 'undefined'")
    return page


def test_the_page_decides_as_python_does(browser, tmp_path):
    thresholds = {"brown_planthopper": 0.55, "rice_blast": 0.8, "lady_beetle": 0.7}
    model = linear_model(tmp_path / "model.onnx", LABELS, threshold=0.6, class_thresholds=thresholds)
    app = create_app(make_settings(model, tmp_path / "data", offline_model=str(model)))
    rng = np.random.default_rng(0)
    vectors = [rng.dirichlet(np.full(len(LABELS), alpha)) for alpha in (0.05, 0.2, 1.0, 5.0) for _ in range(75)]
    planthoppers = [
        LABELS.index(x) for x in ("brown_planthopper", "small_brown_planthopper", "whitebacked_planthopper")
    ]
    for _ in range(40):  # no species sure, but its group is: the nearest-group rule
        p = rng.dirichlet(np.ones(len(LABELS))) * 0.3
        p[planthoppers] += 0.7 / 3
        vectors.append(p / p.sum())
    catalogue = load_catalogue()
    with running(app) as url:
        page = _page_with_offline(browser, url)
        manifest = page.evaluate("fetch('/v1/offline/manifest').then(r => r.json())")
        assert manifest["contract"]["labels"] == LABELS and manifest["contract"]["class_thresholds"] == thresholds
        js = page.evaluate("([m, vs]) => vs.map(v => Offline.decide(m, v))", [manifest, [v.tolist() for v in vectors]])
    reached = set()
    for probs, mine in zip(vectors, js, strict=True):
        ours = decide(probs, LABELS, threshold=0.6, class_thresholds=thresholds, catalogue=catalogue,
                      uncertain_floor=manifest["uncertain_floor"])  # fmt: skip
        reached.add((ours.decision, ours.nearest_group is not None, ours.do_not_spray))
        assert mine["decision"] == ours.decision
        assert [r["id"] for r in mine["ranked"]] == [r.id for r in ours.ranked]
        assert [r["probability"] for r in mine["ranked"]] == pytest.approx([r.probability for r in ours.ranked])
        assert (mine["nearest_group"] or {}).get("id") == (ours.nearest_group.id if ours.nearest_group else None)
        assert mine["needs_review"] == ours.needs_review and mine["do_not_spray"] == ours.do_not_spray
        assert mine["messages"] == ours.messages
    assert {("identified", False, False), ("identified", False, True), ("uncertain", False, False),
            ("not_recognised", True, False), ("not_recognised", False, False)} <= reached  # fmt: skip


@pytest.mark.shared
def test_int8_in_the_browser_gives_the_python_probabilities(browser, shared_datasets, tmp_path):
    import timm
    import torch

    from pestid.contract import ModelContract
    from pestid.preprocess import preprocess
    from pestid.training.config import ModelConfig
    from pestid.training.export import write_contract
    from pestid.training.models import imagenet_state_dict, preprocess_spec
    from pestid.training.quantize import write_int8

    network = timm.create_model("efficientnet_lite0", pretrained=False)
    network.load_state_dict(imagenet_state_dict("efficientnet_lite0", network))
    network.eval()
    spec = preprocess_spec(ModelConfig(name="efficientnet_lite0"))
    fp32 = tmp_path / "imagenet.onnx"
    torch.onnx.export(network, (torch.zeros(1, 3, spec.size, spec.size),), str(fp32), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)  # fmt: skip
    labels = [f"imagenet_{k}" for k in range(1000)]
    fp32_contract = ModelContract(model_name="imagenet", architecture="efficientnet_lite0", labels=labels,
                                  preprocess=spec, tta=["hflip"])  # fmt: skip
    write_contract(fp32, fp32_contract)
    photos = sorted((shared_datasets / "ricepest6").rglob("*.jpg"))
    chosen = random.Random(0).sample(photos, PARITY_PHOTOS + 32)
    calibration = [preprocess(decode_image(p.read_bytes()), spec)[None] for p in chosen[PARITY_PHOTOS:]]
    int8 = tmp_path / "imagenet.int8.onnx"
    contract = write_int8(fp32, int8, calibration, fp32_contract)
    python = Predictor(int8)
    manifest = {"model": {"url": "/parity/model.onnx", "sha256": "parity"},
                "contract": {"labels": labels, "preprocess": contract.preprocess.model_dump(), "tta": contract.tta,
                             "temperature": contract.temperature}}  # fmt: skip
    app = create_app(make_settings(linear_model(tmp_path / "page.onnx", LABELS), tmp_path / "data"))  # serves the page
    with running(app) as url:
        page = _page_with_offline(browser, url)
        page.route("**/parity/model.onnx", lambda route: route.fulfill(body=int8.read_bytes()))
        gaps, same = [], 0
        for path in chosen[:PARITY_PHOTOS]:
            data = path.read_bytes()
            js = page.evaluate(
                """async ([b64, m]) => Offline.probabilities(m, new Blob([Uint8Array.from(atob(b64), c => c.charCodeAt(0))],
                                                                      {type: "image/jpeg"}))""",
                [base64.b64encode(data).decode(), manifest],
            )  # fmt: skip
            ours = python.probabilities([decode_image(data)])[0]
            same += int(np.argmax(js) == np.argmax(ours))
            gaps.append(float(np.abs(np.asarray(js) - ours).max()))
    print(
        f"INT8 browser vs Python on {PARITY_PHOTOS} ricepest6 photos: same top-1 {same}/{PARITY_PHOTOS}, "
        f"max |Δp| {max(gaps):.2e}"
    )
    assert same == PARITY_PHOTOS and max(gaps) <= PROBABILITY_TOLERANCE, (same, max(gaps))
