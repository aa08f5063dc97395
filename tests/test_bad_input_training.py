"""Bad input, hostile settings and faults on the training / compress / export side (issues 9 and 14).

Every refusal: exit status 2, exactly one `error:` line naming the flag or file, no traceback, and no partial or
deleted output. Faults (a kill while writing a checkpoint or an export, a full disk) leave the previous complete
output, and the next run succeeds. In-process through `run_cli` wherever exit status is not about a real process.
"""
import errno
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, TINY_EXPORT_TASKS, sample_file

from ernie3.errors import UserError, run_cli

SCRIPTS = ("run_seq_cls.py", "run_token_cls.py", "run_qa.py", "compress_seq_cls.py", "compress_token_cls.py",
           "compress_qa.py")  # fmt: skip
#: every task type that ships samples (the registry's), with its sample task
TASKS = {task_type: task_name for task_type, task_name, _ in TINY_EXPORT_TASKS}
#: settings both fine-tuning and later steps of each task type use, small enough for a tiny model (its sample_flags)
SMALL = {task_type: flags for task_type, _, flags in TINY_EXPORT_TASKS}


def train_entry(task_type):
    from ernie3.train import run

    return lambda argv: run(task_type, argv)


def compress_entry(task_type):
    from ernie3.compress import run

    return lambda argv: run(task_type, argv)


def train_argv(task_type, model_dir, output_dir, *extra):
    task = TASKS[task_type]
    return [
        "--task_name", task, "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir),
        "--train_file", sample_file(task, "train"), "--dev_file", sample_file(task, "dev"),
        "--learning_rate", "1e-3", "--per_device_train_batch_size", "16", "--logging_steps", "5",
        "--evaluation_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "5", "--save_steps", "5",
        *SMALL[task_type], *extra,
    ]  # fmt: skip


def compress_argv(task_type, model_dir, output_dir, *extra):
    task = TASKS[task_type]
    return [
        "--task_name", task, "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir),
        "--train_file", sample_file(task, "train"), "--dev_file", sample_file(task, "dev"),
        "--strategy", "ptq", "--algo_list", "hist", "--batch_size_list", "4", "--per_device_train_batch_size", "16",
        # what these tests check is the output's safety: one engine, one timing round, no RSS probes
        "--engines", "paddle", "--int8_embeddings", "false", "--measure_rss", "false", "--timing_rounds", "1", *extra,
    ]  # fmt: skip


