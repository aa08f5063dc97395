"""Damaged model-side files (candidate.json, ernie3_task.json, .onnx, OpenVINO .xml/.bin) through every reader:
infer.py, the deploy predictor and the service's start-up (its memory plan and its model registry). Each one is
one `error:` line naming the damaged file and exit status 2, never a traceback. Damaged copies are built from the
shared tiny export (copied first: the fixture must not change)."""
import io
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml
from conftest import sample_file

from ernie3.errors import run_cli

DEV = sample_file("tnews", "dev")
BINARY = bytes(range(128, 256)) + b"\x00\xff\xfe"
GARBAGE = b"this is not a model\n" * 50
TRUNCATED = "truncated"  # the file's first half
TASK = "ernie3_task.json"

# name: (which model, damaged file, new content, what the error line says)
DAMAGES = {
    "binary candidate.json": ("paddle", "candidate.json", BINARY, "damaged candidate record (not UTF-8 text"),
    "list candidate.json": ("paddle", "candidate.json", b'["paddle", "int8"]',
                            "damaged candidate record (expected a JSON object, got a list)"),
    "candidate.json of a wrong type": ("paddle", "candidate.json", b'{"backend": 1}',
                                       "field 'backend' missing or not a string, got 1"),
    "candidate.json of an unknown backend": ("paddle", "candidate.json", b'{"backend": "tensorflow"}',
                                             "'backend' is 'tensorflow', not one of paddle, onnxruntime, openvino"),
    "candidate.json pointing elsewhere": ("onnx", "candidate.json", b'{"backend": "onnxruntime", "model_file": "../x.onnx"}',
                                          "'model_file' must be a file name in"),
    "binary ernie3_task.json": ("paddle", TASK, BINARY, "damaged task record (not UTF-8 text"),
    "list ernie3_task.json": ("paddle", TASK, b"[]", "damaged task record (expected a JSON object, got a list)"),
    "ernie3_task.json without max_seq_length": ("paddle", TASK, b'{"task_name": "tnews"}',
                                                "field 'max_seq_length' must be a positive integer, got None"),
    "ernie3_task.json of a wrong type": ("paddle", TASK, b'{"task_name": "tnews", "max_seq_length": "128"}',
                                         "field 'max_seq_length' must be a positive integer, got '128'"),
    "ernie3_task.json with labels of a wrong type": ("paddle", TASK, b'{"task_name": "tnews", "max_seq_length": 8, "labels": 3}',
                                                     "field 'labels' must be a list of strings, got 3"),
    "ernie3_task.json of an unknown task": ("paddle", TASK, b'{"task_name": "nope", "max_seq_length": 128}',
                                            "unknown task 'nope'"),
    # an empty program parsed as one without blocks, and the memory plan's read of block 0 crashed the process
    "empty model.pdmodel": ("paddle", "model.pdmodel", b"", "is not a Paddle static program"),
    "garbage model.pdmodel": ("paddle", "model.pdmodel", GARBAGE, "is not a Paddle static program"),
    "truncated model.pdmodel": ("paddle", "model.pdmodel", TRUNCATED, "is not a Paddle static program"),
    "garbage .onnx": ("onnx", "model.onnx", GARBAGE, "not a readable ONNX model"),
    "empty .onnx": ("onnx", "model.onnx", b"", "not a readable ONNX model"),
    "truncated .onnx": ("onnx", "model.onnx", TRUNCATED, "not a readable ONNX model"),
    "empty model.bin": ("ir", "model.bin", b"", "not a readable OpenVINO IR"),
    "truncated model.bin": ("ir", "model.bin", TRUNCATED, "not a readable OpenVINO IR"),
    "truncated model.xml": ("ir", "model.xml", TRUNCATED, "not a readable OpenVINO IR"),
    "missing model.bin": ("ir", "model.bin", None, "OpenVINO IR without its weights file model.bin"),
}  # fmt: skip


@pytest.fixture(scope="module")
def models(tiny_exports, tmp_path_factory):
    """Undamaged models of each kind: the Paddle export, its ONNX export, and an OpenVINO IR candidate of it."""
    import openvino as ov

    from ernie3.backends import read_openvino_model
    from ernie3.onnx import export_onnx
    from ernie3.openvino_quant import SIDE_FILES, write_candidate_record

    paddle_dir = tiny_exports["seq_cls"]
    onnx_dir = str(tmp_path_factory.mktemp("onnx"))
    export_onnx(paddle_dir, onnx_dir)
    ir_dir = str(tmp_path_factory.mktemp("ir"))
    ov.save_model(read_openvino_model(os.path.join(paddle_dir, "model.pdmodel")), os.path.join(ir_dir, "model.xml"),
                  compress_to_fp16=False)  # fmt: skip
    for name in SIDE_FILES:
        if os.path.isfile(os.path.join(paddle_dir, name)):
            shutil.copy2(os.path.join(paddle_dir, name), ir_dir)
    write_candidate_record(ir_dir, "openvino", "fp32", "model.xml")  # as compress writes its IR candidates
    return {"paddle": paddle_dir, "onnx": onnx_dir, "ir": ir_dir}


