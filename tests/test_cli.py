"""The `ernie3` console command and the package shape: every subcommand answers --help, errors are one line, the
console script is installed, and nothing edits the import path (tests/test_layers.py: the library never imports
the command line)."""
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, sample_file

from ernie3.cli.main import COMMANDS, main


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_answers_help(name, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([name, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and f"ernie3 {name}" in out


def test_unknown_command_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["trian"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown command 'trian' (choose one of: train, ")


def test_train_runs_any_task_type_and_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--task_name", "nope"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown task 'nope' (choose one of: ") and "msra_ner" in err and "tnews" in err


def test_console_script_is_installed():
    """`make install` puts the package into the venv (editable), so `ernie3` and the deploy scripts find it."""
    import shutil
    import sys

    command = os.path.join(os.path.dirname(sys.executable), "ernie3")
    if not os.path.exists(command):
        command = shutil.which("ernie3")
    assert command, "the ernie3 console command is not installed: run make install"
    done = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "commands:" in done.stdout


def tracked_python_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [os.path.join(REPO_ROOT, path) for path in listed.stdout.split()]


def test_nothing_edits_the_import_path():
    needle = "sys." + "path"  # spelled apart so that this file does not match itself
    offenders = []
    for path in tracked_python_files():
        with open(path, encoding="utf-8") as handle:
            if needle in handle.read():
                offenders.append(os.path.relpath(path, REPO_ROOT))
    assert not offenders, f"{needle} in: {offenders} (the package is installed; import it)"


@pytest.mark.parametrize("flags, message", [
    (["--hidden_size", "0"], "--hidden_size must be a positive integer, got 0"),
    (["--hidden_size", "30", "--num_attention_heads", "4"], "--hidden_size 30 must be a multiple of --num_attention_heads 4"),
    (["--vocab_file", "missing.txt"], "--vocab_file: file not found: missing.txt"),
])  # fmt: skip
def test_tiny_model_flags_are_checked(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stopped:
        main(["tiny-model", "--output_dir", str(tmp_path / "m"), *flags])
    assert stopped.value.code == 2 and capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 8, "not UTF-8 text"),
    ("a\nb\n".encode(), "is not an ERNIE vocabulary (one token per line): it lacks [PAD], [CLS], [SEP], [MASK], [UNK]"),
    (b"", "it lacks [PAD]"),
])  # fmt: skip
def test_tiny_model_refuses_a_vocab_file_the_tokenizer_cannot_read(tmp_path, capsys, content, message):
    vocab = tmp_path / "vocab.bin"
    vocab.write_bytes(content)
    with pytest.raises(SystemExit) as stopped:
        main(["tiny-model", "--output_dir", str(tmp_path / "m"), "--vocab_file", str(vocab)])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and err.startswith("error: ") and message in err and str(vocab) in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "m").exists()


def test_the_old_python_m_ernie3_modeling_says_where_the_command_moved(tmp_path):
    import sys

    done = subprocess.run([sys.executable, "-m", "ernie3.modeling", "--output_dir", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: `python -m ernie3.modeling` is no longer a command: run `ernie3 tiny-model" in done.stderr
    assert not (tmp_path / "m").exists()


def test_tiny_model_refuses_a_file_or_a_folder_with_other_files(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for output_dir, message in ((a_file / "m", "is not a directory"), (tmp_path, "is not empty")):
        with pytest.raises(SystemExit):
            main(["tiny-model", "--output_dir", str(output_dir)])
        assert message in capsys.readouterr().err
    assert a_file.read_text() == "x"


GLOG_INFO_LINE = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ", re.MULTILINE)


def run_infer_process(export_dir: str, *flags: str) -> subprocess.CompletedProcess:
    """`ernie3 infer` in a fresh process (glog's level is read when paddle loads), environment as a user has it."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "GLOG_v", "ERNIE3_VERBOSE")}
    env["PYTHONPATH"] = REPO_ROOT
    command = [sys.executable, "-m", "ernie3.cli", "infer", "--model_path", export_dir, "--dev_file",
               sample_file("tnews", "dev"), "--max_examples", "4", "--precision", "bf16", *flags]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_native_glog_lines_only_with_verbose(tiny_exports):
    # a bf16 config makes paddle log `Hardware support for BFLOAT16 is enabled` through glog at INFO
    from ernie3.backends import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native BF16 (the bf16 config is what logs the glog INFO line)")
    quiet = run_infer_process(tiny_exports["seq_cls"])
    assert quiet.returncode == 0, quiet.stderr
    assert "dev accuracy" in quiet.stdout
    assert not GLOG_INFO_LINE.search(quiet.stderr), quiet.stderr
    assert "Hardware support for BFLOAT16" not in quiet.stderr
    verbose = run_infer_process(tiny_exports["seq_cls"], "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Hardware support for BFLOAT16 is enabled" in verbose.stdout + verbose.stderr


@pytest.mark.parametrize("flags, message", [
    (["--minutes", "nan"], "--minutes must be a finite number > 0 and <= 10080, got nan"),
    (["--minutes", "inf"], "--minutes must be a finite number > 0 and <= 10080, got inf"),
    (["--minutes", "-1"], "--minutes must be a finite number > 0"),
    (["--interval", "nan"], "--interval must be a finite number > 0 and <= 3600, got nan"),
    (["--interval", "0"], "--interval must be a finite number > 0"),
    (["--num_threads", "0"], "--num_threads must be at least 1, got 0"),
    (["--clients", "-2"], "--clients must be at least 1, got -2"),
])  # fmt: skip
def test_soak_flags_are_checked_and_nothing_is_written(tmp_path, capsys, flags, message):
    from ernie3.cli.soak import main as soak_main
    from ernie3.errors import run_cli

    output = tmp_path / "soak_output"
    output.mkdir()
    earlier = output / "soak.json"
    earlier.write_text('{"earlier": {}}', encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: soak_main(["--model_path", str(tmp_path), "--output_dir", str(output), *flags]))
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}")
    assert sorted(os.listdir(output)) == ["soak.json"] and earlier.read_text(encoding="utf-8") == '{"earlier": {}}'


@pytest.mark.parametrize("flags, message", [
    (["--min_seconds", "nan"], "--min_seconds must be a finite number >= 0 and <= 3600, got nan"),
    (["--min_seconds", "-1"], "--min_seconds must be a finite number >= 0"),
    (["--num_threads", "0"], "--num_threads must be at least 1, got 0"),
    (["--iterations", "0"], "--iterations must be at least 1, got 0"),
    (["--vocab_size", "-5"], "--vocab_size must be at least 1, got -5"),
    (["--seq_lengths", "128", "4096"], "--seq_lengths 4096 is longer than the 512 positions of the random model"),
    (["--hidden_size", "100"], "--hidden_size 100 must be a multiple of --num_attention_heads 12"),
])  # fmt: skip
def test_bench_flags_are_checked_before_any_work(tmp_path, capsys, flags, message):
    from ernie3.cli.bench import main as bench_main
    from ernie3.errors import run_cli

    output = tmp_path / "bench_output"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: bench_main(["--output_dir", str(output), *flags]))
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}")
    assert not output.exists()


@pytest.mark.parametrize("user_setting, local_size, expected", [
    (None, None, lambda cores: cores),
    ("1", None, lambda cores: 1),  # the user's setting wins
    (None, "2", lambda cores: max(1, cores // 2)),  # shared among a launch's local processes
    (None, "many", lambda cores: cores),
    ("lots", None, lambda cores: cores),
])  # fmt: skip
def test_training_gets_every_core(monkeypatch, user_setting, local_size, expected):
    """paddle's import sets OMP_NUM_THREADS=1 when unset, so its dygraph kernels would train on one core;
    training asks for every core (the user's OMP_NUM_THREADS, read before paddle loaded, wins)."""
    from ernie3 import compat

    monkeypatch.setattr(compat, "_USER_OMP_THREADS", user_setting)
    monkeypatch.delenv("PADDLE_TRAINERS_NUM", raising=False)
    if local_size is None:
        monkeypatch.delenv("PADDLE_LOCAL_SIZE", raising=False)
    else:
        monkeypatch.setenv("PADDLE_LOCAL_SIZE", local_size)
    assert compat.use_every_core_for_training() == expected(len(os.sched_getaffinity(0)))


def test_importing_the_package_leaves_omp_num_threads_alone():
    """Setting OMP_NUM_THREADS above 1 before paddle loads would make paddle print a WARNING on every import."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", "import os, ernie3; print(os.environ.get('OMP_NUM_THREADS'))"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr
