"""Outputs a person can read (issue 19): label names where the task has them, a per-class table after --do_eval,
records a task leaves out counted in the log."""
import json
import logging

import numpy as np
import pytest
from conftest import sample_file

from ernie3.data import parse_records
from ernie3.tasks import get_task
from ernie3.train import run


def test_iflytek_results_carry_the_official_label_names():
    task = get_task("iflytek")
    assert task.num_labels == 119 and task.labels[:3] == ("0", "1", "2")
    logits = np.zeros((2, 119))
    logits[0, 0], logits[1, 118] = 5.0, 5.0
    first, last = task.postprocess(logits)
    assert first["label"] == "0" and first["label_desc"] == "打车"
    assert last["label"] == "118" and last["label_desc"] == "其他"


def eval_argv(task_name, model_dir, output_dir, *extra):
    return [
        "--task_name", task_name, "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir),
        "--train_file", sample_file(task_name, "train"), "--dev_file", sample_file(task_name, "dev"),
        "--max_steps", "2", "--per_device_train_batch_size", "8", "--evaluation_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--do_train", "--do_eval", *extra,
    ]  # fmt: skip


def test_do_eval_writes_a_per_class_table_with_label_names(tiny_model_dir, tmp_path):
    summary = run("seq_cls", eval_argv("tnews", tiny_model_dir, tmp_path))
    with open(tmp_path / "eval_per_class.json", encoding="utf-8") as handle:
        rows = json.load(handle)
    task = get_task("tnews")
    assert [row["class"] for row in rows] == list(task.labels)
    assert rows[0]["name"] == "news_story"
    dev_count = sum(1 for line in open(sample_file("tnews", "dev"), encoding="utf-8") if line.strip())
    assert sum(row["support"] for row in rows) == dev_count
    assert all(0.0 <= row[key] <= 1.0 for row in rows for key in ("precision", "recall", "f1"))
    # the per-class recalls weighted by support give back the accuracy
    accuracy = sum(row["recall"] * row["support"] for row in rows) / dev_count
    assert accuracy == pytest.approx(summary["eval"]["eval_accuracy"])
    table = (tmp_path / "eval_per_class.md").read_text(encoding="utf-8")
    assert "| 100 | news_story |" in table and summary["eval_per_class"] == str(tmp_path / "eval_per_class.md")


def test_ner_per_class_table_is_per_entity_type(tiny_model_dir, tmp_path):
    run("token_cls", eval_argv("msra_ner", tiny_model_dir, tmp_path, "--max_seq_length", "64"))
    with open(tmp_path / "eval_per_class.json", encoding="utf-8") as handle:
        rows = json.load(handle)
    assert {row["class"] for row in rows} <= {"PER", "LOC", "ORG"} and rows
    assert "avg" not in " ".join(row["class"] for row in rows)


def test_records_without_a_gold_label_are_counted_in_the_log(caplog):
    from paddlenlp.utils.log import logger

    task = get_task("ocnli")
    records = [
        (1, {"sentence1": "他去了北京", "sentence2": "他在北京", "label": "entailment"}),
        (2, {"sentence1": "他去了北京", "sentence2": "他没去", "label": "-"}),
        (3, {"sentence1": "天很蓝", "sentence2": "天是灰的", "label": "-"}),
    ]
    logger.logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            examples = parse_records(task, "dev", "dev.json", records, skip_invalid=False)
    finally:
        logger.logger.removeHandler(caplog.handler)
    assert len(examples) == 1
    assert "dev.json: left out 2 ocnli records without a gold label" in caplog.text


def test_sigterm_runs_the_same_clean_up_as_ctrl_c(tmp_path):
    """`kill` of any command unwinds it like Ctrl-C (bench's partial models, compress's staging dir are removed in
    `finally` blocks), then exits 143."""
    import signal
    import subprocess
    import sys
    import time

    marker, started = tmp_path / "cleaned-up", tmp_path / "started"
    code = ("import time\nfrom ernie3.errors import run_cli\n"
            "def main():\n"
            f"    open({str(started)!r}, 'w').close()\n"
            "    try:\n        time.sleep(120)\n"
            f"    finally:\n        open({str(marker)!r}, 'w').close()\n"
            "run_cli(main)\n")  # fmt: skip
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and marker.exists()
    assert err.strip().splitlines()[-1] == "terminated" and "Traceback" not in err