def damaged_copy(models, damage, tmp_path):
    """(model path to give the commands, path of the damaged file, the words the error must say)."""
    kind, name, content, message = DAMAGES[damage]
    directory = str(tmp_path / "model")
    shutil.copytree(models[kind], directory)
    damaged = os.path.join(directory, name)
    if content is None:
        os.remove(damaged)
    else:
        if content == TRUNCATED:
            with open(damaged, "rb") as handle:
                whole = handle.read()
            content = whole[: len(whole) // 2]
        with open(damaged, "wb") as handle:
            handle.write(content)
    # an ONNX model is given by its file, unless its directory's candidate.json is what is damaged
    model_path = os.path.join(directory, "model.onnx") if kind == "onnx" and name != "candidate.json" else directory
    return model_path, damaged, message


def run_to_exit(job):
    """Run an entry point as its script does; (exit status, the error: lines, all of stderr)."""
    stderr = io.StringIO()
    with redirect_stderr(stderr), redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as stopped:
        run_cli(job)
    text = stderr.getvalue()
    return stopped.value.code, [line for line in text.splitlines() if line.startswith("error:")], text


def assert_one_line_naming(result, damaged, message):
    status, errors, stderr = result
    assert status == 2, stderr
    assert len(errors) == 1, stderr
    assert message in errors[0] and os.path.dirname(damaged) in errors[0], errors[0]
    assert os.path.basename(damaged) in errors[0], errors[0]
    assert "Traceback" not in stderr


def start_server(config_path):
    """The service's start-up as `ernie3 serve` runs it; a model that loads would make it serve (then fail here)."""
    from ernie3.serving.config import load_config
    from ernie3.serving.server import run_server

    def progress(line):
        if line.startswith("serving "):
            raise AssertionError(f"the service started on a damaged model: {line}")

    config = load_config(str(config_path))
    run_server(config, config.server, progress)


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_model_file_is_one_line_in_infer_and_deploy(models, damage, tmp_path):
    from ernie3.cli.infer import main as infer
    from ernie3.cli.predict import main as predict

    model_path, damaged, message = damaged_copy(models, damage, tmp_path)
    assert_one_line_naming(run_to_exit(lambda: infer(["--model_path", model_path, "--dev_file", DEV])), damaged, message)
    deploy = run_to_exit(lambda: predict("cpu", ["--model_path", model_path, "--text", "球队赢得冠军"]))
    assert_one_line_naming(deploy, damaged, message)


@pytest.mark.parametrize("max_memory_mb", [0, 100_000])  # 0: the registry finds it; else the memory plan does first
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_model_file_stops_the_service_start_up_with_one_line(models, damage, max_memory_mb, tmp_path):
    model_path, damaged, message = damaged_copy(models, damage, tmp_path)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "server": {"host": "127.0.0.1", "port": 0, "max_memory_mb": max_memory_mb},
        "models": [{"name": "damaged", "path": model_path, "num_threads": 1, "batch_size": 4}],
    }), encoding="utf-8")  # fmt: skip
    result = run_to_exit(lambda: start_server(config))
    assert_one_line_naming(result, damaged, message)
    assert "model 'damaged'" in result[1][0]


@pytest.mark.parametrize("kind", ["paddle", "onnx", "ir"])
def test_the_undamaged_copies_serve_and_predict(models, kind, tmp_path):
    """The control: the same copies, undamaged, load through every reader the tests above go through."""
    from ernie3.memory import check_memory_budget
    from ernie3.predict import Predictor
    from ernie3.serving.config import ModelSpec, ServingLimits

    directory = str(tmp_path / "model")
    shutil.copytree(models[kind], directory)
    model_path = os.path.join(directory, "model.onnx") if kind == "onnx" else directory
    predictor = Predictor(model_path, num_threads=1, batch_size=4)
    assert predictor.backend_name == {"paddle": "paddle", "onnx": "onnxruntime", "ir": "openvino"}[kind]
    assert len(predictor.predict_texts(["球队赢得冠军", "新款手机发布"])) == 2
    lines = check_memory_budget([ModelSpec("m", model_path, ServingLimits(), {"batch_size": 4})], 100_000)
    assert lines[0].startswith("memory: m: shapes batch 1/2/4")


@pytest.mark.parametrize("task_type, script_flags", [("seq_cls", ["--do_eval"]), ("compress", [])])
def test_training_and_compress_read_a_model_dirs_task_record_through_the_same_check(tiny_model_dir, tmp_path,
                                                                                    task_type, script_flags):
    from ernie3.compress import run as compress
    from ernie3.errors import UserError
    from ernie3.train import run as train

    model_dir = tmp_path / "fine-tuned"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / TASK).write_bytes(BINARY)
    argv = ["--task_name", "tnews", "--model_name_or_path", str(model_dir), "--dev_file", DEV,
            "--output_dir", str(tmp_path / "out"), *script_flags]  # fmt: skip
    with pytest.raises(UserError) as refused:
        compress("seq_cls", argv) if task_type == "compress" else train(task_type, argv)
    assert str(refused.value).startswith(f"{model_dir / TASK}: damaged task record (not UTF-8 text")


def test_an_onnx_model_newer_than_the_onnx_checker_is_left_to_onnx_runtime(tmp_path):
    """The checker refuses an IR version it does not know yet, though ONNX Runtime runs the model: the loader
    does not refuse a working model for its version alone."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from ernie3.backends import OnnxRuntimeBackend
    from ernie3.model_files import load_onnx

    tensor = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "identity",
                              [tensor("input_ids", TensorProto.INT64, [None, None])],
                              [tensor("logits", TensorProto.INT64, [None, None])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version() + 1)])
    model.ir_version = onnx.IR_VERSION + 1
    path = str(tmp_path / "newer.onnx")
    onnx.save(model, path)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(path)
    assert load_onnx(path).ir_version == onnx.IR_VERSION + 1
    ids = np.array([[1, 2, 3]], dtype=np.int64)
    assert OnnxRuntimeBackend(path).run({"input_ids": ids})[0].tolist() == ids.tolist()
