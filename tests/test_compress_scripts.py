"""compress_seq_cls.py, compress_token_cls.py and compress_qa.py (`ernie3 compress` for task types without a script
of their own) run the one compress path end to end, for every task type that ships samples (the registry's)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, TINY_EXPORT_TASKS, sample_file

from ernie3.backends import create_backend
from ernie3.tasks import get_task


def compress_command(task_type):
    """The task type's compress script, or the `ernie3 compress` command that takes every task."""
    script = os.path.join(REPO_ROOT, f"compress_{task_type}.py")
    return [sys.executable, script] if os.path.isfile(script) else [sys.executable, "-m", "ernie3.cli.main", "compress"]


# task type → (task, extra flags both steps need: the type's sample_flags for a tiny model)
CASES = {task_type: (task_name, flags) for task_type, task_name, flags in TINY_EXPORT_TASKS}
#: the metrics each built-in type reports (a type not listed must report at least its metric_name)
EXPECTED_METRICS = {"seq_cls": {"accuracy"}, "token_cls": {"precision", "recall", "f1"}, "qa": {"em", "f1"}}


@pytest.fixture(scope="module", params=sorted(CASES))
def compressed(request, tiny_model_dir, tmp_path_factory):
    from ernie3.train import run

    task_type = request.param
    task_name, shared_flags = CASES[task_type]
    work = tmp_path_factory.mktemp(f"compress-{task_name}")
    fine_tuned = run(task_type, [
        "--task_name", task_name, "--model_name_or_path", tiny_model_dir, "--output_dir", str(work / "fine-tune"),
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"), "--do_train",
        "--max_steps", "20", "--learning_rate", "1e-3", "--per_device_train_batch_size", "16",
        "--evaluation_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "20", "--save_steps", "20",
        *shared_flags,
    ])  # fmt: skip
    output_dir = work / "compress"
    result = subprocess.run([
        *compress_command(task_type), "--task_name", task_name,
        "--model_name_or_path", fine_tuned["best_model_dir"], "--output_dir", str(output_dir),
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        "--strategy", "dynabert+ptq", "--algo_list", "hist", "--batch_size_list", "4", "--max_steps", "4",
        "--save_steps", "2", "--per_device_train_batch_size", "16", "--learning_rate", "1e-4", "--measure_rss", "false",
        "--timing_rounds", "1",  # the rounds and the tie rule: tests/test_compress.py, tests/test_pick.py
        # no max_seq_length / QA window flags: compress takes them from the model's ernie3_task.json
    ], capture_output=True, text=True, timeout=900, cwd=REPO_ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return task_type, output_dir, result


def test_each_script_writes_the_documented_layout(compressed):
    task_type, output_dir, _ = compressed
    for path in ("float/model.pdmodel", "width_mult_0.75/model.pdmodel", "width_mult_0.75/hist4_1/int8.pdmodel",
                 "report.json", "report.md", "best/ernie3_task.json", "best/candidate.json"):  # fmt: skip
        assert os.path.isfile(output_dir / path), path


def test_each_report_uses_the_task_metric_and_every_candidate_loads(compressed):
    task_type, output_dir, result = compressed
    report = json.loads((output_dir / "report.json").read_text(encoding="utf-8"))
    expected_metrics = EXPECTED_METRICS.get(task_type) or set(report["candidates"][0]["metrics"])
    assert get_task(report["task"]).metric_name in expected_metrics
    names = [c["name"] for c in report["candidates"]]
    assert names[:3] == ["float", "width_mult_0.75", "width_mult_0.75/hist4_1"]
    # the default engines add OpenVINO NNCF INT8 candidates (plain and accuracy-controlled) for every task type
    assert {"float/openvino-int8", "float/openvino-int8-ac", "width_mult_0.75/openvino-int8"} <= set(names)
    for candidate in report["candidates"]:
        assert set(candidate["metrics"]) == expected_metrics
        backend = create_backend(candidate["path"], model_prefix=candidate["model_file"].split(".")[0])
        assert backend.precision == candidate["precision"]
    assert "# Compression report" in result.stdout  # the table is printed too, on stdout
    # then the summary: the pick, where it is, the log, the next command; no library INFO lines on the terminal
    summary = result.stdout.strip().splitlines()[-4:]
    assert summary[0].startswith(f"picked {report['best']} (") and summary[0].endswith(f"→ {output_dir / 'best'}")
    assert summary[2] == f"log (library INFO/DEBUG lines) → {output_dir / 'ernie3.log'}"
    assert summary[3].startswith(f"next: python infer.py --model_path {output_dir / 'best'}")
    assert "[    INFO]" not in result.stderr and "[    INFO]" in (output_dir / "ernie3.log").read_text(encoding="utf-8")


def test_candidates_carry_the_settings_the_model_was_fine_tuned_with(compressed):
    task_type, output_dir, result = compressed
    _, shared_flags = CASES[task_type]
    expected = dict(zip((flag[2:] for flag in shared_flags[::2]), (int(value) for value in shared_flags[1::2])))
    report = json.loads((output_dir / "report.json").read_text(encoding="utf-8"))
    for candidate in report["candidates"] + [{"path": str(output_dir / "best")}]:
        info = json.loads((Path(candidate["path"]) / "ernie3_task.json").read_text(encoding="utf-8"))
        recorded = {"max_seq_length": info["max_seq_length"], **info.get("options", {})}
        assert {key: recorded[key] for key in expected} == expected, candidate["path"]
        if not expected:
            assert info["max_seq_length"] == 128  # config.yml's seq_cls default, as fine-tuned
