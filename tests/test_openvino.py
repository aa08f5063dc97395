"""Fast CPU paths: Paddle oneDNN BF16, the OpenVINO backend (FP32/BF16/NNCF INT8), and compress picking across
engines with best/candidate.json honoured by the Predictor."""
import json
import os

import numpy as np
import pytest
from conftest import sample_file

import ernie3.backends as backends
from ernie3.backends import Backend, cpu_has_native_bf16, create_backend
from ernie3.data import load_examples
from ernie3.errors import UserError
from ernie3.timing import Spread
from ernie3.predict import Predictor

DEV = sample_file("tnews", "dev")
needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native BF16 (avx512_bf16/amx_bf16)")


def decisions(predictor, examples):
    return [predictor.task.answer(result) for result in predictor.predict(examples)]


def max_difference(outputs, reference):
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(outputs, reference))


@pytest.fixture(scope="module")
def tnews_examples(trained_tnews):
    return load_examples(Predictor(trained_tnews["export_dir"]).task, "dev", DEV)


@pytest.fixture(scope="module")
def compressed(trained_tnews, tmp_path_factory):
    """PTQ + every engine's candidates on the trained tiny TNEWS model."""
    from ernie3.compress import run as compress

    output_dir = tmp_path_factory.mktemp("compress-engines")
    return compress("seq_cls", [
        "--task_name", "tnews", "--model_name_or_path", trained_tnews["best_model_dir"], "--output_dir", str(output_dir),
        "--dev_file", DEV, "--strategy", "ptq", "--algo_list", "hist", "--batch_size_list", "8",
        "--max_metric_drop", "0.05", "--engines", "paddle", "openvino", "onnxruntime", "--nncf_subset_size", "32",
        "--measure_rss", "false",
    ])  # fmt: skip


