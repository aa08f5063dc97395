"""infer.py, deploy/ and the backends: Paddle Inference FP32/INT8, ONNX Runtime, TensorRT configuration, benchmark."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, sample_file

from ernie3.backends import TensorRTOptions, apply_tensorrt, create_backend, is_quantized_onnx
from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.export import task_of_model_dir
from ernie3.predict import Predictor

DEV = sample_file("tnews", "dev")


@pytest.fixture(scope="module")
def ptq_dir(trained_tnews, tmp_path_factory):
    from ernie3.compress import run as compress

    output_dir = tmp_path_factory.mktemp("ptq")
    compress("seq_cls", [
        "--task_name", "tnews", "--model_name_or_path", trained_tnews["best_model_dir"], "--output_dir", str(output_dir),
        "--dev_file", DEV, "--strategy", "ptq", "--algo_list", "hist", "--batch_size_list", "8",
        "--max_metric_drop", "0.5",
    ])  # fmt: skip
    return str(output_dir)


@pytest.fixture(scope="module")
def onnx_files(trained_tnews, tmp_path_factory):
    from ernie3.onnx import export_onnx, quantize_onnx_dynamic

    onnx_file = export_onnx(trained_tnews["export_dir"], str(tmp_path_factory.mktemp("onnx")))
    return onnx_file, quantize_onnx_dynamic(onnx_file)


def run_script(*argv):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


def test_onnx_runtime_fp32_agrees_with_paddle(trained_tnews, onnx_files):
    from ernie3.onnx import compare_with_paddle

    examples = load_examples(task_of_model_dir(trained_tnews["export_dir"]), "dev", DEV)
    check = compare_with_paddle(trained_tnews["export_dir"], onnx_files[0], examples)
    assert check["max_abs_difference"] < 1e-4 and check["agreement"] == 1.0


def test_onnx_dynamic_int8_is_really_quantized_and_agrees(trained_tnews, onnx_files):
    from ernie3.onnx import compare_with_paddle

    float_file, int8_file = onnx_files
    assert is_quantized_onnx(int8_file) and not is_quantized_onnx(float_file)
    assert os.path.getsize(int8_file) < os.path.getsize(float_file)
    examples = load_examples(task_of_model_dir(trained_tnews["export_dir"]), "dev", DEV)
    check = compare_with_paddle(trained_tnews["export_dir"], int8_file, examples)
    assert check["precision"] == "int8" and check["agreement"] >= 0.95


def test_weights_in_constant_nodes_are_moved_so_onnx_runtime_quantizes_them(tmp_path):
    """quantize_dynamic skips MatMul weights held in Constant nodes; constants_to_initializers fixes that."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import quantize_dynamic

    from ernie3.onnx import constants_to_initializers

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=weight), helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    naive, fixed = str(tmp_path / "naive.onnx"), str(tmp_path / "fixed.onnx")
    onnx.save(model, str(tmp_path / "source.onnx"))
    quantize_dynamic(str(tmp_path / "source.onnx"), naive, op_types_to_quantize=["MatMul"])
    assert not is_quantized_onnx(naive)
    assert constants_to_initializers(model) == 1
    onnx.save(model, str(tmp_path / "moved.onnx"))
    quantize_dynamic(str(tmp_path / "moved.onnx"), fixed, op_types_to_quantize=["MatMul"])
    assert is_quantized_onnx(fixed)


def test_int8_is_detected_from_the_graph_and_runs_with_onednn_int8(ptq_dir, tmp_path):
    import shutil

    # a quantized model under a misleading file name is still run as INT8; a float model cannot be forced to INT8
    source = os.path.join(ptq_dir, "float", "hist8_1")
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copy(os.path.join(source, "int8.pdmodel"), renamed / "model.pdmodel")
    shutil.copy(os.path.join(source, "int8.pdiparams"), renamed / "model.pdiparams")
    assert create_backend(str(renamed)).precision == "int8"
    with pytest.raises(UserError, match="is not a quantized model"):
        create_backend(os.path.join(ptq_dir, "float"), precision="int8")
    with pytest.raises(UserError, match="is quantized: run it with precision int8"):
        create_backend(str(renamed), precision="fp32")


