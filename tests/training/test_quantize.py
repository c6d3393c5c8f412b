"""``pestid export --int8``: the farmer page's offline copy is INT8, carries the contract, and is refused (not
written) when it loses more per-original macro-F1 than allowed."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

from pestid.contract import int8_path
from pestid.errors import PestidError
from pestid.predictor import Predictor, integer_kernels
from pestid.training.quantize import quantize_int8


def test_int8_copy_carries_the_contract_and_its_figures(trained_tiny_model, sample_split):
    result = quantize_int8(trained_tiny_model, sample_split, photos=16, tolerance=1.0)
    assert result.path == int8_path(trained_tiny_model) and result.path.is_file()
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ: activations quantized too
    weights = [t for t in onnx.load(str(result.path)).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights, "the weights are stored as INT8"
    fp32, int8 = Predictor(trained_tiny_model).contract, Predictor(result.path).contract
    assert int8.labels == fp32.labels and int8.preprocess == fp32.preprocess and int8.threshold == fp32.threshold
    assert int8.quantization.startswith("static int8") and not fp32.quantization
    assert int8.metrics["fp32_macro_f1_per_original"] == pytest.approx(result.fp32["macro_f1_per_original"])
    assert result.summary()["macro_f1_drop"] == pytest.approx(result.drop)
    # where its figures were measured, and how far its probabilities may move on another CPU's integer kernels
    assert int8.metrics["int8_measured_on"] == integer_kernels()
    assert int8.metrics["fp32_sha256"] == hashlib.sha256(trained_tiny_model.read_bytes()).hexdigest()  # its model
    assert 0 <= int8.metrics["int8_cross_runtime_tolerance"] == result.envelope < 0.5  # 0 where they agree exactly


def test_a_copy_that_loses_too_much_is_refused_and_not_written(trained_tiny_model, sample_split, tmp_path):
    out = tmp_path / "refused.int8.onnx"
    with pytest.raises(PestidError) as refused:
        quantize_int8(trained_tiny_model, sample_split, out=out, photos=8, tolerance=-1.0)  # any copy loses "too much"
    assert "macro-F1" in refused.value.message_en and not out.exists()


def test_a_run_whose_int8_copy_is_refused_still_finishes_registered_and_says_so(sample_split, tmp_path):
    """A retrain must reach its gate even when the offline copy misses its budget: the FP32 model is exported,
    evaluated and registered, the run finishes, MLflow records why there is no offline copy, and the CLI says the
    phones keep theirs."""
    import mlflow
    from typer.testing import CliRunner

    from pestid.cli import app as pestid_cli
    from pestid.training.config import save_config

    from .conftest import tiny_config

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tiny_config(sample_split, tmp_path / "run", "export.int8=true", "export.int8_tolerance=-1.0",
                         "export.calibration_photos=8", mlflow_uri=uri)  # fmt: skip
    save_config(config, tmp_path / "config.yaml")
    result = CliRunner().invoke(pestid_cli, ["train", "--config", str(tmp_path / "config.yaml")])
    assert result.exit_code == 0, result.output
    assert "the phones' offline copy is not refreshed" in result.output and "macro-F1" in result.output
    onnx_path = tmp_path / "run" / "model.onnx"
    assert onnx_path.is_file() and not int8_path(onnx_path).exists()
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs(client.get_experiment_by_name(config.mlflow.experiment).experiment_id)
    assert run.info.status == "FINISHED" and run.data.tags["offline_copy"].startswith("not written: ")
    assert "int8_macro_f1_per_original" not in run.data.metrics
    version = client.get_model_version_by_alias(config.mlflow.registered_model, "challenger")
    assert version.run_id == run.info.run_id and version.tags["offline_copy"] == "not written"
    assert f"pestid export {tmp_path / 'run'} --int8 --tolerance" in result.output  # what to do about it


def test_a_linear_probes_copy_learns_its_head_again_on_its_own_int8_features(sample_split, tmp_path):
    from onnx import numpy_helper

    from pestid.training.quantize import REFITTED, head_node
    from pestid.training.train import train

    from .conftest import tiny_config

    config = tiny_config(sample_split, tmp_path / "probe", "method=linear_probe", "epochs=3", "eval.calibration=val",
                         f"data.feature_cache={tmp_path / 'features'}", "export.int8=true", "export.int8_tolerance=1.0",
                         "export.calibration_photos=16")  # fmt: skip
    trained = train(config)  # export.int8_refit is on by default: the copy is made and refitted at the end of train
    fp32, result = trained.onnx_path, trained.int8
    assert result is not None

    def head(path):
        model = onnx.load(str(path))
        weights = {t.name: t for t in model.graph.initializer}
        return numpy_helper.to_array(weights[head_node(model).input[1]])

    fp32_head, int8_head = head(fp32), head(result.path)
    assert int8_head.dtype == fp32_head.dtype == "float32" and int8_head.shape == fp32_head.shape  # the head stays FP32
    assert not (int8_head == fp32_head).all()  # … and learnt again
    before, after = Predictor(fp32).contract, Predictor(result.path).contract
    assert after.quantization.endswith(REFITTED) and not before.quantization
    assert after.temperature != before.temperature  # calibrated again, for the new head
    assert result.int8["macro_f1_per_original"] == pytest.approx(after.metrics["macro_f1_per_original"])


def test_the_stem_and_first_blocks_can_stay_fp32_where_the_quantization_error_starts(
    trained_tiny_model, sample_split, tmp_path
):
    from pestid.training.quantize import write_int8

    contract = Predictor(trained_tiny_model).contract
    photos = [np.random.default_rng(k).standard_normal((1, 3, 48, 48)).astype(np.float32) for k in range(4)]

    def quantized_convs(fp32_blocks):
        out = tmp_path / f"copy-{fp32_blocks}.onnx"
        written = write_int8(trained_tiny_model, out, photos, contract, fp32_blocks)
        graph = onnx.load(str(out)).graph
        dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        convs = {n.name: n.input[1] in dequantized for n in graph.node if n.op_type == "Conv"}
        prefixes = ("/conv_stem/", "/blocks/blocks.0/", "/blocks/blocks.1/")
        early = [n for n in graph.node if n.name.startswith(prefixes) and "Linear" not in n.op_type]
        rounded = [n.name for n in early if any(i in dequantized for i in n.input)]  # fed 8-bit values
        return convs, written.quantization, (len(early), rounded)

    all_int8, method, (adds, rounded) = quantized_convs(0)
    assert all(all_int8.values()) and "FP32 head" in method and "blocks[" not in method
    assert adds and rounded  # all INT8: the stem and blocks 0-1 compute on 8-bit weights and activations
    mixed, method, (_, rounded) = quantized_convs(2)
    assert rounded == []  # kept FP32: every node inside them (activations, residual additions), not only weights
    early = {n for n in mixed if n.startswith(("/conv_stem/", "/blocks/blocks.0/", "/blocks/blocks.1/"))}
    assert early and not any(mixed[n] for n in early)  # FP32 weights: no DequantizeLinear feeds them
    assert all(mixed[n] for n in mixed if n not in early)  # the rest still INT8
    assert method.endswith("stem and blocks[:2] FP32")


def test_keeping_more_blocks_fp32_than_the_model_has_is_refused(trained_tiny_model, tmp_path):
    from pestid.training.export import ExportError
    from pestid.training.quantize import write_int8

    photos = [np.zeros((1, 3, 48, 48), dtype=np.float32)]
    out = tmp_path / "copy.onnx"
    with pytest.raises(ExportError, match="int8_fp32_blocks=9"):  # test_efficientnet has five blocks
        write_int8(trained_tiny_model, out, photos, Predictor(trained_tiny_model).contract, 9)
    assert not out.exists()