@needs_bf16
@pytest.mark.parametrize("backend, precision", [("paddle", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")])
def test_trained_model_gives_the_fp32_decisions_on_bf16_and_openvino(trained_tnews, tnews_examples, backend, precision):
    reference = Predictor(trained_tnews["export_dir"], num_threads=2)
    candidate = Predictor(trained_tnews["export_dir"], backend=backend, precision=precision, num_threads=2)
    assert (candidate.backend_name, candidate.precision) == (backend, precision)
    assert isinstance(candidate.backend, Backend) and isinstance(reference.backend, Backend)
    assert decisions(candidate, tnews_examples) == decisions(reference, tnews_examples)
    encoded = reference.task.encode(tnews_examples, reference.tokenizer, reference.max_seq_length)
    difference = max_difference(candidate.outputs(encoded.features), reference.outputs(encoded.features))
    assert difference < (1e-4 if precision == "fp32" else 0.05)


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """Float exports of the tiny model with each task type's head (untrained heads: raw outputs are compared)."""
    from paddlenlp.transformers import AutoTokenizer

    from ernie3.export import export_inference_model
    from ernie3.tasks import get_task

    def export(task_name):
        task = get_task(task_name)
        model = task.model_class().from_pretrained(tiny_model_dir, **task.model_kwargs())
        target = str(tmp_path_factory.mktemp(task_name) / "export")
        return export_inference_model(model, AutoTokenizer.from_pretrained(tiny_model_dir), task, target, 128)

    return export


TEXTS = {
    "msra_ner": ["张三和李四在北京见面。", "海钓比赛地点在厦门与金门之间的海域。"],
    "cmrc2018": [{"question": "比赛在哪里举行？", "context": "海钓比赛地点在厦门与金门之间的海域。" * 3}],
}


@needs_bf16
@pytest.mark.parametrize("task_name", ["msra_ner", "cmrc2018"])
def test_every_task_type_runs_through_the_predictor_on_bf16_and_openvino(exported, task_name):
    # the QA export is read through paddle2onnx (OpenVINO's Paddle frontend cannot split start/end over a dynamic
    # length): the fallback is part of what is tested here
    model_dir = exported(task_name)
    reference = Predictor(model_dir)
    encoded = reference.task.encode([reference.task.example_from_text(t) for t in TEXTS[task_name]],
                                    reference.tokenizer, reference.max_seq_length)  # fmt: skip
    expected_outputs = reference.outputs(encoded.features)
    expected = reference.predict_texts(TEXTS[task_name])
    for backend, precision in [("paddle", "bf16"), ("openvino", "fp32"), ("openvino", "bf16")]:
        predictor = Predictor(model_dir, backend=backend, precision=precision)
        results = predictor.predict_texts(TEXTS[task_name])
        assert [sorted(r) for r in results] == [sorted(r) for r in expected]
        difference = max_difference(predictor.outputs(encoded.features), expected_outputs)
        assert difference < (1e-4 if precision == "fp32" else 0.05), (backend, precision)
        if precision == "fp32":
            assert [reference.task.answer(r) for r in results] == [reference.task.answer(r) for r in expected]


def test_openvino_int8_candidate_is_quantized_and_loads_on_its_own(compressed, tnews_examples):
    from ernie3.openvino_quant import quantized_op_counts

    by_name = {c["name"]: c for c in compressed["candidates"]}
    for name in ("float/openvino-int8", "float/openvino-int8-ac"):
        candidate = by_name[name]
        assert (candidate["backend"], candidate["precision"], candidate["quantized_from"]) == ("openvino", "int8", "float")
        counts = quantized_op_counts(os.path.join(candidate["path"], "model.xml"))
        assert counts["FakeQuantize"] > 0 and counts["int8_constants"] > 0
        predictor = Predictor(candidate["path"])  # no flags: candidate.json says openvino int8
        assert (predictor.backend_name, predictor.precision) == ("openvino", "int8")
        accuracy = predictor.task.score(tnews_examples, predictor.predict(tnews_examples))["accuracy"]
        assert accuracy == pytest.approx(candidate["metric"])
        assert candidate["agreement_with_float"] >= 0.9
    # accuracy control keeps the metric within --max_metric_drop (relative) of the float model's, by construction
    assert by_name["float/openvino-int8-ac"]["metric"] >= by_name["float"]["metric"] * (1 - 0.05) - 1e-9


def test_compress_report_and_best_across_engines(compressed, tmp_path):
    from ernie3.compress import copy_best

    names = [c["name"] for c in compressed["candidates"]]
    expected = ["float", "float/hist8_1", "float/openvino-int8", "float/openvino-int8-ac", "float/onnxruntime-int8",
                "float/hist8_1/emb-int8", "float/openvino-int8/emb-int8", "float/openvino-int8-ac/emb-int8"]
    if cpu_has_native_bf16():
        expected += ["float/paddle-bf16", "float/openvino-bf16"]
    assert sorted(names) == sorted(expected)
    engines = {(c["backend"], c["precision"]) for c in compressed["candidates"]}
    assert {("paddle", "fp32"), ("paddle", "int8"), ("openvino", "int8"), ("onnxruntime", "int8")} <= engines
    output_dir = os.path.dirname(compressed["best_dir"])
    with open(os.path.join(output_dir, "report.md"), encoding="utf-8") as handle:
        markdown = handle.read()
    assert "| candidate | engine | numeric precision | accuracy |" in markdown
    assert "| float/openvino-int8 | openvino | int8 |" in markdown
    best = next(c for c in compressed["candidates"] if c["name"] == compressed["best"])
    # the fastest by median, or a candidate whose throughput range overlaps the fastest's (a tie)
    eligible = [c for c in compressed["candidates"] if c["metric"] >= compressed["candidates"][0]["metric"] * 0.95 - 1e-9]
    fastest = max(eligible, key=lambda c: c["throughput"])
    assert best is fastest or Spread.from_dict(best["throughput_spread"]).overlaps(
        Spread.from_dict(fastest["throughput_spread"]))
    with open(os.path.join(compressed["best_dir"], "candidate.json"), encoding="utf-8") as handle:
        record = json.load(handle)
    assert (record["backend"], record["precision"]) == (best["backend"], best["precision"])
    predictor = Predictor(compressed["best_dir"])
    assert (predictor.backend_name, predictor.precision) == (best["backend"], best["precision"])

    # whichever engine wins, best/ runs on it without flags: force each non-Paddle winner in turn
    for winner in ("float/openvino-int8", "float/onnxruntime-int8") + (("float/paddle-bf16",) if cpu_has_native_bf16() else ()):
        chosen = next(c for c in compressed["candidates"] if c["name"] == winner)
        target = tmp_path / winner.replace("/", "_")
        predictor = Predictor(copy_best(chosen, str(target)))
        assert (predictor.backend_name, predictor.precision) == (chosen["backend"], chosen["precision"])


def test_ner_report_has_one_precision_column():
    from ernie3.compress import markdown_report
    from ernie3.tasks import get_task

    metrics = {"precision": 0.9, "recall": 0.8, "f1": 0.85}
    results = [{"name": "float", "backend": "paddle", "precision": "fp32", "metrics": metrics, "size_mb": 1.0,
                "throughput": 10.0, "agreement_with_float": 1.0, "quantized_from": None}]  # fmt: skip
    settings = {"strategy": "ptq", "eval_examples": 3, "num_threads": 2, "batch_size": 8, "max_metric_drop": 0.01}
    lines = markdown_report(get_task("msra_ner"), results, results[0], settings).splitlines()
    header = next(line for line in lines if line.startswith("| candidate |"))
    columns = [column.strip() for column in header.strip("|").split("|")]
    assert columns.count("precision") == 1 and "numeric precision" in columns


def test_bf16_on_a_cpu_without_it_is_one_clear_error(trained_tnews, monkeypatch):
    monkeypatch.setattr(backends.base, "cpu_has_native_bf16", lambda: False)
    for backend in ("paddle", "openvino"):
        with pytest.raises(UserError, match="bf16 needs a CPU with native BF16"):
            create_backend(trained_tnews["export_dir"], backend=backend, precision="bf16")


def test_unknown_backend_and_openvino_on_a_quantized_paddle_program_are_clear_errors(trained_tnews, compressed):
    from ernie3.cli.infer import main as infer

    with pytest.raises(UserError, match="backend 'tvm' is not supported"):
        create_backend(trained_tnews["export_dir"], backend="tvm")
    paddle_int8 = next(c for c in compressed["candidates"] if c["name"] == "float/hist8_1")
    with pytest.raises(UserError, match="is a quantized Paddle program, which OpenVINO cannot read"):
        create_backend(paddle_int8["path"], backend="openvino")
    with pytest.raises(UserError, match="is not quantized: OpenVINO INT8 needs an NNCF model"):
        create_backend(trained_tnews["export_dir"], backend="openvino", precision="int8")
    with pytest.raises(SystemExit):  # argparse refuses an unknown --backend
        infer(["--model_path", trained_tnews["export_dir"], "--backend", "tvm"])


def test_unknown_engine_is_refused_before_any_work(trained_tnews, tmp_path):
    from ernie3.compress import run as compress

    with pytest.raises(UserError, match="--engines: unknown engine 'tvm'"):
        compress("seq_cls", ["--task_name", "tnews", "--model_name_or_path", trained_tnews["best_model_dir"],
                             "--output_dir", str(tmp_path / "out"), "--dev_file", DEV, "--strategy", "ptq",
                             "--engines", "paddle", "tvm"])  # fmt: skip
    assert not os.path.exists(tmp_path / "out")


@needs_bf16
def test_infer_runs_bf16_and_openvino(trained_tnews):
    from ernie3.cli.infer import main as infer

    fp32 = infer(["--model_path", trained_tnews["export_dir"], "--dev_file", DEV])
    for extra in (["--precision", "bf16"], ["--backend", "openvino"], ["--backend", "openvino", "--precision", "bf16"]):
        report = infer(["--model_path", trained_tnews["export_dir"], "--dev_file", DEV, *extra])
        assert report["metrics"] == pytest.approx(fp32["metrics"], abs=0.02), extra
