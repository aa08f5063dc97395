"""scripts/lightweight_real_data.py: its argument checks, a dry run of every stage on the samples with a tiny
teacher, and the real-data slices (skipped without ../shared/data)."""
import importlib.util
import json
import math
import os

import pytest
from conftest import shared_data

from ernie3.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
    spec = importlib.util.spec_from_file_location("lightweight_real_data", os.path.join(REPO, "scripts", "lightweight_real_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--train_lines", "0"], "--train_lines must be at least 1"),
        (["--distill_steps", "-3"], "--distill_steps must be at least 1"),
        (["--min_seconds", "nan"], "--min_seconds must be a positive number"),
        (["--teacher_learning_rate", "inf"], "--teacher_learning_rate must be a positive number"),
    ],
)
def test_bad_numbers_are_one_line_errors(extra, message, tmp_path):
    with pytest.raises(UserError, match=message):
        load_script().parse_args(["--dry_run", "--output_dir", str(tmp_path), *extra])


def test_output_dir_must_be_outside_the_repository_and_not_a_file(tmp_path):
    script = load_script()
    with pytest.raises(UserError, match="inside the repository"):
        script.parse_args(["--dry_run", "--output_dir", os.path.join(REPO, "lw_output")])
    a_file = tmp_path / "taken"
    a_file.write_text("keep me")
    with pytest.raises(UserError, match="is a file"):
        script.parse_args(["--dry_run", "--output_dir", str(a_file)])
    assert a_file.read_text() == "keep me"


def test_a_data_dir_without_the_real_files_is_refused(tmp_path):
    with pytest.raises(UserError, match="ernie-3.0-zh-vocab.txt not found"):
        load_script().parse_args(["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize("task_name, metric", [("tnews", "accuracy"), ("msra_ner", "f1")])
def test_a_dry_run_goes_through_every_stage_and_writes_the_table(task_name, metric, tmp_path):
    out = tmp_path / "run"
    result = load_script().main(["--task", task_name, "--dry_run", "--output_dir", str(out)])
    figures = result["figures"]
    with open(out / "lightweight.json", encoding="utf-8") as handle:
        assert json.load(handle)["figures"]["best"] == figures["best"]
    table = (out / "lightweight.md").read_text(encoding="utf-8")
    assert "| size on disk (MB) |" in table and "| target | reached |" in table
    assert f"real {task_name.upper()}" in table and f"| {metric} (held-out) |" in table
    # distil + PTQ + INT8 embeddings: the smallest candidate is a quantized student, far below the teacher
    assert figures["best"].startswith("student/") and figures["size_share"] < 0.1
    assert {"student_metric", "baseline_metric", "trimmed_agreement"} <= set(figures)
    assert figures["vocabulary"]["vocab_size"] < figures["vocabulary"]["vocab_size_before"]
    assert all(math.isfinite(figures[k]) and figures[k] > 0 for k in ("model_speedup", "e2e_speedup", "fast_tokenizer_factor"))
    assert figures["rss_share"] is None  # a dry run does not measure RSS; the table says so with a dash
    assert not (out / "data").exists()  # a dry run reads the shipped samples in place


def test_the_real_data_slices_are_consecutive_and_held_out(tmp_path):
    source = shared_data("tnews", "dev.json")
    shared_data("vocab", "ernie-3.0-zh-vocab.txt")
    script = load_script()
    args = script.parse_args(["--data_dir", os.path.dirname(os.path.dirname(source)), "--output_dir", str(tmp_path)])
    train, dev = script.write_slices(args, str(tmp_path / "data"))
    with open(source, encoding="utf-8") as handle:
        lines = handle.readlines()
    with open(train, encoding="utf-8") as handle:
        assert handle.readlines() == lines[:8000]
    with open(dev, encoding="utf-8") as handle:
        assert handle.readlines() == lines[8000:10000]
    args.train_lines = 9000
    with pytest.raises(UserError, match="exceeds the 10000 lines"):
        script.write_slices(args, str(tmp_path / "data"))
    # refused before anything is written: no output dir left behind
    with pytest.raises(UserError, match="exceeds the 10000 lines"):
        script.main(["--data_dir", os.path.dirname(os.path.dirname(source)), "--output_dir", str(tmp_path / "never"),
                     "--train_lines", "9000"])  # fmt: skip
    assert not (tmp_path / "never").exists()


def test_the_msra_ner_slices_are_sentences_of_its_test_file(tmp_path):
    source = shared_data("msra_ner", "test.tsv")
    shared_data("vocab", "ernie-3.0-zh-vocab.txt")
    script = load_script()
    args = script.parse_args(["--task", "msra_ner", "--data_dir", os.path.dirname(os.path.dirname(source)),
                              "--output_dir", str(tmp_path)])  # fmt: skip
    assert (args.train_lines, args.dev_lines, args.teacher_max_seq_length) == (2800, 642, 128)
    train, dev = script.write_slices(args, str(tmp_path / "data"))
    assert train.endswith("train.tsv") and dev.endswith("dev.tsv")  # the NER reader knows the format by it
    from ernie3.data import load_examples
    from ernie3.tasks import get_task

    assert len(load_examples(get_task("msra_ner"), "dev", dev)) == 642