def cli_error(capsys, entry, argv) -> str:
    """Run an entry point as its script does; it must exit 2 with exactly one `error:` line and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: entry(argv))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    return lines[0]


def tree_digest(path) -> dict:
    """{relative path: sha1} of every file under `path`: equal digests mean nothing was touched (but the run's log,
    ernie3.log, to which every run appends its own lines, a failed one too)."""
    digest = {}
    for root, _, files in os.walk(path):
        for name in files:
            if name == "ernie3.log":
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                digest[os.path.relpath(full, path)] = hashlib.sha1(handle.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def fine_tuned(tiny_model_dir, tmp_path_factory):
    """A tiny model fine-tuned a few steps for each task type: {task_type: training output dir}."""
    outputs = {}
    for task_type in TASKS:
        output_dir = tmp_path_factory.mktemp(f"fine-tuned-{task_type}")
        train_entry(task_type)(train_argv(task_type, tiny_model_dir, output_dir, "--max_steps", "5", "--do_train"))
        outputs[task_type] = output_dir
    return outputs


# --- 1. every script's --help ---------------------------------------------------------------------------------------
def test_help_of_every_script_works():
    processes = {script: subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, script), "--help"], cwd=REPO_ROOT,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for script in SCRIPTS}  # fmt: skip
    for script, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"{script}: {err[-2000:]}"
        assert "Traceback" not in err and "--output_dir" in out, script
    assert "1%" in out  # compress's --max_metric_drop help, whose % once crashed argparse


# --- 2. --do_predict on its own -------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_type", sorted(TASKS))
def test_predict_alone_writes_predictions(fine_tuned, task_type, tmp_path):
    from ernie3.data import sample_file as shipped_sample

    task = TASKS[task_type]
    test_file = shipped_sample(task, "test") or sample_file(task, "dev")  # CMRC2018's samples have no test split
    summary = train_entry(task_type)([
        "--task_name", task, "--model_name_or_path", str(fine_tuned[task_type] / "best"), "--output_dir", str(tmp_path),
        "--test_file", test_file, "--do_predict",
    ])  # fmt: skip
    assert os.path.getsize(summary["predict_file"]) > 0


# --- 3. settings validated before any work --------------------------------------------------------------------------
TRAIN_CASES = [
    ("seq_cls", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be a positive"),
    ("token_cls", ["--per_device_eval_batch_size", "-4"], "--per_device_eval_batch_size must be a positive"),
    ("qa", ["--learning_rate", "-1"], "--learning_rate must be a positive finite number"),
    ("seq_cls", ["--learning_rate", "nan"], "--learning_rate must be a positive finite number, got nan"),
    ("seq_cls", ["--learning_rate", "inf"], "--learning_rate must be a positive finite number, got inf"),
    ("token_cls", ["--num_train_epochs", "-1"], "--num_train_epochs must be a finite number >= 0"),
    ("seq_cls", ["--num_train_epochs", "nan"], "--num_train_epochs must be a finite number >= 0"),
    ("seq_cls", ["--max_steps", "0"], "--max_steps must be a positive number of steps"),
    ("qa", ["--eval_steps", "0"], "--eval_steps must be a positive number of steps with --evaluation_strategy steps"),
    ("seq_cls", ["--max_seq_length", "0"], "--max_seq_length must be a positive number of tokens"),
    ("token_cls", ["--max_seq_length", "2"], "--max_seq_length 2 is too small: 3 special tokens"),
    ("seq_cls", ["--max_seq_length", "4096"], "--max_seq_length 4096 is larger than the model's max_position_embeddings (512)"),
    ("qa", ["--max_seq_length", "4096"], "--max_seq_length 4096 is larger than the model's max_position_embeddings"),
    ("seq_cls", ["--warmup_ratio", "2"], "--warmup_ratio must be between 0 and 1"),
    ("qa", ["--doc_stride", "0"], "--doc_stride must be a positive integer"),
    ("token_cls", ["--warmup_steps", "-3"], "--warmup_steps must be a finite number >= 0"),
    ("seq_cls", ["--max_grad_norm", "nan"], "--max_grad_norm must be a finite number >= 0"),
    ("seq_cls", ["--seed", "-1"], "--seed must be a finite number >= 0"),
    ("seq_cls", ["--save_total_limit", "-2"], "--save_total_limit must be >= 0"),
]  # fmt: skip


@pytest.mark.parametrize("task_type, extra, message", TRAIN_CASES)
def test_bad_training_settings_fail_at_once(capsys, tiny_model_dir, tmp_path, task_type, extra, message):
    out = tmp_path / "out"
    argv = train_argv(task_type, tiny_model_dir, out, "--max_steps", "5", "--do_train", *extra)
    if "--max_steps" in extra:  # the case under test replaces the run's own --max_steps
        argv = train_argv(task_type, tiny_model_dir, out, "--do_train", *extra)
    line = cli_error(capsys, train_entry(task_type), argv)
    assert message in line
    assert not out.exists()


COMPRESS_CASES = [
    ("seq_cls", ["--max_metric_drop", "-0.5"], "--max_metric_drop must be a relative drop between 0 and 1"),
    ("token_cls", ["--max_metric_drop", "nan"], "--max_metric_drop must be a relative drop between 0 and 1"),
    ("qa", ["--max_metric_drop", "1.5"], "--max_metric_drop must be a relative drop between 0 and 1"),
    ("seq_cls", ["--strategy", "dynabert", "--width_mult_list", "0"], "--width_mult_list: 0 must be in (0, 1]"),
    ("seq_cls", ["--strategy", "dynabert", "--width_mult_list", "3/4", "0.75"], "--width_mult_list: a width is listed twice"),
    ("seq_cls", ["--algo_list", "hist", "hist"], "--algo_list: an algorithm is listed twice"),
    ("token_cls", ["--algo_list", "fancy"], "--algo_list: unknown algorithm 'fancy'"),
    ("seq_cls", ["--batch_size_list", "0"], "--batch_size_list takes positive numbers, got [0]"),
    ("seq_cls", ["--num_threads", "0"], "--num_threads must be at least 1"),
    ("qa", ["--learning_rate", "nan"], "--learning_rate must be a positive finite number"),
    ("seq_cls", ["--max_seq_length", "1024"], "--max_seq_length 1024 is larger than the model's max_position_embeddings"),
]  # fmt: skip


@pytest.mark.parametrize("task_type, extra, message", COMPRESS_CASES)
def test_bad_compress_settings_fail_at_once(capsys, fine_tuned, tmp_path, task_type, extra, message):
    out = tmp_path / "out"
    line = cli_error(capsys, compress_entry(task_type), compress_argv(task_type, fine_tuned[task_type] / "best", out, *extra))
    assert message in line
    assert not out.exists()


def test_a_nan_training_loss_stops_the_run_and_keeps_no_best_model(capsys, tiny_model_dir, tmp_path):
    argv = train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "10", "--learning_rate", "1e8",
                      "--warmup_ratio", "0", "--logging_steps", "1", "--do_train", "--do_eval")  # fmt: skip
    line = cli_error(capsys, train_entry("seq_cls"), argv)
    assert "training loss became nan" in line and "--learning_rate" in line
    assert not (tmp_path / "best").exists() and not (tmp_path / "train_results.json").exists()


# --- 4. --overwrite_output_dir deletes only what a previous run of the same script wrote ----------------------------
def test_compress_refuses_to_overwrite_the_fine_tuned_model(capsys, fine_tuned):
    training_output = fine_tuned["seq_cls"]
    before = tree_digest(training_output)
    for output_dir in (training_output, training_output / "best", training_output / "best" / "compress"):
        argv = compress_argv("seq_cls", training_output / "best", output_dir, "--overwrite_output_dir")
        line = cli_error(capsys, compress_entry("seq_cls"), argv)
        assert "overlaps the input model directory" in line
    assert tree_digest(training_output) == before


def test_compress_overwrite_refuses_anything_it_did_not_write(capsys, fine_tuned, tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    line = cli_error(capsys, compress_entry("seq_cls"),
                     compress_argv("seq_cls", fine_tuned["seq_cls"] / "best", tmp_path, "--overwrite_output_dir"))  # fmt: skip
    assert "holds notes.txt, which no previous compress_seq_cls.py run wrote" in line
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    other_training_output = fine_tuned["token_cls"]  # not the model being compressed, but a training output
    before = tree_digest(other_training_output)
    line = cli_error(capsys, compress_entry("seq_cls"), compress_argv(
        "seq_cls", fine_tuned["seq_cls"] / "best", other_training_output, "--overwrite_output_dir"))
    assert "which no previous compress_seq_cls.py run wrote; refusing to delete it" in line
    assert tree_digest(other_training_output) == before


def test_compress_overwrite_replaces_its_own_previous_output(fine_tuned, tmp_path, capsys):
    argv = compress_argv("seq_cls", fine_tuned["seq_cls"] / "best", tmp_path)
    compress_entry("seq_cls")(argv)
    assert cli_error(capsys, compress_entry("seq_cls"), argv).endswith("pass --overwrite_output_dir to replace it")
    (tmp_path / "float" / "stale.txt").write_text("from the previous run", encoding="utf-8")
    report = compress_entry("seq_cls")([*argv, "--overwrite_output_dir"])
    assert not (tmp_path / "float" / "stale.txt").exists() and report["best"]
    json.loads((tmp_path / "ernie3_run.json").read_text(encoding="utf-8"))["kind"] == "compress_seq_cls"


def test_a_failed_compress_leaves_the_previous_output_untouched(capsys, fine_tuned, tmp_path, monkeypatch):
    from paddlenlp.trainer import Trainer

    output_dir = tmp_path / "compress"
    argv = compress_argv("seq_cls", fine_tuned["seq_cls"] / "best", output_dir)
    compress_entry("seq_cls")(argv)
    before = tree_digest(output_dir)

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(self.args.output_dir, "float", "hist4_1"))

    monkeypatch.setattr(Trainer, "compress", full_disk)
    line = cli_error(capsys, compress_entry("seq_cls"), [*argv, "--overwrite_output_dir"])
    assert "No space left on device" in line
    assert tree_digest(output_dir) == before and os.listdir(tmp_path) == ["compress"]  # no half-built output left


def test_training_refuses_foreign_or_overlapping_output_dirs(capsys, tiny_model_dir, fine_tuned, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine", encoding="utf-8")
    for extra in ([], ["--overwrite_output_dir"]):
        line = cli_error(capsys, train_entry("seq_cls"),
                         train_argv("seq_cls", tiny_model_dir, foreign, "--max_steps", "5", "--do_train", *extra))  # fmt: skip
        assert "holds thesis.tex, which no previous run_seq_cls.py run wrote" in line
    assert os.listdir(foreign) == ["thesis.tex"]
    # continuing from a fine-tuned model into its own training output would replace best/ with itself
    training_output = fine_tuned["seq_cls"]
    before = tree_digest(training_output)
    line = cli_error(capsys, train_entry("seq_cls"), train_argv(
        "seq_cls", training_output / "best", training_output, "--max_steps", "5", "--do_train", "--overwrite_output_dir"))
    assert "overlaps the input model directory" in line
    assert tree_digest(training_output) == before


def test_training_overwrite_starts_over_and_leaves_nested_run_outputs(tiny_model_dir, tmp_path):
    train_entry("seq_cls")(train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "10", "--do_train"))
    nested = tmp_path / "compress"  # e.g. a compress output kept inside the training output
    nested.mkdir()
    (nested / "ernie3_run.json").write_text('{"kind": "compress_seq_cls"}', encoding="utf-8")
    (nested / "report.md").write_text("keep me", encoding="utf-8")
    summary = train_entry("seq_cls")(
        train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "5", "--do_train", "--overwrite_output_dir")
    )
    assert summary["resumed_from"] is None
    assert sorted(e for e in os.listdir(tmp_path) if e.startswith("checkpoint-")) == ["checkpoint-5"]
    assert (nested / "report.md").read_text(encoding="utf-8") == "keep me"


def test_an_output_without_a_run_record_can_be_added_to_but_not_overwritten(capsys, tiny_model_dir, tmp_path):
    argv = train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "5", "--do_train")
    train_entry("seq_cls")(argv)
    os.unlink(tmp_path / "ernie3_run.json")  # as an output of an older version of the toolkit
    line = cli_error(capsys, train_entry("seq_cls"), [*argv, "--overwrite_output_dir"])
    assert "--overwrite_output_dir would delete them" in line and (tmp_path / "checkpoint-5").is_dir()
    summary = train_entry("seq_cls")(train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "10", "--do_train"))
    assert summary["resumed_from"].endswith("checkpoint-5")


# --- 5. output paths checked before work; write failures leave the previous output ----------------------------------
def test_output_paths_that_cannot_be_used(capsys, fine_tuned, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x", encoding="utf-8")
    best = fine_tuned["seq_cls"] / "best"
    predict = ["--task_name", "tnews", "--model_name_or_path", str(best), "--dev_file", sample_file("tnews", "dev")]
    cases = [
        ([*predict, "--output_dir", str(a_file), "--do_eval"], f"--output_dir: {a_file} exists and is not a directory"),
        ([*predict, "--output_dir", str(a_file / "sub"), "--do_eval"], "is not a directory"),
        ([*predict, "--output_dir", "/proc/ernie3-out", "--do_eval"], "--output_dir: cannot write to /proc"),
        ([*predict, "--output_dir", str(tmp_path / "o"), "--do_export", "--export_model_dir", str(a_file)],
         "--export_model_dir: " + str(a_file) + " exists and is not a directory"),
        ([*predict, "--output_dir", str(tmp_path / "o"), "--do_export", "--export_model_dir", str(best / "export")],
         "overlaps the input model directory"),
    ]  # fmt: skip
    for argv, message in cases:
        assert message in cli_error(capsys, train_entry("seq_cls"), argv)
    assert not (tmp_path / "o").exists() and a_file.read_text(encoding="utf-8") == "x"
    line = cli_error(capsys, compress_entry("seq_cls"), compress_argv("seq_cls", best, a_file))
    assert f"--output_dir: {a_file} exists and is not a directory" in line


def test_a_full_disk_during_export_keeps_the_previous_export(capsys, fine_tuned, tmp_path, monkeypatch):
    import paddle

    argv = ["--task_name", "tnews", "--model_name_or_path", str(fine_tuned["seq_cls"] / "best"),
            "--output_dir", str(tmp_path), "--do_export"]  # fmt: skip
    train_entry("seq_cls")(argv)
    before = tree_digest(tmp_path / "export")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "export" / "model.pdiparams"))

    monkeypatch.setattr(paddle.jit, "save", full_disk)
    line = cli_error(capsys, train_entry("seq_cls"), argv)
    assert "No space left on device" in line and "could not write" in line
    assert tree_digest(tmp_path / "export") == before
    assert sorted(os.listdir(tmp_path)) == ["ernie3.log", "ernie3_run.json", "export"]  # no staging leftovers


def test_a_full_disk_while_writing_a_checkpoint_leaves_no_checkpoint_and_resume_takes_the_last(
    capsys, tiny_model_dir, tmp_path, monkeypatch
):
    import paddle

    argv = train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "10", "--do_train")
    original = paddle.save

    def save(obj, path, *args, **kwargs):
        if "checkpoint-10" in str(path) and str(path).endswith("model_state.pdparams"):  # the weights, half written
            with open(path, "wb") as handle:
                handle.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(obj, path, *args, **kwargs)

    monkeypatch.setattr(paddle, "save", save)
    line = cli_error(capsys, train_entry("seq_cls"), argv)
    assert line == f"error: could not write {tmp_path / 'checkpoint-10'}: No space left on device"
    assert not (tmp_path / "checkpoint-10").exists() and not (tmp_path / "best").exists()
    # checkpoint-5 complete, nothing half written left beside it (the staging folder is gone)
    assert sorted(e for e in os.listdir(tmp_path) if e.startswith((".", "checkpoint-"))) == ["checkpoint-5"]
    assert os.path.isfile(tmp_path / "checkpoint-5" / "ernie3_checkpoint.json")
    monkeypatch.setattr(paddle, "save", original)
    summary = train_entry("seq_cls")(argv)
    assert summary["resumed_from"].endswith("checkpoint-5")
    assert os.path.isfile(tmp_path / "checkpoint-10" / "ernie3_checkpoint.json")


def test_the_best_checkpoint_is_recorded_under_its_final_name(tiny_model_dir, tmp_path):
    argv = train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "10", "--do_train", "--save_total_limit", "1")
    train_entry("seq_cls")(argv)
    for checkpoint in [e for e in os.listdir(tmp_path) if e.startswith("checkpoint-")]:
        state = json.loads((tmp_path / checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        best = state["best_model_checkpoint"]
        assert os.path.dirname(best) == str(tmp_path) and os.path.isdir(best), best
    assert not [e for e in os.listdir(tmp_path) if e.startswith(".")]  # no staging folders left


# --- 6. checkpoints: complete or skipped; resume = uninterrupted; save_total_limit ----------------------------------
KILL_DRIVER = """
import os, signal, sys
import ernie3, paddle
target, original_save, original_jit_save = os.environ["KILL_WHEN_WRITING"], paddle.save, paddle.jit.save
def die_at_target(path):
    if target in str(path):
        os.kill(os.getpid(), signal.SIGKILL)