def test_unsupported_precisions_and_devices_are_explicit_errors(trained_tnews):
    export_dir = trained_tnews["export_dir"]
    with pytest.raises(UserError, match="fp16 is not supported on CPU"):
        create_backend(export_dir, precision="fp16")
    with pytest.raises(UserError, match="CPU-only"):
        create_backend(export_dir, device="gpu")
    with pytest.raises(UserError, match="TensorRT runs on GPU only"):
        create_backend(export_dir, tensorrt=TensorRTOptions())
    with pytest.raises(UserError, match="model path not found"):
        Predictor(os.path.join(export_dir, "missing"))


def test_tensorrt_options_are_validated():
    with pytest.raises(UserError, match="min <= opt <= max"):
        TensorRTOptions(min_shape=(1, 256), opt_shape=(32, 128)).validate()
    with pytest.raises(UserError, match="precision 'bf16'"):
        TensorRTOptions(precision="bf16").validate()
    with pytest.raises(UserError, match="shape file not found"):
        TensorRTOptions(shape_file="/nonexistent/shapes.pbtxt").validate()
    TensorRTOptions(precision="int8", min_shape=(1, 1), opt_shape=(8, 64), max_shape=(32, 512)).validate()


class RecordingConfig:
    """Stands in for paddle.inference.Config where this CPU-only build cannot enable TensorRT: records calls."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


def test_tensorrt_configuration_calls(monkeypatch, tmp_path):
    import paddle
    import paddle.inference as paddle_infer

    config = RecordingConfig()
    with pytest.raises(UserError, match="CPU-only"):
        apply_tensorrt(config, TensorRTOptions(), quantized=False)
    assert config.calls == []  # nothing touched before the build check

    monkeypatch.setattr(paddle, "is_compiled_with_cuda", lambda: True)
    apply_tensorrt(config, TensorRTOptions(precision="fp16", opt_shape=(16, 128)), quantized=False)
    names = [name for name, _, _ in config.calls]
    assert names == ["enable_use_gpu", "enable_tensorrt_engine", "set_trt_dynamic_shape_info"]
    engine = config.calls[1][2]
    assert engine["precision_mode"] == paddle_infer.PrecisionType.Half and engine["use_calib_mode"] is False
    minimum, maximum, optimum = config.calls[2][1]
    assert minimum["input_ids"] == [1, 1] and maximum["token_type_ids"] == [32, 512] and optimum["input_ids"] == [16, 128]

    shapes = tmp_path / "shapes.pbtxt"
    collect = RecordingConfig()
    apply_tensorrt(collect, TensorRTOptions(shape_file=str(shapes), collect_shapes=True), quantized=False)
    assert [n for n, _, _ in collect.calls] == ["enable_use_gpu", "collect_shape_range_info"]
    shapes.write_text("collected", encoding="utf-8")
    tuned = RecordingConfig()
    apply_tensorrt(tuned, TensorRTOptions(precision="int8", shape_file=str(shapes)), quantized=True)
    assert tuned.calls[1][2]["precision_mode"] == paddle_infer.PrecisionType.Int8
    assert tuned.calls[2][0] == "enable_tuned_tensorrt_dynamic_shape"
    with pytest.raises(UserError, match="TensorRT INT8 needs a quantized model"):
        apply_tensorrt(RecordingConfig(), TensorRTOptions(precision="int8"), quantized=False)


def test_infer_reports_metric_and_performance(ptq_dir, tmp_path):
    report_file = tmp_path / "report.json"
    result = run_script("infer.py", "--task_name", "tnews", "--model_path", ptq_dir, "--dev_file", DEV, "--perf",
                        "--batch_size", "16", "--output_file", str(report_file))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dev accuracy = " in result.stdout and "throughput:" in result.stdout and "p99" in result.stdout
    report = json.loads(report_file.read_text(encoding="utf-8"))
    with open(os.path.join(ptq_dir, "report.json"), encoding="utf-8") as handle:
        compressed = json.load(handle)
    # best/ is the fastest candidate within the drop (which one depends on timing): it runs as it was measured
    [best] = [c for c in compressed["candidates"] if c["name"] == compressed["best"]]
    assert report["model"].startswith(os.path.join(ptq_dir, "best"))
    assert report["precision"] == best["precision"]
    assert report["perf"]["throughput"] > 0 and report["perf"]["latency_p50_ms"] > 0


def test_infer_on_onnx_and_on_an_export_dir_give_the_same_accuracy(trained_tnews, onnx_files):
    paddle_result = run_script("infer.py", "--model_path", trained_tnews["export_dir"], "--dev_file", DEV)
    onnx_result = run_script("infer.py", "--model_path", onnx_files[0], "--dev_file", DEV)
    assert paddle_result.returncode == 0 and onnx_result.returncode == 0, onnx_result.stderr[-2000:]
    accuracy = [line for line in paddle_result.stdout.splitlines() if line.startswith("dev accuracy")]
    assert accuracy and accuracy == [line for line in onnx_result.stdout.splitlines() if line.startswith("dev accuracy")]
    assert "onnxruntime" in onnx_result.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model_path", "nowhere"], "error: --model_path: not found: nowhere"),
        (["--precision", "int8"], "is not a quantized model"),
        (["--use_trt"], "--use_trt/--collect_shape need --device gpu"),
        (["--device", "gpu", "--use_trt", "--precision", "fp16"], "TensorRT needs a GPU build of paddle"),
        (["--task_name", "afqmc"], "--task_name afqmc: "),
    ],
)
def test_infer_bad_input_is_one_clear_error(trained_tnews, extra, message):
    argv = ["infer.py", "--model_path", trained_tnews["export_dir"], "--dev_file", DEV]
    result = run_script(*argv, *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_deploy_python_predicts_texts(trained_tnews, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("世界杯和篮球成为今年最大的看点\n\n手机芯片最新动态：人工智能持续升温\n", encoding="utf-8")
    result = run_script("deploy/python/infer_cpu.py", "--model_path", trained_tnews["export_dir"],
                        "--input_file", str(texts), "--text", "ignored when a file is given")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected = Predictor(trained_tnews["export_dir"]).predict_texts(["世界杯和篮球成为今年最大的看点", "手机芯片最新动态：人工智能持续升温"])
    assert [line["input"] for line in lines] == ["世界杯和篮球成为今年最大的看点", "手机芯片最新动态：人工智能持续升温"]
    assert [line["label"] for line in lines] == [r["label"] for r in expected]
    assert [line["score"] for line in lines] == pytest.approx([r["score"] for r in expected])
    gpu = run_script("deploy/python/infer_gpu.py", "--model_path", trained_tnews["export_dir"], "--text", "球赛")
    assert gpu.returncode == 2 and "CPU-only" in gpu.stderr
    empty = run_script("deploy/python/infer_cpu.py", "--model_path", trained_tnews["export_dir"], "--text", " ")
    assert empty.returncode == 2 and "error: bad input: text 1 is empty" in empty.stderr


def test_deploy_paddle2onnx_exports_and_checks(trained_tnews, tmp_path):
    result = run_script("deploy/paddle2onnx/export_onnx.py", "--model_path", trained_tnews["export_dir"],
                        "--output_dir", str(tmp_path), "--quantize", "--dev_file", DEV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.isfile(tmp_path / "model.onnx") and os.path.isfile(tmp_path / "model.int8.onnx")
    assert "model.onnx vs Paddle Inference on 60 dev examples: decision agreement 100.00%" in result.stdout


@pytest.mark.parametrize("where", ["under a file", "/proc", "/sys"])
def test_export_onnx_to_an_unwritable_output_dir_is_one_line(tiny_exports, tmp_path, capsys, where):
    from ernie3.cli.export_onnx import main
    from ernie3.errors import run_cli

    a_file = tmp_path / "file"
    a_file.write_text("mine", encoding="utf-8")
    output_dir = {"under a file": str(a_file / "onnx"), "/proc": "/proc/ernie3-onnx", "/sys": "/sys/ernie3-onnx"}[where]
    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda: main(["--model_path", tiny_exports["seq_cls"], "--output_dir", output_dir]))
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert err.strip().startswith("error: --output_dir: cannot ") and len(err.strip().splitlines()) == 1, err
    assert a_file.read_text(encoding="utf-8") == "mine" and not os.path.exists(output_dir)


@pytest.mark.parametrize("flags, message", [
    ([], "--seq_lengths 100000 is longer than the 512 positions of the random model this command builds"),
    (["--compress_dir", "COMPRESS"], "--seq_lengths 100000 is longer than the 512 positions of COMPRESS"),
])  # fmt: skip
def test_benchmark_refuses_sequences_beyond_the_models_positions_before_any_work(tiny_exports, tmp_path, capsys,
                                                                                 flags, message):
    from ernie3.cli.bench import main
    from ernie3.errors import run_cli

    compress_dir = tmp_path / "compress"  # the layout bench reads: float/ holds the float export
    shutil.copytree(tiny_exports["seq_cls"], compress_dir / "float")
    flags = [str(compress_dir) if flag == "COMPRESS" else flag for flag in flags]
    output_dir = tmp_path / "bench"
    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda: main(["--output_dir", str(output_dir), "--seq_lengths", "16", "100000", *flags]))
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == "error: " + message.replace("COMPRESS", str(compress_dir))
    assert not output_dir.exists()


def test_benchmark_runs_every_variant_on_a_small_shape(tmp_path):
    from ernie3.backends import cpu_has_native_bf16
    from ernie3.cli.bench import main

    mine = tmp_path / "notes.txt"
    mine.write_text("not the benchmark's", encoding="utf-8")
    report = main(["--output_dir", str(tmp_path), "--hidden_size", "64", "--num_hidden_layers", "2",
                   "--num_attention_heads", "4", "--intermediate_size", "256", "--vocab_size", "21200",
                   "--batch_sizes", "1", "4", "--seq_lengths", "16", "--iterations", "2", "--min_seconds", "0",
                   "--e2e_examples", "8", "--timing_rounds", "1"])  # fmt: skip (rounds: tests/test_pick.py)
    variants = {row["variant"] for row in report["rows"]}
    expected = {"paddle-fp32", "paddle-int8", "pruned-fp32", "pruned-int8", "openvino-fp32", "openvino-int8",
                "pruned-openvino-int8", "onnxruntime-fp32", "onnxruntime-int8"}  # fmt: skip
    if cpu_has_native_bf16():
        expected |= {"paddle-bf16", "pruned-bf16", "openvino-bf16"}
    assert variants == expected
    # every variant: 2 model-only shapes + end-to-end (tokenization + model + decoding) at the largest batch
    assert len(report["rows"]) == 3 * len(expected)
    assert {row["mode"] for row in report["rows"]} == {"model", "end-to-end"}
    for name in ("benchmark.md", "benchmark.json", "benchmark.png"):
        assert os.path.getsize(tmp_path / name) > 0
    baseline = [row for row in report["rows"] if row["variant"] == "paddle-fp32"]
    assert all(row["vs_paddle_fp32"] == pytest.approx(1.0) for row in baseline)
    int8 = {row["variant"]: row["precision"] for row in report["rows"] if row["variant"].endswith("int8")}
    assert set(int8.values()) == {"int8"}
    # the models it built are gone (no --keep_models); nothing else is touched
    assert not os.path.exists(tmp_path / "models") and not os.path.exists(tmp_path / "onnx")
    assert mine.read_text(encoding="utf-8") == "not the benchmark's"


def test_a_gpu_run_of_a_cpu_only_candidate_names_the_paddle_candidates_to_use(ptq_dir, capsys):
    with open(os.path.join(ptq_dir, "report.json"), encoding="utf-8") as handle:
        rows = json.load(handle)["candidates"]
    cpu_only = [r for r in rows if r["backend"] in ("openvino", "onnxruntime")]
    assert cpu_only, "the default engines add OpenVINO candidates"
    paddle_int8 = [r for r in rows if r["backend"] == "paddle" and r["precision"] == "int8"]
    best_int8 = max(paddle_int8, key=lambda r: r["metric"])
    for row in cpu_only[:1]:
        with pytest.raises(UserError, match="runs on CPU only; on GPU use a Paddle candidate of") as caught:
            create_backend(row["path"], device="gpu")
        message = str(caught.value)
        assert os.path.join(ptq_dir, best_int8["name"]) in message and "--use_trt --precision int8" in message
        assert os.path.join(ptq_dir, "float") + " (Paddle float" in message
    # the same through infer.py on the candidate dir (GPU build or not, the CPU-only engine is what is refused)
    from ernie3.cli.infer import main as infer_main

    with pytest.raises(UserError, match="on GPU use a Paddle candidate of"):
        infer_main(["--model_path", cpu_only[0]["path"], "--dev_file", DEV, "--device", "gpu"])


def test_onnxruntime_on_an_export_dir_says_how_to_export(trained_tnews):
    export_dir = trained_tnews["export_dir"]
    assert not os.path.exists(os.path.join(export_dir, "model.onnx"))
    with pytest.raises(UserError) as caught:
        create_backend(export_dir, backend="onnxruntime")
    message = str(caught.value)
    assert message.startswith(f"ONNX model not found: {os.path.join(export_dir, 'model.onnx')}; export it first")
    assert f"deploy/paddle2onnx/export_onnx.py --model_path {export_dir}" in message
    assert f"ernie3 export-onnx --model_path {export_dir}" in message