paddle.save = lambda obj, path, *a, **k: (die_at_target(path), original_save(obj, path, *a, **k))[1]
paddle.jit.save = lambda layer, path, *a, **k: (die_at_target(path), original_jit_save(layer, path, *a, **k))[1]
from ernie3.errors import run_cli
from ernie3.compress import run as compress
from ernie3.train import run as train
run_cli(lambda: (compress if sys.argv[1] == "compress" else train)("seq_cls", sys.argv[2:]))
"""


def killed_run(argv, target, script="train"):
    """run_seq_cls (or compress_seq_cls) in a fresh process that SIGKILLs itself when it starts writing a file
    whose path has `target`."""
    result = subprocess.run([sys.executable, "-c", KILL_DRIVER, script, *argv], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "KILL_WHEN_WRITING": target})  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def weights(checkpoint):
    import paddle

    return paddle.load(os.path.join(checkpoint, "model_state.pdparams"), return_numpy=True)


@pytest.mark.parametrize("killed_at, resumed_from", [(20, 15), (10, 5)])  # 15 steps per epoch: resume at its end, mid-way
def test_a_run_killed_while_writing_a_checkpoint_resumes_like_an_uninterrupted_run(
    tiny_model_dir, tmp_path, killed_at, resumed_from
):
    settings = ("--max_steps", "20", "--save_total_limit", "2", "--do_train", "--do_eval")
    reference = train_entry("seq_cls")(train_argv("seq_cls", tiny_model_dir, tmp_path / "reference", *settings))
    checkpoints = [e for e in os.listdir(tmp_path / "reference") if e.startswith("checkpoint-")]
    assert 1 <= len(checkpoints) <= 3 and "checkpoint-20" in checkpoints  # limit 2, + the best one if older

    resumed_dir = tmp_path / "resumed"
    argv = train_argv("seq_cls", tiny_model_dir, resumed_dir, *settings)
    killed_run(argv, os.path.join(f"checkpoint-{killed_at}", "optimizer.pdopt"))  # weights written, the rest not
    assert not (resumed_dir / f"checkpoint-{killed_at}").exists()  # the partial one is under a staging name
    assert not (resumed_dir / "best").exists()

    resumed = train_entry("seq_cls")(argv)
    assert resumed["resumed_from"].endswith(f"checkpoint-{resumed_from}")  # the partial checkpoint was skipped
    assert resumed["train"]["train_loss"] == pytest.approx(reference["train"]["train_loss"], rel=1e-5)
    expected, got = weights(tmp_path / "reference" / "checkpoint-20"), weights(resumed_dir / "checkpoint-20")
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert resumed["eval"]["eval_accuracy"] == pytest.approx(reference["eval"]["eval_accuracy"])


def test_a_run_killed_while_exporting_keeps_the_previous_export(fine_tuned, tmp_path):
    argv = ["--task_name", "tnews", "--model_name_or_path", str(fine_tuned["seq_cls"] / "best"),
            "--output_dir", str(tmp_path), "--do_export"]  # fmt: skip
    train_entry("seq_cls")(argv)
    before = tree_digest(tmp_path / "export")
    killed_run(argv, ".export.partial-")  # inside the staging directory of the new export
    assert tree_digest(tmp_path / "export") == before
    assert [e for e in os.listdir(tmp_path) if e.startswith(".export.partial-")]  # the killed run's staging dir
    train_entry("seq_cls")(argv)  # the next run succeeds beside the leftover staging directory
    after = tree_digest(tmp_path / "export")
    assert after.keys() == before.keys() and after["model.pdiparams"] == before["model.pdiparams"]


def test_a_compress_killed_midway_keeps_the_previous_output(fine_tuned, tmp_path):
    output_dir = tmp_path / "compress"
    argv = compress_argv("seq_cls", fine_tuned["seq_cls"] / "best", output_dir, "--overwrite_output_dir")
    compress_entry("seq_cls")(argv)
    before = tree_digest(output_dir)
    killed_run(argv, ".compress.partial-", script="compress")  # while exporting the float model of the new output
    assert tree_digest(output_dir) == before
    report = compress_entry("seq_cls")(argv)  # the next run succeeds
    assert report["best"] and os.path.isfile(output_dir / "report.json")


# --- 8. settings travel with the model; outputs readable; eval once; messages --------------------------------------
def test_export_uses_the_settings_recorded_with_the_model(fine_tuned, tmp_path, monkeypatch):
    from paddlenlp.utils.log import logger

    best = fine_tuned["qa"] / "best"
    argv = ["--task_name", "cmrc2018", "--model_name_or_path", str(best), "--output_dir", str(tmp_path), "--do_export"]
    summary = train_entry("qa")(argv)
    info = json.loads(open(os.path.join(summary["export_dir"], "ernie3_task.json"), encoding="utf-8").read())
    assert info["max_seq_length"] == 64 and info["options"]["doc_stride"] == 24 and info["options"]["max_query_length"] == 24
    warnings = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, **kwargs: warnings.append(str(message)))
    summary = train_entry("qa")([*argv, "--max_seq_length", "48"])  # a flag wins, with a warning
    info = json.loads(open(os.path.join(summary["export_dir"], "ernie3_task.json"), encoding="utf-8").read())
    assert info["max_seq_length"] == 48 and info["options"]["doc_stride"] == 24
    assert any("--max_seq_length 48 differs from the 64" in message for message in warnings)


def test_outputs_follow_the_umask(fine_tuned, tmp_path):
    old = os.umask(0o022)
    try:
        summary = train_entry("seq_cls")([
            "--task_name", "tnews", "--model_name_or_path", str(fine_tuned["seq_cls"] / "best"),
            "--output_dir", str(tmp_path / "o"), "--dev_file", sample_file("tnews", "dev"),
            "--test_file", sample_file("tnews", "test"), "--do_eval", "--do_predict", "--do_export",
        ])  # fmt: skip
    finally:
        os.umask(old)
    for path in (summary["export_dir"], os.path.dirname(summary["predict_file"])):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755, path
    for path in (summary["predict_file"], tmp_path / "o" / "eval_results.json",
                 os.path.join(summary["export_dir"], "ernie3_task.json"), tmp_path / "o" / "ernie3_run.json"):  # fmt: skip
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
    best = fine_tuned["seq_cls"] / "best"
    assert stat.S_IMODE(os.stat(best).st_mode) & 0o055 == 0o055  # best/ of the fixture, written under pytest's umask


def test_train_and_eval_evaluates_dev_once_per_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    from paddlenlp.trainer import Trainer

    calls = []
    original = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    summary = train_entry("seq_cls")(train_argv("seq_cls", tiny_model_dir, tmp_path, "--max_steps", "10", "--do_train",
                                                "--do_eval"))  # fmt: skip
    assert len(calls) == 2  # at steps 5 and 10, none again after training
    logged = json.loads((tmp_path / "eval_results.json").read_text(encoding="utf-8"))
    assert logged["eval_accuracy"] == summary["eval"]["eval_accuracy"]


def test_best_model_is_safetensors_and_loads(fine_tuned):
    from paddlenlp.transformers import AutoModelForSequenceClassification

    best = fine_tuned["seq_cls"] / "best"
    assert (best / "model.safetensors").is_file() and not (best / "model_state.pdparams").exists()
    assert AutoModelForSequenceClassification.from_pretrained(str(best)).config.num_labels == 15
    checkpoint = fine_tuned["seq_cls"] / "checkpoint-5"
    for name in ("ernie3_task.json", "ernie3_checkpoint.json"):
        assert (checkpoint / name).is_file()


def test_compress_advice_names_the_training_script_of_the_task(capsys, tiny_model_dir, tmp_path):
    line = cli_error(capsys, compress_entry("token_cls"), compress_argv("token_cls", tiny_model_dir, tmp_path / "o"))
    assert "fine-tune it first with run_token_cls.py --do_train" in line


def test_upstream_reasons_are_cut_at_a_word_boundary():
    from ernie3.modeling import short_reason

    reason = short_reason(OSError("word " * 100 + "\nsecond line"))
    assert reason.endswith("word …") and len(reason) <= 202
    assert short_reason(ValueError("short\nmore")) == "short"


def test_user_error_is_raised_in_process(tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="--learning_rate"):
        train_entry("seq_cls")(train_argv("seq_cls", tiny_model_dir, tmp_path, "--do_train", "--learning_rate", "0"))
